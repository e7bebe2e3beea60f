"""Figures (matplotlib, the optional ``plot`` extra): violins of per-trial gradients, sweep curves.

PNG files are written without software/version metadata, so a rerun with the
same matplotlib writes identical bytes. Every figure names the KL direction
in its title or legend and can be read without the code.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from ..errors import KLGradError

FLOOR = 1e-12  # log axes cannot show 0: exactly unbiased rows are drawn at this floor
MARKERS = ("o", "s", "^", "D", "v", "P")
DASHES = ("-", "--", "-.", ":", (0, (5, 1)), (0, (1, 3)))


def pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise KLGradError("figures need matplotlib: pip install 'kl_grad[plot]'") from None
    return plt


def png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    pyplot().close(fig)
    return buf.getvalue()


def violin_png(per_trial: dict, table: pd.DataFrame, params: tuple[str, ...], title: str,
               truths: dict[str, np.ndarray]) -> bytes:
    """One panel per parameter: violins of per-trial gradients per estimator, both true gradients marked.

    ``truths``: {direction: (P,) true gradient}, as returned by ``true_gradients``.
    """
    plt = pyplot()
    fig, axes = plt.subplots(1, len(params), figsize=(6.5 * len(params), 5), squeeze=False)
    for j, (ax, param) in enumerate(zip(axes[0], params)):
        rows = table[table["param"] == param]
        keys = list(zip(rows["estimator"], rows["placement"]))
        truth = {d.replace("||", "‖"): v[j] for d, v in truths.items()}
        ax.violinplot([per_trial[k][:, j] for k in keys], showmeans=True)
        # Both directions' true gradients, so a row that follows the other one is visible at a glance.
        ax.axhline(truth["policy‖ref"], color="red", label="true ∇KL(policy‖ref)")
        ax.axhline(truth["ref‖policy"], color="green", linestyle="--", label="true ∇KL(ref‖policy)")
        ax.set_xticks(range(1, len(keys) + 1), [f"{e}\n({p})" for e, p in keys])
        ax.set_ylabel(f"per-trial gradient w.r.t. {param}")
        ax.set_title(f"∂/∂{param}: autograd of mean(k) over {int(rows['samples'].iloc[0])} samples, "
                     f"{int(rows['trials'].iloc[0])} trials", fontsize=9)
        ax.legend(fontsize=8)
    first = table.iloc[0]
    fig.suptitle(f"{title}\npolicy {first['policy']}, reference {first['ref']}, samples from {first['sampler']}",
                 fontsize=11)
    fig.tight_layout()
    return png(fig)


def sweep_png(table: pd.DataFrame, title: str, xlabel: str) -> bytes:
    """bias_rel and stdev_rel (log scale) against the swept value, one line per estimator.

    Gradient sweeps get one row of panels per parameter; value sweeps a single row.
    """
    plt = pyplot()
    params = list(table["param"].unique()) if "param" in table.columns else [None]
    fig, axes = plt.subplots(len(params), 2, figsize=(12, 4.2 * len(params)), squeeze=False)
    for i, param in enumerate(params):
        block = table if param is None else table[table["param"] == param]
        for col, ax in zip(("bias_rel", "stdev_rel"), axes[i]):
            for i_est, (est, rows) in enumerate(block.groupby("estimator", sort=False)):
                y = rows[col].to_numpy(dtype=float)
                finite = np.isfinite(y)
                label = f"{est} → {rows['direction'].iloc[0].replace('||', '‖')}"
                # Distinct marker and dash per estimator, so coinciding curves (e.g. two unbiased rows
                # at the floor) stay visible.
                ax.plot(rows["x"][finite], np.maximum(y[finite], FLOOR), marker=MARKERS[i_est % len(MARKERS)],
                        ms=7 - i_est, linestyle=DASHES[i_est % len(DASHES)], lw=1.4, alpha=0.85, label=label)
                infinite = np.isposinf(y) if col == "stdev_rel" else np.zeros_like(finite)
                if infinite.any():  # infinite variance: × on the top edge, in the line's colour
                    ax.plot(rows["x"][infinite], [0.96] * int(infinite.sum()), "x", ms=8,
                            color=ax.lines[-1].get_color(), transform=ax.get_xaxis_transform(), clip_on=False)
            ax.set_yscale("log")
            ax.set_xlabel(xlabel)
            what = "|E[est] − true| / |true|" if col == "bias_rel" else "stdev / |true|"
            suffix = f" (∂/∂{param})" if param else ""
            ax.set_title(f"{col}{suffix}: {what}", fontsize=10)
            ax.grid(True, which="both", alpha=0.3)
        axes[i][0].legend(fontsize=8)
    n = int(table["samples"].iloc[0])
    spread = f"stdev of a {n}-sample mean" if params != [None] else "per-sample stdev"
    fig.suptitle(f"{title}\nexact (quadrature); {spread}; unbiased rows drawn at {FLOOR:g}\n"
                 f"× on the top edge = infinite variance; gaps = true value 0 (relative error undefined) or a "
                 f"refused number (see the table's warning)", fontsize=10)
    fig.tight_layout()
    return png(fig)

