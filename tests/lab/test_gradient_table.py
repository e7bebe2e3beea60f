"""kl_grad.lab.gradient_table: the gradient-table runner. Its per-trial gradients against the seed-003 loop,
its columns recomputed from them, MC against exact, tail flags, clamp counts, and request validation."""

from __future__ import annotations

import functools
import math
import re

import numpy as np
import pandas as pd
import pytest
import torch

import kl_grad.lab.gradient_table as gradient_table
from kl_grad.errors import KLGradError
from kl_grad.lab import Problem, check_gradient_request, run_gradients, true_gradients
from kl_grad.lab.families import parse_spec
from kl_grad.lab.gradient_table import COLUMNS
from kl_grad.lab.montecarlo import mc_points
from tests import oracles
from tests.oracles import POLICY_REF, REF_POLICY, SEED003_ESTIMATORS, seed_style_loop
from tests.problems import (
    CLAMPS,
    CLOSE_NARROW,
    HEAVY,
    HEAVY_CENTRED,
    SEED001_OFF,
    SEED003,
    SHIFTED,
    TOKENS,
    WIDE_REF,
)

NAMES = list(SEED003_ESTIMATORS)
POLICY, REF = SEED003.policy, SEED003.ref


# --------------------------------------------------------------------------- #
# Same samples, same per-trial gradients as the seed-style loop
# --------------------------------------------------------------------------- #

@pytest.mark.parametrize("samples", [64, 48, 50])  # 50 % 16 != 0: torch's normal sampler fills blocks of 16
def test_runner_matches_seed_style_loop(samples):
    trials, seed = 7, 3
    loop = seed_style_loop(POLICY, REF, NAMES, samples, trials, seed)
    run = run_gradients(parse_spec(POLICY), parse_spec(REF), NAMES, samples=samples, trials=trials, seed=seed)
    for name in NAMES:
        got = run.per_trial[(name, "loss")]
        assert got.shape == (trials, 2)
        # float32 sums in a different order (row sums / cols vs mean) and k3 via
        # float64 in the library: ~1e-7 absolute per trial, so 1e-5/1e-6 is a
        # margin of 10x, yet any wrong formula or shuffled sample is off by >1e-2.
        np.testing.assert_allclose(got, loop[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_runner_matches_loop_across_chunks(monkeypatch):
    # Force several chunks (2 trials each, last one partial) to check trial order across chunk boundaries.
    monkeypatch.setattr(gradient_table, "mc_points", functools.partial(mc_points, chunk_elements=100))
    samples, trials, seed = 50, 7, 11
    loop = seed_style_loop(POLICY, REF, ["k2", "k3"], samples, trials, seed)
    run = gradient_table.run_gradients(parse_spec(POLICY), parse_spec(REF), ["k2", "k3"], samples=samples,
                                       trials=trials, seed=seed)
    for name in ("k2", "k3"):
        np.testing.assert_allclose(run.per_trial[(name, "loss")], loop[name], rtol=1e-5, atol=1e-6)


def test_runner_leaves_global_rng_untouched():
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    run_gradients(parse_spec(POLICY), parse_spec(REF), ["k3"], samples=50, trials=5, seed=3)
    assert torch.equal(torch.get_rng_state(), before)


def test_runner_is_deterministic_for_a_seed():
    a = run_gradients(parse_spec(POLICY), parse_spec(REF), ["k2"], samples=40, trials=6, seed=9)
    b = run_gradients(parse_spec(POLICY), parse_spec(REF), ["k2"], samples=40, trials=6, seed=9)
    c = run_gradients(parse_spec(POLICY), parse_spec(REF), ["k2"], samples=40, trials=6, seed=10)
    assert np.array_equal(a.per_trial[("k2", "loss")], b.per_trial[("k2", "loss")])
    assert not np.array_equal(a.per_trial[("k2", "loss")], c.per_trial[("k2", "loss")])


def test_float32_run_agrees_with_quadrature():
    # The default dtype (float32) on a smaller run. Each mean within 4 SE (SE = std(ddof=1)/√trials) of the
    # oracle's quadrature: 10 components, 4-SE misses have probability 6.3e-5 each, and the seed is fixed.
    run = run_gradients(parse_spec(POLICY), parse_spec(REF), NAMES, samples=1000, trials=200, seed=5)
    for name in NAMES:
        g = run.per_trial[(name, "loss")]
        mean, se = g.mean(axis=0), g.std(axis=0, ddof=1) / math.sqrt(g.shape[0])
        target, _ = oracles.gradient_moments(name, "loss", POLICY, REF, var=False)
        assert np.all(np.abs(mean - target) / se < 4.0), name


# --------------------------------------------------------------------------- #
# The table's columns, recomputed from per_trial
# --------------------------------------------------------------------------- #

def test_table_columns_recomputed_from_per_trial():
    # WIDE_REF: loc and scale both move, σ_ref/σ_θ = 2.9 > √2, so the r-based estimators' per-sample gradients
    # have infinite variance while k1's and k2's (polynomial in x) have every moment finite.
    trials, samples = 30, 200
    run = run_gradients(parse_spec(WIDE_REF.policy), parse_spec(WIDE_REF.ref), NAMES, samples=samples,
                        trials=trials, seed=4, dtype=torch.float64)
    truth = oracles.closed_form_grads(WIDE_REF.policy, WIDE_REF.ref)
    table = run.table
    assert len(table) == len(NAMES) * 2
    for name in NAMES:
        g = run.per_trial[(name, "loss")]
        assert g.shape == (trials, 2)
        rows = table[(table.estimator == name) & (table.placement == "loss")]
        assert list(rows.param) == ["loc", "scale"]
        for j, (_, row) in enumerate(rows.iterrows()):
            true = truth[row.direction][j]
            col = g[:, j]
            # Same float64 numbers reduced by numpy in possibly different ways: 1e-12 relative.
            assert row.true_grad == pytest.approx(true, rel=1e-12)
            assert row.mean_grad == pytest.approx(col.mean(), rel=1e-12)
            assert row.stdev_rel == pytest.approx(np.std(col) / abs(true), rel=1e-12)
            assert row.bias_rel == pytest.approx(abs(col.mean() - true) / abs(true), rel=1e-10, abs=1e-15)
            assert row.trials == trials and row.samples == samples
            if name in ("k1", "k2"):  # finite variance: se = std(ddof=1)/√T of the per-trial gradients
                assert row.se == pytest.approx(np.std(col, ddof=1) / math.sqrt(trials), rel=1e-12)
                assert row.z_vs_exact == pytest.approx((row.mean_grad - row.exact_grad) / row.se, rel=1e-12)
            else:  # README: an infinite exact variance refuses the MC se (inf) and the verdict
                assert row.se == math.inf and row.verdict == "no verdict: infinite variance"
                assert math.isnan(row.z_vs_exact)
    directions = dict(zip(table.estimator, table.direction))
    assert directions == {"k1": POLICY_REF, "k2": POLICY_REF, "k3": POLICY_REF,
                          "reverse_k1": REF_POLICY, "reverse_k2": REF_POLICY}


# --------------------------------------------------------------------------- #
# MC against exact; tails; clamps
# --------------------------------------------------------------------------- #

@pytest.mark.parametrize("problem, seed", [(SEED003, 1), (SHIFTED, 2), (CLOSE_NARROW, 3)],
                         ids=["seed003", "shifted", "close-narrow"])
def test_mc_agrees_with_exact_within_4_se(problem, seed):
    run = run_gradients(problem.policy, problem.ref, ["k1", "k2", "k3", "reverse_k2"], samples=1000, trials=300,
                        seed=seed, dtype=torch.float64)
    # 8 rows per configuration at 4 SE: false-alarm probability < 1e-3 per seed (and seeds are fixed).
    # SHIFTED's r-based gradients have an infinite 4th moment (σ_ref/σ_θ = 1.22 > (4/3)^½), so their sample
    # stdev cannot size the error: README, those rows say "no verdict: heavy tail" and carry no z-score.
    judged = run.table["verdict"] != "no verdict: heavy tail"
    assert judged.sum() >= 4 and (run.table.loc[judged, "z_vs_exact"].abs() < 4).all(), \
        run.table[["estimator", "param", "z_vs_exact"]]
    heavy = run.table[~judged]
    assert heavy["z_vs_exact"].isna().all() and heavy["estimator"].isin(["k3", "reverse_k2"]).all()
    # The MC stdev agrees with the exact one within 4 of its own SEs (k1, k2 only: light tails).
    light = run.table[run.table.estimator.isin(["k1", "k2"])]
    assert (light["z_stdev_vs_exact"].abs() < 4).all()


def test_tokens_mc_agrees_with_enumeration_within_4_se():
    run = run_gradients(TOKENS.policy, TOKENS.ref, ["k2", "k3"], samples=500, trials=200, seed=4, dtype=torch.float64)
    # 8 rows at 4 SE; fixed seed.
    assert (run.table["z_vs_exact"].abs() < 4).all()
    assert list(run.table["param"].unique()) == ["logits[0]", "logits[1]", "logits[2]", "logits[3]"]


def test_z_vs_exact_is_signed_mc_minus_exact_over_se():
    table = run_gradients(POLICY, REF, ["k1", "k2"], samples=500, trials=20, seed=3).table
    expected = (table["mean_grad"] - table["exact_grad"]) / table["se"]
    np.testing.assert_allclose(table["z_vs_exact"], expected, rtol=1e-12)
    assert (np.sign(table["z_vs_exact"]) == np.sign(table["mean_grad"] - table["exact_grad"])).all()


def test_infinite_variance_is_reported_not_printed_finite():
    # r = π_ref/π_θ has E_q[r²] = ∞ when σ_ref ≥ √2 σ_q: reverse_k2 and k3 gradients have infinite variance.
    table = run_gradients(HEAVY.policy, HEAVY.ref, ["k2", "k3", "reverse_k2"], mode="exact").table
    heavy = table[table.estimator.isin(["k3", "reverse_k2"])]
    assert np.isinf(heavy["stdev_rel"]).all()
    assert heavy["warning"].str.contains("infinite variance").all()
    light = table[table.estimator == "k2"]  # k2's gradient d·s is polynomial in x: every moment finite
    assert np.isfinite(light["stdev_rel"]).all() and (light["warning"] == "").all()
    # The mean is still finite and right: E_q[∇k3] = ∇KL(ref‖policy).
    truth = oracles.closed_form_grads(HEAVY.policy, HEAVY.ref)
    np.testing.assert_allclose(heavy[heavy.estimator == "k3"]["mean_grad"], truth[REF_POLICY], rtol=1e-12)


def test_mc_rows_carry_the_heavy_tail_flag():
    table = run_gradients(HEAVY_CENTRED.policy, HEAVY_CENTRED.ref, ["k1", "k3"], samples=200, trials=20).table
    assert table[table.estimator == "k3"]["warning"].str.contains("infinite variance").all()
    assert not table[table.estimator == "k1"]["warning"].str.contains("infinite").any()


def test_exact_stdev_is_that_of_an_n_sample_mean():
    # k1 as loss: the per-sample gradient is the score s. For N(0,1): s_loc = x with variance 1 and
    # s_scale = x² − 1 with variance 2, so the stdev of an n-sample mean is √(1/n) and √(2/n) (closed form).
    n = 400
    table = run_gradients(POLICY, REF, ["k1"], mode="exact", samples=n).table
    stdev = table["stdev_rel"] * table["true_grad"].abs()
    np.testing.assert_allclose(stdev, [math.sqrt(1 / n), math.sqrt(2 / n)], rtol=1e-12)
    assert table["trials"].isna().all() and (table["mode"] == "exact").all()


def test_clamped_fraction_is_counted_on_the_same_samples():
    policy = parse_spec(CLAMPS.policy)
    run = run_gradients(CLAMPS.policy, CLAMPS.ref, ["k3", "k3_clamped"], ["loss-w"], samples=500, trials=8, seed=9,
                        dtype=torch.float64)
    table = run.table.set_index(["estimator", "param"])
    # Independent count on the same draws: verl's clamps act where |d| > 20 or k3(d) > 10.
    x = torch.cat([p.x for p in mc_points(policy, 8, 500, 9, torch.float64)]).numpy()
    d = oracles.log_density(CLAMPS.policy, x) - oracles.log_density(CLAMPS.ref, x)
    active = int(((np.abs(d) > 20) | (oracles.VALUE["k3"](d) > 10)).sum())
    assert active > 0
    assert table.loc[("k3_clamped", "loc"), "clamped_frac"] == active / (8 * 500)
    assert "clamp active on" in table.loc[("k3_clamped", "loc"), "warning"]
    assert np.isnan(table.loc[("k3", "loc"), "clamped_frac"])  # not a clamped estimator


# --------------------------------------------------------------------------- #
# Requests, directions, columns
# --------------------------------------------------------------------------- #

@pytest.mark.parametrize("kwargs, message", [
    ({"samples": 0}, "samples must be a positive integer, got 0"),
    ({"trials": 1}, "trials must be an integer >= 2 (a standard deviation needs two), got 1"),
    ({"mode": "sampled"}, "unknown mode 'sampled'; expected one of mc, exact"),
    ({"direction": "sideways"}, "unknown direction 'sideways'; expected one of policy||ref, ref||policy, reverse, "
                                "forward"),
    ({"estimators": "k1,k1"}, "k1 is given twice"),
    ({"estimators": ""}, "no estimators given; pass at least one, e.g. k1,k2,k3"),
    ({"placements": ""}, "no placements given; pass at least one, e.g. loss"),
    ({"dtype": "float16"}, "unknown dtype 'float16'; expected one of float32, float64"),
    ({"ref": "categorical:0,1"}, "does not match policy normal:0,1"),
])
def test_bad_requests_are_refused_before_any_work(kwargs, message):
    args = {"policy": POLICY, "ref": REF, "estimators": "k1", **kwargs}
    with pytest.raises(KLGradError, match=re.escape(message)):
        check_gradient_request(**args)
    with pytest.raises(KLGradError, match=re.escape(message)):
        run_gradients(**args)


def test_a_valid_request_is_normalised():
    job = check_gradient_request(POLICY, REF, "k1, k3", ["loss", "reward"], mode="exact", trials=1,
                                 direction="forward")  # trials are not checked in exact mode
    assert job.direction == REF_POLICY and job.budget.mode == "exact"
    assert [c.key for c in job.cases] == [("k1", "loss"), ("k1", "reward"), ("k3", "loss"), ("k3", "reward")]
    assert job.problem == Problem(POLICY, REF)


def test_python_api_accepts_text_specs_and_rejects_bad_ones():
    from kl_grad.lab import DistSpec

    table = run_gradients("normal:0,1", "normal:1,1.1", "k2,k3", mode="exact").table
    assert list(table["estimator"].unique()) == ["k2", "k3"]
    for bad, message in [(lambda: DistSpec("normal", (0, -1)), "scale must be > 0"),
                         (lambda: run_gradients("normal:0,1", "normal:1,1", "k1,k1"), "given twice"),
                         (lambda: run_gradients("normal:0,1", "normal:1,1", "k1", dtype=torch.float16), "float32")]:
        with pytest.raises(KLGradError, match=message):
            bad()


@pytest.mark.parametrize("direction", [POLICY_REF, REF_POLICY])
def test_direction_compares_every_row_with_that_kl(direction):
    table = run_gradients(POLICY, REF, ["k2", "reverse_k2"], mode="exact", direction=direction).table
    truth = oracles.closed_form_grads(POLICY, REF)[direction]
    assert (table["direction"] == direction).all()
    np.testing.assert_allclose(table["true_grad"], np.tile(truth, 2), rtol=1e-12)
    assert table["follows"].tolist() == ["policy||ref"] * 2 + ["ref||policy"] * 2


def test_true_gradients_is_the_problems():
    got, want = true_gradients(POLICY, REF), Problem(POLICY, REF).true_gradients()
    assert set(got) == set(want) and all(np.array_equal(got[k], want[k]) for k in got)


def test_columns_and_labels():
    mc = run_gradients(SEED001_OFF.policy, SEED001_OFF.ref, ["k3_clamped"], ["loss-w"], sampler=SEED001_OFF.sampler,
                       samples=50, trials=3).table
    assert list(mc.columns) == COLUMNS
    assert (mc["sampler"] == "normal:0.3,1.2").all() and (mc["sampling"] == "sample").all()
    assert (mc["policy"] == "normal:0,1").all() and (mc["ref"] == "normal:1,1.1").all()
    exact = run_gradients(POLICY, REF, ["k1"], mode="exact", pathwise=True).table
    assert list(exact.columns) == [c for c in COLUMNS if c not in ("z_vs_exact", "z_stdev_vs_exact", "clamped_frac")]
    assert (exact["sampling"] == "rsample").all() and (exact["sampler"] == "policy").all()
    assert isinstance(exact["trials"].dtype, pd.Int64Dtype)
