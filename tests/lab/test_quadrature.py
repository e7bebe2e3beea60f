"""kl_grad.lab.quadrature: exact (noise-free) moments against scipy quadrature and enumeration of the
hand-derived per-sample gradients (tests/oracles.py), the node ladder, and every refusal.

The oracle integrates m(x)·g(x) with scipy's adaptive quad over ±30σ (Normal) or sums over the support
(categorical), where g is the placement's hand-derived per-sample gradient; the package takes autograd
gradients at Gauss–Hermite nodes. Seed 001's table (estimator × placement, on- and off-policy) is the
``placement`` loop below.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy.integrate import IntegrationWarning

from kl_grad.estimators import ESTIMATORS
from kl_grad.lab import make_cases, run_gradients
from kl_grad.lab.families import parse_spec
from kl_grad.lab.gradient_table import exact_gradient_moments
from kl_grad.lab.problem import Problem
from kl_grad.lab.quadrature import NODE_LADDER, exact_moments, node_ladder
from kl_grad.placements import PLACEMENTS
from tests import oracles
from tests.oracles import POLICY_REF, REF_POLICY
from tests.problems import (
    CLAMPS,
    FAR_MEAN,
    FAR_OVERFLOW,
    FAR_VARIANCE,
    FINITE_UNREACHABLE,
    JUST_INFINITE,
    SEED001_OFF,
    SEED003,
    SHIFTED,
    select,
)

FINITE_NORMAL = select(family="normal", finite=True)
CATEGORICAL = select(family="categorical")


def _moments(problem, names, placements=tuple(PLACEMENTS)):
    return exact_gradient_moments(Problem(*problem.args), make_cases(list(names), list(placements)))


@pytest.mark.parametrize("problem", FINITE_NORMAL, ids=lambda p: p.name)
def test_exact_moments_match_scipy_quad_of_hand_formulas(problem):
    for name in oracles.SEED003_ESTIMATORS:
        got = _moments(problem, [name])  # every placement of one estimator
        for placement in PLACEMENTS:
            mean, var = oracles.gradient_moments(name, placement, *problem.args)
            m = got[(name, placement)]
            # 10x what scipy was asked for (epsrel 1e-12 mean, 1e-10 variance); measured ≤ 1.5e-12 and 1e-15.
            np.testing.assert_allclose(m.mean, mean, rtol=1e-11, atol=1e-12, err_msg=f"{name} {placement}")
            np.testing.assert_allclose(m.var, var, rtol=1e-9, err_msg=f"{name} {placement}")
            assert not any("infinite variance" in w for w in m.warnings)


@pytest.mark.parametrize("problem", [SEED003, SHIFTED, SEED001_OFF], ids=lambda p: p.name)
def test_a_case_does_not_depend_on_the_cases_computed_with_it(problem):
    together = _moments(problem, oracles.SEED003_ESTIMATORS)
    for name in oracles.SEED003_ESTIMATORS:
        alone = _moments(problem, [name])
        for placement in PLACEMENTS:
            a, b = alone[(name, placement)], together[(name, placement)]
            np.testing.assert_allclose(b.mean, a.mean, rtol=1e-12, atol=1e-15, err_msg=f"{name} {placement}")
            np.testing.assert_allclose(b.var, a.var, rtol=1e-10, err_msg=f"{name} {placement}")


@pytest.mark.parametrize("problem", [SEED003, SEED001_OFF], ids=lambda p: p.name)
def test_framework_variants_match_the_oracle(problem):
    # The straight-through and control-variate estimators: smooth, so the quadrature settles.
    names = ["k1+", "k3+", "reverse_k1_cv"]
    got = _moments(problem, names)
    for name in names:
        for placement in PLACEMENTS:
            mean, var = oracles.gradient_moments(name, placement, *problem.args)
            np.testing.assert_allclose(got[(name, placement)].mean, mean, rtol=1e-11, atol=1e-12,
                                       err_msg=f"{name} {placement}")
            np.testing.assert_allclose(got[(name, placement)].var, var, rtol=1e-9, err_msg=f"{name} {placement}")


@pytest.mark.parametrize("problem", CATEGORICAL, ids=lambda p: p.name)
def test_enumeration_matches_a_plain_loop_over_tokens(problem):
    got = _moments(problem, list(ESTIMATORS))
    k = len(oracles.parse(problem.policy)[1])
    for name in ESTIMATORS:
        for placement in PLACEMENTS:
            mean, var = oracles.gradient_moments(name, placement, *problem.args)
            m = got[(name, placement)]
            # Two float64 sums over the same K terms: 1e-12 relative allows for the summation order.
            np.testing.assert_allclose(m.mean, mean, rtol=1e-12, atol=1e-15, err_msg=f"{name} {placement}")
            np.testing.assert_allclose(m.var, var, rtol=1e-12, atol=1e-15, err_msg=f"{name} {placement}")
            assert m.warnings == [""] * k and m.nodes == k  # finite support: every moment finite, no refusal


def test_node_ladder():
    normal = list(node_ladder(parse_spec("normal:0,1")))
    assert [p.rows for p in normal] == list(NODE_LADDER) == [32, 64, 128, 256]
    assert all(p.weights.sum() == pytest.approx(1.0, abs=1e-14) for p in normal)
    (tokens,) = node_ladder(parse_spec("categorical:0,1,2"))  # enumeration: one exact rung
    assert tokens.rows == 3


def test_exact_moments_of_a_polynomial_are_the_closed_forms():
    # evaluate x ↦ (x, x²) under N(m, s): E = (m, m² + s²), Var = (s², E[x⁴] − (m² + s²)²), 4th central
    # moment of x = 3s⁴; Gauss–Hermite is exact for these, so the ladder stops at its second rung.
    m, s = 0.7, 1.3
    out = exact_moments(lambda x: {"poly": torch.cat([x, x * x], dim=1)}, parse_spec(f"normal:{m},{s}"))["poly"]
    mom = [oracles.normal_moment(k, m, s) for k in range(5)]
    np.testing.assert_allclose(out.mean, [m, mom[2]], rtol=1e-13)
    np.testing.assert_allclose(out.var, [s * s, mom[4] - mom[2] ** 2], rtol=1e-12)
    assert out.m4[0] == pytest.approx(3 * s**4, rel=1e-12)
    assert out.nodes == NODE_LADDER[1] and out.warnings == ["", ""]
    assert np.all(out.err <= 1e-12)


def test_far_mass_is_integrated_where_it_lies():
    # π_ref = N(30,1): E[∇k3] = ∇KL(ref‖policy) = (−30, −900) lives at x ≈ 30σ of π_θ, beyond every
    # Gauss–Hermite node of the policy (which alone would converge to 0 there); README: "now exact".
    table = run_gradients(*FAR_MEAN.args[:2], ["k2", "k3"], mode="exact").table
    truth = oracles.closed_form_grads(*FAR_MEAN.args[:2])
    k3 = table[table.estimator == "k3"]
    np.testing.assert_allclose(k3["mean_grad"], truth[REF_POLICY], rtol=1e-12)
    k2 = table[(table.estimator == "k2") & (table.param == "loc")]  # d·s is polynomial: fine anywhere
    np.testing.assert_allclose(k2["mean_grad"], truth[POLICY_REF][0], rtol=1e-12)


def test_mass_float64_cannot_form_is_refused_never_settled_wrongly():
    # π_ref = N(60,1): r = e^1800 overflows at x = 60, where the mean's mass lies: NaN with the reason.
    table = run_gradients(*FAR_OVERFLOW.args[:2], ["k2", "k3"], mode="exact").table
    k3 = table[table.estimator == "k3"]
    assert k3["mean_grad"].isna().all() and k3["warning"].str.contains("mean").all()
    assert (k3["verdict"] == "unavailable").all()
    k2 = table[(table.estimator == "k2") & (table.param == "loc")]
    np.testing.assert_allclose(k2["mean_grad"], -60.0, rtol=1e-12)


def test_a_variance_far_out_is_integrated_where_it_lies():
    # π_ref = N(10,1): the mean integrand p·s peaks at 10σ, the variance's p²/q·s² at 20σ, where it is of
    # order e^100; the oracle's adaptive quad over ±30σ of both finds the same (quad's 1e-10 → 1e-6 here).
    row = run_gradients(*FAR_VARIANCE.args[:2], ["k3"], mode="exact").table.iloc[0]
    assert row["param"] == "loc" and row["mean_grad"] == pytest.approx(-10.0, rel=1e-12)
    with warnings.catch_warnings():  # the oracle's scale component overflows float64 (inf·0); only loc is used
        warnings.simplefilter("ignore", IntegrationWarning)
        _, var = oracles.gradient_moments("k3", "loss", *FAR_VARIANCE.args)
    assert row["stdev_rel"] == pytest.approx(math.sqrt(var[0] / 50_000) / 10.0, rel=1e-6)


@pytest.mark.parametrize("problem, kind", [(FINITE_UNREACHABLE, "finite"), (JUST_INFINITE, "infinite")],
                         ids=["scale 1.4", "scale 1.45"])
def test_a_finite_variance_is_never_called_infinite(problem, kind):
    # E_q[r²·…] has exponent x²(1 − 1/σ²)/2 − x²/2: finite for σ < √2 ≈ 1.414, infinite above. A finite
    # variance that cannot be formed is refused (NaN, with the reason), never printed as inf.
    row = run_gradients(*problem.args[:2], ["k3"], mode="exact").table.iloc[0]
    if kind == "infinite":
        assert math.isinf(row["stdev_rel"]) and "infinite variance" in row["warning"]
    else:
        assert math.isnan(row["stdev_rel"]) and "variance" in row["warning"] and "infinite" not in row["warning"]


def test_seed003_configuration_has_no_tail_refusals():
    table = run_gradients(*SEED003.args[:2], ["k1", "k2", "k3", "reverse_k2"], mode="exact").table
    assert table["mean_grad"].notna().all() and np.isfinite(table["stdev_rel"]).all()
    assert not table["warning"].str.contains("mean|variance carried|infinite variance").any()


def test_a_mean_the_quadrature_cannot_settle_is_refused():
    # verl's clamps put kinks in k3_clamped's gradient where they bite (here 0.64% of samples):
    # Gauss–Hermite does not converge to 1e-10 on a kink, so the mean must come back NaN with a reason.
    m = _moments(CLAMPS, ["k3_clamped"], ["loss-w"])[("k3_clamped", "loss-w")]
    assert np.isnan(m.mean).all() and all("did not converge for the mean" in w for w in m.warnings)
    table = run_gradients(*CLAMPS.args[:2], ["k3_clamped"], ["loss-w"], mode="exact").table
    assert table["mean_grad"].isna().all() and (table["verdict"] == "unavailable").all()
    assert table["warning"].str.contains("did not converge for the mean").all()
