"""Views of a training-dynamics table (``dynamics.run_training(...).table``): markdown, grid, CSV, JSON.

One row per estimator × placement. JSON is a list of objects, one key per column: ``estimator``,
``placement``, ``probs`` (categorical: final policy probabilities, a list), ``init_probs`` and ``trans_probs``
(markov: softmax(init), a list, and the transition rows, a list of lists) or ``loc`` and ``scale`` (normal:
final parameters), ``converged``, ``steps``, ``kl`` (true KL(π_θ‖π_ref) at the end), ``objective`` (true J at
the end), ``distance_to_optimum`` (TV to π* for categorical, parameter distance to π*
for normal, TV over the V^L sequences to the chain family's optimum for markov),
``distance_to_optimum_ref||policy``, ``grad_norm``, ``diverged``, the optima and the run's inputs, and
``warning``. NaN is ``null`` and ±inf the strings "inf"/"-inf" (the warning says why).
the train ``KIND`` (kind.py) carries them.
"""

from __future__ import annotations

import pandas as pd
from tabulate import tabulate

from ..families import FAMILIES

_SHOWN = ["estimator", "placement", "converged", "steps", "final", "kl", "objective", "distance_to_optimum",
          "distance_to_optimum_ref||policy", "diverged", "warning"]


def _final(row) -> str:
    if "init_probs" in row:  # markov: the first-token and transition probabilities
        row6 = lambda p: "(" + ", ".join(f"{v:.6g}" for v in p) + ")"  # noqa: E731
        return f"init {row6(row['init_probs'])}; trans " + "/".join(row6(r) for r in row["trans_probs"])
    if "probs" in row:
        return "(" + ", ".join(f"{v:.6g}" for v in row["probs"]) + ")"
    return f"N({row['loc']:.6g}, {row['scale']:.6g})"


def _header(table: pd.DataFrame) -> str:
    if table.empty:
        return ""
    row = table.iloc[0]
    how = "exact expected" if row["samples"] == "exact" else f"{row['samples']}-sample MC"
    return (f"Start {row['policy']}, reference {row['ref']}, reward {row['reward']}, β = {row['beta']:g}, "
            f"lr = {row['lr']:g}, samples from {row['sampler']}, {how} KL gradient per step.\n"
            + (f"π* ∝ π_ref·exp(R/β) = {row['optimum']}" if not FAMILIES[row["family"]].sequential else
               f"Optimum of E[R] − β·KL(π_θ‖π_ref) over the chain family (gradient ascent on the exact sequence "
               f"objective; distances are TV over sequences): {row['optimum']}")
            + f"; optimum of E[R] − β·KL(π_ref‖π_θ): {row['optimum_ref||policy']}.\n\n")


def _display(table: pd.DataFrame) -> pd.DataFrame:
    shown = table.assign(final=[_final(r) for _, r in table.iterrows()])
    return shown[[c for c in _SHOWN if c in shown.columns]]


def train_markdown(table: pd.DataFrame) -> str:
    """The run's inputs and optima, then a GitHub table (6 significant digits)."""
    return _header(table) + tabulate(_display(table), headers="keys", tablefmt="github", showindex=False,
                                     floatfmt=".6g") + "\n"


def train_grid(table: pd.DataFrame) -> str:
    return _header(table) + tabulate(_display(table), headers="keys", tablefmt="fancy_grid", showindex=False,
                                     floatfmt=".6g") + "\n"


def train_csv(table: pd.DataFrame) -> str:
    from ..report import to_csv  # report imports this module to register the views

    return to_csv(table)


def train_json(table: pd.DataFrame) -> str:
    from ..report import to_json

    return to_json(table)


TRAIN_VIEWS = {"markdown": train_markdown, "grid": train_grid, "csv": train_csv, "json": train_json}
