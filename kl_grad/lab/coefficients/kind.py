"""The ``coefficients`` experiment kind: c(d) for built-in estimators × placements, table and coefficients.png.

Example (``experiments/coefficients.toml``)::

    kind = "coefficients"
    title = "Gradient coefficients c(d) of every estimator × placement"
    grid = "-4:4:0.25"

``estimators`` / ``placements`` default to every registered one. Its ``KIND`` record
(bottom) carries its views: ``coefficients_markdown`` and the shared CSV/JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import pandas as pd
from tabulate import tabulate

from ..experiments import Kind
from ..report import views
from .plot import coefficients_png
from .table import coefficient_table, parse_grid, shown_d, wide


@dataclass(frozen=True)
class CoefficientExperiment:
    """c(d) = ∂surrogate/∂log π_θ on a grid of d, on-policy (``table.py``)."""

    kind: ClassVar[str] = "coefficients"

    title: str
    grid: str = "-4:4:0.25"  # LO:HI:STEP of d = log π_θ − log π_ref
    estimators: list[str] = field(default_factory=list)  # [] = every registered estimator
    placements: list[str] = field(default_factory=list)  # [] = every registered placement
    plot: bool = True  # write coefficients.png
    notes: str = ""


def _args(exp: CoefficientExperiment) -> dict:
    return dict(grid=exp.grid, estimators=exp.estimators or None, placements=exp.placements or None)


def check(exp: CoefficientExperiment) -> None:
    coefficient_table(**{**_args(exp), "grid": parse_grid(exp.grid)[:4]})  # four points: milliseconds, every name


def run(exp: CoefficientExperiment, progress=None, figures: bool = True) -> tuple[pd.DataFrame, dict[str, bytes]]:
    table = coefficient_table(**_args(exp))
    return table, ({"coefficients.png": coefficients_png(table, exp.title)} if exp.plot and figures else {})


def describe(exp: CoefficientExperiment) -> str:
    return (f"on-policy c(d) = ∂surrogate/∂log π_θ from autograd (float64), d on the grid {exp.grid}; "
            "the table shows 9 of the grid points, table.csv all.")


def coefficients_markdown(table: pd.DataFrame) -> str:
    """c(d) at ``shown_d`` grid points, one row per term, the two KL gradients' coefficients first."""
    d = shown_d(table)
    n = table["d"].nunique()
    head = (f"c(d) at {len(d)} of {n} grid points (CSV/JSON: all). expected_gradient = E_π_θ[c·s], from an exact "
            "fit c = α·d + β·(1 − e^{−d}) + γ on the grid; problem-dependent: no such fit, so some problem's "
            "expected gradient follows neither KL.\n\n")
    return head + tabulate(wide(table), headers="keys", tablefmt="github", showindex=False, floatfmt=".6g") + "\n"


def coefficients_text(table: pd.DataFrame) -> str:
    """What ``reproduce`` echoes: each term's expected gradient."""
    first = table.drop_duplicates(["estimator", "placement"])
    return "\n".join(f"  {r.estimator:>14} {r.placement:<10} E[c·s] = {r.expected_gradient}"
                     for r in first.itertuples()) + "\n"


KIND = Kind(CoefficientExperiment, check, run, describe, views(coefficients_markdown), text=coefficients_text)
