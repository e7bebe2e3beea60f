"""Exact mode and kinked estimators: a clamp or |·| is refused under quadrature, never trusted.

Quadrature on an integrand with a kink (clamped framework estimators such as ``openrlhf:k2``, ``verl:abs``)
can settle on a wrong mean while claiming convergence (measured: 1.5e-10 relative off with no warning, while
a 1e-10 contract was stated). On a continuous family such moments are replaced by NaN with the reason; an
enumerable family (categorical) is an exact finite sum and keeps its numbers. Monte Carlo measures them.
"""

from __future__ import annotations

import numpy as np

from ..estimators import Estimator
from .families import DistSpec
from .quadrature import Moments
from .tails import TailKind


def refuse_kinked(moments: dict, estimators: dict, sampler: DistSpec) -> dict:
    """``moments`` ({key: Moments}) with every key whose estimator (``estimators[key]``) is ``kinked`` refused,
    when ``sampler`` is continuous."""
    if sampler.fam.enumerable:
        return moments
    out = dict(moments)
    for key, est in estimators.items():
        if isinstance(est, Estimator) and est.kinked and key in out:
            p = len(out[key].mean)
            nan = np.full(p, np.nan)
            why = (f"exact mode refused: {est.name} has a kink (clamp or |·|) that quadrature cannot certify; "
                   "MC mode measures it")
            out[key] = Moments(nan, nan, nan, nan, 0, [why] * p, nan, [TailKind.FAR] * p, [TailKind.FAR] * p)
    return out
