"""Where does an expectation's mass live? Tail analysis behind exact mode's refusals.

For E_m[|g|^k] (k = 1: the mean, 2: the variance, 4: the variance of an MC
stdev) the integrand is h_k(x) = |g(x)|^k·m(x). With r = π_ref/π_θ inside g, its
mass can sit far from m: for π_θ = N(0,1), π_ref = N(30,1), E[∇k3] = −30 is carried
entirely by x ≈ 30σ, where no quadrature node has weight and no sample will
ever land. We therefore evaluate log h_k on a dense grid of ±``GRID_Z`` standard
deviations of m (the same autograd engine, 1601 points, a few ms) and classify:

    ok        less than ``TAIL_MASS`` of the integrand's mass lies beyond ±``MASS_Z``σ, and it has
              fallen by e^−``DROP`` at the grid edges: the quadrature sees it all
    far       more mass than that beyond ``MASS_Z``σ, or still high at the grid edge with no sign
              of divergence: finite or not, neither quadrature nor sampling can estimate it
    infinite  still rising at the grid edge with a positive x² coefficient (second difference over
              24σ, 32σ, 40σ): for Gaussian integrands, exp(c·x²)·poly with c ≥ 0, the moment diverges
    overflow  g itself overflows float64 on the grid: treated as not estimable

Enumerable families (categorical) need none of this: every moment is a finite sum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .families import DistSpec

GRID_Z = 40.0  # grid half-width in standard deviations of the sampling distribution
GRID_POINTS = 1601  # spacing 0.05σ
MASS_Z = 24.0  # 256 Gauss–Hermite nodes reach ±30σ; mass beyond 24σ is not trusted
DROP = 25.0  # nats below the peak at the grid edge that count as negligible (e^−25 ≈ 1.4e-11)
TAIL_MASS = 1e-10  # fraction of the integrand beyond MASS_Z that the quadrature may miss
ORDERS = (1, 2, 4)


@dataclass(frozen=True)
class Tail:
    kind: str  # ok, far, infinite, overflow
    peak_z: float  # where h_k peaks, in standard deviations of the sampling distribution
    beyond: float = 0.0  # fraction of the grid's integrand mass beyond ±MASS_Z

    def describe(self, what: str) -> str:
        if self.kind == "infinite":
            return f"infinite {what}: the integrand grows without bound in the tails"
        if self.kind == "overflow":
            return f"{what} not estimable: the per-sample gradient overflows float64 in the far tails"
        return (f"{what} carried by the far tails ({self.beyond:.1e} of its integrand lies beyond ±{MASS_Z:.0f}σ of "
                f"the sampling distribution, peak at {self.peak_z:+.0f}σ): beyond quadrature, and no sample will land "
                "there")


def _classify(log_h: np.ndarray, z: np.ndarray) -> Tail:
    if np.isnan(log_h).any() or np.isposinf(log_h).any():
        return Tail("overflow", float("nan"))
    peak = int(np.argmax(log_h))
    top = log_h[peak]
    if np.isneginf(top):  # identically zero: trivially fine
        return Tail("ok", 0.0)
    far = np.abs(z) > MASS_Z
    beyond = float(np.exp(np.logaddexp.reduce(log_h[far]) - np.logaddexp.reduce(log_h)))  # mass fraction
    for sign, edge in ((-1, 0), (1, -1)):  # a side still high at the edge: divergent, or just far?
        if log_h[edge] >= top - DROP:
            i24, i32, i40 = (int(np.argmin(np.abs(z - sign * v))) for v in (GRID_Z - 16, GRID_Z - 8, GRID_Z))
            if log_h[i40] - 2 * log_h[i32] + log_h[i24] > 0:  # 2c·(8σ)² > 0: exp(c·x²) with c > 0
                return Tail("infinite", float(z[peak]), beyond)
            return Tail("far", float(z[peak]), beyond)
    return Tail("ok" if beyond < TAIL_MASS else "far", float(z[peak]), beyond)


def tail_report(evaluate, sampler: DistSpec) -> dict:
    """{key: [ {k: Tail} per parameter ]} for each quantity ``evaluate`` returns."""
    z = np.linspace(-GRID_Z, GRID_Z, GRID_POINTS)
    x = sampler.fam.tail_grid(sampler, z)  # (N, 1) float64
    log_m = sampler.build(torch.float64).log_prob(x).numpy()[:, 0]  # (N,)
    out = {}
    for key, g in evaluate(x).items():
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            log_g = np.log(np.abs(g.detach().numpy()))  # (N, P)
        out[key] = [{k: _classify(k * log_g[:, j] + log_m, z) for k in ORDERS} for j in range(log_g.shape[1])]
    return out
