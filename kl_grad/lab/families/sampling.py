"""Sampling as inference engines do it: temperature, then top-k, then top-p, then renormalise (vLLM's order).

A ``Transform`` is carried by a sampler's ``DistSpec`` (``DistSpec.transform``); token families apply it to
every softmax row (categorical: the logits; markov: the first-token row and each transition row, so per
position given the prefix). With z the row's logits:

    temperature T   z ← z / T
    top-k K         tokens whose z is below the K-th largest get −inf (ties at the K-th are kept)
    top-p P         sort ascending, cumulate the softmax; tokens whose cumulative mass is ≤ 1 − P get −inf;
                    the most probable token is always kept (vLLM ``apply_top_k_top_p``)

The processed log-probs are log softmax of the result: −inf off the kept set. Those are what an engine
returns as ``old_logp`` (``--old-logp processed``); ``raw`` means the trainer recomputes the untruncated
policy's log-probs instead (``Problem.old``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ...errors import KLGradError

MIN_TEMPERATURE = 1e-6  # below it float32 logits / T overflow to inf − inf = NaN


@dataclass(frozen=True)
class Transform:
    """temperature > 0; top_k ≥ 1 or 0 (off); 0 < top_p ≤ 1 (1: off). Validated on construction."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0

    def __post_init__(self):
        t, k, p = self.temperature, self.top_k, self.top_p
        if not (isinstance(t, (int, float)) and math.isfinite(t) and MIN_TEMPERATURE <= t):
            greedy = (" (greedy decoding, T = 0, has no log-probs to weight: use a small T such as 0.01)"
                      if isinstance(t, (int, float)) and 0 <= t < MIN_TEMPERATURE else "")
            raise KLGradError(f"temperature must be a finite number ≥ {MIN_TEMPERATURE:g}, got {t}{greedy}")
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise KLGradError(f"top-k must be a whole number ≥ 1, or 0 for off, got {k}")
        if not (isinstance(p, (int, float)) and 0 < p <= 1):
            why = ": a nucleus of mass 0 keeps no token" if isinstance(p, (int, float)) and p <= 0 else ""
            raise KLGradError(f"top-p must be in (0, 1] (1 is off), got {p}{why}")

    @property
    def identity(self) -> bool:
        return self.temperature == 1 and self.top_k == 0 and self.top_p == 1

    @property
    def label(self) -> str:
        """e.g. ``T=0.7,top-k=20,top-p=0.95`` (only the active parts)."""
        parts = [f"T={self.temperature:g}"] if self.temperature != 1 else []
        parts += [f"top-k={self.top_k}"] if self.top_k else []
        parts += [f"top-p={self.top_p:g}"] if self.top_p != 1 else []
        return ",".join(parts)

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        """Processed logits (…, V): −inf where the engine never samples (module docstring)."""
        z = (logits - logits.max(dim=-1, keepdim=True).values) / self.temperature  # shifted: no inf − inf
        minus_inf = torch.tensor(-math.inf, dtype=z.dtype)
        if self.top_k and self.top_k < z.shape[-1]:
            kth = torch.topk(z, self.top_k, dim=-1).values[..., -1:]
            z = torch.where(z < kth, minus_inf, z)
        if self.top_p < 1:
            ordered, index = torch.sort(z, dim=-1, stable=True)  # ascending
            mass = torch.softmax(ordered, dim=-1).cumsum(dim=-1)
            drop = mass <= 1 - self.top_p
            drop[..., -1] = False  # the most probable token stays
            z = torch.where(torch.zeros_like(drop).scatter(-1, index, drop), minus_inf, z)
        return z
