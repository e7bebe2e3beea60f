"""Statistics for every table: weighted per-point gradients or values → mean, se, stdev, verdicts.

One module for gradient and value tables alike. Monte-Carlo rows are equally
weighted trials (numpy's mean; stdev with ddof=0 as the reference tables; se
with ddof=1); exact rows are weighted nodes (``weighted_moments``).
Relative columns: bias_rel = |mean − true| / |true|, stdev_rel = stdev / |true|.

SE of an MC stdev: a mean of n draws with per-sample variance σ² and 4th
central moment μ4 has variance σ_n² = σ²/n and 4th central moment
μ4_n = (μ4 − 3σ⁴)/n³ + 3σ⁴/n². The sample variance of T such means has
Var(s²) ≈ (μ4_n − σ_n⁴)/T, and by the delta method SE(s) ≈ √Var(s²) / (2σ_n).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

BIAS_SE = 4.0  # MC verdict: |mean − true| > 4 SE is a bias, not noise (two-sided false alarm 6e-5)
EXACT_UNBIASED = 1e-8  # exact verdict: bias_rel below this is unbiased (quadrature error is ~1e-12)
UNRELIABLE_STDEV = 0.25  # an MC stdev whose own relative SE exceeds this is flagged


def weighted_moments(g: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, variance and 4th central moment of per-point values g (N, P) under weights w (N,)."""
    mean = w @ g
    with np.errstate(over="ignore", invalid="ignore"):  # infinite moments are judged by the tail test
        return mean, w @ (g - mean) ** 2, w @ (g - mean) ** 4


def mc_summary(g: np.ndarray) -> tuple[float, float, float]:
    """(mean, stdev, se) of equally weighted draws g (T,): stdev with ddof=0, se = std(ddof=1)/√T."""
    return g.mean(), g.std(), g.std(ddof=1) / math.sqrt(len(g))


def stdev_se(var: float, m4: float, samples: int, trials: int) -> float:
    """Standard error of the stdev over ``trials`` means of ``samples`` draws (NaN if a moment is not finite)."""
    if not (math.isfinite(var) and math.isfinite(m4)) or var <= 0:
        return math.nan
    n = samples
    var_n = var / n
    m4_n = (m4 - 3 * var**2) / n**3 + 3 * var**2 / n**2
    return math.sqrt(max(m4_n - var_n**2, 0.0) / trials) / (2 * math.sqrt(var_n))


def stdev_check(stdev_mc: float, var: float, m4: float, samples: int, trials: int,
                scale: float = 1.0) -> tuple[float, str]:
    """(z-score of an MC stdev against the exact one, warning text or "").

    The warning fires only when the tails, not the trial count, make the stdev
    unreliable: its relative SE must exceed both ``UNRELIABLE_STDEV`` and twice
    the Gaussian value 1/√(2(T−1)). ``scale`` (|true gradient|) puts the exact
    stdev in the table's relative units.
    """
    se = stdev_se(var, m4, samples, trials)
    if not math.isfinite(se) or se <= 0:
        return math.nan, ""
    exact = math.sqrt(var / samples)
    rel_se, gaussian = se / exact, 1 / math.sqrt(2 * (trials - 1))
    note = ""
    if rel_se > max(UNRELIABLE_STDEV, 2 * gaussian):
        note = (f"heavy tail: per-sample kurtosis {m4 / var**2:.1e}, so this MC stdev has a relative SE of "
                f"{rel_se:.0%}; the exact stdev_rel is {exact / scale:.6g}")
    return (stdev_mc - exact) / se, note


def matches(mean: float, true: float, se: float, exact: bool) -> bool:
    """Is ``mean`` indistinguishable from ``true``? MC: within BIAS_SE standard errors; exact: within
    EXACT_UNBIASED relative, with an absolute floor of 1e-12 (the quadrature's own error)."""
    tol = max(EXACT_UNBIASED * abs(true), 1e-12) if exact else BIAS_SE * se
    return abs(mean - true) <= tol


def relative(mean: float, stdev: float, true: float, row: dict) -> dict:
    """bias_rel and stdev_rel; NaN with a warning in ``row`` when the true value is 0 (relative error undefined)."""
    if true == 0:
        note = "true value is 0: relative columns undefined"
        row["warning"] = "; ".join(filter(None, [row.get("warning", ""), note]))
        return {"bias_rel": math.nan, "stdev_rel": math.nan}
    return {"bias_rel": abs(mean - true) / abs(true), "stdev_rel": stdev / abs(true)}


def both_directions(mean: float, se: float, truth: dict[str, np.ndarray], j: int,
                    exact: bool) -> tuple[dict, set[str]]:
    """Relative bias against ∇KL in each direction (``truth``: {direction: (P,)}, column j), and the
    set of directions the mean gradient follows."""
    out, follows = {}, [d for d, grads in truth.items() if matches(mean, grads[j], se, exact)]
    for direction, grads in truth.items():
        out[f"bias_vs_{direction}"] = abs(mean - grads[j]) / abs(grads[j]) if grads[j] != 0 else math.nan
    out["follows"] = " and ".join(follows) if follows else "neither"
    return out, set(follows)


HIGHER_VARIANCE = 1.2  # an unbiased row whose stdev exceeds 1.2× the best unbiased row's


def mark_higher_variance(table: pd.DataFrame) -> pd.DataFrame:
    """Mark unbiased rows that are noisier than the best unbiased row for the same direction and parameter.

    Exact rows only ("unbiased" is an exact verdict); MC rows say "no bias detected".
    """
    unbiased = table["verdict"] == "unbiased"
    best = table[unbiased].groupby(["direction", "param"])["stdev_rel"].transform("min")
    noisy = unbiased & (table["stdev_rel"] > HIGHER_VARIANCE * best.reindex(table.index))
    table.loc[noisy, "verdict"] = "unbiased, higher variance"
    return table


def verdict(biased: bool, mean: float, exact: bool) -> str:
    """"biased" or, when not: "unbiased" for exact numbers, "no bias detected" for MC (absence of evidence)."""
    if math.isnan(mean):
        return "unavailable"
    if biased:
        return "biased"
    return "unbiased" if exact else "no bias detected"
