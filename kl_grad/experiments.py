"""Declarative experiments: one TOML file per table, read with ``tomllib`` into a typed dataclass.

Unknown keys and wrongly typed values fail loudly with the allowed keys listed.
Example (``experiments/seed003_forward.toml``)::

    kind = "gradients"
    title = "Seed 003: k1, k2, k3 vs ∇KL(policy‖ref)"
    policy = "normal:0,1"
    ref = "normal:1,1.1"
    estimators = ["k1", "k2", "k3"]
    samples = 50000
    trials = 1000
    seed = 42
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path

from .errors import KLGradError


@dataclass(frozen=True)
class GradientExperiment:
    """A gradient table: each estimator × placement against the analytic ∇KL."""

    title: str  # one line shown above the table
    policy: str  # π_θ, e.g. "normal:0,1"; its parameters are differentiated
    ref: str  # π_ref, e.g. "normal:1,1.1"
    estimators: list[str]  # registry names, e.g. ["k1", "k2", "k3"]
    placements: list[str] = field(default_factory=lambda: ["loss"])  # loss, loss-sgw, loss-w, reward
    sampler: str = ""  # off-policy sampling distribution; "" means the policy (on-policy)
    samples: int = 50_000  # samples per trial (the batch a trainer averages over)
    trials: int = 1_000  # independent trials (gradient draws)
    seed: int = 42  # torch.manual_seed for the whole run
    dtype: str = "float32"  # float32 (as trainers) or float64
    mode: str = "mc"  # mc (sampled trials) or exact (quadrature, no noise)
    violin: bool = False  # also draw violin.png of per-trial gradients (mc only)
    pathwise: bool = False  # reparameterised samples (rsample) instead of score-function sampling
    notes: str = ""  # free text copied into results/README.md


@dataclass(frozen=True)
class ValueExperiment:
    """A value table: mean(k) as an estimate of the KL (Schulman 2020)."""

    title: str
    policy: str  # q, the sampling distribution
    ref: str  # p
    estimators: list[str]
    mode: str = "exact"  # exact or mc
    samples: int = 500_000  # MC samples (Schulman used 500k)
    seed: int = 42
    notes: str = ""


@dataclass(frozen=True)
class SweepExperiment:
    """Exact bias_rel/stdev_rel curves as one reference parameter moves; writes sweep.png."""

    title: str
    policy: str
    ref: str  # the starting reference; ``vary`` replaces one of its parameters
    estimators: list[str]
    vary: str  # "loc" or "scale"
    grid: list[float]  # values taken by the varied parameter
    quantity: str = "gradients"  # gradients or values
    samples: int = 50_000  # n in the stdev of an n-sample mean (gradients)
    notes: str = ""


KINDS: dict[str, type] = {"gradients": GradientExperiment, "values": ValueExperiment, "sweep": SweepExperiment}


def _check_type(name: str, value, annotation, where: str) -> None:
    origin = typing.get_origin(annotation)
    item = typing.get_args(annotation)[0] if origin is list else None
    accepted = (float, int) if item is float else item  # TOML writes 2.0 as 2
    ok = (
        all(isinstance(v, accepted) and not isinstance(v, bool) for v in value)
        if origin is list and isinstance(value, list)
        else isinstance(value, float | int) and not isinstance(value, bool) if annotation is float
        else isinstance(value, int) and not isinstance(value, bool) if annotation is int
        else isinstance(value, annotation) if isinstance(annotation, type)
        else False
    )
    if not ok:
        shown = (f"list of {'numbers' if item is float else 'strings'}" if origin is list
                 else getattr(annotation, "__name__", str(annotation)))
        raise KLGradError(f"{where}: {name} must be a {shown}, got {value!r}")


def parse_experiment(data: dict, where: str):
    """Build the experiment dataclass named by ``data['kind']`` from a TOML table."""
    data = dict(data)
    kind = data.pop("kind", None)
    if kind not in KINDS:
        raise KLGradError(f"{where}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    cls = KINDS[kind]
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise KLGradError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: kind, {', '.join(fields)}")
    missing = [n for n, f in fields.items() if n not in data and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise KLGradError(f"{where}: missing key(s) {', '.join(missing)}")
    for name, value in data.items():
        _check_type(name, value, hints[name], where)
    return cls(**data)


def load_experiment(path: Path):
    """Read and validate one experiment file."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise KLGradError(f"{path}: not valid TOML ({exc})") from None
    return parse_experiment(data, str(path))
