"""The ``values`` experiment kind: mean(k) as an estimate of the KL itself (``value_table.run_values``)."""

from __future__ import annotations

import pandas as pd

from ..config import Mode, ValueExperiment
from ..experiments import Kind
from ..problem import Problem
from ..report import github, views
from ..terms import value_estimators
from ..value_table import check_samples, run_values


def _check_values(exp: ValueExperiment) -> None:
    Problem(exp.policy, exp.ref)
    value_estimators(exp.estimators)
    check_samples(Mode.of(exp.mode), exp.samples)


def _run_values(exp: ValueExperiment, progress=None, figures: bool = True):
    return run_values(exp.policy, exp.ref, exp.estimators, mode=exp.mode, samples=exp.samples, seed=exp.seed), {}


def _describe_values(exp: ValueExperiment) -> str:
    n = "" if exp.mode == Mode.EXACT else f" × {exp.samples} samples, seed {exp.seed}"
    return f"q = `{exp.policy}`, p = `{exp.ref}`; {exp.mode}{n}."


def values_markdown(table: pd.DataFrame) -> str:
    """Schulman's layout: bias/true and stdev/true per estimator."""
    cols = [c for c in ("estimator", "direction", "true_kl", "mean", "bias_rel", "stdev_rel", "se", "z_vs_exact",
                        "verdict", "warning") if c in table.columns]
    return github(table[cols])


KIND = Kind(ValueExperiment, _check_values, _run_values, _describe_values, views(values_markdown))
