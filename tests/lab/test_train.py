"""Training dynamics (``kl-grad train``): end points against oracles derived and solved here.

Oracles: π* = π_ref·exp(R/β)/Z in plain numpy; the stationary point of E[R] − β·KL(π_ref‖π_θ) by
``scipy.optimize.minimize`` over logits (categorical) or over (loc, scale) with the Normal KL written out in
numpy; the Gaussian π* from the product of two Gaussian densities; reward gradients by central finite
differences of E[R] computed by enumeration / closed-form moments.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize

from kl_grad.errors import KLGradError
from kl_grad.lab.cli import main
from kl_grad.lab.families import parse_spec
from kl_grad.lab.train import dynamics
from kl_grad.lab.train.dynamics import run_training
from kl_grad.lab.train.rewards import parse_reward

TOKENS = dict(policy="categorical:0,0,0,0", ref="categorical:0.5,-0.5,0.2,0", reward="1,0,0.5,-0.5", beta=1.0)
# beyond the example: 3 tokens, a sharper β, a non-uniform start
TOKENS3 = dict(policy="categorical:1,-1,0", ref="categorical:-0.3,0.4,0", reward="0.2,1.5,-1", beta=0.7)
BUDGET = {"issue_example": dict(steps=400, lr=1.0), "three_tokens": dict(steps=600, lr=3.0)}  # π*_2 = 0.017: slow


def softmax(z):
    e = np.exp(np.asarray(z, float) - np.max(z))
    return e / e.sum()


def gibbs(ref_logits, r, beta):
    w = np.exp(np.asarray(ref_logits, float)) * np.exp(np.asarray(r, float) / beta)
    return w / w.sum()


def tv(a, b):
    return 0.5 * np.abs(np.asarray(a) - np.asarray(b)).sum()


def other_optimum_categorical(ref_logits, r, beta):
    """argmax_q Σ R q − β·KL(p‖q) by BFGS over logits (KL(p‖q) = Σ p log p − Σ p log q)."""
    p, r = softmax(ref_logits), np.asarray(r, float)

    def neg(z):
        logq = z - np.log(np.exp(z).sum())
        return -(np.exp(logq) @ r - beta * (p @ (np.log(p) - logq)))

    res = minimize(neg, np.zeros(len(p)), method="BFGS", options={"gtol": 1e-12})
    return softmax(res.x)


@pytest.mark.parametrize("name, problem", [("issue_example", TOKENS), ("three_tokens", TOKENS3)])
def test_unbiased_constructions_reach_the_gibbs_optimum_and_k3_loss_the_other_one(name, problem):
    tables = [run_training(**problem, estimators=e, placements=p, **BUDGET[name]).table
              for e, p in (("k2,k3", "loss"), ("k3", "loss-w"), ("k1", "loss,reward"))]
    rows = pd.concat(tables).set_index(["estimator", "placement"])
    ref, r, beta = parse_spec(problem["ref"]).values, [float(v) for v in problem["reward"].split(",")], problem["beta"]
    star = gibbs(ref, r, beta)
    for case in [("k2", "loss"), ("k3", "loss-w"), ("k1", "reward")]:
        row = rows.loc[case]
        assert row["converged"] and not row["diverged"], case
        assert tv(row["probs"], star) < 1e-6, case  # the acceptance bound
        assert row["distance_to_optimum"] == pytest.approx(tv(row["probs"], star), abs=1e-15)
    other = other_optimum_categorical(ref, r, beta)
    assert tv(other, star) > 1e-3  # the two objectives really have different optima here
    k3 = rows.loc[("k3", "loss")]
    assert k3["converged"] and tv(k3["probs"], other) < 1e-6
    assert tv(k3["probs"], star) > 1e-3
    k1 = rows.loc[("k1", "loss")]  # zero expected KL gradient: pure reward ascent, it never settles at π*
    best = int(np.argmax(r))
    assert not k1["converged"] and tv(k1["probs"], star) > 0.05 and k1["probs"][best] > star[best] + 0.05
    # reported KL and objective are the true ones at the end point, computed here from its probabilities
    q, p = np.asarray(rows.loc[("k2", "loss"), "probs"]), softmax(ref)
    kl = float(q @ (np.log(q) - np.log(p)))
    assert rows.loc[("k2", "loss"), "kl"] == pytest.approx(kl, rel=1e-12)
    assert rows.loc[("k2", "loss"), "objective"] == pytest.approx(q @ np.asarray(r) - beta * kl, rel=1e-12)


def normal_kl(m1, s1, m2, s2):
    """KL(N(m1, s1)‖N(m2, s2)) written out."""
    return math.log(s2 / s1) + (s1**2 + (m1 - m2) ** 2) / (2 * s2**2) - 0.5


GAUSS = dict(policy="normal:-0.5,0.8", ref="normal:0.5,1.2", reward="linear:1", beta=3.0)


def test_gaussian_linear_reward_ends_at_the_closed_form_optima():
    run = run_training(**GAUSS, estimators="k2,k3", placements="loss", steps=300, lr=0.3, tol=1e-8)
    rows = run.table.set_index(["estimator", "placement"])
    # π*: maximise A·μ − β·KL(q‖p) — the Gibbs density p·e^{x/β} is N(μ_ref + σ_ref²/β, σ_ref)
    star = np.array([0.5 + 1.2**2 / 3.0, 1.2])
    k2 = rows.loc[("k2", "loss")]
    assert k2["converged"] and np.hypot(k2["loc"] - star[0], k2["scale"] - star[1]) < 1e-6
    # k3 loss: the local maximum of A·μ − β·KL(p‖q), found numerically from the reference
    res = minimize(lambda v: -(v[0] - 3.0 * normal_kl(0.5, 1.2, v[0], v[1])), [0.5, 1.2], method="Nelder-Mead",
                   options={"xatol": 1e-11, "fatol": 1e-14, "maxiter": 20000})
    k3 = rows.loc[("k3", "loss")]
    assert k3["converged"] and np.hypot(k3["loc"] - res.x[0], k3["scale"] - res.x[1]) < 1e-5
    assert res.x == pytest.approx([1.1, math.sqrt(1.8)], abs=1e-5)  # the docstring's worked example


def test_gaussian_quadratic_reward_ends_at_the_product_of_gaussians():
    # R = −C(x − B)²: p·e^{R/β} has precision 1/σ_ref² + 2C/β and mean (μ_ref/σ_ref² + 2CB/β)/precision
    c, b, beta, mu, s = 0.5, 2.0, 1.5, 0.0, 1.0
    prec = 1 / s**2 + 2 * c / beta
    star = np.array([(mu / s**2 + 2 * c * b / beta) / prec, 1 / math.sqrt(prec)])
    run = run_training("normal:0.3,0.7", f"normal:{mu},{s}", f"quadratic:{c},{b}", beta, "k3", "loss-w", steps=300,
                       lr=0.3, tol=1e-8)
    row = run.table.iloc[0]
    assert row["converged"] and np.hypot(row["loc"] - star[0], row["scale"] - star[1]) < 1e-6
    assert row["distance_to_optimum"] < 1e-6


@pytest.mark.parametrize("spec, policy", [("1,-2,0.5", "categorical:0.3,-0.1,0.9"),
                                          ("linear:-1.7", "normal:0.4,1.3"), ("quadratic:0.8,-0.5", "normal:0.4,1.3")])
def test_reward_gradients_match_finite_differences(spec, policy):
    reward, pol = parse_reward(spec), parse_spec(policy)

    def expected(theta):  # E[R] by enumeration or the Normal's moments, independent of rewards.py
        if pol.family == "categorical":
            return softmax(theta) @ np.array([float(v) for v in spec.split(",")])
        m, s = theta
        if spec.startswith("linear"):
            return -1.7 * m
        return -0.8 * ((m + 0.5) ** 2 + s**2)

    theta, h = np.asarray(pol.values), 1e-6
    fd = [(expected(theta + h * e) - expected(theta - h * e)) / (2 * h) for e in np.eye(len(theta))]
    np.testing.assert_allclose(reward.gradient(pol), fd, atol=1e-8)
    assert reward.expected(pol) == pytest.approx(expected(theta), rel=1e-13)


def test_divergence_is_reported_not_hidden():
    # lr far beyond 2/curvature: the scale overshoots below 0 and the run stops there
    run = run_training(**GAUSS, estimators="k2", placements="loss", steps=50, lr=2.0)
    row = run.table.iloc[0]
    assert row["diverged"] and not row["converged"] and "scale left (0, ∞)" in row["warning"]
    assert row["scale"] > 0  # the last valid point is reported, not the invalid one


def test_a_failed_exactness_check_refuses_the_row(monkeypatch):
    real = dynamics.independent_kl_gradient

    def off(case, spec, ref, sampler=None):
        g, err = real(case, spec, ref, sampler)
        return g + 1e-6, err

    monkeypatch.setattr(dynamics, "independent_kl_gradient", off)
    run = run_training(**TOKENS, estimators="k2", placements="loss", steps=5)
    row = run.table.iloc[0]
    assert "exactness check failed" in row["warning"] and math.isnan(row["kl"]) and np.isnan(row["probs"]).all()
    assert math.isnan(row["distance_to_optimum"]) and not row["converged"]


def test_the_exactness_check_passes_off_policy_and_mc_steps_are_seeded():
    m = "categorical:0.2,0,-0.3,0.1"
    off = pd.concat([run_training(**TOKENS, estimators=e, placements=p, steps=400, sampler=m).table
                     for e, p in (("k3", "loss-w"), ("k1", "reward"), ("k2", "loss"))]).set_index("estimator")
    star = gibbs(parse_spec(TOKENS["ref"]).values, [1, 0, 0.5, -0.5], 1.0)
    for est in ("k3", "k1"):  # with a fixed sampler m, w·k3 and w·sg(k1) stay unbiased (the gradient tables)
        row = off.loc[est]
        assert row["converged"] and tv(row["probs"], star) < 1e-6 and row["warning"] == "", est
    assert tv(off.loc["k2", "probs"], star) > 1e-3  # k2 as a plain loss is biased once m ≠ π_θ
    a, b, c = (run_training(**TOKENS, estimators="k2", placements="loss", steps=40, lr=0.2, samples=32, seed=s)
               .table.iloc[0]["probs"] for s in (5, 5, 6))
    assert a == b and a != c


def test_cli_json_shape_and_bad_input(capsys, tmp_path):
    out = tmp_path / "train.json"
    assert main(["train", "--policy", TOKENS["policy"], "--ref", TOKENS["ref"], "--reward", TOKENS["reward"],
                 "--estimators", "k2,k3", "--placements", "loss", "--steps", "200", "-o", str(out)]) == 0
    records = json.loads(out.read_text())
    assert [(r["estimator"], r["placement"]) for r in records] == [("k2", "loss"), ("k3", "loss")]
    for key in ("probs", "converged", "steps", "kl", "objective", "distance_to_optimum", "diverged", "warning"):
        assert all(key in r for r in records), key
    assert records[0]["converged"] is True and len(records[0]["probs"]) == 4
    for argv, message in [
        (["--reward", "1,0"], "needs a categorical policy with 2 logits"),
        (["--reward", "linear:1"], "needs a normal policy"),
        (["--reward", "1,0,x,0"], "'x' is not a number"),
        (["--reward", TOKENS["reward"], "--estimators", "k9"], "unknown estimator 'k9'"),
        (["--reward", TOKENS["reward"], "--beta", "0"], "beta must be a positive finite number"),
        (["--reward", TOKENS["reward"], "--steps", "0"], "steps must be an integer from 1 to"),
        (["--reward", TOKENS["reward"], "--format", "xml"], "unknown format 'xml'"),
    ]:
        capsys.readouterr()
        status = main(["train", "--policy", TOKENS["policy"], "--ref", TOKENS["ref"], *argv])
        err = capsys.readouterr().err
        assert status == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err, argv


def test_bad_python_input_names_what_is_allowed():
    with pytest.raises(KLGradError, match="quadratic:C,B"):
        parse_reward("cubic:1")
    with pytest.raises(KLGradError, match="C must be > 0"):
        parse_reward("quadratic:-1,0")


@pytest.mark.parametrize("a", [1e-9, 1e-7, 1e-5])
def test_the_other_objectives_gaussian_optimum_is_stable_at_a_tiny_reward_slope(a):
    # hand limit: σ² = β²(1 − √(1 − x))/(2a²) with x = 4a²σ_ref²/β² → σ_ref²(1 + x/4 + ...) as a → 0
    from kl_grad.lab.families import parse_spec
    from kl_grad.lab.train.optima import ref_policy_optimum
    from kl_grad.lab.train.rewards import LinearReward

    beta, sigma = 3.0, 1.2
    x = 4 * a**2 * sigma**2 / beta**2
    loc, scale = ref_policy_optimum(parse_spec("normal:0.5,1.2"), LinearReward(a), beta)
    np.testing.assert_allclose(scale**2, sigma**2 * (1 + x / 4 + x**2 / 8), rtol=1e-14)
    np.testing.assert_allclose(loc, 0.5 + a * scale**2 / beta, rtol=1e-14)
