"""Views of a gradient table: the display columns as markdown, seed 003's grid, and the vector summary's."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tabulate import tabulate

from ..config import Mode
from ..report import github, views

if TYPE_CHECKING:  # the views take DataFrames; kl-grad estimators loads no pandas
    import pandas as pd

# Columns shown in human-readable tables (CSV/JSON carry every column).
_DISPLAY = ["estimator", "placement", "direction", "param", "true_grad", "mean_grad", "bias_rel", "stdev_rel", "se"]


def _display_columns(table: pd.DataFrame) -> list[str]:
    extra = [c for c in ("z_vs_exact", "z_stdev_vs_exact", "follows", "verdict", "warning") if c in table.columns]
    return [c for c in _DISPLAY if c in table.columns] + extra


def to_markdown(table: pd.DataFrame) -> str:
    """GitHub markdown table of the display columns (6 significant digits)."""
    return github(table[_display_columns(table)])


def _direction_title(direction: str) -> str:
    return f"KL({direction.replace('||', '‖')})"


def to_grid(table: pd.DataFrame) -> str:
    """The reference script's look: mean gradients to 6 decimals, then bias/true and stdev/true to 4 (fancy_grid).

    One block per (direction, placement, param), in the order rows first appear.
    """
    import pandas as pd

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


def summary_markdown(table: pd.DataFrame) -> str:
    """Vector summaries (``summary.py``): one line per estimator × placement."""
    return github(table, floatfmt=".6g")


GRADIENT_VIEWS = views(to_markdown, grid=to_grid)
SUMMARY_VIEWS = views(summary_markdown)
