"""The family contract (``Family``), parsed specs (``DistSpec``) and the registry they are looked up in.

See the package docstring; each family module subclasses ``Family``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch.distributions import Distribution

from ...errors import KLGradError, choose
from .sampling import Transform

Rule = tuple[str, Callable[[float], bool]]  # (rule text for errors, check)
FINITE: Rule = ("finite", math.isfinite)
POSITIVE: Rule = ("> 0 and finite", lambda v: v > 0 and math.isfinite(v))


class Family:
    """What the lab asks of a family. Subclasses set the class attributes and implement the methods.

    ``enumerable``: finite support, so ``nodes`` enumerates it and expectations are exact sums.
    ``reparameterisable``: points can be written x(θ), so pathwise gradients exist.
    """

    name: str
    arity: str  # how many values a spec takes, for error messages
    example: str
    enumerable = False
    reparameterisable = False
    sequential = False  # points are token sequences (…, L) with per-token log-probs (families/markov.py)

    def param_names(self, k: int) -> tuple[str, ...]:
        """Names of the parameters of a spec with k values."""
        raise NotImplementedError

    def valid_count(self, k: int) -> bool:
        """Does a spec with k values name a member of the family?"""
        raise NotImplementedError

    def rule(self, param: str) -> Rule:
        return FINITE

    def logit_groups(self, values) -> list[np.ndarray]:
        """The values that are the logits of one softmax each (categorical: all; markov: init and each row of
        trans); [] for a family without softmax parameters."""
        return []

    def probabilities(self, values) -> dict[str, list]:
        """The softmax probabilities of ``logit_groups`` under their own names ({} without softmax parameters),
        e.g. {"probs": [...]}: what a training run reports as its end point."""
        return {}

    def check_structure(self, structure: tuple) -> None:
        """Validate ``DistSpec.structure`` (families with a shape beyond their values, e.g. a length)."""
        if structure:
            raise KLGradError(f"{self.name} takes no structure, got {', '.join(str(x) for x in structure)}")

    def label(self, spec: DistSpec) -> str:
        return f"{self.name}:" + ",".join(f"{v:g}" for v in spec.values)

    def make(self, spec: DistSpec, params: list[torch.Tensor]):
        """The distribution of ``spec``'s form with parameters ``params`` (``build`` unless the form matters)."""
        return self.build(params)

    def support_size(self, spec: DistSpec) -> int:
        """How many points an enumeration has (enumerable families)."""
        return len(spec.values)

    def point_size(self, spec: DistSpec) -> int:
        """Scalars per point (a sequence's length; 1 for single tokens and reals)."""
        return 1

    def build(self, params: list[torch.Tensor]) -> Distribution:
        """The torch distribution with these parameters (one tensor each, all the same shape)."""
        raise NotImplementedError

    def nodes(self, spec: DistSpec, n: int, span=None) -> tuple:
        """Points (N, 1) and weights (N,) summing to 1 with E_spec[f] ≈ Σ w_i f(x_i): the enumerated
        support (exact; n and ``span`` ignored) or an n-node quadrature rule; ``span`` = (lo, hi, σ): the
        integrands' mass lies there (tail analysis), away from ``spec``, and the rule must cover it.
        Enumerations may add a third element, the log-weights (probabilities that underflow float64)."""
        raise NotImplementedError

    def tail_grid(self, spec: DistSpec, z: np.ndarray) -> torch.Tensor:
        """Points (N, 1) float64 at z standard deviations of ``spec`` (continuous families only)."""
        raise NotImplementedError(f"{self.name} has no tails to analyse")

    def kl_gradients(self, policy: DistSpec, ref: DistSpec) -> dict[str, np.ndarray] | None:
        """{direction: (P,) ∇_θ KL at θ0} in closed form, where autograd of torch's closed form would cancel;
        None: use autograd of ``torch.distributions.kl_divergence`` (``Problem.true_gradients``)."""
        return None

    def kl_value(self, direction: str, policy: DistSpec, ref: DistSpec) -> float | None:
        """KL in ``direction`` where torch's closed form would round to inf or cancel; None: use torch's."""
        return None

    def location(self, spec: DistSpec) -> float:
        """Where ``spec`` sits on the real line (continuous families: its loc), 0 where that means nothing.
        Gradients and values are invariant under moving every distribution by the same amount, and nodes
        placed around 0 keep the digits that loc + scale·z loses when scale ≪ |loc| (``Problem.centred``)."""
        return 0.0

    def moved(self, spec: DistSpec, shift: float) -> DistSpec:
        """``spec`` translated by ``shift`` (families with a ``location`` ≠ 0 only)."""
        return spec

    def reparameterise(self, spec: DistSpec, leaves: dict[str, torch.Tensor], points: torch.Tensor) -> torch.Tensor:
        """x(θ) for points drawn from ``spec`` at θ0 (reparameterisable families only)."""
        raise NotImplementedError(f"{self.name} cannot be reparameterised")


@dataclass(frozen=True)
class DistSpec:
    """A family and parameter values, e.g. ``DistSpec("normal", (0.0, 1.0))``; validated on construction."""

    family: str
    values: tuple[float, ...]
    structure: tuple = ()  # the form beyond the values, e.g. (L,) for a Markov chain's length; () otherwise
    transform: Transform | None = None  # a sampler's temperature / top-k / top-p (token families; sampling.py)

    def __post_init__(self):  # DistSpec("normal", (0, -1)) fails here, not as NaN rows later
        fam = choose("family", self.family, FAMILIES)
        fam.check_structure(self.structure)
        if self.transform is not None and not fam.logit_groups(self.values):
            raise KLGradError(f"temperature, top-k and top-p act on softmax logits (categorical, markov, markov-eos), "
                              f"not on {self.family}")
        if not fam.valid_count(len(self.values)):
            raise KLGradError(f"{self.family} takes {fam.arity}, got {len(self.values)} values")
        for name, value in zip(fam.param_names(len(self.values)), self.values):
            rule, check = fam.rule(name)
            if not check(float(value)):
                raise KLGradError(f"invalid {self.family} distribution: {name} must be {rule}, got {value:g}")
        object.__setattr__(self, "values", tuple(float(v) for v in self.values))

    @property
    def fam(self) -> Family:
        return FAMILIES[self.family]

    @property
    def param_names(self) -> tuple[str, ...]:
        """Parameter names in torch's vocabulary, e.g. ("loc", "scale") or ("logits[0]", ...)."""
        return self.fam.param_names(len(self.values))

    @property
    def label(self) -> str:
        suffix = f" @ {self.transform.label}" if self.transform is not None and not self.transform.identity else ""
        return self.fam.label(self) + suffix

    def processed(self, transform: Transform) -> DistSpec:
        """This distribution as an inference engine samples it (``sampling.Transform``)."""
        return DistSpec(self.family, self.values, self.structure, transform)

    def logits(self, logits: torch.Tensor) -> torch.Tensor:
        """``logits`` (…, V) of one softmax row as this spec samples them: transformed, or as they are."""
        return logits if self.transform is None else self.transform.apply(logits)

    def as_dict(self) -> dict[str, float]:
        return dict(zip(self.param_names, self.values))

    def build(self, dtype: torch.dtype = torch.float32) -> Distribution:
        """The fixed distribution (no grad): reference, sampler, or policy at θ0."""
        return self.fam.make(self, [torch.tensor(v, dtype=dtype) for v in self.values])

    def leaves(self, batch_shape: tuple[int, ...], dtype: torch.dtype) -> dict[str, torch.Tensor]:
        """Trainable copies of the parameters, one per batch element, all equal to θ0.

        Shape of each leaf: ``batch_shape`` (e.g. (rows, 1) to broadcast over
        (rows, cols) points). Autograd of a sum over rows then yields each row's
        own gradient, which is how trials are vectorised. The copies are an
        expanded view of one number (no memory per element; autograd still gives
        every element its own gradient).
        """
        return {
            name: torch.tensor(value, dtype=dtype).expand(batch_shape).requires_grad_()
            for name, value in self.as_dict().items()
        }

    def build_from(self, leaves: dict[str, torch.Tensor]) -> Distribution:
        """The distribution whose parameters are ``leaves`` (differentiable)."""
        return self.fam.make(self, [leaves[name] for name in self.param_names])


def parse_spec(text: str, what: str = "distribution") -> DistSpec:
    """Parse ``FAMILY:V1,V2,...`` (e.g. ``normal:0,1``) and check every parameter rule."""
    fam_name, sep, rest = text.strip().partition(":")
    if not sep:
        raise KLGradError(f"malformed {what} {text!r}; expected FAMILY:PARAMS such as {FAMILIES['normal'].example}")
    fam = choose("family", fam_name.strip().lower(), FAMILIES)
    if hasattr(fam, "parse"):  # a family with its own spec form (markov:L:INIT:TRANS)
        return fam.parse(rest, text, what)
    parts = [p.strip() for p in rest.split(",")]
    if not fam.valid_count(len(parts)):
        raise KLGradError(f"malformed {what} {text!r}; expected {fam.arity} such as {fam.example}")
    values = []
    for name, part in zip(fam.param_names(len(parts)), parts):
        try:
            values.append(float(part))
        except ValueError:
            raise KLGradError(f"malformed {what} {text!r}: {name} {part!r} is not a number") from None
    return make_spec(fam.name, values, f"{what} {text!r}")


def make_spec(family: str, values, what: str = "distribution", structure: tuple = ()) -> DistSpec:
    """A DistSpec from numbers; errors name ``what`` and the broken rule."""
    try:
        return DistSpec(family, tuple(values), structure)
    except KLGradError as exc:
        raise KLGradError(f"invalid {what}: {str(exc).split(': ', 1)[-1]}") from None


def as_spec(spec: DistSpec | str, what: str = "distribution") -> DistSpec:
    """Accept a DistSpec or its text form (``"normal:0,1"``) wherever a distribution is expected."""
    if isinstance(spec, DistSpec):
        return spec
    if not isinstance(spec, str):
        raise KLGradError(f"{what} must be a DistSpec or a spec string such as {FAMILIES['normal'].example}, "
                          f"got {type(spec).__name__}")
    return parse_spec(spec, what)


FAMILIES: dict[str, Family] = {}  # filled by the package (``families/__init__.py``) with one instance per family
