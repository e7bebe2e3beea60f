"""``LiveSpec``: how one catalogue entry's real code is reached and called per token (``spec`` builds one)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

Tensor = torch.Tensor
# (framework function or class, logp, ref_logp, old_logp or None, mask or None) -> per-token tensor, logp's shape
Adapter = Callable[[Callable, Tensor, Tensor, "Tensor | None", "Tensor | None"], Tensor]


@dataclass(frozen=True)
class LiveSpec:
    """How to reach one catalogue entry's real code.

    ``targets``: "module:attribute" names (a function, or a class the adapter instantiates), tried in order (the
    first whose module imports is the one checked); ``call``: the adapter; ``source``: repository, file and
    version read; ``float32``: the function casts its inputs to float32 (``.float()``), so it is compared at
    float32 precision.
    """

    term: str
    targets: tuple[str, ...]
    call: Adapter
    source: str
    float32: bool = False

    @property
    def live(self) -> str:
        return self.targets[0]


def spec(term: str, targets: str | tuple[str, ...], call: Adapter, source: str, float32: bool = False) -> LiveSpec:
    return LiveSpec(term, (targets,) if isinstance(targets, str) else tuple(targets), call, source, float32)


def sampler_ratio(lp: Tensor, old: Tensor | None) -> Tensor:
    """exp(logp − old), differentiable in logp; on-policy old = sg(logp) (value 1)."""
    return torch.exp(lp - (lp.detach() if old is None else old.detach()))


def sampler_logp(lp: Tensor, old: Tensor | None) -> Tensor:
    """The log-probs the sampler recorded: ``old`` where given; on-policy the sampler is the current policy, so
    logp itself (its value; the catalogue's reward rows take it with its gradient, and so does the adapter)."""
    return lp if old is None else old
