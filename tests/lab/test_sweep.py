"""kl_grad.lab.sweeps.table: exact tables, one block per grid value of one reference parameter."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from kl_grad.errors import KLGradError
from kl_grad.lab import run_values, sweep, true_gradients
from kl_grad.lab.families import parse_spec
from kl_grad.lab.sweeps.table import SweepExperiment
from tests import oracles
from tests.problems import SEED003, TOKENS3


def test_sweep_moves_the_reference_to_each_grid_value():
    # Each block must be the table at its own reference: its true gradients are autograd of the closed form
    # there, and k2 (unbiased for ∇KL(policy‖ref)) must equal them.
    policy = parse_spec(SEED003.policy)
    table = sweep(policy, parse_spec(SEED003.ref), "loc", [0.5, 2.0], ["k2"])
    for x, block in table.groupby("x"):
        truth = true_gradients(policy, parse_spec(f"normal:{x},1.1"))["policy||ref"]
        assert block["true_grad"].tolist() == pytest.approx(truth.tolist(), rel=1e-12)
        assert block["mean_grad"].tolist() == pytest.approx(truth.tolist(), rel=1e-12)  # measured ≤ 6e-15
        hand = oracles.closed_form_grads(SEED003.policy, f"normal:{x},1.1")["policy||ref"]
        assert block["true_grad"].tolist() == pytest.approx(hand.tolist(), rel=1e-12)
    assert (table["vary"] == "loc").all() and table["x"].tolist() == [0.5, 0.5, 2.0, 2.0]


def test_a_values_sweep_is_the_value_tables_stacked():
    grid = [0.5, 1.5]
    table = sweep(SEED003.policy, "normal:0,1", "loc", grid, ["k1", "k2", "k3"], quantity="values")
    for x in grid:
        block = table[table["x"] == x].drop(columns=["vary", "x"]).reset_index(drop=True)
        want = run_values(SEED003.policy, f"normal:{x},1", ["k1", "k2", "k3"], samples=SweepExperiment.samples)
        pd.testing.assert_frame_equal(block, want)
        assert block.set_index("estimator").loc["k1", "true_kl"] == pytest.approx(x * x / 2, rel=1e-12)


def test_any_parameter_of_the_reference_can_move():
    table = sweep(TOKENS3.policy, TOKENS3.ref, "logits[1]", [0.5], ["k2"])
    truth = oracles.closed_form_grads(TOKENS3.policy, "categorical:1,0.5,0")["policy||ref"]
    assert table["param"].tolist() == ["logits[0]", "logits[1]", "logits[2]"]
    assert table["true_grad"].tolist() == pytest.approx(truth.tolist(), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("vary, grid, quantity, message", [
    ("loc", [], "gradients", "sweep grid is empty; give at least one value"),
    ("width", [1.0], "gradients", "unknown sweep parameter 'width'; expected one of loc, scale"),
    ("scale", [-1.0], "gradients", "invalid sweep point scale=-1: scale must be > 0 and finite, got -1"),
    ("loc", [1.0], "stdevs", "unknown sweep quantity 'stdevs'; expected one of gradients, values"),
])
def test_bad_sweeps_are_refused_before_any_work(vary, grid, quantity, message):
    with pytest.raises(KLGradError, match=re.escape(message)):
        sweep(SEED003.policy, SEED003.ref, vary, grid, ["k2"], quantity=quantity)
