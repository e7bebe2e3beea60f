"""The ``sweep`` experiment kind: exact bias/stdev curves as one reference parameter moves; ``sweep.png``."""

from __future__ import annotations

import pandas as pd

from ..experiments import Kind
from ..families import parse_spec
from ..figures import sweep_png
from ..report import github, views
from .table import SweepExperiment, sweep


def _sweep_args(exp: SweepExperiment, grid: list[float]) -> tuple:
    return (parse_spec(exp.policy, "policy"), parse_spec(exp.ref, "ref"), exp.vary, grid, exp.estimators,
            exp.quantity, exp.samples)


def _check_sweep(exp: SweepExperiment) -> None:
    sweep(*_sweep_args(exp, exp.grid[:1]))  # one exact point: milliseconds, and it checks every name


def _run_sweep(exp: SweepExperiment, progress=None, figures: bool = True):
    table = sweep(*_sweep_args(exp, exp.grid))
    if not figures:
        return table, {}
    xlabel = f"reference {exp.vary} (policy {exp.policy}, reference {exp.ref} otherwise)"
    return table, {"sweep.png": sweep_png(table, exp.title, xlabel)}


def _describe_sweep(exp: SweepExperiment) -> str:
    return f"policy `{exp.policy}`, reference `{exp.ref}` with {exp.vary} ∈ {exp.grid}; exact, {exp.quantity}."


def sweep_markdown(table: pd.DataFrame) -> str:
    cols = [c for c in ("x", "estimator", "direction", "param", "bias_rel", "stdev_rel", "warning") if c in table]
    return github(table[cols], floatfmt=".4g")


def sweep_summary(table: pd.DataFrame) -> str:
    return f"{len(table)} rows; see sweep.png\n"


KIND = Kind(SweepExperiment, _check_sweep, _run_sweep, _describe_sweep, views(sweep_markdown), text=sweep_summary)
