"""The gradient-table runner: problem × KL terms → expected autograd gradients → one tidy table.

Stages: ``Problem`` (what is measured) and ``Case`` s (which surrogates) → weighted
points (``montecarlo`` or ``quadrature``) → per-row autograd gradients
(``gradients``) → statistics (``statistics``) → a pandas DataFrame, one row per
(estimator, placement, param). True gradients: ``Problem.true_gradients``. Columns follow Schulman-style
reference tables: bias_rel = |mean_grad − true_grad| / |true_grad| and stdev_rel
= std over trials (ddof=0) / |true_grad|. ``se`` is the standard error of
mean_grad (ddof=1 std / √trials) in MC mode and the mean's numerical error bound in
exact mode, where stdev_rel is the exact stdev of a ``samples``-sample mean.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
import torch

from ..directions import resolve_direction
from ..errors import KLGradError
from .config import DEFAULT_PLACEMENTS, GradientExperiment, Mode
from .families import DistSpec
from .gradients import row_gradients
from .kinks import refuse_kinked
from .memory import check_mc_memory, check_trials_memory, exact_too_big
from .montecarlo import CHUNK_ELEMENTS, check_seed, mc_points
from .problem import Problem
from .quadrature import Moments, exact_moments
from .statistics import (
    bernstein_tolerance,
    judge_row,
    mark_higher_variance,
    mc_summary,
    refuse_mc_verdict,
    stdev_check,
    without_signed_zeros,
)
from .terms import Case, make_cases
from .threads import by_work

COLUMNS = [
    "estimator", "placement", "direction", "param", "true_grad", "mean_grad", "bias_rel", "stdev_rel", "se",
    "stdev", "bias_vs_policy||ref", "bias_vs_ref||policy", "follows",
    "trials", "samples", "mode", "verdict", "exact_grad", "z_vs_exact", "z_stdev_vs_exact", "clamped_frac",
    "warning", "policy", "ref", "sampler", "sampling",
]
_DEFAULTS = GradientExperiment  # the one source of run defaults
MC_ROUNDING = 64  # ulps of the run's dtype (× E|g|) an MC mean may be off by rounding alone (the full KL's se is 0)


@dataclass(frozen=True)
class Budget:
    """How the expectation is formed: ``mode``, ``samples`` per trial (exact: n of the stdev of an
    n-sample mean), ``trials`` and ``seed`` (MC only). Validated on construction."""

    mode: Mode
    samples: int
    trials: int
    seed: int

    def __post_init__(self):
        object.__setattr__(self, "mode", Mode.of(self.mode))
        if self.samples < 1:
            raise KLGradError(f"samples must be a positive integer, got {self.samples}")
        if self.mode is Mode.MC and self.trials < 2:
            raise KLGradError(f"trials must be an integer >= 2 (a standard deviation needs two), got {self.trials}")
        if self.mode is Mode.MC:
            check_seed(self.seed)


@dataclass(frozen=True)
class GradientJob:
    """A validated gradient run: what to measure, with which terms, on which budget, against which KL
    (``direction`` None: each estimator's own target)."""

    problem: Problem
    cases: list[Case]
    budget: Budget
    direction: str | None = None


def check_gradient_request(policy, ref, estimators, placements=DEFAULT_PLACEMENTS, *, mode=_DEFAULTS.mode,
                           samples=_DEFAULTS.samples, trials=_DEFAULTS.trials, seed=_DEFAULTS.seed, sampler=None,
                           direction=None, pathwise=False, dtype=_DEFAULTS.dtype, **engine) -> GradientJob:
    """Validate every name and number of a gradient run without running it; errors list what is allowed.
    ``engine``: temperature, top_k, top_p, old_logp (``Problem.with_engine``).

    The one place the CLI, ``make reproduce`` and the Python API check their input.
    """
    budget = Budget(mode, samples, trials, seed)
    problem = Problem(policy, ref, sampler, dtype, pathwise).with_engine(**engine)
    cases = make_cases(estimators, placements, sequence=problem.policy.fam.sequential)
    for case in cases:  # e.g. markov-eos refuses trl-seq (a mean over all columns is wrong with padding)
        if getattr(case, "full", False) and not problem.policy.fam.logit_groups(problem.policy.values):
            raise KLGradError(f"{case.estimator.name} is the KL of whole next-token distributions: it needs a token "
                              f"family (categorical, markov, markov-eos), not {problem.policy.family}")
        if case.placement.name in getattr(problem.policy.fam, "refused_placements", {}):
            raise KLGradError(f"placement {case.placement.name} is refused for {problem.policy.fam.name}: "
                              f"{problem.policy.fam.refused_placements[case.placement.name]}")
        k0 = float(case.estimator.of_log_ratio(torch.zeros(1, dtype=torch.float64)))
        if getattr(problem.policy.fam, "padded", False) and k0 != 0:
            # padding has d = 0, neutral only where k(0) = 0: a reward-to-go would carry k(0) per pad token
            raise KLGradError(f"{case.estimator.name} is refused for {problem.policy.fam.name}: k(0) ≠ 0, so the "
                              "padding beyond the end would enter its sums; use an estimator with k(0) = 0")
    direction = None if direction is None else resolve_direction(direction)
    if budget.mode is Mode.MC:
        check_mc_memory(problem, samples)
        check_trials_memory(trials, len(cases), len(problem.param_names))
    elif exact_too_big(problem, len(cases)):
        raise KLGradError(exact_too_big(problem, len(cases)) + " (--mode mc samples instead)")
    return GradientJob(problem, cases, budget, direction)


@dataclass
class GradientRun:
    """A run's tidy table plus the raw per-trial gradients it summarises.

    ``table``: one row per (estimator, placement, param), the columns of ``COLUMNS``.
    ``per_trial``: {(estimator, placement): (trials, P) float64 array}, column j the gradient
    w.r.t. ``params[j]`` (e.g. ``per_trial[("k3", "loss")][:, 0]`` is every trial's d/dloc);
    empty in exact mode. ``seconds``: wall time of the run. ``truth``: {direction: (P,) ∇θ KL at θ0};
    ``summary``: the vector summary, one row per case (norms and cosines over all parameters).
    """

    table: pd.DataFrame
    per_trial: dict[tuple[str, str], np.ndarray] = field(repr=False)  # (trials, P) per case
    params: tuple[str, ...] = ()
    seconds: float = 0.0
    truth: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # {direction: (P,) ∇KL}

    @property
    def summary(self) -> pd.DataFrame:
        """One row per (estimator, placement) over all parameters (``summary.vector_summary``)."""
        from .summary import vector_summary

        return vector_summary(self.table, self.truth)


def run_gradients(policy: DistSpec | str, ref: DistSpec | str, estimators: list[str] | str,
                  placements: list[str] | str = DEFAULT_PLACEMENTS, *, mode: str = _DEFAULTS.mode,
                  samples: int = _DEFAULTS.samples, trials: int = _DEFAULTS.trials, seed: int = _DEFAULTS.seed,
                  sampler: DistSpec | str | None = None, direction: str | None = None, pathwise: bool = False,
                  dtype: torch.dtype | str = _DEFAULTS.dtype, progress: Callable[[int, int], None] | None = None,
                  **engine) -> GradientRun:
    """Gradient table, one row per (estimator, placement, param).

    ``mode="mc"``: ``trials`` trials of ``samples`` samples drawn from ``sampler``
    (default: the policy, on-policy) without reparameterisation; each trial's
    gradient is autograd of its mean surrogate. ``mode="exact"``: the same
    autograd gradients at quadrature nodes give E[grad] and the stdev of an
    ``samples``-sample mean with no sampling noise. MC rows also carry the exact
    counterpart's z-score (``z_vs_exact``) and its tail warnings.
    ``direction`` (``policy||ref``, ``ref||policy`` or the aliases ``reverse``/``forward``)
    compares every row with that KL's gradient; by default each estimator's own target.
    ``pathwise=True`` differentiates through reparameterised samples (``rsample``), the
    contrast to the score-function placements; column ``sampling`` says which.
    ``progress(done, total)`` is called after each chunk of MC trials. ``engine``: ``temperature``,
    ``top_k``, ``top_p``, ``old_logp``: samples drawn as an inference engine draws them (``Problem.with_engine``).

    Returns a ``GradientRun``: ``.table`` (the tidy DataFrame ``kl-grad table`` prints, columns
    ``COLUMNS``), ``.per_trial`` ({(estimator, placement): (trials, P) array}; empty in exact mode),
    ``.params`` (parameter names) and ``.seconds``.
    """
    job = check_gradient_request(policy, ref, estimators, placements, mode=mode, samples=samples, trials=trials,
                                 seed=seed, sampler=sampler, direction=direction, pathwise=pathwise, dtype=dtype,
                                 **engine)
    return gradient_table(job, progress)


def true_gradients(policy: DistSpec | str, ref: DistSpec | str) -> dict[str, np.ndarray]:
    """∇_θ KL for both directions at θ0, by autograd of torch's closed form (float64)."""
    return Problem(policy, ref).true_gradients()


def exact_gradient_moments(problem: Problem, cases: list[Case]) -> dict[tuple[str, str], Moments]:
    """Exact E_m[g] and moments of each case's per-sample autograd gradient g (float64).

    A support too large to enumerate gives NaN moments with the reason (MC rows then lack their exact
    reference; exact-mode requests are refused before this by ``check_gradient_request``).
    """
    too_big = exact_too_big(problem, len(cases))
    if too_big:
        nan = np.full(len(problem.param_names), math.nan)
        return {c.key: Moments(nan, nan, nan, nan, 0, [f"not computed: {too_big}"] * len(nan)) for c in cases}
    problem64, shift = problem.in_float64().centred()
    anchors = (problem64.policy, problem64.ref) if problem64.sampler else (problem64.ref,)
    moments = exact_moments(lambda x: _chunked(lambda part: row_gradients(problem64, part, cases), x, problem),
                            problem64.sampling, anchors, shift)
    return refuse_kinked(moments, {c.key: c.estimator for c in cases}, problem.sampling)


EXACT_CHUNK_TOKENS = 1 << 17  # sequence families: tokens per chunk of an enumeration (bounded graph memory)


def _chunked(evaluate, x: torch.Tensor, problem: Problem) -> dict:
    """``evaluate`` over row chunks of x, concatenated (sequence families; others in one call)."""
    size = problem.sampling.fam.point_size(problem.sampling)
    step = max(1, EXACT_CHUNK_TOKENS // size)
    if size == 1 or x.shape[0] <= step:
        return evaluate(x)
    parts = [evaluate(x[i:i + step]) for i in range(0, x.shape[0], step)]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def mc_gradients(problem: Problem, cases: list[Case], budget: Budget, progress=None):
    """Per-trial gradients {case: (trials, P)} and, for clamped estimators, {name: fraction of samples clamped}."""
    # Preallocated (trials, P) buffers: keeping many tiny per-chunk tensors alive between the
    # freed MiB-sized sample buffers made glibc's heap grow with the trial count (6 GiB at 10k trials).
    trials, samples = budget.trials, budget.samples
    out = {c.key: np.empty((trials, len(problem.param_names))) for c in cases}
    clamped = {c.estimator.name: c.estimator.clamp_active for c in cases if c.estimator.clamp_active}
    counts = dict.fromkeys(clamped, 0)
    done = 0
    per_point = problem.sampling.fam.point_size(problem.sampling)  # tokens per sequence (1: single points)
    chunk = {} if per_point == 1 else {"chunk_elements": CHUNK_ELEMENTS // per_point}
    for points in mc_points(problem.sampling, trials, samples, budget.seed, problem.dtype, **chunk):
        for key, grads in row_gradients(problem, points.x, cases).items():
            out[key][done:done + points.rows] = grads.double().numpy()
        if clamped:
            with torch.no_grad():
                d = (problem.policy.build(problem.dtype).log_prob(points.x)
                     - problem.ref.build(problem.dtype).log_prob(points.x))
            for name, active in clamped.items():
                counts[name] += int(active(d).sum())
        done += points.rows
        if progress:
            progress(done, trials)
    return out, {name: n / (trials * samples * per_point) for name, n in counts.items()}


@by_work(lambda job, progress=None: 0 if job.budget.mode is Mode.EXACT  # exact: small tensors whatever the support
         else min(job.budget.samples * job.budget.trials, max(job.budget.samples, CHUNK_ELEMENTS)))  # one MC chunk
def gradient_table(job: GradientJob, progress: Callable[[int, int], None] | None = None) -> GradientRun:
    """Run a validated job: exact moments always (they are the MC rows' reference), MC trials in MC mode."""
    problem, budget = job.problem, job.budget
    start = time.perf_counter()
    truth, engine = problem.true_gradients(), problem.engine_note()
    exact = exact_gradient_moments(problem, job.cases)
    per_trial, clamped = ({}, {}) if budget.mode is Mode.EXACT else mc_gradients(problem, job.cases, budget, progress)
    rows = []
    for case in job.cases:
        target = job.direction or case.estimator.direction
        for j, param in enumerate(problem.param_names):
            ex = exact[case.key]
            row = {"estimator": case.estimator.name, "placement": case.placement.name, "direction": target,
                   "param": param, "true_grad": truth[target][j], "samples": budget.samples,
                   "mode": budget.mode.value, "policy": problem.policy.label, "ref": problem.ref.label,
                   "sampler": problem.sampler_label, "sampling": "rsample" if problem.pathwise else "sample",
                   "exact_grad": ex.mean[j], "warning": ex.warnings[j]}
            if budget.mode is Mode.EXACT:
                _exact_columns(row, ex, j, budget)
            else:
                _mc_columns(row, per_trial[case.key][:, j], ex, j, budget)
                _clamp_columns(row, clamped.get(case.estimator.name))
            mc, spread = budget.mode is Mode.MC, None if ex.spread is None else ex.spread[j]
            scale = 0.0 if ex.scale is None else ex.scale[j]
            judge_row(row, truth, j, budget.trials if mc else None, scale, max(  # and the dtype's rounding:
                bernstein_tolerance(ex.var[j], spread, budget.samples * budget.trials),  # a zero-variance
                MC_ROUNDING * float(torch.finfo(problem.dtype).eps) * (scale + abs(row["true_grad"]))) if mc else 0.0)
            if mc:
                refuse_mc_verdict(row, ex.var_tail and ex.var_tail[j], ex.m4_tail and ex.m4_tail[j],
                                  math.sqrt(ex.var[j]) / math.sqrt(budget.samples * budget.trials))
            rows.append({**row, "warning": "; ".join(filter(None, [row["warning"], engine]))})
    table = without_signed_zeros(mark_higher_variance(pd.DataFrame(rows)))
    table = table[[c for c in COLUMNS if c in table.columns]]
    table["trials"] = table["trials"].astype("Int64")
    return GradientRun(table, per_trial, problem.param_names, time.perf_counter() - start, truth)


def _exact_columns(row: dict, ex: Moments, j: int, budget: Budget) -> None:
    row.update(mean_grad=ex.mean[j], stdev=math.sqrt(ex.var[j]) / math.sqrt(budget.samples), se=ex.err[j], trials=pd.NA)


def _mc_columns(row: dict, g: np.ndarray, ex: Moments, j: int, budget: Budget) -> None:
    """MC mean, stdev and se of the per-trial gradients g (trials,), and how they compare with exact."""
    bad = int((~np.isfinite(g)).sum())
    with np.errstate(invalid="ignore", over="ignore"):
        mean, stdev, se = mc_summary(g)
        z_std, note = stdev_check(stdev, ex.var[j], ex.m4[j], budget.samples, budget.trials,
                                  abs(row["true_grad"]) or 1.0)
    overflow = (f"{bad} of {budget.trials} trial gradients are not finite (an overflow, which dtype float64 may "
                "reach past, or a NaN such as 0·inf)") if bad else ""  # no "; ": warnings are joined with it
    exact_note = f"exact counterpart: {ex.warnings[j]}" if ex.warnings[j] else ""
    row.update(mean_grad=mean, stdev=stdev, se=se, trials=budget.trials, z_stdev_vs_exact=z_std,
               z_vs_exact=(mean - ex.mean[j]) / se if se > 0 else math.nan,
               warning="; ".join(filter(None, [overflow, exact_note, note])))


def _clamp_columns(row: dict, frac: float | None) -> None:
    """clamped_frac (NaN for unclamped estimators), and a warning first when a clamp zeroed gradients."""
    row["clamped_frac"] = math.nan if frac is None else frac
    if frac:
        row["warning"] = "; ".join(filter(None, [f"clamp active on {frac:.2%} of samples: their gradient is zeroed",
                                                 row["warning"]]))
