"""kl_grad.lab.experiments: strict TOML parsing, the kind registry, and every shipped experiment file runs
at a tiny budget."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from kl_grad.errors import KLGradError
from kl_grad.lab.config import GradientExperiment, ValueExperiment
from kl_grad.lab.experiments import KINDS, load_experiment, parse_experiment
from kl_grad.lab.sweeps.table import SweepExperiment

EXPERIMENTS = sorted((Path(__file__).parents[2] / "experiments").glob("*.toml"))
TINY = {"samples": 64, "trials": 3, "lengths": [1, 3], "steps": 3}  # lengths: length_sweep; steps: train


def test_there_are_experiments():
    assert len(EXPERIMENTS) >= 2


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_shipped_experiment_runs_at_tiny_budget(path):
    exp = load_experiment(path)
    kind = KINDS[exp.kind]
    kind.check(exp)
    tiny = dataclasses.replace(exp, **{k: v for k, v in TINY.items() if hasattr(exp, k)})
    table, figures = kind.run(tiny)
    assert len(table) > 0
    # A number is either present or refused with a reason (e.g. exact mode on clamped estimators).
    if "follows" in table and "mean_grad" not in table:  # audit: a verdict, or an error's reason
        means = table["follows"].where(table["follows"] != "error")
    else:
        means = table[next(c for c in ("mean_grad", "mean", "c", "rel_bias_norm", "kl", "rel_bias_vs_policy||ref")
                           if c in table)]  # kl: train; rel_bias_vs_policy||ref: frameworks
    assert (means.notna() | (table["warning"] != "")).all()
    assert all(png.startswith(b"\x89PNG") for png in figures.values())


GOOD = {"kind": "gradients", "title": "t", "policy": "normal:0,1", "ref": "normal:1,1", "estimators": ["k2"]}


@pytest.mark.parametrize("change, message", [
    ({"trails": 5}, "unknown key(s) trails; allowed: kind, title"),
    ({"kind": "grads"}, "unknown experiment kind 'grads'; expected one of gradients, values, sweep, "),
    ({"samples": "100"}, "samples must be a int"),
    ({"samples": 1.5}, "samples must be a int"),
    ({"estimators": "k1"}, "estimators must be a list of strings"),
    ({"seed": True}, "seed must be a int"),
])
def test_bad_config_is_rejected(change, message):
    with pytest.raises(KLGradError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_experiment({**GOOD, **change}, "x.toml")


def test_missing_key_is_named():
    data = dict(GOOD)
    del data["ref"]
    with pytest.raises(KLGradError, match="missing key.*ref"):
        parse_experiment(data, "x.toml")


@pytest.mark.parametrize("kind", [None, "", ["gradients"]],
                         ids=["missing", "empty", "list"])
def test_a_missing_or_wrong_kind_lists_the_kinds(kind):
    data = {k: v for k, v in GOOD.items() if k != "kind"}
    if kind is not None:
        data["kind"] = kind
    with pytest.raises(KLGradError, match="x.toml: unknown experiment kind .*; expected one of gradients, values, "
                                          "sweep"):
        parse_experiment(data, "x.toml")


def test_a_good_table_becomes_its_dataclass_with_the_declared_defaults():
    exp = parse_experiment(GOOD, "x.toml")
    assert type(exp) is GradientExperiment and exp.estimators == ["k2"]
    assert exp.samples == GradientExperiment.samples and exp.placements == ["loss"] and exp.sampler == ""
    values = parse_experiment({"kind": "values", "title": "v", "policy": "normal:0,1", "ref": "normal:1,1",
                               "estimators": ["k1"]}, "v.toml")
    assert type(values) is ValueExperiment and values.mode == "exact"
    sweep = parse_experiment({"kind": "sweep", "title": "s", "policy": "normal:0,1", "ref": "normal:1,1",
                              "estimators": ["k1"], "vary": "loc", "grid": [1, 2.5]}, "s.toml")
    assert type(sweep) is SweepExperiment and sweep.grid == [1, 2.5]  # TOML writes 2.0 as 2: ints are numbers


def test_invalid_toml_is_one_error(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('kind = "gradients"\ntitle = \n')
    with pytest.raises(KLGradError, match="bad.toml: not valid TOML"):
        load_experiment(path)


def test_every_kind_has_views_and_a_text_view():
    shipped = {"gradients", "values", "sweep", "coefficients", "length_sweep", "train", "frameworks", "audit"}
    assert shipped <= set(KINDS)
    for name, kind in KINDS.items():
        assert kind.config.kind == name and list(kind.views)[0] == "markdown" and callable(kind.echo)
        assert {"csv", "json"} <= set(kind.views)


def test_violin_plots_need_mc_mode():
    exp = parse_experiment({**GOOD, "mode": "exact", "violin": True}, "x.toml")
    with pytest.raises(KLGradError, match="violin plots need mode = \"mc\""):
        KINDS["gradients"].check(exp)


@pytest.mark.parametrize("data, message", [
    ({**GOOD, "estimators": ["k9"]}, "unknown estimator 'k9'"),
    ({**GOOD, "ref": "normal:1,-1"}, "scale must be > 0"),
    ({"kind": "values", "title": "v", "policy": "normal:0,1", "ref": "normal:1,1", "estimators": ["reverse_k2"]},
     "not a KL value estimator"),
    ({"kind": "sweep", "title": "s", "policy": "normal:0,1", "ref": "normal:1,1", "estimators": ["k1"],
      "vary": "width", "grid": [1.0]}, "unknown sweep parameter 'width'; expected one of loc, scale"),
])
def test_check_validates_names_and_numbers_without_running(data, message):
    with pytest.raises(KLGradError, match=message):
        KINDS[data["kind"]].check(parse_experiment(data, "x.toml"))


def test_describe_says_what_ran():
    exp = parse_experiment({**GOOD, "sampler": "normal:0.3,1.2"}, "x.toml")
    assert KINDS["gradients"].describe(exp) == ("policy `normal:0,1`, ref `normal:1,1`, samples from normal:0.3,1.2; "
                                                "1000 trials × 50000 samples, seed 42, float32.")
