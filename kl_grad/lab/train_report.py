"""Views of a training-dynamics table (``dynamics.run_training(...).table``): markdown, grid, CSV, JSON.

One row per estimator × placement. JSON is a list of objects with ``estimator``, ``placement``, ``probs``
(categorical: final policy probabilities) or ``loc`` and ``scale`` (normal: final parameters),
``converged``, ``steps``, ``kl`` (true KL(π_θ‖π_ref) at the end), ``objective`` (true J at the end),
``distance_to_optimum`` (TV for categorical, parameter distance for normal, against π*),
``distance_to_optimum_ref||policy``, ``diverged``, ``warning`` and the run's inputs. NaN is ``null``
(the warning says why). Self-contained (``report.VIEWS["train"]`` points here).
"""

from __future__ import annotations

import json
import math

import pandas as pd
from tabulate import tabulate

FLOAT_FORMAT = "%.10g"
_SHOWN = ["estimator", "placement", "converged", "steps", "final", "kl", "objective", "distance_to_optimum",
          "distance_to_optimum_ref||policy", "diverged", "warning"]


def _num(v):
    if v is None:
        return None
    if isinstance(v, bool):
        return v
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float):
        if math.isnan(v):
            return None
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return float(FLOAT_FORMAT % v)
    return v


def _point(values, family: str, digits: str = ".6g") -> str:
    if values is None:
        return ""
    text = ", ".join(format(v, digits) for v in values)
    return f"({text})" if family == "categorical" else f"N({text})"


def _header(table: pd.DataFrame) -> str:
    if table.empty:
        return ""
    row = table.iloc[0]
    fam = row["family"]
    other = row["optimum_ref||policy"]
    what = "π*" if fam == "categorical" else "π* = N(loc, scale)"
    lines = [f"{row['policy']} → ref {row['ref']}, reward {row['reward']}, β = {row['beta']:g}, lr = {row['lr']:g}, "
             f"sampler {row['sampler']}, KL term {'exact' if row['samples'] == 'exact' else str(row['samples']) + ' samples'}"
             " per step.",
             f"{what} ∝ π_ref·exp(R/β): {_point(row['optimum'], fam)}; optimum of E[R] − β·KL(π_ref‖π_θ): "
             + (_point(other, fam) if other is not None else "not derived for this reward") + ".", ""]
    return "\n".join(lines) + "\n"


def _display(table: pd.DataFrame) -> pd.DataFrame:
    shown = table[[c for c in _SHOWN if c in table.columns]].copy()
    shown["final"] = [_point(v, f) for v, f in zip(table["final"], table["family"])]
    return shown


def train_markdown(table: pd.DataFrame) -> str:
    """The run's inputs and optima, then a GitHub table (6 significant digits)."""
    return _header(table) + tabulate(_display(table), headers="keys", tablefmt="github", showindex=False,
                                     floatfmt=".6g") + "\n"


def train_grid(table: pd.DataFrame) -> str:
    return _header(table) + tabulate(_display(table), headers="keys", tablefmt="fancy_grid", showindex=False,
                                     floatfmt=".6g") + "\n"


def train_csv(table: pd.DataFrame) -> str:
    flat = table.copy()
    for col in ("final", "optimum", "optimum_ref||policy"):
        flat[col] = [";".join(FLOAT_FORMAT % v for v in vals) if vals is not None else "" for vals in flat[col]]
    return flat.to_csv(index=False, float_format=FLOAT_FORMAT, lineterminator="\n")


def _record(row: dict) -> dict:
    out = {}
    for key, v in row.items():
        if key in ("final", "optimum", "optimum_ref||policy"):
            names = ["probs"] if row["family"] == "categorical" else ["loc", "scale"]
            prefix = "" if key == "final" else f"{key}_"
            if v is None:
                out[f"{key}"] = None
            elif len(names) == 1:
                out[prefix + names[0]] = [_num(x) for x in v]
            else:
                out.update({prefix + n: _num(x) for n, x in zip(names, v)})
        else:
            out[key] = _num(v)
    return out


def train_json(table: pd.DataFrame) -> str:
    return json.dumps([_record(r) for r in table.to_dict(orient="records")], indent=2, ensure_ascii=False) + "\n"


TRAIN_VIEWS = {"markdown": train_markdown, "grid": train_grid, "csv": train_csv, "json": train_json}
