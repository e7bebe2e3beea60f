"""Figure of a training-dynamics run: distance to π* and true KL(π_θ‖π_ref) over steps, one line per case.

Uses the figure helpers of ``figures.py`` (Agg backend, PNG without metadata, so reruns write the same bytes).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..families import FAMILIES
from ..figures import DASHES, FLOOR, MARKERS, png, pyplot


def trajectories_png(trajectory: pd.DataFrame, title: str, family: str) -> bytes:
    """Two panels over steps, log axes (values below FLOOR drawn at it): distance to π* (TV for categorical,
    parameter distance for normal, TV over sequences to the family optimum
    for markov) and the true KL(π_θ‖π_ref). ``trajectory``: dynamics.TrainRun.trajectory."""
    plt = pyplot()
    fig, (ax_d, ax_k) = plt.subplots(1, 2, figsize=(12, 4.6))
    groups = list(trajectory.groupby(["estimator", "placement"], sort=False))
    for i, ((est, place), block) in enumerate(groups):
        style = dict(linestyle=DASHES[i % len(DASHES)], marker=MARKERS[i % len(MARKERS)],
                     markevery=max(1, len(block) // 8), markersize=4, label=f"{est} {place}")
        ax_d.plot(block["step"], np.maximum(block["distance_to_optimum"].to_numpy(), FLOOR), **style)
        ax_k.plot(block["step"], np.maximum(block["kl"].to_numpy(), FLOOR), **style)
    ax_d.set_yscale("log")
    ax_k.set_yscale("log")  # a k1-loss run's KL grows without bound while the others settle near 0.1
    fam = FAMILIES[family]
    ax_d.set_ylabel("total variation over sequences to the chain family's optimum" if fam.sequential else
                    ("total variation" if fam.enumerable else "‖(loc, scale) − (loc*, scale*)‖")
                    + " to π* ∝ π_ref·exp(R/β)")
    ax_k.set_ylabel("true KL(π_θ‖π_ref)")
    for ax in (ax_d, ax_k):
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    ax_d.legend(fontsize=7, ncol=2)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return png(fig)
