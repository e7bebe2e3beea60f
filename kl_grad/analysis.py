"""Run gradient cases on a problem and return one tidy table.

True gradients are autograd of the closed-form KL from
``torch.distributions.kl_divergence`` (float64), in both directions. Statistics
follow seed 003: bias_rel = |mean_grad − true_grad| / |true_grad| and
stdev_rel = std over trials (numpy's default, ddof=0) / |true_grad|. ``se`` is
the standard error of mean_grad (ddof=1 std / √trials) in MC mode and the
quadrature error estimate in exact mode, where stdev_rel is the exact stdev
of a ``samples``-sample mean.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch.distributions import kl_divergence

from .directions import POLICY_REF, REF_POLICY, resolve_direction
from .errors import KLGradError, split_names
from .estimators import get_estimator
from .exact import exact_gradient_moments
from .expectation import mc_batches
from .families import DistSpec, as_spec
from .gradients import Case, check_pathwise, row_gradients
from .statistics import matches, relative, stdev_check, verdict
from .surrogates import get_placement

COLUMNS = [
    "estimator", "placement", "direction", "param", "true_grad", "mean_grad", "bias_rel", "stdev_rel", "se",
    "bias_vs_policy||ref", "bias_vs_ref||policy", "follows",
    "trials", "samples", "mode", "verdict", "exact_grad", "z_vs_exact", "z_stdev_vs_exact", "clamped_frac",
    "warning", "policy", "ref", "sampler", "sampling",
]


def true_gradients(policy: DistSpec | str, ref: DistSpec | str) -> dict[str, np.ndarray]:
    """∇_θ KL for both directions at θ0, by autograd of torch's closed form (float64)."""
    policy, ref = as_spec(policy, "policy"), as_spec(ref, "ref")
    out = {}
    for direction in (POLICY_REF, REF_POLICY):
        leaves = policy.leaves((), torch.float64)
        q, p = policy.build_from(leaves), ref.build(torch.float64)
        kl = kl_divergence(q, p) if direction == POLICY_REF else kl_divergence(p, q)
        out[direction] = torch.stack(torch.autograd.grad(kl, list(leaves.values()))).numpy()
    return out


def _exact_note(warning: str) -> str:
    return f"exact counterpart: {warning}" if warning else ""


def _both_directions(mean: float, se: float, truth: dict, j: int, exact: bool) -> tuple[dict, set[str]]:
    """Relative bias against ∇KL in each direction, and the directions the mean gradient follows."""
    out, follows = {}, [d for d, grads in truth.items() if matches(mean, grads[j], se, exact)]
    for direction, grads in truth.items():
        out[f"bias_vs_{direction}"] = abs(mean - grads[j]) / abs(grads[j]) if grads[j] != 0 else math.nan
    out["follows"] = " and ".join(follows) if follows else "neither"
    return out, set(follows)


HIGHER_VARIANCE = 1.2  # an unbiased row whose stdev exceeds 1.2× the best unbiased row's


def _higher_variance(table: pd.DataFrame) -> pd.DataFrame:
    """Mark unbiased rows that are noisier than the best unbiased row for the same direction and parameter.

    Exact rows only ("unbiased" is an exact verdict); MC rows say "no bias detected".
    """
    unbiased = table["verdict"] == "unbiased"
    best = table[unbiased].groupby(["direction", "param"])["stdev_rel"].transform("min")
    noisy = unbiased & (table["stdev_rel"] > HIGHER_VARIANCE * best.reindex(table.index))
    table.loc[noisy, "verdict"] = "unbiased, higher variance"
    return table


def make_cases(estimators: list[str] | str, placements: list[str] | str) -> list[Case]:
    """Validated estimator × placement pairs (errors list the allowed names); "k1,k2" strings also work."""
    estimators, placements = split_names(estimators), split_names(placements)
    if not estimators:
        raise KLGradError("no estimators given; pass at least one, e.g. k1,k2,k3")
    if not placements:
        raise KLGradError("no placements given; pass at least one, e.g. loss")
    cases, spelled = [], {}
    for e in estimators:
        for p in placements:
            case = Case(get_estimator(e), get_placement(p))
            if case.key in spelled:
                first = spelled[case.key]
                alias = f" ({first} and {e} are the same estimator)" if first != e.strip() else ""
                where = f" in placement {case.key[1]}" if len(placements) > 1 else ""
                raise KLGradError(f"{case.key[0]}{where} is given twice{alias}")
            spelled[case.key] = e.strip()
            cases.append(case)
    return cases


@dataclass
class GradientRun:
    """A run's tidy table plus the raw per-trial gradients it summarises.

    ``table``: one row per (estimator, placement, param), the columns of ``COLUMNS``.
    ``per_trial``: {(estimator, placement): (trials, P) float64 array}, column j the gradient
    w.r.t. ``params[j]`` (e.g. ``per_trial[("k3", "loss")][:, 0]`` is every trial's d/dloc);
    empty in exact mode. ``seconds``: wall time of the run.
    """

    table: pd.DataFrame
    per_trial: dict[tuple[str, str], np.ndarray] = field(repr=False)  # (trials, P) per case
    params: tuple[str, ...] = ()
    seconds: float = 0.0


MODES = ("mc", "exact")


def check_compatible(policy: DistSpec, ref: DistSpec, sampler: DistSpec | None = None) -> None:
    """Reference and sampler must be distributions over the same space as the policy."""
    for role, other in (("ref", ref), ("sampler", sampler)):
        if other is not None and (other.family != policy.family or len(other.values) != len(policy.values)):
            raise KLGradError(f"{role} {other.label} does not match policy {policy.label}: "
                              f"expected the same family with {len(policy.values)} parameters")


DTYPES = {"float32": torch.float32, "float64": torch.float64}


def dtype_of(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise KLGradError(f"unknown dtype {name!r}; expected one of {', '.join(DTYPES)}")
    return DTYPES[name]


def check_counts(samples: int, trials: int, mode: str = "mc") -> None:
    """samples >= 1; trials >= 2 in MC mode (exact mode draws no trials and ignores them)."""
    if samples < 1:
        raise KLGradError(f"samples must be a positive integer, got {samples}")
    if mode == "mc" and trials < 2:
        raise KLGradError(f"trials must be an integer >= 2 (a standard deviation needs two), got {trials}")


@dataclass(frozen=True)
class GradientRequest:
    """Validated, normalised arguments of a gradient run (see ``check_gradient_request``)."""

    policy: DistSpec
    ref: DistSpec
    sampler: DistSpec | None
    cases: list[Case]
    direction: str | None
    dtype: torch.dtype


def check_gradient_request(policy, ref, estimators, placements=("loss",), *, mode="mc", samples=50_000,
                           trials=1_000, sampler=None, direction=None, pathwise=False,
                           dtype=torch.float32) -> GradientRequest:
    """Validate every name and number of a gradient run without running it; errors list what is allowed.

    The one place the CLI, ``make reproduce`` and the Python API check their input.
    """
    if mode not in MODES:
        raise KLGradError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    policy, ref = as_spec(policy, "policy"), as_spec(ref, "ref")
    sampler = None if sampler is None else as_spec(sampler, "sampler")
    dtype = dtype_of(dtype) if isinstance(dtype, str) else dtype
    if dtype not in (torch.float32, torch.float64):
        raise KLGradError(f"unsupported dtype {dtype}; expected float32 or float64")
    check_counts(samples, trials, mode)
    check_compatible(policy, ref, sampler)
    if pathwise:
        check_pathwise(policy, sampler)
    cases = make_cases(estimators, placements)
    return GradientRequest(policy, ref, sampler, cases, resolve_direction(direction) if direction else None, dtype)


def _mc_gradients(policy, ref, cases, samples, trials, seed, sampler, dtype, progress, pathwise=False):
    """Per-trial gradients {case: (trials, P)} and, for clamped estimators, {name: fraction of samples clamped}."""
    # Preallocated (trials, P) buffers: keeping many tiny per-chunk tensors alive between the
    # freed MiB-sized sample buffers made glibc's heap grow with the trial count (6 GiB at 10k trials).
    out = {c.key: np.empty((trials, len(policy.params))) for c in cases}
    clamped = {c.estimator.name: c.estimator.clamp_active for c in cases if c.estimator.clamp_active}
    counts = dict.fromkeys(clamped, 0)
    done = 0
    for points in mc_batches(sampler or policy, trials, samples, seed, dtype):
        rows = points.shape[0]
        for key, grads in row_gradients(policy, ref, points, cases, sampler, dtype, pathwise).items():
            out[key][done:done + rows] = grads.double().numpy()
        if clamped:
            with torch.no_grad():
                d = policy.build(dtype).log_prob(points) - ref.build(dtype).log_prob(points)
            for name, active in clamped.items():
                counts[name] += int(active(d).sum())
        done += rows
        if progress:
            progress(done, trials)
    return out, {name: n / (trials * samples) for name, n in counts.items()}


def run_gradients(
    policy: DistSpec,
    ref: DistSpec,
    estimators: list[str],
    placements: list[str] = ("loss",),
    *,
    mode: str = "mc",
    samples: int = 50_000,
    trials: int = 1_000,
    seed: int = 42,
    sampler: DistSpec | None = None,
    direction: str | None = None,
    pathwise: bool = False,
    dtype: torch.dtype = torch.float32,
    progress: Callable[[int, int], None] | None = None,
) -> GradientRun:
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
    """
    req = check_gradient_request(policy, ref, estimators, placements, mode=mode, samples=samples, trials=trials,
                                 sampler=sampler, direction=direction, pathwise=pathwise, dtype=dtype)
    policy, ref, sampler, cases, chosen, dtype = (req.policy, req.ref, req.sampler, req.cases, req.direction,
                                                  req.dtype)
    start = time.perf_counter()
    truth = true_gradients(policy, ref)
    exact = exact_gradient_moments(policy, ref, cases, sampler, pathwise)
    per_trial, clamped = ({}, {}) if mode == "exact" else _mc_gradients(
        policy, ref, cases, samples, trials, seed, sampler, dtype, progress, pathwise)
    rows = []
    for case in cases:
        ex = exact[case.key]
        target = chosen or case.estimator.direction
        for j, param in enumerate(policy.params):
            true = truth[target][j]
            row = {"estimator": case.estimator.name, "placement": case.placement.name, "direction": target,
                   "param": param, "true_grad": true, "samples": samples, "mode": mode, "policy": policy.label,
                   "ref": ref.label, "sampler": sampler.label if sampler else "policy",
                   "sampling": "rsample" if pathwise else "sample",
                   "exact_grad": ex.mean[j], "warning": ex.warnings[j]}
            if mode == "exact":
                row.update(mean_grad=ex.mean[j], stdev=math.sqrt(ex.var[j] / samples), se=ex.err[j], trials=pd.NA)
            else:
                g = per_trial[case.key][:, j]  # (trials,)
                se = g.std(ddof=1) / math.sqrt(trials)
                z_std, note = stdev_check(g.std(), ex.var[j], ex.m4[j], samples, trials, abs(true) or 1.0)
                frac = clamped.get(case.estimator.name)
                clamp_note = f"clamp active on {frac:.2%} of samples: their gradient is zeroed" if frac else ""
                row.update(mean_grad=g.mean(), stdev=g.std(), se=se, trials=trials, z_stdev_vs_exact=z_std,
                           z_vs_exact=(g.mean() - ex.mean[j]) / se if se > 0 else math.nan,
                           clamped_frac=math.nan if frac is None else frac,
                           warning="; ".join(filter(None, [clamp_note, _exact_note(ex.warnings[j]), note])))
            row.update(relative(row["mean_grad"], row.pop("stdev"), true, row))
            columns, follows = _both_directions(row["mean_grad"], row["se"], truth, j, mode == "exact")
            row.update(columns, verdict=verdict(target not in follows, row["mean_grad"], exact=mode == "exact"))
            rows.append(row)
    table = _higher_variance(pd.DataFrame(rows))
    table = table[[c for c in COLUMNS if c in table.columns]]
    table["trials"] = table["trials"].astype("Int64")
    return GradientRun(table, per_trial, policy.params, time.perf_counter() - start)
