"""The length sweep (experiment kind ``length_sweep``): each sequence construction's bias against length L.

A Markov chain with fixed INIT/TRANS logits (policy, reference and optional sampler) is taken at every
length in ``lengths``; each L is one exact gradient table (enumeration of all V^L sequences), reduced to
its vector summary (``summary.vector_summary``: relative bias norm ‖E[g] − ∇KL‖/‖∇KL‖ over all
parameters, cosine, relative stdev of a ``samples``-sequence mean). With ``trials`` > 0 each L is also
measured by Monte Carlo (``trials`` trials of ``samples`` sequences, seed ``seed``): the measured
relative stdev, its relative bias norm and the largest |z| of a mean against its exact value. This is the
binary-token toy of "A Comedy of Estimators" (arXiv 2512.21852), computed exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd

from ...errors import KLGradError
from ..config import DEFAULT_PLACEMENTS
from ..experiments import Kind
from ..figures import DASHES, FLOOR, MARKERS, png, pyplot
from ..gradient_table import check_gradient_request, run_gradients
from ..report import github, views

LENGTH_COLUMNS = ["L", "estimator", "placement", "direction", "rel_bias_norm", "cosine", "rel_stdev", "follows",
                  "mc_rel_bias_norm", "mc_rel_stdev", "mc_max_abs_z", "mc_follows", "samples", "warning"]


@dataclass(frozen=True)
class LengthSweepExperiment:
    """Exact (and optionally MC) vector summaries of sequence placements for a chain at several lengths."""

    kind: ClassVar[str] = "length_sweep"

    title: str
    init: str  # policy first-token logits, "a,b,..."
    trans: str  # policy transition logits, rows split by "/"
    ref_init: str
    ref_trans: str
    lengths: list[int]
    estimators: list[str]
    placements: list[str] = field(default_factory=lambda: list(DEFAULT_PLACEMENTS))
    sampler_init: str = ""  # "" : on-policy
    sampler_trans: str = ""
    samples: int = 64  # sequences per batch: exact stdev of a samples-mean, and MC batch size
    trials: int = 0  # 0: exact only
    seed: int = 42
    notes: str = ""


def _spec(length: int, init: str, trans: str) -> str:
    return f"markov:{length}:{init}:{trans}"


def _args(exp: LengthSweepExperiment, length: int) -> dict:
    if bool(exp.sampler_init) != bool(exp.sampler_trans):
        raise KLGradError("length_sweep: give both sampler_init and sampler_trans, or neither (on-policy)")
    if not exp.lengths:
        raise KLGradError("length_sweep: lengths is empty; give at least one length, e.g. [1, 2, 4, 8]")
    sampler = _spec(length, exp.sampler_init, exp.sampler_trans) if exp.sampler_init else None
    return dict(policy=_spec(length, exp.init, exp.trans), ref=_spec(length, exp.ref_init, exp.ref_trans),
                estimators=exp.estimators, placements=exp.placements, samples=exp.samples, sampler=sampler)


def check(exp: LengthSweepExperiment) -> None:
    for length in exp.lengths:
        check_gradient_request(**_args(exp, length), mode="exact")
        if exp.trials:
            check_gradient_request(**_args(exp, length), mode="mc", trials=exp.trials, seed=exp.seed)


def length_sweep(exp: LengthSweepExperiment, progress=None) -> pd.DataFrame:
    """One row per (L, estimator, placement), columns ``LENGTH_COLUMNS``."""
    blocks = []
    for length in exp.lengths:
        exact = run_gradients(**_args(exp, length), mode="exact")
        block = exact.summary.assign(L=length, samples=exp.samples)
        if exp.trials:
            mc = run_gradients(**_args(exp, length), mode="mc", trials=exp.trials, seed=exp.seed,
                               dtype="float64")
            ms = mc.summary
            z = mc.table.assign(az=mc.table["z_vs_exact"].abs()).groupby(["estimator", "placement"], sort=False)
            block["mc_rel_bias_norm"] = ms["rel_bias_norm"].to_numpy()
            block["mc_rel_stdev"] = ms["rel_stdev"].to_numpy()
            block["mc_follows"] = ms["follows"].to_numpy()
            block["mc_max_abs_z"] = z["az"].max().to_numpy()
        blocks.append(block)
    table = pd.concat(blocks, ignore_index=True)
    return table[[c for c in LENGTH_COLUMNS if c in table.columns]]


def length_sweep_png(table: pd.DataFrame, title: str) -> bytes:
    """Row 1: exact relative bias norm against L, one panel per estimator, one line per placement.
    Row 2: relative stdev of a ``samples``-sequence mean (exact lines; MC-measured markers)."""
    plt = pyplot()
    ests = list(table["estimator"].unique())
    fig, axes = plt.subplots(2, len(ests), figsize=(5.2 * len(ests), 8.4), squeeze=False)
    for c, est in enumerate(ests):
        rows = table[table["estimator"] == est]
        for i, (place, r) in enumerate(rows.groupby("placement", sort=False)):
            style = dict(marker=MARKERS[i % len(MARKERS)], linestyle=DASHES[i % len(DASHES)], ms=6, lw=1.3,
                         alpha=0.85)
            line, = axes[0][c].plot(r["L"], np.maximum(r["rel_bias_norm"].to_numpy(float), FLOOR), label=place,
                                    **style)
            axes[1][c].plot(r["L"], r["rel_stdev"], color=line.get_color(), label=f"{place} (exact)", **style)
            if "mc_rel_stdev" in r:
                axes[1][c].plot(r["L"], r["mc_rel_stdev"], "x", color=line.get_color(), ms=8)
        direction = rows["direction"].iloc[0].replace("||", "‖")
        axes[0][c].set_yscale("log")
        axes[0][c].set_title(f"{est}: ‖E[g] − ∇KL({direction})‖ / ‖∇KL‖ (exact)", fontsize=10)
        axes[1][c].set_title(f"{est}: relative stdev of a {int(rows['samples'].iloc[0])}-sequence mean "
                             "(lines exact, × MC)", fontsize=10)
        axes[1][c].set_yscale("log")
        for ax in axes[:, c]:
            ax.set_xlabel("sequence length L")
            ax.grid(True, which="both", alpha=0.3)
        axes[0][c].legend(fontsize=7)
    fig.suptitle(f"{title}\nexact enumeration of all V^L sequences; exactly unbiased constructions drawn at "
                 f"{FLOOR:g}", fontsize=10)
    fig.tight_layout()
    return png(fig)


def run(exp: LengthSweepExperiment, progress=None, figures: bool = True):
    table = length_sweep(exp, progress)
    return table, ({"length_sweep.png": length_sweep_png(table, exp.title)} if figures else {})


def describe(exp: LengthSweepExperiment) -> str:
    sampler = (f"sampler `{exp.sampler_init}` / `{exp.sampler_trans}`" if exp.sampler_init
               else "on-policy")
    mc = f"; MC {exp.trials} trials × {exp.samples} sequences, seed {exp.seed}" if exp.trials else ""
    return (f"Markov chain init `{exp.init}`, trans `{exp.trans}`; reference init `{exp.ref_init}`, trans "
            f"`{exp.ref_trans}`; {sampler}; L ∈ {exp.lengths}; exact, stdev of a {exp.samples}-sequence mean{mc}.")


def text_view(table: pd.DataFrame) -> str:
    return f"{len(table)} rows; see length_sweep.png\n"


KIND = Kind(LengthSweepExperiment, check, run, describe, views(lambda t: github(t, floatfmt=".6g")), text=text_view)
