"""Declarative experiments: one TOML file per table or figure, and the registry of experiment kinds.

A file is read with ``tomllib`` into the dataclass its ``kind`` names
(``config.py``); unknown keys and wrongly typed values fail loudly with the
allowed keys listed. Each kind says how to check, run and describe its
experiments and which result views it has, so ``reproduce`` never asks an
experiment its type. Example (``experiments/seed003_forward.toml``)::

    kind = "gradients"
    title = "Seed 003: k1, k2, k3 vs ∇KL(policy‖ref)"
    policy = "normal:0,1"
    ref = "normal:1,1.1"
    estimators = ["k1", "k2", "k3"]
    samples = 50000
    trials = 1000
    seed = 42

Adding a kind: a config dataclass in ``config.py``, its views in ``report.VIEWS``,
and one ``Kind`` entry in ``KINDS`` below.
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from ..errors import KLGradError, choose
from . import catalogue_table, coefficients_kind, length_sweep, length_weights
from .audit_experiment import AuditExperiment, check_audit, describe_audit, run_audit
from .config import GradientExperiment, Mode, SweepExperiment, ValueExperiment
from .families import parse_spec
from .figures import sweep_png, violin_png
from .gradient_table import check_gradient_request, run_gradients
from .problem import Problem
from .summary import vector_summary
from .sweep import sweep
from .terms import value_estimators
from .train_kind import TrainExperiment, check_train, describe_train, run_train
from .value_table import check_samples, run_values


@dataclass(frozen=True)
class Kind:
    """An experiment kind: its config class and how to check, run and describe one experiment."""

    config: type
    check: Callable[[object], None]  # validate every name and number without running (milliseconds)
    run: Callable[..., tuple[pd.DataFrame, dict[str, bytes]]]  # (exp, progress) -> (table, {figure: PNG});
    # a run that also takes figures=False skips rendering the PNGs (reproduce --check compares tables only)
    describe: Callable[[object], str]  # one line for results/README.md
    tables: Callable[[object, pd.DataFrame], dict] = lambda exp, table: {}  # (exp, table) -> tables written
    # beside table.*: {file stem: (report.VIEWS kind, DataFrame)}, e.g. {"summary": ("summary", ...)}; derived
    # from the run's table, so reproduce --check recomputes and compares them too


def _gradient_args(exp: GradientExperiment) -> dict:
    return dict(policy=exp.policy, ref=exp.ref, estimators=exp.estimators, placements=exp.placements,
                mode=exp.mode, samples=exp.samples, trials=exp.trials, seed=exp.seed, sampler=exp.sampler or None,
                pathwise=exp.pathwise, dtype=exp.dtype)


def _check_gradients(exp: GradientExperiment) -> None:
    job = check_gradient_request(**_gradient_args(exp))
    if exp.violin and job.budget.mode is not Mode.MC:
        raise KLGradError("violin plots need mode = \"mc\" (exact mode has no trials)")
    if exp.summary and job.budget.mode is not Mode.EXACT:
        raise KLGradError("summary = true needs mode = \"exact\" (reproduce --check has no tolerance rule for "
                          "a Monte-Carlo norm over parameters; `kl-grad table --summary` prints one)")


def _run_gradients(exp: GradientExperiment, progress=None, figures: bool = True):
    run = run_gradients(**_gradient_args(exp), progress=progress)
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


def _check_values(exp: ValueExperiment) -> None:
    Problem(exp.policy, exp.ref)
    value_estimators(exp.estimators)
    check_samples(Mode.of(exp.mode), exp.samples)


def _run_values(exp: ValueExperiment, progress=None):
    return run_values(exp.policy, exp.ref, exp.estimators, mode=exp.mode, samples=exp.samples, seed=exp.seed), {}


def _describe_values(exp: ValueExperiment) -> str:
    n = "" if exp.mode == Mode.EXACT else f" × {exp.samples} samples, seed {exp.seed}"
    return f"q = `{exp.policy}`, p = `{exp.ref}`; {exp.mode}{n}."


def _sweep_args(exp: SweepExperiment, grid: list[float]) -> tuple:
    return (parse_spec(exp.policy, "policy"), parse_spec(exp.ref, "ref"), exp.vary, grid, exp.estimators,
            exp.quantity, exp.samples)


def _check_sweep(exp: SweepExperiment) -> None:
    sweep(*_sweep_args(exp, exp.grid[:1]))  # one exact point: milliseconds, and it checks every name


def _run_sweep(exp: SweepExperiment, progress=None, figures: bool = True):
    table = sweep(*_sweep_args(exp, exp.grid))
    if not figures:
        return table, {}
    xlabel = f"reference {exp.vary} (policy {exp.policy}, reference {exp.ref} otherwise)"
    return table, {"sweep.png": sweep_png(table, exp.title, xlabel)}


def _describe_sweep(exp: SweepExperiment) -> str:
    return f"policy `{exp.policy}`, reference `{exp.ref}` with {exp.vary} ∈ {exp.grid}; exact, {exp.quantity}."


KINDS: dict[str, Kind] = {
    kind.config.kind: kind
    for kind in (
        Kind(GradientExperiment, _check_gradients, _run_gradients, _describe_gradients, _gradient_tables),
        Kind(ValueExperiment, _check_values, _run_values, _describe_values),
        Kind(SweepExperiment, _check_sweep, _run_sweep, _describe_sweep),
        Kind(coefficients_kind.CoefficientExperiment, coefficients_kind.check, coefficients_kind.run,
             coefficients_kind.describe),
        Kind(length_sweep.LengthSweepExperiment, length_sweep.check, length_sweep.run, length_sweep.describe),
        Kind(TrainExperiment, check_train, run_train, describe_train),
        Kind(catalogue_table.CatalogueExperiment, catalogue_table.check, catalogue_table.run,
             catalogue_table.describe),
        Kind(AuditExperiment, check_audit, run_audit, describe_audit),
        Kind(length_weights.LengthWeightsExperiment, length_weights.check, length_weights.run,
             length_weights.describe),
    )
}


def _check_type(name: str, value, annotation, where: str) -> None:
    origin = typing.get_origin(annotation)
    item = typing.get_args(annotation)[0] if origin is list else None
    accepted = (float, int) if item is float else item  # TOML writes 2.0 as 2
    ok = (
        all(isinstance(v, accepted) and not isinstance(v, bool) for v in value)
        if origin is list and isinstance(value, list)
        else isinstance(value, float | int) and not isinstance(value, bool) if annotation is float
        else isinstance(value, int) and not isinstance(value, bool) if annotation is int
        else isinstance(value, annotation) if isinstance(annotation, type)
        else False
    )
    if not ok:
        shown = (f"list of {'numbers' if item is float else 'strings'}" if origin is list
                 else getattr(annotation, "__name__", str(annotation)))
        raise KLGradError(f"{where}: {name} must be a {shown}, got {value!r}")


def parse_experiment(data: dict, where: str):
    """Build the experiment dataclass named by ``data['kind']`` from a TOML table."""
    data = dict(data)
    try:
        cls = choose("experiment kind", data.pop("kind", None), KINDS).config
    except KLGradError as exc:
        raise KLGradError(f"{where}: {exc}") from None
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise KLGradError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: kind, {', '.join(fields)}")
    missing = [n for n, f in fields.items() if n not in data and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise KLGradError(f"{where}: missing key(s) {', '.join(missing)}")
    for name, value in data.items():
        _check_type(name, value, hints[name], where)
    return cls(**data)


def load_experiment(path: Path):
    """Read and validate one experiment file."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise KLGradError(f"{path}: not valid TOML ({exc})") from None
    return parse_experiment(data, str(path))
