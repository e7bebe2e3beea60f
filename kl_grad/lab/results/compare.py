"""Are two result tables the same result? Text cells equal, every number equal within its own precision.

One rule, two users: ``make reproduce`` keeps a result folder byte for byte when the rerun's table has no
difference from the one on disk (so a machine whose float arithmetic differs in the last bits rewrites
nothing), and ``kl-grad reproduce --check`` fails on any difference, naming it (``check.py``).

Each number's tolerance is its column's rule (``tolerances.py``, which names every column the committed tables
carry): its own error bound, or float64/float32 rounding carried through the computation that produced it, and
at least the unit of its last printed digit. Numbers inside text cells (vectors such as ``probs``, warnings)
are compared one by one the same way, and the words around them must be equal.
Counts (trials, samples) must be equal; names and labels (estimator, verdict, follows) must be equal text.
"""

from __future__ import annotations

import io
import math
import numbers
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .tolerances import EXACT_TEXT, column_tolerance, numbers_in, rule_of, tolerance

# What names a row in a difference's message, for every result kind's table (in this order): audit
# (function, problem, tokens), frameworks (framework, term, problem), gradients/values/sweeps/train
# (estimator, placement, direction, param, vary, x), aggregations (aggregation, batch), length sweeps (L),
# coefficients (d); summaries are named by estimator, placement, direction (their params is a count, the same on
# every row). Numbers among them print as NAME=value.
NAME_COLUMNS = ("function", "framework", "term", "problem", "tokens", "L", "estimator", "placement", "aggregation",
                "batch", "direction", "param", "d", "vary", "x")
_BARE_NUMBER_NAMES = ("x",)  # printed bare after its vary ("loc, 0.5")


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
        from ..report import to_csv

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
            else:
                out += text_differences(col, o, n, i)
    return out


def text_differences(col: str, old: dict, new: dict, row: int = 0) -> list[Difference]:
    """A text cell: names and labels must be equal; elsewhere (vectors, warnings) the words must be equal and
    each number within the larger of its column's rule and the unit of its last printed digit on either side.
    A number that moved is named ``col[k]``, k counting the cell's numbers from 0."""
    a, b = str(old[col]), str(new[col])
    if a == b:
        return []
    words_a, nums_a = numbers_in(a)
    words_b, nums_b = numbers_in(b)
    if rule_of(col) in EXACT_TEXT or words_a != words_b or len(nums_a) != len(nums_b):
        return [Difference(row, _row_id(new), col, old[col], new[col])]
    out = []
    for k, ((x, unit_x), (y, unit_y)) in enumerate(zip(nums_a, nums_b)):
        scale = max(abs(x), abs(y)) if math.isfinite(x) and math.isfinite(y) else 0.0
        tol = max(unit_x * (1 + 1e-9), unit_y * (1 + 1e-9), column_tolerance(col, old, new, scale))  # 1 unit
        if not _same_number(x, y, tol):
            out.append(Difference(row, _row_id(new), f"{col}[{k}]", x, y, tol))
    return out


def count_numbers(table) -> int:
    """How many numbers a table holds (what a check compared): numeric cells and the numbers inside text
    cells other than names and labels."""
    t = read_table(table)
    count = 0
    for c in t.columns:
        if pd.api.types.is_numeric_dtype(t[c]):
            count += int(t[c].notna().sum())
        elif rule_of(c) not in EXACT_TEXT:
            count += sum(len(numbers_in(str(v))[1]) for v in t[c] if isinstance(v, str))
    return count


def same_table(old_csv: Path, new_csv: str) -> bool:
    """Does the CSV file ``old_csv`` hold the same result as the CSV text ``new_csv`` (no differences)?"""
    return not table_differences(old_csv, new_csv)
