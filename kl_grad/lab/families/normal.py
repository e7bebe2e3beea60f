"""The Normal family N(loc, scale): continuous, reparameterisable, Gauss–Hermite quadrature nodes."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from torch.distributions import Distribution
from torch.distributions import Normal as TorchNormal

from .base import POSITIVE, Family


@lru_cache(maxsize=None)
def hermite_rule(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Standard-normal nodes z_i and weights (sum 1): E[f(Z)] ≈ Σ w_i f(z_i).

    From numpy's ``hermgauss`` (physicists' Hermite, weight e^(−t²)): z = √2·t, w = ω/√π.
    """
    t, w = np.polynomial.hermite.hermgauss(n)
    return math.sqrt(2.0) * t, w / math.sqrt(math.pi)


LEGENDRE_POINTS = 16
REACH = 12.0  # panels cover μ ± 12σ of each mass centre: a Gaussian integrand is e^−72 of its peak there


def composite_edges(span: list[tuple[float, float]], n: int) -> np.ndarray:
    """Panel edges over the union of μ ± REACH·σ of each (μ, σ) in ``span``: breakpoints at every interval
    end, and each stretch between them cut into equal panels no wider than σ_min·32/n, σ_min the
    narrowest σ whose interval covers it (a stretch no interval covers is one panel: nothing lives there)."""
    lo = np.array([mu - REACH * s for mu, s in span])
    hi = np.array([mu + REACH * s for mu, s in span])
    sig = np.array([s for _, s in span])
    breaks = np.unique(np.concatenate([lo, hi]))
    edges = [breaks[:1]]
    for a, b in zip(breaks[:-1], breaks[1:]):
        mid = (a + b) / 2
        covering = sig[(lo <= mid) & (mid <= hi)]
        panels = 1 if covering.size == 0 else max(1, math.ceil((b - a) / (covering.min() * 32 / n)))
        edges.append(np.linspace(a, b, panels + 1)[1:])
    return np.concatenate(edges)


class Normal(Family):
    name = "normal"
    arity = "normal:LOC,SCALE"
    example = "normal:0,1"
    reparameterisable = True

    def param_names(self, k: int) -> tuple[str, ...]:
        return ("loc", "scale")

    def valid_count(self, k: int) -> bool:
        return k == 2

    def rule(self, param: str):
        return POSITIVE if param == "scale" else super().rule(param)

    def build(self, params: list[torch.Tensor]) -> Distribution:
        return TorchNormal(*params, validate_args=False)

    def tail_grid(self, spec, z: np.ndarray) -> torch.Tensor:
        loc, scale = spec.values
        return torch.tensor(loc + scale * z, dtype=torch.float64).reshape(-1, 1)

    def nodes(self, spec, n: int, span=None) -> tuple[torch.Tensor, np.ndarray]:
        """n Gauss–Hermite nodes for ``spec``; or, with ``span`` = [(μ, σ), ...] from the tail analysis (the
        integrands' mass lies away from ``spec`` or at other widths), a composite 16-point Gauss–Legendre
        rule over the union of μ ± 12σ, each stretch cut into panels of at most σ·32/n for the narrowest
        σ covering it, weighted by spec's density: E_spec[f] = ∫ f·spec dx where the mass is."""
        if span is None:
            z, w = hermite_rule(n)
            return self.tail_grid(spec, z), w
        edges = composite_edges(span, n)
        t, v = np.polynomial.legendre.leggauss(LEGENDRE_POINTS)
        half = (edges[1:] - edges[:-1])[:, None] / 2  # (panels, 1)
        x = torch.tensor(((edges[:-1, None] + edges[1:, None]) / 2 + half * t).ravel(), dtype=torch.float64)
        density = spec.build(torch.float64).log_prob(x).exp().numpy()
        return x.reshape(-1, 1), (half * v).ravel() * density

    def location(self, spec) -> float:
        return spec.values[0]

    def moved(self, spec, shift: float):
        from .base import make_spec

        return make_spec(self.name, (spec.values[0] + shift, spec.values[1]))

    def reparameterise(self, spec, leaves, points):
        loc0, scale0 = spec.values
        eps = (points - loc0) / scale0  # the standard-normal draws behind the points
        return leaves["loc"] + leaves["scale"] * eps  # x(θ), as Normal.rsample: loc + eps * scale
