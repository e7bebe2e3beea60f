"""Run configuration of the spine's runners (gradient and value tables): the one place each run default lives.

The defaults of the Python API, the CLI and ``make reproduce`` are read from
the fields below (``GradientExperiment.samples`` is *the* default sample
count). ``Mode`` is the one mode type. The wings declare their own experiment dataclasses;
loading a TOML file into them, with unknown keys and wrong types refused, is in ``experiments.py``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import ClassVar

from ..errors import choose

DEFAULT_ESTIMATORS = ("k1", "k2", "k3")  # Schulman's three
DEFAULT_PLACEMENTS = ("loss",)


class Mode(enum.StrEnum):
    """How an expectation is formed: sampled trials, or quadrature/enumeration with no noise."""

    MC = "mc"
    EXACT = "exact"

    @classmethod
    def of(cls, name: str | Mode) -> Mode:
        """The mode named ``name``; unknown names list the allowed ones."""
        return choose("mode", name, {m.value: m for m in cls})  # type: ignore[return-value]


@dataclass(frozen=True)
class GradientExperiment:
    """A gradient table: each estimator × placement against the analytic ∇KL."""

    kind: ClassVar[str] = "gradients"  # the TOML ``kind`` (experiments.WINGS)

    title: str  # one line shown above the table
    policy: str  # π_θ, e.g. "normal:0,1"; its parameters are differentiated
    ref: str  # π_ref, e.g. "normal:1,1.1"
    estimators: list[str]  # registry names, e.g. ["k1", "k2", "k3"]
    placements: list[str] = field(default_factory=lambda: list(DEFAULT_PLACEMENTS))  # see placements.py
    sampler: str = ""  # off-policy sampling distribution; "" means the policy (on-policy)
    temperature: float = 1.0  # the engine's sampling transform (families/sampling.py), token families only
    top_k: int = 0  # 0: off
    top_p: float = 1.0  # 1: off
    old_logp: str = "processed"  # the trainer's old_logp: the engine's processed log-probs, or "raw" (untruncated)
    samples: int = 50_000  # samples per trial (the batch a trainer averages over)
    trials: int = 1_000  # independent trials (gradient draws)
    seed: int = 42  # torch.manual_seed for the whole run
    dtype: str = "float32"  # float32 (as trainers) or float64
    mode: str = Mode.MC.value  # mc (sampled trials) or exact (quadrature, no noise)
    violin: bool = False  # also draw violin.png of per-trial gradients (mc only)
    pathwise: bool = False  # reparameterised samples (rsample) instead of score-function sampling
    summary: bool = False  # also write summary.md/.csv/.json: the vector summary (summary.py; exact mode only)
    notes: str = ""  # free text copied into results/README.md


@dataclass(frozen=True)
class ValueExperiment:
    """A value table: mean(k) as an estimate of the KL (Schulman 2020)."""

    kind: ClassVar[str] = "values"

    title: str
    policy: str  # q, the sampling distribution
    ref: str  # p
    estimators: list[str]
    mode: str = Mode.EXACT.value  # exact or mc
    samples: int = 500_000  # MC samples (Schulman used 500k)
    seed: int = GradientExperiment.seed
    notes: str = ""
