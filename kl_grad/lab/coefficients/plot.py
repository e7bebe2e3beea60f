"""coefficients.png: c(d) against d, one panel per placement, with the two KL gradients' coefficients.

Reads a ``coefficient_table`` (``table.py``). Reference lines: c = d, whose E_{π_θ}[c·s] is
∇KL(policy‖ref), and c = 1 − e^{−d}, whose E_{π_θ}[c·s] is ∇KL(ref‖policy) (any curve that is one of
them shifted by a constant has the same expected gradient). Curves leaving the y-range are clipped.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..figures import DASHES, MARKERS, png, pyplot

YLIM = 5.0  # |c| shown; the reverse estimators' e^{−d} leaves the range at d ≈ −1.6


def coefficients_png(table: pd.DataFrame, title: str) -> bytes:
    """PNG of c(d): one panel per placement (a user's function: its one "as written" panel)."""
    plt = pyplot()
    placements = list(dict.fromkeys(table["placement"]))
    cols = min(2, len(placements))
    rows = -(-len(placements) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.4 * cols, 4.6 * rows), squeeze=False)
    d = np.unique(table["d"].to_numpy(float))
    for ax, placement in zip(axes.flat, placements):
        ax.plot(d, d, color="black", lw=3, alpha=0.25, label="c = d  (E[c·s] = ∇KL(policy‖ref))")
        ax.plot(d, -np.expm1(-d), color="black", lw=3, alpha=0.25, linestyle="--",
                label="c = 1 − e^{−d}  (E[c·s] = ∇KL(ref‖policy))")
        block = table[table["placement"] == placement]
        for i, (est, rows_) in enumerate(block.groupby("estimator", sort=False)):
            follows = rows_["expected_gradient"].iloc[0]
            ax.plot(rows_["d"], rows_["c"], linestyle=DASHES[i % len(DASHES)], marker=MARKERS[i % len(MARKERS)],
                    ms=3, lw=1.3, markevery=max(1, len(rows_) // 16), label=f"{est}: E[c·s] = {follows}")
        ax.set_ylim(-YLIM, YLIM)
        ax.axhline(0, color="grey", lw=0.6)
        ax.axvline(0, color="grey", lw=0.6)
        ax.set_xlabel("d = log π_θ(x) − log π_ref(x)")
        ax.set_ylabel("c(d): per-sample gradient / ∇log π_θ(x)")
        ax.set_title(f"placement '{placement}'", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=6.5, loc="upper left")
    for ax in list(axes.flat)[len(placements):]:
        ax.set_visible(False)
    fig.suptitle(f"{title}\non-policy, autograd in float64; |c| > {YLIM:g} clipped; E[c·s] read from an exact fit "
                 "c = α·d + β·(1 − e^{−d}) + γ on the grid", fontsize=10)
    fig.tight_layout()
    return png(fig)
