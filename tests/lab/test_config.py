"""kl_grad.lab.config: the one Mode type, and each run default declared once and used everywhere."""

from __future__ import annotations

import inspect

import pytest

from kl_grad.errors import KLGradError
from kl_grad.lab import run_gradients, run_values, sweep
from kl_grad.lab.cli import build_parser
from kl_grad.lab.config import GradientExperiment, Mode, ValueExperiment
from kl_grad.lab.sweeps.table import SweepExperiment


def test_mode_of_names_and_modes():
    assert Mode.of("mc") is Mode.MC and Mode.of(Mode.EXACT) is Mode.EXACT
    assert Mode.MC == "mc" and Mode.EXACT == "exact"  # a StrEnum: compares with its name
    with pytest.raises(KLGradError, match="unknown mode 'quad'; expected one of mc, exact"):
        Mode.of("quad")


def test_kinds_are_the_toml_kinds():
    assert [c.kind for c in (GradientExperiment, ValueExperiment, SweepExperiment)] == ["gradients", "values", "sweep"]


def test_shared_defaults_are_declared_once():
    assert ValueExperiment.seed == GradientExperiment.seed
    assert SweepExperiment.samples == GradientExperiment.samples


def _defaults(fn) -> dict:
    return {k: p.default for k, p in inspect.signature(fn).parameters.items() if p.default is not p.empty}


def test_the_python_api_uses_the_declared_defaults():
    g = _defaults(run_gradients)
    assert (g["mode"], g["samples"], g["trials"], g["seed"], g["dtype"]) == (
        GradientExperiment.mode, GradientExperiment.samples, GradientExperiment.trials, GradientExperiment.seed,
        GradientExperiment.dtype)
    v = _defaults(run_values)
    assert (v["mode"], v["samples"], v["seed"]) == (ValueExperiment.mode, ValueExperiment.samples, ValueExperiment.seed)
    assert _defaults(sweep)["samples"] == SweepExperiment.samples


def test_the_command_line_uses_the_declared_defaults():
    t = build_parser("table").parse_args(["table", "--policy", "normal:0,1", "--ref", "normal:1,1"])
    assert (t.mode, t.samples, t.trials, t.seed, t.dtype) == (
        GradientExperiment.mode, GradientExperiment.samples, GradientExperiment.trials, GradientExperiment.seed,
        GradientExperiment.dtype)
    assert t.estimators == ["k1", "k2", "k3"] and t.placements == ["loss"]
    v = build_parser("values").parse_args(["values", "--policy", "normal:0,1", "--ref", "normal:1,1"])
    assert (v.mode, v.samples, v.seed) == (ValueExperiment.mode, ValueExperiment.samples, ValueExperiment.seed)
