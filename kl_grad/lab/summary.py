"""Vector summaries: one line per KL term (estimator × placement) over all of a problem's parameters.

A policy with dozens of parameters (a softmax's logits, a Markov chain's transition logits) needs a per-case
answer beside its per-parameter rows. With g = E[∇θ surrogate] (the table's ``mean_grad`` column over the
parameters, in order) and t = ∇θ KL in a direction:

    rel_bias_norm   ‖g − t‖ / ‖t‖                    (Euclidean norms over the parameters)
    cosine          g·t / (‖g‖ ‖t‖)                  (NaN when g or t is the zero vector, or g is 0 within
                                                      its error: follows ``zero``; a direction of noise)
    rel_stdev       √(Σ_j stdev_j²) / ‖t‖             (stdev_j: of the per-trial gradient, or exact for a
                                                      ``samples``-sample mean; the RMS size of the noise)
    follows         the direction whose gradient g equals in *every* parameter, by each row's own rule
                    (``statistics.matches``: exact rows within their error, MC rows within t·se), or
                    ``zero`` when g is 0 in every parameter within that tolerance while the truths are not,
                    or ``none``; ``unknown`` when some row has no verdict (refused or heavy-tailed)

An exact case that follows its target prints rel_bias_norm 0 (its bias is below its own error), as the
per-parameter ``bias_rel`` does; MC cases print the measured value and let ``follows`` carry the verdict.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..directions import DIRECTIONS, NONE, ZERO
from .statistics import matches, tolerance

SUMMARY_COLUMNS = [
    "estimator", "placement", "direction", "params", "rel_bias_norm", "cosine", "rel_stdev", "follows",
    "rel_bias_norm_vs_policy||ref", "rel_bias_norm_vs_ref||policy", "mode", "warning",
]


def norm(v: np.ndarray) -> float:
    return float(np.sqrt(np.sum(v * v)))


def _relative(num: float, den: float) -> float:
    return num / den if den > 0 and math.isfinite(den) else math.nan


def cosine(g: np.ndarray, t: np.ndarray) -> float:
    ng, nt = norm(g), norm(t)
    return float(np.clip(g @ t / (ng * nt), -1.0, 1.0)) if ng > 0 and nt > 0 else math.nan


def _follows(block: pd.DataFrame, g: np.ndarray, truth: dict[str, np.ndarray]) -> str:
    """The vector verdict from the per-parameter rows (see the module docstring)."""
    per_row = block["follows"].astype(str).tolist()
    if any(f == "unknown" for f in per_row) or not np.isfinite(g).all():
        return "unknown"
    both = [d for d in DIRECTIONS if all(d in f.split(" and ") for f in per_row)]
    if both:
        return " and ".join(both)
    exact = (block["mode"] == "exact").to_numpy()
    trials = block["trials"].to_numpy()
    se = block["se"].to_numpy(dtype=float)
    zero = all(matches(g[j], 0.0, tolerance(0.0, se[j], None if exact[j] else int(trials[j])), bool(exact[j]))
               for j in range(len(g)))
    return ZERO if zero and any(norm(t) > 0 for t in truth.values()) else NONE


def vector_summary(table: pd.DataFrame, truth: dict[str, np.ndarray]) -> pd.DataFrame:
    """One row per (estimator, placement) of a gradient ``table`` (the rows of each case in parameter order);
    ``truth``: {direction: (P,) ∇θ KL} (``Problem.true_gradients()``). Columns ``SUMMARY_COLUMNS``."""
    rows = []
    for (est, place), block in table.groupby(["estimator", "placement"], sort=False):
        g = block["mean_grad"].to_numpy(dtype=float)
        stdev = block["stdev"].to_numpy(dtype=float)
        target = block["direction"].iloc[0]
        follows = _follows(block, g, truth)
        row = {"estimator": est, "placement": place, "direction": target, "params": len(g),
               "cosine": math.nan if follows == ZERO else cosine(g, truth[target]), "follows": follows,
               "mode": block["mode"].iloc[0],
               "rel_stdev": _relative(norm(stdev), norm(truth[target]))}
        exact = (block["mode"] == "exact").all()
        for direction in DIRECTIONS:
            t = truth[direction]
            below = exact and direction in follows.split(" and ")  # exact and within its error: 0
            row[f"rel_bias_norm_vs_{direction}"] = 0.0 if below else _relative(norm(g - t), norm(t))
        row["rel_bias_norm"] = row[f"rel_bias_norm_vs_{target}"]
        warnings = sorted({w for w in block["warning"].astype(str) if w and w != "nan"})
        row["warning"] = "; ".join(warnings)
        rows.append(row)
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
