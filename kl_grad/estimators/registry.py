"""The estimator registry: ``Estimator`` (a function of the log-ratio d plus what it is for), ``register``,
``get_estimator`` and the straight-through construction that framework variants share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from ..errors import choose
from .numerics import smooth

Tensor = torch.Tensor


@dataclass(frozen=True)
class Estimator:
    """A registered estimator: a function of the log-ratio d plus what it is for.

    ``of_log_ratio(d)`` maps a tensor of d = log π_θ − log π_ref to per-sample
    values (same shape). ``direction`` is the KL direction whose value (or, for
    gradient surrogates, gradient) it targets. ``unbiased_value`` says whether
    E_{π_θ}[k] equals that KL exactly; ``gradient_only`` marks surrogates whose value
    is no KL estimate at all (r: E[r] = 1). ``clamp_active(d)``, for clamped variants,
    is True where a clamp zeroes the sample's gradient, so runs can report it.
    ``derivative`` k'(d) and ``score_coefficient`` k + k' are closed forms (see ``smooth``),
    given for every estimator except the clamped one; placement loss-w uses them (placements.py).
    """

    name: str
    formula: str
    direction: str
    unbiased_value: bool
    of_log_ratio: Callable[[Tensor], Tensor]
    source: str
    aliases: tuple[str, ...] = field(default=())
    clamp_active: Callable[[Tensor], Tensor] | None = None
    gradient_only: bool = False
    derivative: Callable[[Tensor], Tensor] | None = None  # k'(d), float64 in and out
    score_coefficient: Callable[[Tensor], Tensor] | None = None  # k(d) + k'(d), float64 in and out
    kinked: bool = False  # a clamp or |·| in k: exact mode on continuous families refuses it (lab/kinks.py)

    def __call__(self, logp: Tensor, ref_logp: Tensor) -> Tensor:
        """Per-sample estimate from policy and reference log-probs (broadcast)."""
        return self.of_log_ratio(logp - ref_logp)


ESTIMATORS: dict[str, Estimator] = {}
_ALIASES: dict[str, str] = {}
# Names that once meant something else here: a framework's name means what that framework computes.
RETIRED = {
    "low_var_kl": "it meant plain k3 here, while verl's low_var_kl clamps log r to ±20 and the value to ±10; "
                  "use 'k3' (plain) or 'verl:low_var_kl' (verl's clamped form)",
}


def register(est: Estimator) -> Estimator:
    """Add ``est`` to the registry (names and aliases must be new)."""
    for key in (est.name, *est.aliases):
        if key in ESTIMATORS or key in _ALIASES:
            raise ValueError(f"estimator name {key!r} registered twice")
    ESTIMATORS[est.name] = est
    _ALIASES.update({alias: est.name for alias in est.aliases})
    return est


def get_estimator(name: str) -> Estimator:
    """Look an estimator up by name or alias; unknown names list the allowed ones."""
    return choose("estimator", name.strip(), ESTIMATORS, _ALIASES, RETIRED)  # type: ignore[return-value]


def straight_through(value_of: Callable[[Tensor], Tensor]) -> dict:
    """Value of ``value_of`` with the gradient of k2 (verl's ``kX+``: b − sg(b) + sg(f), b = k2): the
    derivative is d, and the loss-w coefficient is f(d) + d."""
    return dict(of_log_ratio=smooth(value_of, lambda d: d.clone()), derivative=lambda d: d.clone(),
                score_coefficient=lambda d: value_of(d) + d)
