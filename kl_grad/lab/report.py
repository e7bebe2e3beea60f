"""Every view of every kind of result: gradient tables, value tables, sweeps, the estimator list.

``VIEWS[kind][format]`` is the one registry of output formats; ``render`` looks
formats up there (unknown ones list the allowed). Formats: markdown (GitHub
tables), grid (the ``fancy_grid`` layout of the reference script's tables),
CSV and JSON (every column). Every view is a pure function of the DataFrame, so files written from it are
byte-for-byte reproducible (no timestamps, no paths). Floats are written with
10 significant digits: more than float32 runs carry, few enough to keep files
stable.
"""

from __future__ import annotations

import json
import math

import pandas as pd
from tabulate import tabulate

from ..errors import choose
from ..estimators import ESTIMATORS
from .catalogue_table import catalogue_markdown, catalogue_text
from .coefficients_kind import coefficients_markdown, coefficients_text
from .config import Mode

FLOAT_FORMAT = "%.10g"
# Columns shown in human-readable tables (CSV/JSON carry every column).
_DISPLAY = ["estimator", "placement", "direction", "param", "true_grad", "mean_grad", "bias_rel", "stdev_rel", "se"]


def _display_columns(table: pd.DataFrame) -> list[str]:
    extra = [c for c in ("z_vs_exact", "z_stdev_vs_exact", "follows", "verdict", "warning") if c in table.columns]
    return [c for c in _DISPLAY if c in table.columns] + extra


def _github(table: pd.DataFrame, floatfmt: str = ".6g") -> str:
    return tabulate(table, headers="keys", tablefmt="github", showindex=False, floatfmt=floatfmt) + "\n"


def to_markdown(table: pd.DataFrame) -> str:
    """GitHub markdown table of the display columns (6 significant digits)."""
    return _github(table[_display_columns(table)])


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


def _json_value(v):
    if isinstance(v, (list, tuple)):
        return [_json_value(x) for x in v]
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
    """The reference script's look: mean gradients to 6 decimals, then bias/true and stdev/true to 4 (fancy_grid).

    One block per (direction, placement, param), in the order rows first appear.
    """
    out: list[str] = []
    groups = table.groupby(["direction", "placement", "param"], sort=False)
    for (direction, placement, param), block in groups:
        mode = Mode.of(block["mode"].iloc[0]) if "mode" in block else Mode.MC
        n = int(block["samples"].iloc[0]) if "samples" in block else 0
        how = f"exact, n = {n}" if mode is Mode.EXACT else f"MC, {int(block['trials'].iloc[0])} trials × {n} samples"
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


def values_markdown(table: pd.DataFrame) -> str:
    """Schulman's layout: bias/true and stdev/true per estimator."""
    cols = [c for c in ("estimator", "direction", "true_kl", "mean", "bias_rel", "stdev_rel", "se", "z_vs_exact",
                        "verdict", "warning") if c in table.columns]
    return _github(table[cols])


def sweep_markdown(table: pd.DataFrame) -> str:
    cols = [c for c in ("x", "estimator", "direction", "param", "bias_rel", "stdev_rel", "warning") if c in table]
    return _github(table[cols], floatfmt=".4g")


def summary_markdown(table: pd.DataFrame) -> str:
    """Vector summaries (``summary.py``): one line per estimator × placement."""
    return _github(table, floatfmt=".6g")


def sweep_summary(table: pd.DataFrame) -> str:
    return f"{len(table)} rows; see sweep.png\n"


def estimators_table() -> pd.DataFrame:
    """The estimator registry as a table: formula, target direction, unbiased value, aliases, source."""
    rows = [(e.name, e.formula, e.direction, "yes" if e.unbiased_value else "no", ", ".join(e.aliases), e.source)
            for e in ESTIMATORS.values()]
    return pd.DataFrame(rows, columns=["name", "formula (r = π_ref/π_θ)", "targets", "unbiased value", "aliases",
                                       "source"])


def _audit_markdown(table: pd.DataFrame) -> str:
    from .audit_experiment import audit_markdown

    return audit_markdown(table)


# kind -> format -> view. The first format of a kind is its default; "text" is what ``reproduce`` echoes.
VIEWS = {
    "gradients": {"markdown": to_markdown, "grid": to_grid, "csv": to_csv, "json": to_json},
    "values": {"markdown": values_markdown, "csv": to_csv, "json": to_json},
    "sweep": {"markdown": sweep_markdown, "csv": to_csv, "json": to_json},
    "estimators": {"markdown": _github},
    "summary": {"markdown": summary_markdown, "csv": to_csv, "json": to_json},
    "coefficients": {"markdown": coefficients_markdown, "csv": to_csv, "json": to_json},
    "length_sweep": {"markdown": summary_markdown, "csv": to_csv, "json": to_json},  # lab/length_sweep.py
    "frameworks": {"markdown": catalogue_markdown, "csv": to_csv, "json": to_json},
    "audit": {"markdown": _audit_markdown, "csv": to_csv, "json": to_json},  # audit_experiment.py
    "length_weights": {"markdown": summary_markdown, "csv": to_csv, "json": to_json},  # lab/length_weights.py
}
TEXT_VIEWS = {"gradients": to_grid, "values": values_markdown, "sweep": sweep_summary,
              "coefficients": coefficients_text, "frameworks": catalogue_text, "audit": _audit_markdown,
              "length_sweep": lambda table: f"{len(table)} rows; see length_sweep.png\n",
              "length_weights": summary_markdown}
from .train_report import TRAIN_VIEWS  # noqa: E402  (it uses the helpers above)

VIEWS["train"], TEXT_VIEWS["train"] = TRAIN_VIEWS, TRAIN_VIEWS["markdown"]
FORMATS = VIEWS["gradients"]  # the gradient table's formats (``kl-grad table --format``)


def formats(kind: str) -> dict:
    """{format name: view} for results of ``kind``."""
    return choose("result kind", kind, VIEWS)  # type: ignore[return-value]


def render(table: pd.DataFrame, fmt: str, kind: str = "gradients") -> str:
    """``table`` (a result of ``kind``) in format ``fmt``; unknown formats list the allowed ones."""
    return choose("format", fmt, formats(kind))(table)  # type: ignore[operator]
