"""A measurement problem: policy π_θ, reference π_ref, sampling distribution, precision, sampling kind.

Every runner takes a ``Problem``; it is validated once, here, at construction
(text specs are parsed, dtype names resolved, families must match, pathwise
needs a reparameterisable on-policy sampler). The truth it carries is the
gradient of the closed-form KL at θ0 in both directions, by autograd of
``torch.distributions.kl_divergence`` in float64.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch

from ..directions import DIRECTIONS, kl
from ..errors import KLGradError, choose
from .families import DistSpec, as_spec
from .families.sampling import Transform

DTYPES = {"float32": torch.float32, "float64": torch.float64}
MASS_POINTS = 1 << 20  # an engine note sums π_θ over the sampler's support only up to this many points


def dtype_of(dtype: str | torch.dtype) -> torch.dtype:
    """A torch dtype from its name (``float32``, ``float64``) or itself; other dtypes are refused."""
    if isinstance(dtype, str):
        return choose("dtype", dtype, DTYPES)  # type: ignore[return-value]
    if dtype not in DTYPES.values():
        raise KLGradError(f"unsupported dtype {dtype}; expected float32 or float64")
    return dtype


@dataclass(frozen=True)
class Problem:
    """What is measured: ``policy`` (its parameters are differentiated), ``ref``, and the samples' origin.

    ``sampler``: the off-policy sampling distribution m, or None for on-policy (m = π_θ).
    ``dtype``: precision of Monte-Carlo points, parameters and log-probs (exact mode always uses float64).
    ``pathwise``: reparameterised samples x(θ) (``rsample``) instead of score-function sampling.
    ``old``: the distribution whose log-probs the trainer divides by (its ``old_logp``), where that is not
    the sampler's: a top-k/top-p engine's sampler with the trainer's own untruncated recomputation.
    Text specs (``"normal:0,1"``) and dtype names are accepted and normalised.
    """

    policy: DistSpec
    ref: DistSpec
    sampler: DistSpec | None = None
    dtype: torch.dtype = torch.float32
    pathwise: bool = False
    old: DistSpec | None = None

    @property
    def weight_base(self) -> DistSpec | None:
        """What w = π_θ/sg(old) divides by: ``old``, else the sampler (None: on-policy, sg(π_θ))."""
        return self.old or self.sampler

    def __post_init__(self):
        set_ = object.__setattr__.__get__(self)
        set_("policy", as_spec(self.policy, "policy"))
        set_("ref", as_spec(self.ref, "ref"))
        set_("sampler", None if self.sampler is None else as_spec(self.sampler, "sampler"))
        set_("old", None if self.old is None else as_spec(self.old, "old"))
        set_("dtype", dtype_of(self.dtype))
        for role, other in (("ref", self.ref), ("sampler", self.sampler), ("old", self.old)):
            if other is not None and (other.family != self.policy.family or other.structure != self.policy.structure
                                      or len(other.values) != len(self.policy.values)):
                raise KLGradError(f"{role} {other.label} does not match policy {self.policy.label}: "
                                  f"expected the same family with {len(self.policy.values)} parameters"
                                  + (f" and sequence length {', '.join(str(x) for x in self.policy.structure)}"
                                     if self.policy.structure else ""))
        if self.pathwise:
            if not self.policy.fam.reparameterisable:
                raise KLGradError(f"pathwise (rsample) gradients need a continuous reparameterisable policy "
                                  f"(normal); {self.policy.family} samples are discrete tokens, which cannot be "
                                  "reparameterised")
            if self.sampler is not None:
                raise KLGradError("pathwise (rsample) gradients are on-policy only: drop the sampler")

    @property
    def sampling(self) -> DistSpec:
        """The distribution the samples come from: the sampler, or the policy on-policy."""
        return self.sampler or self.policy

    @property
    def param_names(self) -> tuple[str, ...]:
        return self.policy.param_names

    @property
    def sampler_label(self) -> str:
        return self.sampler.label if self.sampler else "policy"

    def in_float64(self) -> Problem:
        """The same problem in float64 (exact mode's precision)."""
        return dataclasses.replace(self, dtype=torch.float64)

    def centred(self) -> tuple[Problem, float]:
        """(the same problem moved so the sampling distribution sits at 0, the amount it was moved by):
        expectations of gradients and values are translation invariant, and exact nodes loc + scale·z keep
        the digits of scale·z only near 0 (a policy N(2, 1e-5): ulp(2)/scale² = 4e-6 per score otherwise)."""
        shift = -self.sampling.fam.location(self.sampling)
        specs = (self.policy, self.ref) + ((self.sampler,) if self.sampler else ())
        if shift == 0 or not all(math.isfinite(s.fam.location(s) + shift) for s in specs):
            return self, 0.0  # (loc 1e308 and −1e308 cannot be moved; they are refused for overflow anyway)
        move = lambda s: None if s is None else s.fam.moved(s, shift)  # noqa: E731
        moved = dataclasses.replace(self, policy=move(self.policy), ref=move(self.ref), sampler=move(self.sampler),
                                    old=move(self.old))
        return moved, shift

    def with_engine(self, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                    old_logp: str = "processed") -> Problem:
        """The problem with its samples drawn as an inference engine draws them (families/sampling.py): the
        sampler (or, on-policy, the policy at θ0, detached) processed by temperature, top-k and top-p.
        ``old_logp``: "processed" (the engine's log-probs, the default of vLLM-backed trainers) or "raw" (the
        trainer's recomputation of the untruncated old policy). The truth stays ∇KL of the untruncated π_θ."""
        choose("old-logp", old_logp, {"processed": 0, "raw": 0})
        transform = Transform(temperature, top_k, top_p)
        if transform.identity:
            return self
        if self.pathwise:
            raise KLGradError("temperature, top-k and top-p shape a token sampler; pathwise runs are Gaussian")
        base = self.sampler or self.policy
        return dataclasses.replace(self, sampler=base.processed(transform), old=base if old_logp == "raw" else None)

    def engine_note(self) -> str:
        """A row warning for an engine-processed sampler: the share of π_θ's mass it can draw at all (token
        families, enumerated: Σ π_θ(y) over the sampler's support), and what the truth is."""
        sampler = self.sampler
        if sampler is None or sampler.transform is None:
            return ""
        drawn = " leaves some tokens out (its share of π_θ's mass is summed only up to 2^20 points);"
        if sampler.fam.enumerable and sampler.fam.support_size(sampler) <= MASS_POINTS:
            with torch.no_grad():
                x = sampler.fam.nodes(sampler, 0)[0]
                kept = float(self.policy.build(torch.float64).log_prob(x).sum(-1).exp().sum())
            drawn = f" draws from {kept:.4g} of π_θ's mass;"
        old = "the untruncated old policy's log-probs" if self.old is not None else "the engine's processed log-probs"
        return (f"sampler {sampler.transform.label}{drawn} the trainer divides by {old}; the truth is ∇KL of the "
                "untruncated π_θ")

    def true_kl(self, direction: str) -> float:
        """Closed-form KL in ``direction`` (a canonical name), float64: the family's own where it has one."""
        own = self.policy.fam.kl_value(direction, self.policy, self.ref)
        if own is not None:
            return own
        return float(kl(direction, self.policy.build(torch.float64), self.ref.build(torch.float64)))

    def true_gradients(self) -> dict[str, np.ndarray]:
        """{direction: (P,) ∇_θ KL at θ0} (float64): the family's closed form where it has one
        (categorical), else autograd of torch's closed-form KL."""
        closed = self.policy.fam.kl_gradients(self.policy, self.ref)
        if closed is not None:
            return closed
        out = {}
        for direction in DIRECTIONS:
            leaves = self.policy.leaves((), torch.float64)
            value = kl(direction, self.policy.build_from(leaves), self.ref.build(torch.float64))
            out[direction] = torch.stack(torch.autograd.grad(value, list(leaves.values()))).numpy()
        return out
