"""The Normal family N(loc, scale): continuous, reparameterisable, Gauss–Hermite quadrature nodes."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from torch.distributions import Distribution
from torch.distributions import Normal as TorchNormal

from . import POSITIVE, Family


@lru_cache(maxsize=None)
def hermite_rule(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Standard-normal nodes z_i and weights (sum 1): E[f(Z)] ≈ Σ w_i f(z_i).

    From numpy's ``hermgauss`` (physicists' Hermite, weight e^(−t²)): z = √2·t, w = ω/√π.
    """
    t, w = np.polynomial.hermite.hermgauss(n)
    return math.sqrt(2.0) * t, w / math.sqrt(math.pi)


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

    def nodes(self, spec, n: int) -> tuple[torch.Tensor, np.ndarray]:
        z, w = hermite_rule(n)
        return self.tail_grid(spec, z), w

    def reparameterise(self, spec, leaves, points):
        loc0, scale0 = spec.values
        eps = (points - loc0) / scale0  # the standard-normal draws behind the points
        return leaves["loc"] + leaves["scale"] * eps  # x(θ), as Normal.rsample: loc + eps * scale
