"""Vector summaries against numpy norms of independently computed expected gradients (tests/oracles.py)."""

from __future__ import annotations

import numpy as np
import pytest

from kl_grad.lab import run_gradients
from tests import oracles

CATEGORICAL = ("categorical:0,0.5,-1,0.2", "categorical:0.3,-0.2,0.4,0")
NORMAL = ("normal:0.3,0.9", "normal:-0.5,1.1")
CASES = [("k1", "loss"), ("k2", "loss"), ("k3", "loss"), ("k3", "loss-w"), ("k2", "reward")]
EXPECTED_FOLLOWS = {("k1", "loss"): "zero", ("k2", "loss"): "policy||ref", ("k3", "loss"): "ref||policy",
                    ("k3", "loss-w"): "policy||ref", ("k2", "reward"): "none"}  # hand-derived (README table)


@pytest.mark.parametrize("policy,ref", [CATEGORICAL, NORMAL], ids=["categorical", "normal"])
def test_exact_summary_matches_numpy_norms_of_oracle_moments(policy, ref):
    run = run_gradients(policy, ref, ["k1", "k2", "k3"], ["loss", "loss-w", "reward"], mode="exact", samples=100)
    summary = run.summary.set_index(["estimator", "placement"])
    truth = oracles.closed_form_grads(policy, ref)
    t = truth["policy||ref"]
    for est, place in CASES:
        g, var = oracles.gradient_moments(est, place, policy, ref)
        row = summary.loc[(est, place)]
        assert row["follows"] == EXPECTED_FOLLOWS[(est, place)]
        if row["follows"] != "policy||ref":  # exact rows that follow their target print 0 (below their error)
            # oracle quadrature asks scipy for ~1e-11 relative: 1e-8 covers it with room
            assert row["rel_bias_norm"] == pytest.approx(np.linalg.norm(g - t) / np.linalg.norm(t), rel=1e-8)
        else:
            assert row["rel_bias_norm"] == 0
        if np.linalg.norm(g) > 1e-12:
            assert row["cosine"] == pytest.approx(g @ t / np.linalg.norm(g) / np.linalg.norm(t), rel=1e-8)
        else:
            assert np.isnan(row["cosine"])
        stdev = np.sqrt(var / 100)
        assert row["rel_stdev"] == pytest.approx(np.linalg.norm(stdev) / np.linalg.norm(t), rel=1e-7)


def test_mc_summary_follows_and_unknown():
    run = run_gradients(*NORMAL, ["k1", "k2", "k3"], ["loss"], trials=200, samples=2000, seed=3)
    summary = run.summary.set_index(["estimator", "placement"])
    assert summary.loc[("k2", "loss"), "follows"] == "policy||ref"
    assert summary.loc[("k1", "loss"), "follows"] == "zero"
    # k3 as a loss has an infinite 4th moment here (exact tail analysis): its rows get no MC verdict, so the
    # case gets no vector verdict either
    assert (run.table.query("estimator == 'k3'")["verdict"] == "no verdict: heavy tail").all()
    assert summary.loc[("k3", "loss"), "follows"] == "unknown"
    g = run.per_trial[("k2", "loss")].mean(axis=0)
    t = oracles.closed_form_grads(*NORMAL)["policy||ref"]
    assert summary.loc[("k2", "loss"), "rel_bias_norm"] == pytest.approx(np.linalg.norm(g - t) / np.linalg.norm(t),
                                                                         rel=1e-6)
