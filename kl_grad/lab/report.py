"""Every result is one tidy DataFrame; this module holds the views all kinds share, and finds a kind's own.

``render(table, fmt, kind)`` looks the view up in the kind's record (``experiments.Kind.views``, or the views of
a table a kind derives, such as the gradient kind's ``summary``); unknown formats list the allowed ones. Shared
views: CSV and JSON (every column) and GitHub markdown (``github``). Every view is a pure function of the
DataFrame, so files written from it are byte-for-byte reproducible (no timestamps, no paths). Floats are written
with 10 significant digits, vector cells too: more than float32 runs carry, few enough to keep files stable.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING

from tabulate import tabulate

from ..errors import choose

if TYPE_CHECKING:  # views take DataFrames; importing this module loads no pandas
    import pandas as pd

FLOAT_FORMAT = "%.10g"
FORMAT_ALIASES = {"md": "markdown"}  # --format md, as -o x.md
EXTENSIONS = {".md": "markdown", ".csv": "csv", ".json": "json"}  # the format an -o file's extension implies


def github(table: pd.DataFrame, floatfmt: str = ".6g") -> str:
    """A GitHub markdown table of every column (6 significant digits by default)."""
    return tabulate(table, headers="keys", tablefmt="github", showindex=False, floatfmt=floatfmt) + "\n"


def _vector_text(v) -> str:
    """A vector cell (a list, possibly nested) as text with every element at ``FLOAT_FORMAT``: [0.5813955071, …]."""
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_vector_text(x) for x in v) + "]"
    return FLOAT_FORMAT % v if isinstance(v, float) else str(v)


def to_csv(table: pd.DataFrame) -> str:
    vectors = [c for c in table.columns if table[c].map(lambda v: isinstance(v, (list, tuple))).any()]
    if vectors:
        table = table.assign(**{c: table[c].map(_vector_text) for c in vectors})
    return table.to_csv(index=False, float_format=FLOAT_FORMAT, lineterminator="\n")


def json_value(v):
    """A cell as strict JSON: 10 significant digits, NaN as null, ±inf as "inf"/"-inf", vectors element-wise."""
    if isinstance(v, (list, tuple)):
        return [json_value(x) for x in v]
    if isinstance(v, float):
        if math.isnan(v):
            return None
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return float(FLOAT_FORMAT % v)
    if hasattr(v, "item"):  # numpy scalar
        return json_value(v.item())
    return v


def to_json(table: pd.DataFrame) -> str:
    records = [{k: json_value(v) for k, v in row.items()} for row in table.to_dict(orient="records")]
    return json.dumps(records, indent=2, ensure_ascii=False) + "\n"


def views(markdown, **more) -> dict:
    """A kind's views: its markdown (the default), any others (``grid=…``), then the shared CSV and JSON."""
    return {"markdown": markdown, **more, "csv": to_csv, "json": to_json}


def formats(kind: str) -> dict:
    """{format name: view} for results of ``kind`` (an experiment kind, or a table one derives)."""
    from .experiments import KINDS

    if kind in KINDS:
        return KINDS[kind].views
    known = {**{k: KINDS[k].views for k in KINDS}, **{n: v for k in KINDS for n, v in KINDS[k].table_views.items()}}
    return choose("result kind", kind, known)  # type: ignore[return-value]


def render(table: pd.DataFrame, fmt: str, kind: str = "gradients") -> str:
    """``table`` (a result of ``kind``) in format ``fmt``; unknown formats list the allowed ones."""
    return choose("format", FORMAT_ALIASES.get(fmt, fmt), formats(kind))(table)  # type: ignore[operator]
