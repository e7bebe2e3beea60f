"""kl_grad.lab.report: every format of every kind of result renders, reproducibly, and the machine formats
round-trip (CSV through pandas, JSON through json, with inf as "inf" and NaN as null)."""

from __future__ import annotations

import json
import math
import re
from io import StringIO

import numpy as np
import pandas as pd
import pytest

from kl_grad.errors import KLGradError
from kl_grad.estimators import ESTIMATORS
from kl_grad.lab import run_gradients, run_values, sweep
from kl_grad.lab.catalogue.table import CatalogueExperiment
from kl_grad.lab.catalogue.table import run as run_catalogue
from kl_grad.lab.coefficients.table import coefficient_table
from kl_grad.lab.experiments import KINDS
from kl_grad.lab.length_sweep.table import LengthSweepExperiment, length_sweep
from kl_grad.lab.report import FLOAT_FORMAT, github, render
from kl_grad.lab.table.cli import estimators_table
from kl_grad.lab.train.dynamics import run_training
from tests.problems import SCHULMAN_FAR, SEED003


def _with_specials(table: pd.DataFrame, column: str) -> pd.DataFrame:
    """A copy with inf, −inf and NaN in a float column, as heavy tails and refusals put there."""
    table = table.copy()
    table[column] = table[column].astype(float)
    table.loc[table.index[0], column] = math.inf
    table.loc[table.index[1], column] = -math.inf
    table.loc[table.index[2], column] = math.nan
    return table


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    policy, ref = SEED003.policy, SEED003.ref
    run = run_gradients(policy, ref, ["k1", "k3"], ["loss", "loss-w"], mode="exact")
    grads = run.table
    return {
        "summary": _with_specials(run.summary, "rel_stdev"),
        "gradients": _with_specials(grads, "stdev_rel"),
        "gradients-mc": run_gradients(policy, ref, ["k2", "k3"], samples=50, trials=4, seed=1).table,
        "values": _with_specials(run_values(SCHULMAN_FAR.policy, SCHULMAN_FAR.ref, ["k1", "k2", "k3"]), "stdev_rel"),
        "sweep": _with_specials(sweep(policy, ref, "loc", [0.5, 1.0], ["k2"]), "bias_rel"),
        "estimators": estimators_table(),
        "coefficients": _with_specials(coefficient_table("-2:2:0.5", ["k1", "k3"], ["loss", "reward"]), "c"),
        "length_sweep": _with_specials(length_sweep(LengthSweepExperiment(
            "t", "0,1", "0.5,0/0,-0.5", "0,0", "0,0/0,0", [1, 2], ["k1"], ["loss", "reward"])), "rel_stdev"),
        "train": _with_specials(run_training("categorical:0,0", "categorical:0.5,0", "1,0", 1.0, ["k1", "k2", "k3"],
                                             "loss", steps=3).table, "kl"),
        "frameworks": _with_specials(run_catalogue(CatalogueExperiment(
            "t", terms=["verl:kl", "trl:k3"], problems=["tokens-on", "tokens-off"]))[0], "err_norm"),
        "audit": _with_specials(_audit_table(), "stdev_ratio"),
        "length_weights": _with_specials(_length_weights_table(), "cosine"),
        "group_reward": _with_specials(_group_reward_table(), "norm_ratio"),
    }


def _group_reward_table() -> pd.DataFrame:
    from kl_grad.lab.aggregations.group_table import GroupRewardExperiment, group_table

    return group_table(GroupRewardExperiment("t", "markov:2:0,1:0,0/0,0", "markov:2:0.5,0:0,0/0,0", ["k1"],
                                             groups=[2], rewards=["sum:1,0"]))


def _length_weights_table() -> pd.DataFrame:
    from kl_grad.lab.aggregations.table import weighted_table

    return weighted_table("markov-eos:3:0,1:0,0/0,0", "markov-eos:3:0.5,0:0,0/0,0", ["k1"], ["loss", "reward"], [1])


def _audit_table() -> pd.DataFrame:
    """The audit kind's table (audit_experiment.py): one audited function and one refused."""
    from pathlib import Path

    from kl_grad.lab.auditing.kind import AuditExperiment, run_audit

    examples = Path(__file__).parents[2] / "examples" / "trainer_kl_terms.py"
    return run_audit(AuditExperiment("t", str(examples), ["k2_loss", "k2_detached"]))[0]


# every kind's views (the Kind records), the gradient kind's derived summary, and the estimator listing
VIEWS = {**{k: KINDS[k].views for k in KINDS}, "summary": KINDS["gradients"].table_views["summary"],
         "estimators": {"markdown": github}}
TEXT_VIEWS = {k: KINDS[k].echo for k in KINDS}
FORMATS = [(kind, fmt) for kind, views in VIEWS.items() for fmt in views]


@pytest.mark.parametrize("kind, fmt", FORMATS)
def test_every_format_of_every_kind_renders_reproducibly(tables, kind, fmt):
    text = VIEWS[kind][fmt](tables[kind])
    assert isinstance(text, str) and text.strip() and text.endswith("\n")
    assert VIEWS[kind][fmt](tables[kind]) == text  # a pure function of the table
    if kind in KINDS or kind == "summary":
        assert render(tables[kind], fmt, kind) == text  # render finds the kind's own views
    if kind == "gradients":
        assert render(tables["gradients-mc"], fmt, kind).strip()


@pytest.mark.parametrize("kind", [k for k, views in VIEWS.items() if "csv" in views])
def test_csv_round_trips_through_pandas(tables, kind):
    table = tables[kind]
    back = pd.read_csv(StringIO(VIEWS[kind]["csv"](table)))
    assert list(back.columns) == list(table.columns) and len(back) == len(table)
    for col in table.columns:
        if pd.api.types.is_float_dtype(table[col]):
            # written with 10 significant digits (FLOAT_FORMAT); inf, −inf and NaN survive
            np.testing.assert_allclose(back[col].to_numpy(float), table[col].to_numpy(float), rtol=1e-9, atol=0,
                                       err_msg=col)
        elif table[col].map(lambda v: isinstance(v, list)).any():  # vectors (train probs): 10 digits each
            for written, vector in zip(back[col], table[col]):
                np.testing.assert_allclose(json.loads(written), vector, rtol=1e-9, atol=0, err_msg=col)
        elif table[col].dtype == object or pd.api.types.is_string_dtype(table[col]):
            def text(values):
                return ["" if pd.isna(v) else str(v) for v in values]

            assert text(back[col]) == text(table[col]), col


@pytest.mark.parametrize("kind", [k for k, views in VIEWS.items() if "json" in views])
def test_json_round_trips_with_inf_as_a_string_and_nan_as_null(tables, kind):
    table = tables[kind]
    records = json.loads(VIEWS[kind]["json"](table))  # strict JSON: no Infinity or NaN literals
    assert len(records) == len(table) and all(list(r) == list(table.columns) for r in records)
    special = {"values": "stdev_rel", "gradients": "stdev_rel", "sweep": "bias_rel", "summary": "rel_stdev",
               "coefficients": "c",
               "length_sweep": "rel_stdev",
               "train": "kl",
               "frameworks": "err_norm",
               "audit": "stdev_ratio",
               "length_weights": "cosine",
               "group_reward": "norm_ratio"}[kind]
    assert [r[special] for r in records[:3]] == ["inf", "-inf", None]
    for record, (_, row) in zip(records, table.iterrows()):
        for col, value in record.items():
            want = row[col]
            if isinstance(value, float):
                assert value == pytest.approx(float(want), rel=1e-9), col  # 10 significant digits
            elif value is None:
                assert pd.isna(want), col
            elif isinstance(value, list):  # a vector (train probs): 10 significant digits each
                np.testing.assert_allclose(value, want, rtol=1e-9, atol=0, err_msg=col)
            elif not isinstance(value, str) or col != special:
                assert value == want, col


def test_json_writes_floats_with_ten_significant_digits():
    table = pd.DataFrame({"x": [1 / 3, 2.0e-20, np.float64(7.0)], "n": [1, 2, 3]})
    records = json.loads(render(table, "json", "values"))
    assert [r["x"] for r in records] == [float(FLOAT_FORMAT % (1 / 3)), 2e-20, 7.0] and FLOAT_FORMAT == "%.10g"
    assert [r["n"] for r in records] == [1, 2, 3]  # numpy integers come out as JSON integers


def test_markdown_shows_the_display_columns_only(tables):
    header = render(tables["gradients"], "markdown", "gradients").splitlines()[0]
    cells = [c.strip() for c in header.strip("|").split("|")]
    assert cells[:9] == ["estimator", "placement", "direction", "param", "true_grad", "mean_grad", "bias_rel",
                         "stdev_rel", "se"]
    assert "verdict" in cells and "warning" in cells and "policy" not in cells and "sampler" not in cells


def test_grid_has_one_block_per_direction_placement_and_parameter(tables):
    text = render(tables["gradients"], "grid", "gradients")
    titles = re.findall(r"^Average gradient \((.*)\):$", text, flags=re.M)
    assert titles == [f"∇KL(policy‖ref) w.r.t. {param}, placement '{placement}', exact, n = 50000"
                      for placement in ("loss", "loss-w") for param in ("loc", "scale")]
    assert "  true gradient: -0.826446" in text and "╒" in text and "bias/true" in text
    mc = render(tables["gradients-mc"], "grid", "gradients")
    assert "MC, 4 trials × 50 samples" in mc


def test_grid_prints_every_warning_beside_its_numbers(tables):
    table = tables["gradients"].copy()
    table["warning"] = ""
    table.loc[table.index[1], "warning"] = "something to read"
    row = table.loc[table.index[1]]
    assert f"  warning, {row['estimator']}: something to read" in render(table, "grid", "gradients")


@pytest.mark.parametrize("kind, allowed", [("gradients", "markdown, grid, csv, json"),
                                           ("values", "markdown, csv, json"), ("sweep", "markdown, csv, json"),
                                           ("summary", "markdown, csv, json")])
def test_an_unknown_format_lists_the_allowed_ones(tables, kind, allowed):
    with pytest.raises(KLGradError, match=re.escape(f"unknown format 'xml'; expected one of {allowed}")):
        render(tables[kind], "xml", kind)


def test_an_unknown_kind_lists_the_kinds(tables):
    with pytest.raises(KLGradError, match="unknown result kind 'plots'; expected one of gradients, values, sweep, "):
        render(tables["values"], "markdown", "plots")


def test_text_views_exist_for_every_kind_that_reproduce_echoes(tables):
    for kind, view in TEXT_VIEWS.items():
        assert view(tables[kind]).strip()


def test_estimators_table_lists_the_registry():
    table = estimators_table()
    assert table["name"].tolist() == list(ESTIMATORS)
    assert table.set_index("name").loc["k3_clamped", "aliases"] == "verl:low_var_kl"
    assert table.set_index("name").loc["reverse_k2", "targets"] == "ref||policy"
    assert set(table["unbiased value"]) == {"yes", "no"}
