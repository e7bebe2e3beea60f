"""The length_sweep experiment kind and ``kl-grad table --summary`` on sequences.

Oracle for the TRL sequence ratio (hand-derived): on-policy, ρ = exp(mean_t log w_t) has value 1 and
gradient (1/L)·Σ_τ s_τ, so E[∇(ρ·Σ_t k1_t)] = (1/L)·E[Σ_τ s_τ Σ_t d_t] + E[Σ_t s_t]. Terms with t < τ vanish
(E[s_τ | y_<τ] = 0) and E[s_t] = 0, so the mean is (1/L)·∇KL: relative bias norm exactly 1 − 1/L.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from kl_grad.errors import KLGradError
from kl_grad.lab.cli import main
from kl_grad.lab.experiments import KINDS, parse_experiment

BASE = dict(kind="length_sweep", title="t", init="0.4,-0.4", trans="0.8,-0.8/-0.5,0.5", ref_init="0,0",
            ref_trans="0.3,-0.3/0,0.2", estimators=["k1"], placements=["reward", "trl-seq"])


def test_trl_sequence_ratio_keeps_one_over_l_of_the_gradient():
    exp = parse_experiment(dict(BASE, lengths=[1, 2, 3, 5], samples=16, trials=200, seed=3), "test")
    table, figures = KINDS["length_sweep"].run(exp)
    trl = table[table.placement == "trl-seq"]
    np.testing.assert_allclose(trl.rel_bias_norm, 1 - 1 / trl.L.to_numpy(), atol=1e-10)
    reward = table[table.placement == "reward"]
    assert (reward.rel_bias_norm == 0).all() and (reward.follows == "policy||ref").all()
    # MC means within z·se of exact: family-wise false-alarm 1e-3 over the 8 cases × 6 parameters
    assert (table.mc_max_abs_z <= norm.ppf(1 - 1e-3 / (2 * 8 * 6))).all()
    assert figures["length_sweep.png"][:8] == b"\x89PNG\r\n\x1a\n"


def test_off_policy_sampler_needs_both_halves():
    exp = parse_experiment(dict(BASE, lengths=[2], sampler_init="0,0"), "test")
    with pytest.raises(KLGradError, match="sampler_init and sampler_trans"):
        KINDS["length_sweep"].check(exp)
    with pytest.raises(KLGradError, match="lengths"):
        parse_experiment(dict(BASE, lengths=[2.5]), "test")


def test_cli_summary_view_for_sequences(capsys):
    rc = main(["table", "--policy", "markov:3:0,1:0.5,0/0,-0.5", "--ref", "markov:3:0,0:0,0/0,0", "--mode", "exact",
               "--estimators", "k1,k2", "--placements", "loss,reward", "--summary", "--format", "csv", "-q"])
    assert rc == 0
    out = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert list(out.placement) == ["loss", "reward", "loss", "reward"]
    k1 = out[out.estimator == "k1"].set_index("placement")
    assert k1.loc["reward", "rel_bias_norm"] == 0 and k1.loc["loss", "follows"] == "zero"  # E[Σ_t s_t] = 0
