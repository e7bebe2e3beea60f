"""The ``gradients`` experiment kind: a gradient table (``gradient_table.run_gradients``), its violin figure and,
with ``summary = true``, the vector summary written beside it."""

from __future__ import annotations

import pandas as pd

from ...errors import KLGradError
from ..config import GradientExperiment, Mode
from ..experiments import Kind
from ..figures import violin_png
from ..gradient_table import check_gradient_request, run_gradients
from ..problem import Problem
from ..summary import vector_summary
from .views import GRADIENT_VIEWS, SUMMARY_VIEWS, to_grid


def gradient_args(exp: GradientExperiment) -> dict:
    return dict(policy=exp.policy, ref=exp.ref, estimators=exp.estimators, placements=exp.placements,
                mode=exp.mode, samples=exp.samples, trials=exp.trials, seed=exp.seed, sampler=exp.sampler or None,
                pathwise=exp.pathwise, dtype=exp.dtype, temperature=exp.temperature, top_k=exp.top_k,
                top_p=exp.top_p, old_logp=exp.old_logp)


def _check_gradients(exp: GradientExperiment) -> None:
    job = check_gradient_request(**gradient_args(exp))
    if exp.violin and job.budget.mode is not Mode.MC:
        raise KLGradError("violin plots need mode = \"mc\" (exact mode has no trials)")
    if exp.summary and job.budget.mode is not Mode.EXACT:
        raise KLGradError("summary = true needs mode = \"exact\" (reproduce --check has no tolerance rule for "
                          "a Monte-Carlo norm over parameters; `kl-grad table --summary` prints one)")


def _run_gradients(exp: GradientExperiment, progress=None, figures: bool = True):
    run = run_gradients(**gradient_args(exp), progress=progress)
    if not exp.violin or not figures:
        return run.table, {}
    truths = Problem(exp.policy, exp.ref).true_gradients()
    return run.table, {"violin.png": violin_png(run.per_trial, run.table, run.params, exp.title, truths)}


def _gradient_tables(exp: GradientExperiment, table: pd.DataFrame) -> dict:
    """summary = true: the vector summary (one row per estimator × placement over all parameters)."""
    if not exp.summary:
        return {}
    return {"summary": ("summary", vector_summary(table, Problem(exp.policy, exp.ref).true_gradients()))}


def _describe_gradients(exp: GradientExperiment) -> str:
    sampler = exp.sampler or "the policy (on-policy)"
    budget = (f"{exp.trials} trials × {exp.samples} samples, seed {exp.seed}, {exp.dtype}" if exp.mode == Mode.MC
              else f"exact, stdev of a {exp.samples}-sample mean")
    return f"policy `{exp.policy}`, ref `{exp.ref}`, samples from {sampler}; {budget}."


KIND = Kind(GradientExperiment, _check_gradients, _run_gradients, _describe_gradients, GRADIENT_VIEWS, text=to_grid,
            tables=_gradient_tables, table_views={"summary": SUMMARY_VIEWS})
