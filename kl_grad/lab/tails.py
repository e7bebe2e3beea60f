"""Where does an expectation's mass live? Tail analysis behind exact mode's nodes and refusals.

For E_m[|g|^k] (k = 1: the mean, 2: the variance, 4: the variance of an MC stdev)
the integrand is h_k(x) = |g(x)|^k·m(x). With r = π_ref/π_θ inside g, its mass can
sit far from m: for π_θ = N(0,1), π_ref = N(30,1), E[∇k3] = −30 is carried entirely
by x ≈ 30σ (the reference side), and the variance's by x ≈ 60σ. So log h_k is
evaluated (same autograd engine, float64) on a dense grid of ±``GRID_Z`` standard
deviations around the sampler, the policy and the reference together, and each
(quantity, parameter, order) is classified:

    ok        a peak inside the grid with the integrand e^−``DROP`` below it where the grid ends
              and wherever g overflows: the peak's place and width become quadrature nodes
    far       still high (or rising, concave) at the grid edge: the mass lies beyond the grid
    infinite  rising where the grid ends or g starts to overflow, in the form exp(c·x²)·poly with
              c > 0 (fitted through four probes): for Gaussian-family integrands, divergent
    overflow  g overflows float64 (inf or NaN) next to the mass: the product m·g would be
              finite there, but float64 cannot form it, so the moment is refused; unless log h
              falls, log-concave, into the overflow, where the mass beyond is at most h(b)/|slope|:
              under TAIL_FRACTION of the whole it is left out and added to the mean's stated error

Enumerable families (categorical) need none of this: every moment is a finite sum.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np
import torch

from .families import DistSpec

GRID_Z = 40.0  # grid half-width in standard deviations of each anchor distribution
GRID_POINTS = 1601  # spacing 0.05σ
DROP = 25.0  # nats below the peak that count as negligible (e^−25 ≈ 1.4e-11)
# Mass beyond an overflow boundary (log-concave bound h(b)/|slope|) a moment may leave out, as a fraction of
# its mass; the fraction is added to its stated error. Above it the moment is refused.
TAIL_FRACTION = 1e-9
COVER = 40.0  # nats below the top that the nodes must still cover (e^−40 ≈ 4e-18)
EDGE_PROBE = 4.0  # σ between the four probes of the divergence test at the grid's ends
# ... and next to an overflow: local, because g overflows (log r > 709) far past any crossover between
# two masses (r ≈ 1), where log h is a single concave bump (finite) or exp(c·x²)·poly, c > 0 (infinite)
OVERFLOW_PROBE = 1.0
# Fitted x² coefficient above which a moment is called infinite. The fit's error was ~2e-5 near c = 0
# (σ_ref = 1.4142, true c = −1e-5, fitted +1.2e-5), so smaller c are refused as not estimable instead.
DIVERGE_C = 1e-4
ORDERS = (1, 2, 4)


class TailKind(enum.StrEnum):
    """How an integrand behaves beyond the quadrature's reach."""

    OK = "ok"  # its mass lies within reach (``peaks`` say where)
    FAR = "far"  # still high (or rising) at the grid's edge: the mass lies beyond the grid
    BOUNDED = "bounded"  # it decays at the grid's edge, with a bound on the mass beyond (``tail``)
    INFINITE = "infinite"  # it grows without bound: the moment is infinite
    OVERFLOW = "overflow"  # float64 cannot form it next to its mass: not estimable


@dataclass(frozen=True)
class Tail:
    kind: TailKind
    where: float = math.nan  # x of the problem (far, infinite, overflow)
    peaks: tuple[tuple[float, float], ...] = ()  # ok: (x, σ) of each local peak within DROP of the top, and
    # last the (μ, σ) whose μ ± 12σ covers all the mass (``_coverage``)
    tail: float = 0.0  # ok: bound on the mass beyond overflow boundaries, as a fraction of the whole

    def describe(self, what: str) -> str:
        if self.kind is TailKind.INFINITE:
            return f"infinite {what}: the integrand grows without bound in the tails"
        if self.kind is TailKind.OVERFLOW:
            return (f"{what} not estimable: the per-sample term overflows float64 next to where the integrand's "
                    f"mass lies (x = {self.where:.4g})")
        return (f"{what} carried beyond ±{GRID_Z:.0f}σ of the sampler, policy and reference (integrand still high "
                f"at x = {self.where:.4g}): beyond quadrature, and no sample will land there")


MAX_PEAKS = 4

def grid(sampler: DistSpec, anchors: tuple[DistSpec, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Sorted union of ±GRID_Z σ grids around the sampler and each anchor, bridged by a uniform grid over
    their whole range: x (N,), and each point's σ (N,) (the scale of the distribution whose grid it
    belongs to, the widest for bridge points; for the edge tests)."""
    z = np.linspace(-GRID_Z, GRID_Z, GRID_POINTS)
    xs, scales = [], []
    for spec in (sampler, *anchors):
        x = spec.fam.tail_grid(spec, z).numpy()[:, 0]
        xs.append(x)
        scales.append(np.full_like(x, (x[-1] - x[0]) / (2 * GRID_Z)))
    # a uniform bridge over the whole range, so that no gap between anchors hides where g starts to overflow
    lo, hi = min(v[0] for v in xs), max(v[-1] for v in xs)
    xs.append(np.linspace(lo, hi, 2 * GRID_POINTS))
    scales.append(np.full(2 * GRID_POINTS, max(v[0] for v in scales)))
    x, scale = np.concatenate(xs), np.concatenate(scales)
    x, first = np.unique(x, return_index=True)  # anchors' points come first: they keep their own σ
    return x, scale[first]


def _at(x: np.ndarray, value: float) -> int:
    return int(np.clip(np.searchsorted(x, value), 0, len(x) - 1))


def _width(v: np.ndarray, x: np.ndarray, i: int, fallback: float) -> float:
    """σ of the Gaussian whose log has v's curvature at i, from the grid points two steps either side
    (the union grid is densest, 0.05σ, around the narrowest anchor, so this resolves narrow peaks)."""
    lo, hi = max(i - 2, 0), min(i + 2, len(v) - 1)
    if lo == i or hi == i or not np.isfinite([v[lo], v[i], v[hi]]).all():
        return fallback
    curv = 2 * ((v[hi] - v[i]) / (x[hi] - x[i]) - (v[i] - v[lo]) / (x[i] - x[lo])) / (x[hi] - x[lo])
    return min(1 / math.sqrt(-curv), fallback) if curv < 0 else fallback


def _diverges(v: np.ndarray, x: np.ndarray, probes: list[int], origin: float, unit: float) -> bool:
    """Is log h rising toward the edge and of the form c·z² + b·z + a + P·log(|z| + 1) with c > 0, in
    z = (x − origin)/unit, the edge's own σ? (Dimensionless: a fit in x would see a flat log h over a
    σ = 1e-5 stretch as a huge curvature.)

    Gaussian-family integrands are exp(quadratic) times a polynomial (the score, powers of d); the
    log-polynomial term is fitted too, because near c = 0 its curvature (−P/x²) hides a small c > 0
    (σ_ref just above √2σ makes k3's variance diverge with c ≈ 1e-4). Four probes, monotone rising;
    c must exceed DIVERGE_C.
    """
    vals, xs = v[probes], x[probes]
    if not np.isfinite(vals).all() or len(set(probes)) < 4 or not (np.diff(vals) > 0).all():
        return False
    z = (xs - origin) / unit
    design = np.stack([np.ones(4), z, z**2, np.log(np.abs(z) + 1.0)], axis=1)
    try:
        coef = np.linalg.solve(design, vals)
    except np.linalg.LinAlgError:
        return False
    return bool(coef[2] > DIVERGE_C)


@dataclass(frozen=True)
class _Curve:
    """log h on the grid (−inf where g overflowed), the grid, each point's σ, the peak value, the sampler's loc."""

    v: np.ndarray
    x: np.ndarray
    scale: np.ndarray
    top: float
    origin: float


def _edge(c: _Curve, edge: int, sign: int, beyond: TailKind) -> Tail | None:
    """Test the end of a finite stretch (``sign`` points inward): rising in the divergent form → infinite;
    else rising or still within DROP of the top → ``beyond`` (far at the grid's end, overflow next to
    overflowing g)."""
    v, x, top = c.v, c.x, c.top
    probe = (EDGE_PROBE if beyond == "far" else OVERFLOW_PROBE) * c.scale[edge]
    probes = [_at(x, x[edge] + sign * i * probe) for i in (3, 2, 1, 0)]  # inward to the edge
    e, n = v[edge], v[probes[2]]
    if not np.isfinite([e, n]).all() or probes[2] == edge:
        return Tail(beyond, float(x[edge])) if np.isfinite(e) and e >= top - DROP else None
    if _diverges(v, x, probes, c.origin, float(c.scale[edge])):
        return Tail(TailKind.INFINITE, float(x[edge]))
    if e > n or e >= top - DROP:
        if beyond == "overflow" and e < n and v[probes[1]] - 2 * n + e <= 0:
            # falling and log-concave into the overflow: what lies beyond is at most h(b)/|slope|
            slope = (n - e) / abs(x[edge] - x[probes[2]])
            return Tail(TailKind.BOUNDED, float(x[edge]), tail=e - math.log(slope))  # log of that bound
        return Tail(beyond, float(x[edge]))
    return None


def _peaks(v: np.ndarray, x: np.ndarray, scale: np.ndarray, top: float) -> tuple[tuple[float, float], ...]:
    """(x, σ) of the highest local maxima within DROP of the top, at most MAX_PEAKS, each outside the others' 2σ."""
    inner = (v[1:-1] >= v[:-2]) & (v[1:-1] >= v[2:]) & (v[1:-1] >= top - DROP)
    found: list[tuple[float, float]] = []
    for i in sorted(np.flatnonzero(inner) + 1, key=lambda i: -v[i]):
        if len(found) == MAX_PEAKS:
            break
        width = _width(v, x, i, float(scale[i]))
        if all(abs(x[i] - px) > 2 * max(pw, width) for px, pw in found):
            found.append((float(x[i]), width))
    return tuple(found) or ((float(x[int(np.argmax(v))]), float(scale[int(np.argmax(v))])),)


def _coverage(v: np.ndarray, x: np.ndarray, top: float) -> tuple[float, float]:
    """(μ, σ) whose μ ± 12σ spans every grid point within COVER nats of the top (plus a grid step either side):
    the whole stretch the mass occupies, however wide, for the composite rule's coarse panels."""
    inside = np.flatnonzero(v >= top - COVER)
    lo, hi = x[max(inside[0] - 1, 0)], x[min(inside[-1] + 1, len(x) - 1)]
    return float((lo + hi) / 2), float((hi - lo) / 24)


def classify(log_h: np.ndarray, x: np.ndarray, scale: np.ndarray, origin: float = 0.0) -> Tail:
    """Classify one integrand from log h on the grid (NaN or +inf where g overflowed)."""
    bad = np.isnan(log_h) | np.isposinf(log_h)
    v = np.where(bad, -np.inf, log_h)
    top = v.max()
    if np.isneginf(top):  # identically zero (or nothing finite at all)
        return Tail(TailKind.OVERFLOW, float(x[0])) if bad.any() else Tail(TailKind.OK)
    ends = [(0, 1, TailKind.FAR), (len(v) - 1, -1, TailKind.FAR)]  # (index, inward sign, what lies beyond)
    for b in np.flatnonzero(bad):  # finite points next to an overflow are ends too
        ends += [(b - 1, -1, TailKind.OVERFLOW)] if b > 0 and not bad[b - 1] else []
        ends += [(b + 1, 1, TailKind.OVERFLOW)] if b + 1 < len(v) and not bad[b + 1] else []
    curve = _Curve(v, x, scale, top, origin)
    found = [t for edge, sign, beyond in ends if (t := _edge(curve, edge, sign, beyond))]
    bounded = [t.tail for t in found if t.kind is TailKind.BOUNDED]
    found = [t for t in found if t.kind is not TailKind.BOUNDED]
    if found:  # infinite outranks the others: the moment diverges whatever else is wrong
        return next((t for t in found if t.kind is TailKind.INFINITE), found[0])
    fraction = 0.0
    if bounded:  # mass beyond overflow boundaries, as a fraction of the mass on the grid
        mass = np.logaddexp.reduce(v[1:] + np.log(np.diff(x)))
        fraction = float(np.exp(np.logaddexp.reduce(bounded) - mass))
        if fraction > TAIL_FRACTION:
            return Tail(TailKind.OVERFLOW, float(x[int(np.argmax(v))]))
    return Tail(TailKind.OK, peaks=_peaks(v, x, scale, top) + (_coverage(v, x, top),), tail=fraction)


def tail_report(evaluate, sampler: DistSpec, anchors: tuple[DistSpec, ...] = ()) -> dict:
    """{key: [ {k: Tail} per parameter ]} for each quantity ``evaluate`` returns."""
    x, scale = grid(sampler, anchors)
    points = torch.tensor(x, dtype=torch.float64).reshape(-1, 1)
    log_m = sampler.build(torch.float64).log_prob(points).numpy()[:, 0]  # (N,)
    out = {}
    for key, g in evaluate(points).items():
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            log_g = np.log(np.abs(g.detach().numpy()))  # (N, P); NaN where g is NaN, +inf where it overflowed
            origin = float(sampler.values[0])
            out[key] = [{k: classify(k * log_g[:, j] + log_m, x, scale, origin) for k in ORDERS}
                        for j in range(log_g.shape[1])]
    return out
