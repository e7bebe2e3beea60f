"""Parametric families: parse ``normal:LOC,SCALE`` and build torch distributions.

A family names its parameters in torch's vocabulary (``loc``, ``scale``) and
declares a rule for each, checked once when a spec is parsed. Log-probs,
sampling and the closed-form KL all come from ``torch.distributions``; this
module only turns numbers into distributions, either fixed (reference,
sampler) or with trainable leaves batched over rows (trials or nodes).
Parameters are checked here, once, so the distributions are built with
``validate_args=False``: torch's per-call support check of every sample
tensor cost ~10% of a seed-003 run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch.distributions import Distribution, Normal

from .errors import KLGradError, choose


@dataclass(frozen=True)
class Family:
    """A parametric family: parameter names, their rules, and a constructor."""

    name: str
    params: tuple[str, ...]
    rules: dict[str, tuple[str, Callable[[float], bool]]]  # param -> (rule text, check)
    build: Callable[..., Distribution]
    example: str


FAMILIES: dict[str, Family] = {
    "normal": Family(
        name="normal",
        params=("loc", "scale"),
        rules={"loc": ("finite", math.isfinite), "scale": ("> 0 and finite", lambda v: v > 0 and math.isfinite(v))},
        build=Normal,
        example="normal:0,1",
    ),
}


@dataclass(frozen=True)
class DistSpec:
    """A family and parameter values, e.g. ``DistSpec("normal", (0.0, 1.0))``."""

    family: str
    values: tuple[float, ...]

    @property
    def fam(self) -> Family:
        return FAMILIES[self.family]

    @property
    def label(self) -> str:
        return f"{self.family}:" + ",".join(f"{v:g}" for v in self.values)

    def as_dict(self) -> dict[str, float]:
        return dict(zip(self.fam.params, self.values))

    def build(self, dtype: torch.dtype = torch.float32) -> Distribution:
        """The fixed distribution (no grad): reference, sampler, or policy at θ0."""
        return self.fam.build(*(torch.tensor(v, dtype=dtype) for v in self.values), validate_args=False)

    def leaves(self, batch_shape: tuple[int, ...], dtype: torch.dtype) -> dict[str, torch.Tensor]:
        """Trainable copies of the parameters, one per batch element, all equal to θ0.

        Shape of each leaf: ``batch_shape`` (e.g. (rows, 1) to broadcast over
        (rows, cols) points). Autograd of a sum over rows then yields each row's
        own gradient, which is how trials are vectorised.
        """
        return {
            name: torch.full(batch_shape, value, dtype=dtype, requires_grad=True)
            for name, value in self.as_dict().items()
        }

    def build_from(self, leaves: dict[str, torch.Tensor]) -> Distribution:
        """The distribution whose parameters are ``leaves`` (differentiable)."""
        return self.fam.build(*(leaves[name] for name in self.fam.params), validate_args=False)


def parse_spec(text: str, what: str = "distribution") -> DistSpec:
    """Parse ``FAMILY:V1,V2,...`` (e.g. ``normal:0,1``) and check every parameter rule."""
    fam_name, sep, rest = text.strip().partition(":")
    fam = choose("family", fam_name.strip().lower(), FAMILIES) if sep else None
    if fam is None:
        raise KLGradError(f"malformed {what} {text!r}; expected FAMILY:PARAMS such as {FAMILIES['normal'].example}")
    parts = [p.strip() for p in rest.split(",")]
    if len(parts) != len(fam.params):
        names = ",".join(p.upper() for p in fam.params)
        raise KLGradError(f"malformed {what} {text!r}; expected {fam.name}:{names} such as {fam.example}")
    values = []
    for name, part in zip(fam.params, parts):
        try:
            values.append(float(part))
        except ValueError:
            raise KLGradError(f"malformed {what} {text!r}: {name} {part!r} is not a number") from None
    return make_spec(fam.name, values, f"{what} {text!r}")


def make_spec(family: str, values, what: str = "distribution") -> DistSpec:
    """A DistSpec from numbers, after checking every parameter rule (errors name the rule)."""
    fam = choose("family", family, FAMILIES)
    for name, value in zip(fam.params, values):
        rule, check = fam.rules[name]
        if not check(value):
            raise KLGradError(f"invalid {what}: {name} must be {rule}, got {value:g}")
    return DistSpec(fam.name, tuple(float(v) for v in values))
