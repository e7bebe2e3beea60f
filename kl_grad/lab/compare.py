"""Are two result tables the same result? Text cells equal, every number equal within its own precision.

One rule, two users: ``make reproduce`` keeps a result folder byte for byte when the rerun's table has no
difference from the one on disk (so a machine whose float arithmetic differs in the last bits rewrites
nothing), and ``kl-grad reproduce --check`` fails on any difference, naming it (``check.py``).

The tolerance of a number is the largest of

- the unit of its 10th significant digit (CSV prints ``%.10g``; two roundings differ by at most one unit);
- a relative floor: ``EXACT_RTOL`` (1e-9) in exact rows, which are deterministic float64 quadrature or
  enumeration (right to ~1e-13 relative), ``MC_RTOL`` (1e-5) in Monte-Carlo rows;
- its column's own error, from the row's other numbers (``_column_tolerance``):

  exact rows: means and true values (mean_grad, mean, true_grad, true_kl, exact_grad, exact_mean) ± (committed
  se + recomputed se), se being the mean's numerical error bound; biases |m − t|/|t| that error over |t|;
  the se column itself (an error bound rounded up to one digit) within a factor 2;

  Monte-Carlo rows (same seed, so the same draws, summed in another order): a float32 sum of n terms is off
  by at most ~eps32·log2(n) ≈ 6e-8·26 = 1.6e-6 (n ≤ 5e7, pairwise summation) of the terms' magnitude, so
  a mean is allowed ``MC_RTOL`` × rms, rms = √(mean² + s₁²) the per-sample root mean square (s₁ the
  per-sample stdev) — not × |mean|, which can be tiny beside the terms it is the difference of (k1 as a loss
  on-policy: mean 1e-5 of per-sample gradients of size 1). Derived columns carry that error through their
  formula: bias ± Δmean/|t|, stdev ± Δmean (a stdev moves at most by the rms of the per-trial shifts),
  se ± Δmean/√(groups), z = (mean − exact)/se ± (Δmean + |z|·Δse)/se, z_stdev ± Δstdev·√(2·trials)/stdev.
  ``benchmarks/mutation_check.py`` measures the real cross-run noise (thread count, chunking, sample order):
  orders of magnitude below these tolerances. An MC row sees a 0.1% change of its estimator only where
  |mean| ≳ 1% of the rms; the exact experiments see every one (the same benchmark: 27/27 caught).

Counts (trials, samples) must be equal; text cells (verdicts, follows, warnings) must be equal.
"""

from __future__ import annotations

import io
import math
import numbers
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

EXACT_RTOL = 1e-9  # exact numbers are right to ~1e-13 relative; CSV prints 10 significant digits
MC_RTOL = 1e-5  # ≥ 6× the float32 pairwise-summation bound eps32·log2(n) for n ≤ 5e7 terms (see above)
DIGITS = 10  # significant digits in the CSV (report.FLOAT_FORMAT = "%.10g")

ID_COLUMNS = ("estimator", "placement", "direction", "param", "vary", "x")  # gradient rows' names: no tolerance
# What names a row in a difference's message, for every result kind's table (in this order): audit
# (function, problem, tokens), frameworks (framework, term, problem), gradients/values/sweeps/train
# (estimator, placement, direction, param, vary, x), aggregations (aggregation, batch), length sweeps (L),
# coefficients (d); summaries are named by estimator, placement, direction (their params is a count, the same on
# every row). Numbers among them print as NAME=value.
NAME_COLUMNS = ("function", "framework", "term", "problem", "tokens", "L", "estimator", "placement", "aggregation",
                "batch", "direction", "param", "d", "vary", "x")
_BARE_NUMBER_NAMES = ("x",)  # printed bare after its vary ("loc, 0.5")
COUNT_COLUMNS = ("trials", "samples")  # equal or different, no tolerance
_MEANS = ("mean_grad", "mean")
_TRUTHS = ("true_grad", "true_kl", "exact_grad", "exact_mean")
_TRUE = ("true_grad", "true_kl")  # the row's own truth t, the denominator of bias_rel and stdev_rel


@dataclass(frozen=True)
class Difference:
    """One cell (or the table's shape) that differs beyond its tolerance.

    ``row`` is the 0-based data row (None for a shape difference; printed as its CSV line, row + 2),
    ``row_id`` the row's identifying text ("k3, loss, policy||ref, loc"); ``tolerance`` is None for text
    cells and shapes; ``file``: the result file compared (``table.csv``, or a derived ``summary.csv``).
    """

    row: int | None
    row_id: str
    column: str
    committed: object
    recomputed: object
    tolerance: float | None = None
    file: str = "table.csv"

    def __str__(self) -> str:
        if self.row is None:  # the file or table as a whole: committed and recomputed are sentences
            return f"{self.column}: {self.committed}; {self.recomputed}"
        where = f"line {self.row + 2} ({self.row_id})"
        if self.tolerance is None:
            return f"{where}, {self.column}: committed {self.committed!r}, recomputed {self.recomputed!r}"
        return (f"{where}, {self.column}: committed {_num(self.committed)}, recomputed {_num(self.recomputed)}, "
                f"|difference| {abs(self.committed - self.recomputed):.3g} > tolerance {self.tolerance:.3g}")


def _num(x: float) -> str:
    return "%.10g" % x


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


def _column_tolerance(col: str, old: dict, new: dict) -> float:
    """The error of column ``col`` implied by the rest of the row (see the module docstring); 0 if none."""
    if col in ID_COLUMNS:
        return 0.0
    if str(new.get("mode")) == "exact":
        d_mean = abs(_f(old, "se")) + abs(_f(new, "se"))  # each mean's numerical error bound
        if not math.isfinite(d_mean):
            return math.inf if col in _MEANS + _TRUTHS or col.startswith("bias") else 0.0
        if col in _MEANS + _TRUTHS:
            return d_mean
        if col == "bias_rel" or col.startswith("bias_vs_"):
            return _bias_error(col, new, d_mean)
        if col == "se":
            return min(abs(_f(old, "se")), abs(_f(new, "se")))  # |a − b| ≤ min(a, b): within a factor 2
        return 0.0
    if str(new.get("mode")) != "mc":
        return 0.0
    d_mean = max(_mc_mean_error(old), _mc_mean_error(new))
    trials = _f(new, "trials")
    groups = trials if trials > 0 else _f(new, "samples")  # the se is a stdev over √(groups)
    d_se = d_mean / math.sqrt(groups) if groups > 0 else math.inf
    t = _truth(new)
    if col in _MEANS:
        return d_mean
    if col == "bias_rel" or col.startswith("bias_vs_"):
        return _bias_error(col, new, d_mean)
    if col == "stdev":
        return d_mean
    if col == "stdev_rel":
        return d_mean / t if t > 0 else math.inf
    if col == "se":
        return d_se
    if col == "z_vs_exact":
        se = _f(new, "se")
        return (d_mean + abs(_f(new, col)) * d_se) / se if se > 0 else math.inf
    if col == "z_stdev_vs_exact":
        stdev = _f(new, "stdev")
        return d_mean * math.sqrt(2 * trials) / stdev if stdev > 0 and trials > 0 else math.inf
    return 0.0


def tolerance(col: str, old: dict, new: dict) -> float:
    """How far the recomputed ``new[col]`` may be from the committed ``old[col]`` (rows as {column: value})."""
    if col in COUNT_COLUMNS:
        return 0.0
    a, b = _f(old, col), _f(new, col)
    rtol = EXACT_RTOL if str(new.get("mode")) == "exact" else MC_RTOL
    scale = max(abs(a), abs(b)) if math.isfinite(a) and math.isfinite(b) else 0.0
    parts = (digit_unit(a), digit_unit(b), rtol * scale, _column_tolerance(col, old, new))
    return max(p for p in parts if not math.isnan(p))


def _same_number(a: float, b: float, tol: float) -> bool:
    if math.isnan(a) or math.isnan(b) or math.isinf(a) or math.isinf(b):
        return (math.isnan(a) and math.isnan(b)) or a == b
    return abs(a - b) <= tol


def _row_id(row: dict) -> str:
    """The row's identifying cells ("k3_loss, token-2 on-policy, tokens=1"), from ``NAME_COLUMNS``."""
    parts = []
    for c in NAME_COLUMNS:
        if c not in row or str(row[c]) in ("", "nan"):
            continue
        value = row[c]
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and c not in _BARE_NUMBER_NAMES:
            parts.append(f"{c}={value:g}")
        else:
            parts.append(str(value))
    return ", ".join(parts)


def read_table(table) -> pd.DataFrame:
    """A CSV file path, CSV text (a string with a newline) or a DataFrame, read as the CSV reader sees it
    (empty cell = NaN)."""
    if isinstance(table, pd.DataFrame):
        from .report import to_csv

        table = to_csv(table)
    source = io.StringIO(table) if isinstance(table, str) and "\n" in table else Path(table)  # text, else a path
    return pd.read_csv(source, keep_default_na=False, na_values=[""])


def table_differences(committed, recomputed) -> list[Difference]:
    """Every difference between two result tables beyond its tolerance, in row-major order.

    ``committed``: a CSV path (e.g. ``results/<name>/table.csv``); ``recomputed``: CSV text, a path or the
    DataFrame a run returns (rendered to CSV first, so both sides carry the same 10 digits). Different
    columns or row counts are one shape difference; an unreadable committed file is one difference.
    """
    try:
        old = read_table(committed)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        return [Difference(None, "", "table", f"unreadable ({exc.__class__.__name__})", "rerun kl-grad reproduce")]
    new = read_table(recomputed)
    if list(old.columns) != list(new.columns):
        missing = [c for c in new.columns if c not in old.columns]
        extra = [c for c in old.columns if c not in new.columns]
        what = (f"committed lacks {', '.join(missing) or '-'} and has extra {', '.join(extra) or '-'}"
                if missing or extra else "committed has them in another order")
        return [Difference(None, "", "columns", what, f"recomputed: {', '.join(new.columns)}")]
    if len(old) != len(new):
        return [Difference(None, "", "rows", f"committed {len(old)}", f"recomputed {len(new)}")]
    numeric = {c for c in new.columns
               if pd.api.types.is_numeric_dtype(old[c]) and pd.api.types.is_numeric_dtype(new[c])}
    out = []
    for i, (o, n) in enumerate(zip(old.to_dict(orient="records"), new.to_dict(orient="records"))):
        for col in new.columns:
            if col in numeric:
                a, b = float(o[col]), float(n[col])
                tol = tolerance(col, o, n)
                if not _same_number(a, b, tol):
                    out.append(Difference(i, _row_id(n), col, a, b, tol))
            elif str(o[col]) != str(n[col]):
                out.append(Difference(i, _row_id(n), col, o[col], n[col]))
    return out


def count_numbers(table) -> int:
    """How many numeric cells a table holds (what a check compared)."""
    t = read_table(table)
    return int(sum(t[c].notna().sum() for c in t.columns if pd.api.types.is_numeric_dtype(t[c])))


def same_table(old_csv: Path, new_csv: str) -> bool:
    """Does the CSV file ``old_csv`` hold the same result as the CSV text ``new_csv`` (no differences)?"""
    return not table_differences(old_csv, new_csv)
