"""How far each committed number may move on another machine: one rule for every column of every result table.

``compare.py`` asks ``tolerance(col, old, new)`` for a number cell and ``text_tolerances`` for the numbers inside
a text cell (a vector such as ``probs``, a warning such as "kurtosis 3.7e+08"); ``RULES`` names every column
the committed tables carry, so that no float is compared as text or with a tolerance of zero
(``tests/lab/test_tolerances.py`` enumerates results/ against it). Every tolerance is the largest of

- the unit of the number's last printed digit: the 10th significant digit of a number cell (CSV prints
  ``%.10g``), the last digit written inside a text cell (a warning's "0.64%" is ± 0.01); two roundings of
  nearly equal values differ by at most one unit;
- a relative floor: ``EXACT_RTOL`` (1e-9) of the number in exact rows, which are deterministic float64
  quadrature or enumeration (right to ~1e-13 relative), ``MC_RTOL`` (1e-5) in Monte-Carlo rows;
- its column's rule below, from the row's own numbers.

The rules (``Rule``):

``NAME``     names and echoed inputs (estimator, policy, ref, reward, sampler, …): equal text. A float in such a
             cell is an input copied from the experiment file, never a computed number (the test checks it).
``LABEL``    decisions and labels (verdict, follows, converged, …): equal text; they hold no float.
``COUNT``    trials, samples, steps, L, batch, …: equal.
``INPUT``    numbers copied from the experiment file (x, d, beta, lr): their printed digits.
``ESTIMATE`` means, truths, biases, stdevs, se and z-scores of gradient and value tables. Exact rows
             (deterministic float64 quadrature or enumeration): means and truths ± (committed se + recomputed
             se), se being the mean's numerical error bound; biases that error over |t|; the se column itself
             (an error bound rounded up to one digit) within a factor 2; other columns 1e-9 relative.
             Monte-Carlo rows (same seed, so the same draws, summed in another order): a float32 sum of n terms
             is off by at most ~eps32·log2(n) ≈ 6e-8·26 = 1.6e-6 (n ≤ 5e7, pairwise summation) of the terms'
             magnitude, so a mean is allowed ``MC_RTOL`` × rms, rms = √(mean² + s₁²) the per-sample root mean
             square (s₁ the per-sample stdev) — not × |mean|, which can be tiny beside the terms it is the
             difference of. Derived columns carry that error through their formula: bias ± Δmean/|t|, stdev ±
             Δmean, se ± Δmean/√(groups), z = (mean − exact)/se ± (Δmean + |z|·Δse)/se, z_stdev ±
             Δstdev·√(2·trials)/stdev.
``ERROR``    a stated error bound (se, err_norm, zero_mass_se): within a factor 2 of the other side.
``RATIO``    dimensionless numbers of scale 1 made from exact quantities (cosines, relative bias norms, stdev
             ratios, c(d) coefficients, probability masses): ``EXACT_RTOL`` × max(1, |x|) — float64 rounding of
             their O(1) inputs, with 1e4× room; in a Monte-Carlo row ``MC_RTOL`` × max(1, |x|) (a mass counted
             over ≥ 1e5 samples moves 1e-5 when one sample crosses a clamp edge).
``MC_SWEEP`` a length sweep's Monte-Carlo columns: relative norms ± ``MC_RTOL`` · rms/‖t‖ =
             ``MC_RTOL`` · hypot(1 + rel_bias, rel_stdev·√n); ``mc_max_abs_z`` ± ``MC_RTOL`` · √n · (1 + |z|).
``TRAJECTORY`` the end of a training run (probabilities, loc, scale, KL, objective, distances, gradient norm):
             ``TRAIN_RTOL`` × max(1, |x|). 400 steps amplify rounding: rerunning the committed training
             experiments with every step's parameters moved by ±16 ulps (random signs) moved these columns by at
             most 2.7e-15 (categorical, Markov) and 2.4e-12 (Gaussian) of max(1, |x|); ``TRAIN_RTOL`` = 1e-9
             leaves 400× room, and ``tests/lab/test_portability.py`` reruns them so perturbed under the check.
``TEXT``     a sentence with numbers (warnings, optima written as text): the same words, and each number within
             the unit of its last printed digit (an integer: equal, unless it is a percentage).
"""

from __future__ import annotations

import math
import re
from enum import Enum

EXACT_RTOL = 1e-9  # exact numbers are right to ~1e-13 relative; CSV prints 10 significant digits
MC_RTOL = 1e-5  # ≥ 6× the float32 pairwise-summation bound eps32·log2(n) for n ≤ 5e7 terms (see above)
TRAIN_RTOL = 1e-9  # ≥ 400× the measured effect of ±16-ulp steps on 400-step trajectories (see above)
DIGITS = 10  # significant digits in the CSV (report.FLOAT_FORMAT = "%.10g")


class Rule(Enum):
    NAME = "name"
    LABEL = "label"
    COUNT = "count"
    INPUT = "input"
    ESTIMATE = "estimate"
    ERROR = "error"
    RATIO = "ratio"
    MC_SWEEP = "mc-sweep"
    TRAJECTORY = "trajectory"
    TEXT = "text"


_COLUMNS = {
    Rule.NAME: ("estimator", "placement", "direction", "param", "vary", "function", "framework", "term", "problem",
                "aggregation", "family", "sampler", "sampling", "policy", "ref", "reward", "mode", "dtype",
                "best_builtin", "normalisation"),
    Rule.LABEL: ("verdict", "follows", "follows_sequence", "problem_follows", "mc_follows", "expected_gradient",
                 "converged", "diverged"),
    Rule.COUNT: ("trials", "samples", "steps", "tokens", "params", "L", "batch", "group"),
    Rule.INPUT: ("x", "d", "beta", "lr"),
    Rule.ESTIMATE: ("mean_grad", "mean", "true_grad", "true_kl", "exact_grad", "exact_mean", "bias_rel", "stdev",
                    "stdev_rel", "z_vs_exact", "z_stdev_vs_exact", "bias_vs_policy||ref", "bias_vs_ref||policy"),
    Rule.ERROR: ("se", "err_norm", "zero_mass_se"),
    Rule.RATIO: ("rel_bias_norm", "cosine", "rel_stdev", "norm_ratio", "rel_bias_norm_vs_own",
                 "rel_bias_norm_vs_policy||ref", "rel_bias_norm_vs_ref||policy", "rel_bias_vs_policy||ref",
                 "rel_bias_vs_ref||policy", "stdev_ratio", "c", "c_policy_ref", "c_ref_policy", "zero_mass",
                 "zero_grad_mass", "clamped_frac", "rel_gap_closed", "se_rel"),
    Rule.MC_SWEEP: ("mc_rel_bias_norm", "mc_rel_stdev", "mc_max_abs_z"),
    Rule.TRAJECTORY: ("probs", "init_probs", "trans_probs", "loc", "scale", "kl", "objective", "distance_to_optimum",
                      "distance_to_optimum_ref||policy", "grad_norm"),
    Rule.TEXT: ("warning", "optimum", "optimum_ref||policy"),
}
RULES: dict[str, Rule] = {col: rule for rule, cols in _COLUMNS.items() for col in cols}
EXACT_TEXT = (Rule.NAME, Rule.LABEL)  # compared as text; every other rule compares the numbers in a cell

_MEANS = ("mean_grad", "mean")
_TRUTHS = ("true_grad", "true_kl", "exact_grad", "exact_mean")
_TRUE = ("true_grad", "true_kl")  # the row's own truth t, the denominator of bias_rel and stdev_rel


def rule_of(col: str) -> Rule | None:
    """The column's rule; None for a column no committed table has (a relative floor applies)."""
    return RULES.get(col)


def digit_unit(x: float) -> float:
    """The unit of the 10th significant digit of x (0 for 0, NaN or inf): 10^(⌊log10|x|⌋ − 9)."""
    if not math.isfinite(x) or x == 0:
        return 0.0
    return 10.0 ** (math.floor(math.log10(abs(x))) - (DIGITS - 1))


def _f(row: dict, col: str) -> float:
    """The row's number in ``col`` as a float (NaN when absent or not a number)."""
    try:
        return float(row.get(col, math.nan))
    except (TypeError, ValueError):
        return math.nan


def _truth(row: dict) -> float:
    return next((abs(_f(row, c)) for c in _TRUE if c in row), math.nan)


def _mc_mean_error(row: dict) -> float:
    """MC_RTOL × the per-sample rms √(mean² + s₁²): the float-order error allowed to a Monte-Carlo mean."""
    mean = _f(row, "mean_grad") if "mean_grad" in row else _f(row, "mean")
    if "stdev" in row and "trials" in row:  # gradients: stdev is the per-trial stdev of a `samples` mean
        s1 = _f(row, "stdev") * math.sqrt(_f(row, "samples"))
    else:  # values: stdev_rel is the per-sample stdev over |true_kl|
        s1 = _f(row, "stdev_rel") * _truth(row)
    s1 = s1 if math.isfinite(s1) else 0.0
    return MC_RTOL * math.hypot(mean, s1) if math.isfinite(mean) else math.inf


def _bias_error(col: str, row: dict, d_mean: float) -> float:
    """Δ of a bias |m − t|/|t| for a mean error Δm: Δm/|t| when t is the row's truth; else (other direction,
    t not in the row) the bound Δm·(1 + bias)/|m|, from |t| ≥ |m|/(1 + bias)."""
    if col == "bias_rel" or col == f"bias_vs_{row.get('direction')}":
        t = _truth(row)
        return d_mean / t if t > 0 else math.inf
    m = abs(_f(row, "mean_grad"))
    return d_mean * (1 + abs(_f(row, col))) / m if m > 0 else 0.0


def _is_mc(row: dict) -> bool:
    return str(row.get("mode")) == "mc"


def _mc_errors(old: dict, new: dict) -> tuple[float, float]:
    """(Δmean, Δse) of a Monte-Carlo row: the mean's float-order error and what it does to the se."""
    d_mean = max(_mc_mean_error(old), _mc_mean_error(new))
    trials = _f(new, "trials")
    groups = trials if trials > 0 else _f(new, "samples")  # the se is a stdev over √(groups)
    return d_mean, d_mean / math.sqrt(groups) if groups > 0 else math.inf


def _estimate(col: str, old: dict, new: dict, x: float) -> float:
    """ESTIMATE columns of gradient and value rows (see the module docstring)."""
    if not _is_mc(new):  # exact: deterministic float64, each mean carrying its numerical error bound se
        d_mean = abs(_f(old, "se")) + abs(_f(new, "se"))
        if col in _MEANS + _TRUTHS:
            return d_mean if math.isfinite(d_mean) else math.inf
        if col.startswith("bias"):
            return _bias_error(col, new, d_mean) if math.isfinite(d_mean) else math.inf
        return EXACT_RTOL * abs(x)
    d_mean, d_se = _mc_errors(old, new)
    if col in _MEANS + ("stdev",):
        return d_mean
    if col.startswith("bias"):
        return _bias_error(col, new, d_mean)
    if col == "stdev_rel":
        t = _truth(new)
        return d_mean / t if t > 0 else math.inf
    if col == "z_vs_exact":
        se = _f(new, "se")
        return (d_mean + abs(_f(new, col)) * d_se) / se if se > 0 else math.inf
    if col == "z_stdev_vs_exact":
        stdev, trials = _f(new, "stdev"), _f(new, "trials")
        return d_mean * math.sqrt(2 * trials) / stdev if stdev > 0 and trials > 0 else math.inf
    return MC_RTOL * abs(x)  # exact_grad, exact_mean, true_*: deterministic, copied from the exact backend


def _error(col: str, old: dict, new: dict) -> float:
    """ERROR columns: a Monte-Carlo se carries Δse; a stated error bound (exact se, err_norm, zero_mass_se) is
    rounded up to one or a few digits, so it is held within a factor 2: |a − b| ≤ min(a, b)."""
    if col == "se" and _is_mc(new):
        return _mc_errors(old, new)[1]
    return min(abs(_f(old, col)), abs(_f(new, col)))


def _mc_sweep(col: str, new: dict, x: float) -> float:
    n = _f(new, "samples")
    n = n if n > 0 else 1.0
    if col == "mc_max_abs_z":
        return MC_RTOL * math.sqrt(n) * (1 + abs(x))
    rms_over_t = math.hypot(1 + abs(_f(new, "mc_rel_bias_norm")), _f(new, "mc_rel_stdev") * math.sqrt(n))
    return MC_RTOL * rms_over_t if math.isfinite(rms_over_t) else math.inf


def column_tolerance(col: str, old: dict, new: dict, x: float) -> float:
    """The error of the number ``x`` (a cell, or one element of a vector cell) in column ``col`` from its rule
    and the row's other numbers (before the printed-digit floor)."""
    rule = RULES.get(col)
    if rule in (Rule.COUNT, Rule.INPUT, Rule.TEXT, *EXACT_TEXT):
        return 0.0
    if rule is Rule.ESTIMATE:
        return _estimate(col, old, new, x)
    if rule is Rule.ERROR:
        return _error(col, old, new)
    if rule is Rule.RATIO:
        return (MC_RTOL if _is_mc(new) else EXACT_RTOL) * max(1.0, abs(x))
    if rule is Rule.MC_SWEEP:
        return _mc_sweep(col, new, x)
    if rule is Rule.TRAJECTORY:
        return TRAIN_RTOL * max(1.0, abs(x))
    return (MC_RTOL if _is_mc(new) else EXACT_RTOL) * abs(x)  # a column no committed table has


def tolerance(col: str, old: dict, new: dict) -> float:
    """How far the recomputed ``new[col]`` may be from the committed ``old[col]`` (rows as {column: value})."""
    if RULES.get(col) is Rule.COUNT:
        return 0.0
    a, b = _f(old, col), _f(new, col)
    scale = max(abs(a), abs(b)) if math.isfinite(a) and math.isfinite(b) else 0.0
    floor = 0.0 if RULES.get(col) is Rule.INPUT else (MC_RTOL if _is_mc(new) else EXACT_RTOL) * scale
    # two roundings to 10 digits differ by one unit; (1 + 1e-9): that unit read back from decimal text
    parts = (digit_unit(a) * (1 + 1e-9), digit_unit(b) * (1 + 1e-9), floor, column_tolerance(col, old, new, scale))
    return max(p for p in parts if not math.isnan(p))


# A number written inside text: not part of a word (k3, log2) or of a longer number; nan and inf as words.
NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?![\w.])|\bnan\b|-?\binf\b")


def printed_unit(token: str, following: str = "") -> float:
    """The unit of the last digit written in ``token`` ("0.64" → 0.01, "3.7e-05" → 1e-06, "2.5e+03" → 100);
    an integer is exact (0) unless it is a percentage (``following`` is "%"), then 1."""
    mantissa, _, exponent = token.lower().lstrip("+-").partition("e")
    if "." not in mantissa and not exponent:
        return 1.0 if following.startswith("%") else 0.0
    decimals = len(mantissa.partition(".")[2])
    return 10.0 ** (int(exponent or 0) - decimals)


def numbers_in(text: str) -> tuple[str, list[tuple[float, float]]]:
    """A text cell split into its words (numbers replaced by ``#``) and its numbers as (value, printed unit)."""
    found = [(float(m.group()), printed_unit(m.group(), text[m.end():m.end() + 1])) for m in NUMBER.finditer(text)]
    return NUMBER.sub("#", text), found
