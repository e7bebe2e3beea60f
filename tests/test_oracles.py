"""tests/oracles.py checks itself: each hand-derived formula against another derivation of it (finite
differences, a series against a direct formula, a score-function identity), without kl_grad."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tests import oracles
from tests.oracles import POLICY_REF, REF_POLICY
from tests.problems import PROBLEMS, SEED003, SHIFTED, TOKENS


def test_oracles_import_nothing_from_kl_grad():
    tree = ast.parse((Path(__file__).parent / "oracles.py").read_text())
    modules = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    modules += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in modules if m and m.split(".")[0] == "kl_grad"]


def test_taylor_reference_matches_direct_formula_where_both_are_accurate():
    # At |d| = 0.1 the series (truncation < 1e-24 relative) and the direct
    # formula (cancellation ≲ 1e-14 relative) must agree; 1e-13 is that budget.
    d = np.array([-0.1, 0.1, -0.0999, 0.0999])
    series = oracles.k3_value(d * (1 - 1e-15))  # just inside the series branch
    direct = np.exp(-d) - 1.0 + d
    np.testing.assert_allclose(series, direct, rtol=1e-13)


def test_reverse_k1_cv_series_matches_its_closed_form_at_the_switch():
    # At |u| = 0.5 the closed form u e^u − expm1(u) cancels at most ~4x: 1e-14 is its budget.
    d = np.array([-0.5, 0.5]) * (1 - 1e-15)
    u = -d
    np.testing.assert_allclose(oracles.reverse_k1_cv_value(d), u * np.exp(u) - np.expm1(u), rtol=1e-14)


@pytest.mark.parametrize("name", list(oracles.VALUE))
def test_each_slope_is_the_derivative_of_its_value(name):
    # Central differences, h = 1e-6, away from the clamps' kinks: truncation ~h²·k'''/6 and rounding
    # ~1e-16·|k|/h stay below 1e-7 relative (plus an absolute 1e-8 where the slope is near 0).
    d = np.concatenate([np.linspace(-6, -0.05, 40), np.linspace(0.05, 6, 40)])
    h = 1e-6
    if name in ("k1+", "k3+", "verl:k3+"):  # straight-through: the slope is k2's, not the value's
        fd = (oracles.VALUE["k2"](d + h) - oracles.VALUE["k2"](d - h)) / (2 * h)
    else:
        fd = (oracles.VALUE[name](d + h) - oracles.VALUE[name](d - h)) / (2 * h)
    np.testing.assert_allclose(oracles.SLOPE[name](d), fd, rtol=1e-7, atol=1e-8)


def test_placement_gradients_are_autograd_of_the_placement_values():
    # The product rule written out in PLACEMENT_GRADIENT against torch autograd of PLACEMENT_VALUE, with
    # k(d) = d²/2 and w = e^(ℓ − ℓ_m), both functions of ℓ = log π_θ (so "s" = ∂/∂ℓ = 1).
    ell = torch.linspace(-2, 1, 7, dtype=torch.float64, requires_grad=True)
    ell_m = torch.linspace(-1, 0.5, 7, dtype=torch.float64)
    d = ell - 0.3
    k = 0.5 * d * d
    w = torch.exp(ell - ell_m)
    surrogates = {"loss": k, "loss-sgw": w.detach() * k, "loss-w": w * k, "reward": w * k.detach()}
    kn, dkn, wn = k.detach().numpy(), d.detach().numpy(), w.detach().numpy()
    for name, value in surrogates.items():
        (grad,) = torch.autograd.grad(value.sum(), ell, retain_graph=True)
        np.testing.assert_allclose(value.detach().numpy(), oracles.PLACEMENT_VALUE[name](kn, wn), rtol=1e-15)
        np.testing.assert_allclose(grad.numpy(), oracles.PLACEMENT_GRADIENT[name](kn, dkn, 1.0, wn), rtol=1e-14)


@pytest.mark.parametrize("problem", PROBLEMS, ids=lambda p: p.name)
def test_hand_partials_match_finite_differences_of_the_hand_kl(problem):
    family, values = oracles.parse(problem.policy)
    h = 1e-5 if family == "normal" else 1e-6
    for direction in (POLICY_REF, REF_POLICY):
        fd = []
        for j in range(len(values)):
            up = ",".join(str(v + h * (i == j)) for i, v in enumerate(values))
            down = ",".join(str(v - h * (i == j)) for i, v in enumerate(values))
            fd.append((oracles.closed_form_kl(direction, f"{family}:{up}", problem.ref)
                       - oracles.closed_form_kl(direction, f"{family}:{down}", problem.ref)) / (2 * h))
        # Central differences: truncation ~h² and rounding ~1e-16/h: 2e-8 relative (Normal, h = 1e-5),
        # 1e-10 absolute (categorical, h = 1e-6).
        np.testing.assert_allclose(oracles.closed_form_grads(problem.policy, problem.ref)[direction], fd,
                                   rtol=2e-8, atol=1e-9 if family == "normal" else 1e-10)


@pytest.mark.parametrize("problem", [SEED003, SHIFTED, TOKENS], ids=lambda p: p.name)
def test_quadrature_oracle_agrees_with_score_function_identities(problem):
    """Quad (or enumeration) of the hand-derived per-sample gradients reproduces the known expectations.

    E_q[s] = 0; E_q[d·s] = ∇KL(q‖p); E_q[(1−r)s] = E_q[−r s] = −∫p ∇log q = ∇KL(p‖q).
    quad is asked for 1e-12 relative / 1e-13 absolute; 1e-9 leaves a margin.
    """
    truth = oracles.closed_form_grads(problem.policy, problem.ref)

    def mean(name):
        return oracles.gradient_moments(name, "loss", problem.policy, problem.ref, var=False)[0]

    np.testing.assert_allclose(mean("k1"), 0.0, atol=1e-9)
    np.testing.assert_allclose(mean("k2"), truth[POLICY_REF], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(mean("k3"), truth[REF_POLICY], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(mean("reverse_k2"), truth[REF_POLICY], rtol=1e-9, atol=1e-12)
    # reverse_k1's autograd gradient is NOT ∇KL(p‖q): it carries an extra ∫ p·d·s term (on the Normal pairs
    # every component is off by > 10%; on the tokens at least one is).
    off = np.abs(mean("reverse_k1") - truth[REF_POLICY]) > 0.1 * np.abs(truth[REF_POLICY])
    assert off.all() if problem.family == "normal" else off.any()


def test_off_policy_weights_recover_the_on_policy_expectation():
    # E_m[w·g] = E_q[g]: loss-sgw off-policy has the on-policy loss's mean (seed 001's importance correction).
    on, _ = oracles.gradient_moments("k2", "loss", SEED003.policy, SEED003.ref, var=False)
    off, _ = oracles.gradient_moments("k2", "loss-sgw", SEED003.policy, SEED003.ref, "normal:0.3,1.2", var=False)
    np.testing.assert_allclose(off, on, rtol=1e-10)


def test_value_moments_reproduce_schulmans_closed_forms():
    for mu in (0.1, 1.0):
        closed = oracles.schulman_value_moments(mu)
        mean, var = oracles.value_moments("k1", "normal:0,1", f"normal:{mu},1")
        assert mean == pytest.approx(closed["kl"], rel=1e-10) and var == pytest.approx(closed["var_k1"], rel=1e-9)
        assert oracles.value_moments("k2", "normal:0,1", f"normal:{mu},1")[0] == pytest.approx(closed["mean_k2"],
                                                                                               rel=1e-10)


def test_pathwise_gradient_is_the_derivative_through_the_sample():
    # d/dθ of k2(d(m1 + s1·ε; θ)) by central differences in θ, at fixed ε.
    (m1, s1), (m2, s2) = oracles.normal_params(SEED003.policy), oracles.normal_params(SEED003.ref)
    eps = np.linspace(-2, 2, 9)

    def k2_at(m, s):
        x = m + s * eps
        return oracles.VALUE["k2"](oracles.log_normal(x, m, s) - oracles.log_normal(x, m2, s2))

    h = 1e-6
    fd = np.stack([(k2_at(m1 + h, s1) - k2_at(m1 - h, s1)) / (2 * h),
                   (k2_at(m1, s1 + h) - k2_at(m1, s1 - h)) / (2 * h)], axis=-1)
    np.testing.assert_allclose(oracles.pathwise_gradient("k2", m1 + s1 * eps, SEED003.policy, SEED003.ref), fd,
                               rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("k, want", [(0, 1.0), (1, 0.5), (2, 0.25 + 4.0), (4, 0.5**4 + 6 * 0.25 * 4 + 3 * 16)])
def test_normal_moments(k, want):
    assert oracles.normal_moment(k, 0.5, 2.0) == pytest.approx(want, rel=1e-15)


def test_aggregate_loop_on_a_hand_example():
    values, mask = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], [[1, 1, 0], [0, 0, 0]]
    assert oracles.aggregate_loop(values, mask, "token-mean") == 1.5
    assert oracles.aggregate_loop(values, mask, "seq-mean-token-mean") == 1.5  # the empty sequence is left out
    assert oracles.aggregate_loop(values, mask, "seq-mean-token-sum") == 1.5  # (3 + 0) / 2
    assert oracles.aggregate_loop(values, mask, "sum") == 3.0


def test_seed_style_loop_leaves_the_global_rng_untouched():
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    out = oracles.seed_style_loop(SEED003.policy, SEED003.ref, ["k3"], 50, 5, 3)
    assert torch.equal(torch.get_rng_state(), before)
    assert out["k3"].shape == (5, 2) and np.isfinite(out["k3"]).all() and not math.isnan(out["k3"].sum())
