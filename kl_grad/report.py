"""Views of a tidy result table: markdown, the seed-003 ``fancy_grid`` look, CSV, JSON.

Every view is a pure function of the DataFrame, so files written from it are
byte-for-byte reproducible (no timestamps, no paths). Floats are written with
10 significant digits: more than float32 runs carry, few enough to keep files
stable.
"""

from __future__ import annotations

import json
import math

import pandas as pd
from tabulate import tabulate

from .errors import KLGradError

FLOAT_FORMAT = "%.10g"
# Columns shown in human-readable tables (CSV/JSON carry every column).
_DISPLAY = ["estimator", "placement", "direction", "param", "true_grad", "mean_grad", "bias_rel", "stdev_rel", "se"]


def _display_columns(table: pd.DataFrame) -> list[str]:
    extra = [c for c in ("z_vs_exact", "z_stdev_vs_exact", "follows", "verdict", "warning") if c in table.columns]
    return [c for c in _DISPLAY if c in table.columns] + extra


def to_markdown(table: pd.DataFrame) -> str:
    """GitHub markdown table of the display columns (6 significant digits)."""
    shown = table[_display_columns(table)]
    return tabulate(shown, headers="keys", tablefmt="github", showindex=False, floatfmt=".6g") + "\n"


def to_csv(table: pd.DataFrame) -> str:
    return table.to_csv(index=False, float_format=FLOAT_FORMAT, lineterminator="\n")


def _json_value(v):
    if isinstance(v, float):
        if math.isnan(v):
            return None
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return float(FLOAT_FORMAT % v)
    if hasattr(v, "item"):  # numpy scalar
        return _json_value(v.item())
    return v


def to_json(table: pd.DataFrame) -> str:
    records = [{k: _json_value(v) for k, v in row.items()} for row in table.to_dict(orient="records")]
    return json.dumps(records, indent=2, ensure_ascii=False) + "\n"


def _direction_title(direction: str) -> str:
    return f"KL({direction.replace('||', '‖')})"


def to_grid(table: pd.DataFrame) -> str:
    """Seed-003 look: mean gradients to 6 decimals, then bias/true and stdev/true to 4 in fancy_grid tables.

    One block per (direction, placement, param), in the order rows first appear.
    """
    out: list[str] = []
    groups = table.groupby(["direction", "placement", "param"], sort=False)
    for (direction, placement, param), block in groups:
        mode = block["mode"].iloc[0] if "mode" in block else "mc"
        n = int(block["samples"].iloc[0]) if "samples" in block else 0
        how = f"exact, n = {n}" if mode == "exact" else f"MC, {int(block['trials'].iloc[0])} trials × {n} samples"
        title = f"∇{_direction_title(direction)} w.r.t. {param}, placement '{placement}', {how}"
        out.append(f"Average gradient ({title}):")
        out.append(f"  true gradient: {block['true_grad'].iloc[0]:.6f}")
        for _, row in block.iterrows():
            out.append(f"  {row['estimator']} average gradient: {row['mean_grad']:.6f}")
        grid = pd.DataFrame(
            {"bias/true": block["bias_rel"].round(4).values, "stdev/true": block["stdev_rel"].round(4).values},
            index=block["estimator"].values,
        )
        out.append(f"Bias and standard deviation ({title}):")
        out.append(tabulate(grid, headers="keys", tablefmt="fancy_grid"))
        if "warning" in block:  # never print a number without its caveat
            out += [f"  warning, {r['estimator']}: {r['warning']}" for _, r in block.iterrows() if r["warning"]]
        out.append("")
    return "\n".join(out)


FORMATS = {"markdown": to_markdown, "grid": to_grid, "csv": to_csv, "json": to_json}


def render(table: pd.DataFrame, fmt: str) -> str:
    if fmt not in FORMATS:
        raise KLGradError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return FORMATS[fmt](table)
