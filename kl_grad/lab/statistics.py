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

import functools
import math

import numpy as np
import pandas as pd

from ..directions import NONE
from .tails import TailKind

# MC verdict: "biased" when |mean − true| > t·se, t the Student-t quantile with T − 1 degrees of freedom
# at this two-sided rate; for an exactly unbiased row with finite variance the false-alarm rate is
# FALSE_ALARM at any T ≥ 2 (exactly for Gaussian per-trial gradients, which a mean of many samples is).
FALSE_ALARM = 6.334e-5  # = 2·Φ(−4): what "4 standard errors" means for a normal
EXACT_UNBIASED = 1e-8  # exact verdict: a relative bias below this is no bias
# Rounding of a float64 weighted sum of N ≤ 256 node values: bounded by N·eps·Σ w|g|; 1000·eps covers it.
ROUNDING = 1000 * float(np.finfo(np.float64).eps)
UNRELIABLE_STDEV = 0.25  # an MC stdev whose own relative SE exceeds this is flagged
VERDICTS = {
    "biased": "the mean differs from the target by more than its tolerance",
    "unbiased": "exact: equal to the target within its numerical error, which is below 1e-8 of it",
    "unbiased, higher variance": "exact: unbiased, with a stdev over 1.2× the best unbiased row's",
    "unresolved": "exact: equal within its numerical error, but that error exceeds 1e-8 of the target",
    "no bias detected": "MC: within the t-quantile × se tolerance, or (enumerable families) Bernstein's bound from "
                        "the exact variance and range (absence of evidence, not proof)",
    "no verdict: infinite variance": "MC: the per-sample gradient has infinite variance, so se means nothing",
    "no verdict: variance unknown": "MC: the exact variance was refused, so se cannot be trusted",
    "no verdict: heavy tail": "MC: infinite 4th moment, so the sample stdev behind se is unreliable (exact se shown)",
    "unavailable": "the mean itself was refused (NaN); the warning says why",
}


def stated_error(err: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """An exact mean's error bound: the quadrature's change estimate plus float64 rounding (ROUNDING·E|g|),
    at least 2.2e-308 (float64's smallest normal number: subnormal sums lose absolute digits), rounded up to
    one significant digit, so that it carries no noise digits of its own."""
    bound = np.asarray(err, dtype=float) + ROUNDING * np.asarray(scale, dtype=float)
    # at least the smallest normal float: below it (subnormal) each term keeps only ±4.9e-324
    bound = np.where((bound > 0) | (np.asarray(scale) > 0), np.maximum(bound, np.finfo(np.float64).tiny), bound)
    with np.errstate(divide="ignore", invalid="ignore"):
        unit = 10.0 ** np.floor(np.log10(bound))
        up = np.ceil(np.round(bound / unit, 6)) * unit  # round(…, 6): 3.0000000001 is 3, not 4
    return np.where(np.isfinite(up) & (bound > 0), up, bound)


TINY_WEIGHT = 1e-290  # below this a weight may have lost digits (subnormal) or underflowed to 0


def weighted_moments(g: np.ndarray, w: np.ndarray, log_w: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """Mean, variance, 4th central moment and mean absolute value of per-point values g (N, P) under
    weights w (N,). With ``log_w`` and a weight below TINY_WEIGHT, each term w·f^k is formed in log space,
    exp(log w + k·log|f|)·sign f^k, so a probability of e^−800 times a value of e^800 (or its square) counts."""
    logs = log_w is not None and not (w >= TINY_WEIGHT).all()

    def wsum(f, power=1):  # Σ w·f^power; in log space, f^power is never formed (e^703 squared overflows)
        if not logs:
            return w @ (f if power == 1 else f * f if power == 2 else (f * f) ** 2)  # no slow pow() path
        return (np.sign(f) ** power * np.exp(log_w[:, None] + power * np.log(np.abs(f)))).sum(axis=0)

    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # infinite moments: the tails decide
        mean = wsum(g)
        dev = g - mean
        return mean, wsum(dev, 2), wsum(dev, 4), wsum(np.abs(g))


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
    exact = math.sqrt(var) / math.sqrt(samples)
    rel_se, gaussian = se / exact, 1 / math.sqrt(2 * (trials - 1))
    note = ""
    if rel_se > max(UNRELIABLE_STDEV, 2 * gaussian):
        # one digit: a heavy tail's 4th moment moves by percents when its inputs move by ulps
        note = (f"heavy tail: per-sample kurtosis ~{m4 / var**2:.0e}, so this MC stdev is unreliable (relative SE "
                f"~{rel_se:.0e}); the exact stdev_rel is {exact / scale:.6g}")
    return (stdev_mc - exact) / se, note


@functools.lru_cache(maxsize=None)
def t_critical(draws: int) -> float:
    """Two-sided Student-t critical value at ``FALSE_ALARM`` for a mean of ``draws`` ≥ 2 equal-weight draws:
    −stdtrit(draws − 1, FALSE_ALARM/2), bit for bit ``scipy.stats.t.isf``, without scipy.stats' 0.5 s import."""
    from scipy.special import stdtrit

    return float(-stdtrit(draws - 1, FALSE_ALARM / 2))


def bernstein_tolerance(var: float, spread: float | None, draws: int) -> float:
    """The deviation of a mean of ``draws`` iid draws with variance ``var``, each within ``spread`` of its
    expectation, that is exceeded with probability at most FALSE_ALARM, whatever their distribution
    (Bernstein's inequality, P(|mean − μ| ≥ t) ≤ 2·exp(−n t² / (2σ² + 2bt/3)), solved for t): valid where
    the Student-t rule's near-normal trial means are not (a rare token absent from most of a few trials).
    0 when var or spread is unknown (NaN) or there is no bound (None: a continuous family)."""
    if spread is None or not (math.isfinite(var) and math.isfinite(spread)):
        return 0.0
    log_term = math.log(2 / FALSE_ALARM)
    a = 2 * spread * log_term / 3
    return (a + math.sqrt(a * a + 8 * draws * log_term * var)) / (2 * draws)


def tolerance(true: float, se: float, draws: int | None = None, scale: float = 0.0, floor: float = 0.0) -> float:
    """The largest |mean − true| that is no evidence of bias.

    MC (``draws`` = number of equally weighted draws behind the mean): t_critical(draws)·se, or ``floor``
    (``bernstein_tolerance`` of all the samples) where larger: an unbiased row exceeds both with probability
    at most FALSE_ALARM, the t-rule's approximation or not.
    Exact (``draws`` None): the row's own numerical error: ``se`` (the quadrature's error estimate,
    0 for enumeration) plus float64 rounding, ROUNDING·(scale + |true|) with scale = E|g|.
    """
    if draws is not None:
        return max(t_critical(draws) * se, floor)
    return se + ROUNDING * (scale + abs(true))


def matches(mean: float, true: float, tol: float, exact: bool) -> bool:
    """Is ``mean`` indistinguishable from ``true``? Within ``tol`` (see ``tolerance``); exact rows also
    within EXACT_UNBIASED relative (a 1e-8 relative bias is no bias)."""
    return abs(mean - true) <= (max(tol, EXACT_UNBIASED * abs(true)) if exact else tol)


def _bias_rel(mean: float, true: float, below: float) -> float:
    """|mean − true| / |true|; when |mean − true| ≤ ``below`` (an exact row's error) the bias is below its own
    error: 0 if that error is under EXACT_UNBIASED of the target, else NaN (unresolved: it could be anything
    up to below/|true|)."""
    bias = abs(mean - true)
    if bias <= below:
        return 0.0 if below <= EXACT_UNBIASED * abs(true) else math.nan
    return bias / abs(true)


def relative(mean: float, stdev: float, true: float, row: dict, below: float = 0.0) -> dict:
    """bias_rel and stdev_rel; NaN with a warning in ``row`` when the true value is 0 (relative error undefined).
    ``below``: an exact row's numerical error; a smaller bias prints as 0 (MC rows pass 0)."""
    if true == 0 or not math.isfinite(true):
        note = f"true value is {true + 0.0:g}: relative columns undefined"
        row["warning"] = "; ".join(filter(None, [row.get("warning", ""), note]))
        return {"bias_rel": math.nan, "stdev_rel": math.nan}
    with np.errstate(over="ignore", invalid="ignore"):
        return {"bias_rel": _bias_rel(mean, true, below), "stdev_rel": stdev / abs(true)}


def both_directions(mean: float, truth: dict[str, np.ndarray], j: int, tol_of, exact: bool) -> dict:
    """Relative bias against ∇KL in each direction (``truth``: {direction: (P,)}, column j) and ``follows``,
    the directions the mean gradient matches; ``tol_of(true)`` gives the row's tolerance."""
    out, follows = {}, [d for d, grads in truth.items() if matches(mean, grads[j], tol_of(grads[j]), exact)]
    for direction, grads in truth.items():
        below = tol_of(grads[j]) if exact else 0.0
        out[f"bias_vs_{direction}"] = _bias_rel(mean, grads[j], below) if grads[j] != 0 else math.nan
    out["follows"] = " and ".join(follows) if follows else NONE
    return out


HIGHER_VARIANCE = 1.2  # an unbiased row whose stdev exceeds 1.2× the best unbiased row's


def without_signed_zeros(table: pd.DataFrame) -> pd.DataFrame:
    """−0.0 + 0.0 is 0.0: no table prints "-0" (whose sign is rounding noise)."""
    floats = table.select_dtypes("float").columns
    table[floats] = table[floats] + 0.0
    return table


def mark_higher_variance(table: pd.DataFrame) -> pd.DataFrame:
    """Mark unbiased rows that are noisier than the best unbiased row for the same direction and parameter.

    Exact rows only ("unbiased" is an exact verdict); MC rows say "no bias detected".
    """
    unbiased = table["verdict"] == "unbiased"
    best = table[unbiased].groupby(["direction", "param"])["stdev_rel"].transform("min")
    noisy = unbiased & (table["stdev_rel"] > HIGHER_VARIANCE * best.reindex(table.index))
    table.loc[noisy, "verdict"] = "unbiased, higher variance"
    return table


def verdict(mean: float, true: float, tol: float, exact: bool, scale: float = 0.0) -> str:
    """One of ``VERDICTS`` (the MC refusals for infinite variance are set by the runners). An exact row
    is "unbiased" only when its error is below EXACT_UNBIASED of the target, or, for a target of 0, of
    ``scale`` (E|g|, the size of what was summed)."""
    if math.isnan(mean) or math.isnan(tol) or not math.isfinite(true):
        return "unavailable"
    if not matches(mean, true, tol, exact):
        return "biased"
    if not exact:
        return "no bias detected"
    return "unresolved" if tol > EXACT_UNBIASED * (abs(true) if true != 0 else scale) else "unbiased"


def refuse_mc_verdict(row: dict, var_tail: str | None, m4_tail: str | None, exact_se: float) -> None:
    """MC rows whose se cannot be trusted get no verdict (the tail analysis's classes of the exact
    variance and 4th moment decide; None or TailKind.OK: trusted):

    - infinite variance: se is inf (the mean's error does not shrink like 1/√n);
    - variance carried where neither quadrature nor samples reach: se kept, loudly flagged;
    - finite variance, heavy tail (infinite or unreachable 4th moment): the MC stdev behind se is itself
      unreliable, so se becomes the exact one, √(Var/(samples·trials)), ``exact_se``.

    A variance that only failed to converge (a clamp's kink) is finite and its MC verdict stands.
    """
    if var_tail not in (None, TailKind.OK):
        infinite = var_tail == "infinite"
        row["verdict"] = "no verdict: infinite variance" if infinite else "no verdict: variance unknown"
        if infinite:
            row["se"] = math.inf
        note = ("MC se and verdict refused: the per-sample gradient has infinite variance, so the mean's error "
                "does not shrink like 1/√n" if infinite else "MC verdict refused: the exact variance is not known")
    elif m4_tail not in (None, TailKind.OK) and math.isfinite(exact_se):
        row["verdict"] = "no verdict: heavy tail"
        row["se"] = exact_se
        note = "MC verdict refused and se replaced by the exact one: the per-sample gradient's 4th moment is " + (
            "infinite" if m4_tail == "infinite" else "out of reach") + ", so the sample stdev cannot size the error"
    else:
        return
    row["z_vs_exact"] = math.nan
    if "follows" in row:
        row["follows"] = "unknown"
    row["warning"] = "; ".join(filter(None, [note, row.get("warning", "")]))


def judge_row(row: dict, truth: dict[str, np.ndarray], j: int, trials: int | None, scale: float,
              floor: float = 0.0) -> None:
    """Fill a gradient row's relative columns, bias against both directions, follows and verdict, each against
    the row's tolerance (exact, ``trials`` None: its numerical error, so a bias below it prints as 0; MC: the
    Student-t multiple of se over ``trials``, at least ``floor``: ``bernstein_tolerance``). ``truth``:
    {direction: ∇KL (P,)}; ``j``: the parameter."""
    exact = trials is None

    def tol_of(true: float) -> float:
        return tolerance(true, row["se"], trials, scale, floor)

    row.update(relative(row["mean_grad"], row["stdev"], row["true_grad"], row,
                        tol_of(row["true_grad"]) if exact else 0.0))
    row.update(both_directions(row["mean_grad"], truth, j, tol_of, exact))
    row["verdict"] = verdict(row["mean_grad"], row["true_grad"], tol_of(row["true_grad"]), exact, scale)
    if not exact and floor and row["verdict"] != "biased" and not np.isnan(row["mean_grad"]) and (
            abs(row["mean_grad"] - row["true_grad"]) > tolerance(row["true_grad"], row["se"], trials)):
        note = ("no bias detected by the bound from the exact variance and range (Bernstein); the Student-t rule, "
                "which assumes near-normal trial means, would say biased")
        row["warning"] = "; ".join(filter(None, [row.get("warning", ""), note]))
