"""Exact (noise-free) expectations: quadrature nodes (or enumeration) instead of samples, autograd unchanged.

Enumerable families (categorical) enumerate their support: every category is a node
weighted by its probability, which is exact with no error estimate needed.

E_m[g(x)] = ∫ m(x) g(x) dx ≈ Σ_i w_i g(x_i) with the family's quadrature nodes for the
sampling distribution m (Gauss–Hermite for the Normal, ``families/normal.py``). Here
g(x) is the per-sample autograd gradient, obtained by the same engine as Monte Carlo
(``gradients.row_gradients``) with one node per row, so the weights are constants to
autograd exactly as samples are. The per-sample
variance Σ_i w_i (g_i − mean)² gives the stdev of an n-sample mean, √(var/n),
for any n without sampling.

Accuracy contract: nodes double (32 → 64 → 128 → 256) until mean and variance
change by less than ``REL_TOL`` (relative, floor 1e-12 absolute). The last change is
reported as the error estimate, and a moment that never settles is refused: it
is returned as NaN with a warning, never as a number.

Heavy and far tails (``tails.py``, continuous families): before trusting a moment we locate its mass on a dense
grid. A mean or variance carried beyond the nodes' reach is refused (NaN). A diverging
variance is reported as ``inf``, and the warning says which case applies. k = 4
concerns the 4th moment: when it is infinite or far, a Monte-Carlo stdev cannot be
trusted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .expectation import Points
from .families import DistSpec
from .statistics import weighted_moments
from .tails import ORDERS, Tail, tail_report

NODE_LADDER = (32, 64, 128, 256)  # hermgauss is unreliable beyond ~300 nodes
REL_TOL = 1e-10
M4_REL_TOL = 1e-4  # the 4th moment only sizes the uncertainty of MC stdevs; it converges slower
ABS_FLOOR = 1e-12


@dataclass
class Moments:
    """Exact per-sample moments of one evaluated quantity, one entry per parameter (column)."""

    mean: np.ndarray  # E_m[g], (P,)
    var: np.ndarray  # Var_m[g] per sample, (P,)
    m4: np.ndarray  # E_m[(g − mean)^4] per sample, (P,); inf when the 4th moment diverges
    err: np.ndarray  # error estimate of mean (change from the previous node count), (P,)
    nodes: int
    warnings: list[str]  # one string per parameter, "" when all is well


Evaluate = Callable[[torch.Tensor], dict]  # points (N, 1) float64 -> {key: (N, P) tensor}


def node_ladder(sampler: DistSpec):
    """Weighted points for successive node counts: one exact enumeration, or the quadrature ladder."""
    for n in NODE_LADDER[:1] if sampler.fam.enumerable else NODE_LADDER:
        yield Points(*sampler.fam.nodes(sampler, n))


def exact_moments(evaluate: Evaluate, sampler: DistSpec) -> dict[object, Moments]:
    """Exact mean, variance and 4th central moment under ``sampler`` of each evaluated quantity (float64)."""
    tails = None if sampler.fam.enumerable else tail_report(evaluate, sampler)  # finite sums: all moments finite
    ladder = []  # results for successive node counts
    for points in node_ladder(sampler):
        ladder.append({k: weighted_moments(g.detach().numpy(), points.weights)
                       for k, g in evaluate(points.x).items()})
        if len(ladder) >= 2 and all(np.all(c) for k in ladder[-1] for c in _converged(ladder[-1][k], ladder[-2][k])):
            break
    current, prev = ladder[-1], ladder[-2 if len(ladder) > 1 else -1]
    out = {}
    for key, moments in current.items():
        ok = _converged(moments, prev[key])
        err = np.abs(moments[0] - prev[key][0])
        tail = tails[key] if tails else [dict.fromkeys(ORDERS, Tail("ok", 0.0))] * len(err)
        warnings, mean, var, m4 = _judge(tail, ok, *(m.copy() for m in moments), err)
        out[key] = Moments(mean, var, m4, err, points.rows, warnings)
    return out


def _converged(cur, prev) -> list[np.ndarray]:
    """Per-moment (mean, var, m4) boolean arrays: did it change by less than its tolerance?"""
    with np.errstate(invalid="ignore"):  # inf − inf for infinite moments: judged by the tail analysis
        return [np.abs(c - p) <= np.maximum(t * np.abs(c), ABS_FLOOR)
                for c, p, t in zip(cur, prev, (REL_TOL, REL_TOL, M4_REL_TOL))]


def _judge(tails, ok, mean, var, m4, err):
    """Refuse numbers that are not trustworthy; say why, per parameter (``tails``: [{k: Tail}] per parameter)."""
    ok_mean, ok_var, ok_m4 = ok
    warnings = []
    for j in range(len(mean)):
        t, notes = tails[j], []
        if t[1].kind != "ok":
            mean[j] = math.nan
            notes.append(t[1].describe("mean"))
        elif not ok_mean[j]:
            mean[j] = math.nan
            notes.append(f"quadrature did not converge for the mean (change {err[j]:.1e} at {NODE_LADDER[-1]} nodes; "
                         f"a kink such as a clamp does this; MC mode still measures it)")
        if t[2].kind != "ok":
            var[j] = m4[j] = math.inf if t[2].kind == "infinite" else math.nan
            notes.append(t[2].describe("variance"))
        else:
            if not ok_var[j]:
                var[j] = math.nan
                notes.append("quadrature did not converge for the variance")
            if t[4].kind != "ok":
                m4[j] = math.inf if t[4].kind == "infinite" else math.nan
                notes.append("heavy tail: " + t[4].describe("4th moment") + ", so MC stdev estimates are unreliable")
            elif not ok_m4[j]:
                m4[j] = math.nan
        warnings.append("; ".join(notes))
    return warnings, mean, var, m4
