"""The value-table runner: how well does mean(k) estimate the KL itself? (Schulman 2020.)

Samples come from the policy q = π_θ. For each estimator k of the KL in its
direction (k1, k2, k3 → KL(policy‖ref); reverse_k1 → KL(ref‖policy)) the table
gives true_kl (``torch.distributions.kl_divergence``), the expected value
``mean``, bias_rel = |mean − true_kl| / true_kl, and stdev_rel = per-sample
stdev / true_kl, which is Schulman's "stdev/true" column. ``exact`` mode integrates
with the same quadrature and tail checks as the gradient tables. ``mc`` draws
``samples`` samples with ``seed`` (the same stream as a gradient run's first
trial), and also reports the standard error and the z-score against exact.
"""

from __future__ import annotations

import math

import pandas as pd
import torch

from ..errors import KLGradError
from ..estimators import Estimator
from .config import DEFAULT_ESTIMATORS, Mode, ValueExperiment
from .families import DistSpec
from .kinks import refuse_kinked
from .memory import check_mc_memory
from .montecarlo import check_seed, mc_samples
from .problem import Problem
from .quadrature import exact_moments
from .statistics import (
    bernstein_tolerance,
    mc_summary,
    refuse_mc_verdict,
    relative,
    tolerance,
    verdict,
    without_signed_zeros,
)
from .terms import value_estimators
from .threads import by_work

VALUE_COLUMNS = ["estimator", "direction", "true_kl", "mean", "bias_rel", "stdev_rel", "se", "samples", "mode",
                 "verdict", "exact_mean", "z_vs_exact", "warning", "policy", "ref"]


def _evaluate(problem: Problem, ests: list[Estimator]):
    policy, ref = problem.policy.build(torch.float64), problem.ref.build(torch.float64)

    def evaluate(x: torch.Tensor) -> dict:  # x: (N, 1) float or integer points; values in float64
        logq, logp = policy.log_prob(x), ref.log_prob(x)
        return {e.name: e(logq, logp).reshape(-1, 1) for e in ests}  # (N, 1)
    return evaluate


def check_samples(mode: Mode, samples: int) -> None:
    """MC needs two samples for a standard error; exact mode uses none (samples only labels the row)."""
    least = 2 if mode is Mode.MC else 1
    if samples < least:
        raise KLGradError(f"samples must be an integer >= {least} in {mode} mode, got {samples}")


@by_work(lambda policy, ref, estimators=None, *, mode=ValueExperiment.mode, samples=ValueExperiment.samples, **_:
         0 if Mode.of(mode) is Mode.EXACT else samples)  # one chunk: mc_samples draws them at once
def run_values(policy: DistSpec | str, ref: DistSpec | str, estimators: list[str] | str = DEFAULT_ESTIMATORS, *,
               mode: str = ValueExperiment.mode, samples: int = ValueExperiment.samples,
               seed: int = ValueExperiment.seed) -> pd.DataFrame:
    """One row per estimator: mean(k) over samples of the policy as an estimate of the KL it targets.

    ``mode="exact"`` (default): quadrature or enumeration, no noise; ``mode="mc"``: ``samples`` draws with
    ``seed``, with the standard error and the z-score against exact. Returns a DataFrame with the
    columns ``VALUE_COLUMNS`` (true_kl, mean, bias_rel, stdev_rel per sample, se, verdict, warning, ...).
    """
    mode = Mode.of(mode)
    check_samples(mode, samples)
    problem = Problem(policy, ref)
    if problem.policy.fam.sequential:
        raise KLGradError(f"value tables take single-point families (normal, categorical), not {problem.policy.family} "
                          "sequences; use kl-grad table for sequence gradients")
    if mode is Mode.MC:
        check_seed(seed)
        check_mc_memory(problem.in_float64(), samples)
    ests = value_estimators(estimators)
    centred, shift = problem.centred()
    exact = refuse_kinked(exact_moments(_evaluate(centred, ests), centred.policy, (centred.ref,), shift),
                          {e.name: e for e in ests}, problem.policy)
    evaluate = _evaluate(problem, ests)
    if mode is Mode.MC:
        draws = {k: v.numpy()[:, 0] for k, v in evaluate(mc_samples(problem.policy, samples, seed).x).items()}
    rows = []
    for e in ests:
        ex = exact[e.name]
        truth = problem.true_kl(e.direction)
        row = {"estimator": e.name, "direction": e.direction, "true_kl": truth, "samples": samples,
               "mode": mode.value, "exact_mean": ex.mean[0], "warning": ex.warnings[0],
               "policy": problem.policy.label, "ref": problem.ref.label}
        if mode is Mode.EXACT:
            row.update(mean=ex.mean[0], stdev=math.sqrt(ex.var[0]), se=ex.err[0])
        else:
            mean, stdev, se = mc_summary(draws[e.name])
            row.update(mean=mean, stdev=stdev, se=se, z_vs_exact=(mean - ex.mean[0]) / se)
        exact_mode = mode is Mode.EXACT
        floor = 0.0 if exact_mode or ex.spread is None else bernstein_tolerance(ex.var[0], ex.spread[0], samples)
        tol = tolerance(truth, row["se"], None if exact_mode else samples, ex.scale[0], floor)
        row["verdict"] = verdict(row["mean"], truth, tol, exact_mode, ex.scale[0])
        if not exact_mode:
            refuse_mc_verdict(row, ex.var_tail and ex.var_tail[0], ex.m4_tail and ex.m4_tail[0],
                              math.sqrt(ex.var[0]) / math.sqrt(samples))
        row.update(relative(row["mean"], row.pop("stdev"), truth, row, tol if exact_mode else 0.0))
        rows.append(row)
    table = without_signed_zeros(pd.DataFrame(rows))
    return table[[c for c in VALUE_COLUMNS if c in table.columns]]
