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
change by less than ``REL_TOL`` relative to the size of what is summed (E|g|, E g²). The
stated error of a mean is the last change plus float64 rounding, rounded up to one significant
digit (``statistics.stated_error``); a mean below it is 0. A moment that never settles is
refused: it is returned as NaN with a warning, never as a number.

Heavy and far tails (``tails.py``, continuous families): before trusting a moment we locate its
mass on a dense grid around the sampler, the policy and the reference. Where it lies away from
the sampler (or at another width), the nodes become composite Gauss–Legendre panels over it.
A moment whose integrand float64 cannot form (g overflows next to its mass) or that lies beyond
the grid is refused (NaN); a diverging one is ``inf``, and the warning says which. k = 4
concerns the 4th moment: when it is infinite or out of reach, a Monte-Carlo stdev cannot be
trusted.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .expectation import Points
from .families import DistSpec
from .statistics import stated_error, weighted_moments
from .tails import ORDERS, Tail, TailKind, tail_report

NODE_LADDER = (32, 64, 128, 256)  # hermgauss is unreliable beyond ~300 nodes
REL_TOL = 1e-10
M4_REL_TOL = 1e-4  # the 4th moment only sizes the uncertainty of MC stdevs; it converges slower


@dataclass
class Moments:
    """Exact per-sample moments of one evaluated quantity, one entry per parameter (column)."""

    mean: np.ndarray  # E_m[g], (P,)
    var: np.ndarray  # Var_m[g] per sample, (P,)
    m4: np.ndarray  # E_m[(g − mean)^4] per sample, (P,); inf when the 4th moment diverges
    err: np.ndarray  # error bound of mean: node-count change + float64 rounding, one significant digit, (P,)
    nodes: int
    warnings: list[str]  # one string per parameter, "" when all is well
    scale: np.ndarray | None = None  # E_m|g|, (P,): the size of the float64 rounding of the mean
    var_tail: list[str] | None = None  # the variance's tail class per parameter (ok, infinite, far, overflow)
    m4_tail: list[str] | None = None  # the 4th central moment's
    spread: np.ndarray | None = None  # enumerated supports: max |g − mean| over points of positive mass, (P,)


Evaluate = Callable[[torch.Tensor], dict]  # points (N, 1) float64 -> {key: (N, P) tensor}


NEAR_Z = 6.0  # a peak within this many σ of the sampler, with a width within a factor 2, suits its own nodes
MAX_NODES = 1 << 20  # most nodes a composite rule may take (at the top of the ladder)


def node_ladder(sampler: DistSpec, span=None):
    """Weighted points for successive node counts: one exact enumeration, or the quadrature ladder."""
    for n in NODE_LADDER[:1] if sampler.fam.enumerable else NODE_LADDER:
        yield Points(*sampler.fam.nodes(sampler, n, span))


def mass_centres(tails: dict, sampler: DistSpec) -> list[tuple[float, float]] | None:
    """None when every located peak of the mean and variance integrands suits the sampler's own rule;
    else (μ, σ) of the sampler and of every distinct peak, for a composite rule whose panels cover
    μ ± 12σ of each at the width each needs (``Family.nodes``). Raises ``Unreachable`` when the panels
    would exceed MAX_NODES: no peak is ever dropped."""
    loc, scale = sampler.values
    peaks = [p for per_param in tails.values() for by_order in per_param for k in (1, 2) for p in by_order[k].peaks]
    if all(abs(mu - loc) <= NEAR_Z * scale and 0.5 <= sigma / scale <= 2 for mu, sigma in peaks):
        return None
    centres = sorted({(loc, scale), *peaks})
    top = len(sampler.fam.nodes(sampler, NODE_LADDER[-1], centres)[1])
    if top > MAX_NODES:
        raise Unreachable(f"covering the integrands' mass at the widths it needs takes {top} nodes, more than "
                          f"the {MAX_NODES} allowed")
    return centres


class Unreachable(Exception):
    """No node layout covers the mass: every moment is refused with this reason."""


def exact_moments(evaluate: Evaluate, sampler: DistSpec, anchors: tuple[DistSpec, ...] = (),
                  shift: float = 0.0) -> dict:
    """Exact mean, variance and 4th central moment under ``sampler`` of each evaluated quantity (float64).

    ``anchors``: other distributions near which the integrands' mass may lie (the policy and the
    reference); the tail analysis searches around them and the nodes follow the mass it finds.
    ``shift``: how far the problem was moved (``Problem.centred``); warnings name x where the user's is.
    """
    tails = None if sampler.fam.enumerable else tail_report(evaluate, sampler, anchors)  # finite sums: all finite
    try:
        span = mass_centres(tails, sampler) if tails else None
    except Unreachable as exc:
        return _refused(evaluate, sampler, str(exc))
    if tails and shift:
        tails = {k: [{o: dataclasses.replace(t, where=t.where - shift) for o, t in per.items()} for per in v]
                 for k, v in tails.items()}
    ladder = []  # results for successive node counts
    for points in node_ladder(sampler, span):
        values = {k: g.detach().numpy() for k, g in evaluate(points.x).items()}
        if sampler.fam.enumerable:  # a sum over the support: only an overflowing term can spoil it
            tails = {k: [_enumerated_tail(g[:, j]) for j in range(g.shape[1])] for k, g in values.items()}
        ladder.append({k: weighted_moments(_negligible_overflow(g, tails and tails[k]), points.weights,
                                           points.log_weights)
                       for k, g in values.items()})
        if len(ladder) >= 2 and all(np.all(c) for k in ladder[-1] for c in _converged(ladder[-1][k], ladder[-2][k])):
            break
    current, prev = ladder[-1], ladder[-2 if len(ladder) > 1 else -1]
    jitter = _node_rounding(evaluate, points, values, sampler)
    out = {}
    for key, moments in current.items():
        ok = _converged(moments, prev[key])
        with np.errstate(invalid="ignore"):
            err = np.abs(moments[0] - prev[key][0])
        tail = tails[key]
        warnings, mean, var, m4 = _judge(tail, ok, *(m.copy() for m in moments[:3]), err, sampler.fam.enumerable)
        _refuse_underflow(values[key], points, var, warnings)
        fraction = np.array([t[1].tail for t in tail])  # mass beyond overflow boundaries, relative
        left_out = np.where(fraction > 0, fraction * np.where(np.isfinite(moments[3]), moments[3], 0.0), 0.0)
        stated = stated_error(err + left_out + jitter.get(key, 0.0), moments[3])
        with np.errstate(invalid="ignore"):
            mean = np.where(np.abs(mean) <= stated, 0.0, mean)  # a mean below its own error is zero
        out[key] = Moments(mean, var, m4, stated, points.rows, warnings, moments[3], [t[2].kind for t in tail],
                           [t[4].kind for t in tail], _spread(values[key], points, moments[0], sampler))
    return out


SUBNORMAL = float(np.finfo(np.float64).smallest_subnormal)  # 4.9e-324: the spacing of float64 below 2.2e-308


def _refuse_underflow(g: np.ndarray, points: Points, var: np.ndarray, warnings: list[str]) -> None:
    """NaN (in place) for a variance that float64 cannot hold: terms w·(g − mean)² below 2.2e-308 keep only
    an absolute 4.9e-324 each, so a sum of N of them is known to ±N·4.9e-324; a variance within 1e9 of that
    (a stdev of 1e-309 underflows to 0) has lost its digits. A column constant over the support is exact."""
    floor = 1e9 * SUBNORMAL * points.rows
    alive = points.weights > 0 if points.log_weights is None else np.isfinite(points.log_weights)
    for j in np.flatnonzero(np.isfinite(var) & (var < floor)):
        column = g[alive, j]
        if np.all(column == column[0]):
            continue
        var[j] = math.nan
        note = f"stdev refused: the variance underflows float64 (below {floor:.0e}, where its digits are lost)"
        warnings[j] = "; ".join(filter(None, [warnings[j], note]))


def _node_rounding(evaluate: Evaluate, points: Points, values: dict, sampler: DistSpec) -> dict:
    """{key: (P,) Σ_i w_i |g(x_i⁺) − g(x_i)|}, x⁺ the next float64 up: a node m + s·z is stored to within
    half an ulp of x, which moves g by up to this much. Nothing else bounds it where the integrand is steep
    on the scale of ulp(x) (a policy of scale 1e-5 at loc 2: ulp(2)/s² = 4e-6 per node, against a rounding
    term of 1e-8). Enumerated points are exact: {}."""
    if sampler.fam.enumerable:
        return {}
    nudged = evaluate(torch.nextafter(points.x, torch.full_like(points.x, math.inf)))
    out = {}
    for key, g in values.items():
        with np.errstate(invalid="ignore", over="ignore"):
            step = np.abs(nudged[key].detach().numpy() - g)
        out[key] = points.weights @ np.where(np.isfinite(step), step, 0.0)
    return out


def _spread(g: np.ndarray, points: Points, mean: np.ndarray, sampler: DistSpec) -> np.ndarray | None:
    """max |g_x − E g| over the enumerated points of positive probability (N, P) → (P,); None for quadrature
    rules (an unbounded support has no such bound). It bounds a Monte-Carlo draw's deviation (Bernstein)."""
    if not sampler.fam.enumerable:
        return None
    alive = points.weights > 0 if points.log_weights is None else np.isfinite(points.log_weights)
    with np.errstate(invalid="ignore", over="ignore"):
        return np.abs(g[alive] - mean).max(axis=0)


def _refused(evaluate: Evaluate, sampler: DistSpec, reason: str) -> dict:
    """NaN moments for every evaluated quantity, each parameter warned with ``reason``."""
    out = {}
    for key, g in evaluate(sampler.fam.nodes(sampler, NODE_LADDER[0])[0]).items():
        nan = np.full(g.shape[1], math.nan)
        out[key] = Moments(nan, nan, nan, nan, 0, [f"exact moments refused: {reason}"] * len(nan), nan,
                           [TailKind.FAR] * len(nan), [TailKind.FAR] * len(nan))
    return out


def _enumerated_tail(g: np.ndarray) -> dict:
    """Tail classes of one enumerated column g (N,): all ok, or overflow at the first non-finite point."""
    bad = np.flatnonzero(~np.isfinite(g))
    return dict.fromkeys(ORDERS, Tail(TailKind.OVERFLOW, float(bad[0])) if len(bad) else Tail(TailKind.OK))


def _negligible_overflow(g: np.ndarray, tails) -> np.ndarray:
    """g (N, P) with non-finite entries set to 0 in the columns whose mean integrand the tail analysis
    found ok: there g overflows only where the integrand is e^−DROP below its peak and falling (nodes
    laid out for another quantity's mass, e.g. a variance peak beyond a mean's). Other columns keep
    their NaN/inf, and the tail analysis's refusal says why."""
    if not tails or np.isfinite(g).all():
        return g
    ok = np.array([t[1].kind is TailKind.OK for t in tails])
    return np.where(~np.isfinite(g) & ok, 0.0, g)


def _converged(cur, prev) -> list[np.ndarray]:
    """Per-moment (mean, var, m4) boolean arrays: did it change by less than its tolerance, relative to
    the size of what is summed (mean: E|g|; variance: E g²; m4: itself)? No absolute floor."""
    mean, var, m4, abs_mean = cur
    with np.errstate(invalid="ignore", over="ignore"):  # inf − inf, mean² beyond float64: the tail analysis judges
        scales = (abs_mean, var + mean**2, np.abs(m4))
        return [np.abs(c - p) <= t * s for c, p, t, s in zip(cur, prev, (REL_TOL, REL_TOL, M4_REL_TOL), scales)]


def _judge(tails, ok, mean, var, m4, err, enumerated=False):
    """Refuse numbers that are not trustworthy; say why, per parameter (``tails``: [{k: Tail}] per parameter;
    ``enumerated``: a finite sum, which has no node count to converge in, only float64's range to exceed)."""
    ok_mean, ok_var, ok_m4 = ok
    warnings = []
    for j in range(len(mean)):
        t, notes = tails[j], []
        if t[1].kind is not TailKind.OK:
            mean[j] = math.nan
            notes.append(t[1].describe("mean"))
        elif not ok_mean[j]:
            mean[j] = math.nan
            notes.append(f"quadrature did not converge for the mean (change {err[j]:.1e} at {NODE_LADDER[-1]} nodes; "
                         f"a kink such as a clamp does this; MC mode still measures it)")
        if t[2].kind is not TailKind.OK:
            var[j] = m4[j] = math.inf if t[2].kind is TailKind.INFINITE else math.nan
            notes.append(t[2].describe("variance"))
        else:
            if not ok_var[j]:
                var[j] = math.nan
                notes.append("the variance overflows float64 (beyond 1.8e308)" if enumerated
                             else "quadrature did not converge for the variance")
            if t[4].kind is not TailKind.OK:
                m4[j] = math.inf if t[4].kind is TailKind.INFINITE else math.nan
                notes.append("heavy tail: " + t[4].describe("4th moment") + ", so MC stdev estimates are unreliable")
            elif not ok_m4[j]:
                m4[j] = math.nan
        warnings.append("; ".join(notes))
    return warnings, mean, var, m4
