"""kl_grad.lab.tails.tail_report: where an integrand's mass lives, behind exact mode's refusals.

The integrands are built from the oracles' hand-derived per-sample gradients (tests/oracles.py), so these
tests exercise the tail classification alone, not the autograd engine. For π_θ = N(0,1) and an r-based
estimator (k3), the variance integrand r²·q·s² = p²/q·s² grows like exp(c·x²) with c = (1 − 2/σ_ref²)/2
on the reference's side, so the variance is infinite once σ_ref ≥ √2; k2's gradient d·s is polynomial
in x, so every moment is finite and near, wherever the reference is.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kl_grad.lab.families import parse_spec
from kl_grad.lab.tails import ORDERS, tail_report
from tests import oracles
from tests.problems import (
    FAR_MEAN,
    FAR_VARIANCE,
    FINITE_UNREACHABLE,
    HEAVY,
    JUST_INFINITE,
    SEED003,
)


def _tails(problem, estimator: str) -> list[dict]:
    """{order: Tail} per parameter for ``estimator`` as a loss, on ``problem`` (policy-sampled)."""
    def evaluate(x):
        with np.errstate(over="ignore", invalid="ignore"):
            g = oracles.per_sample_gradient(estimator, "loss", x.numpy()[:, 0], problem.policy, problem.ref)
        return {"g": torch.from_numpy(g)}

    return tail_report(evaluate, parse_spec(problem.policy))["g"]


def _kinds(problem, estimator: str) -> list[dict[int, str]]:
    return [{k: tail.kind for k, tail in param.items()} for param in _tails(problem, estimator)]


def test_a_near_pair_is_ok_in_every_moment():
    for estimator in ("k2", "k3"):
        for param in _kinds(SEED003, estimator):
            assert param == {1: "ok", 2: "ok", 4: "ok"}, estimator


def test_a_polynomial_gradient_is_ok_however_far_the_reference():
    for param in _kinds(FAR_MEAN, "k2"):  # π_ref = N(30,1)
        assert param == {1: "ok", 2: "ok", 4: "ok"}


@pytest.mark.parametrize("problem", [HEAVY, JUST_INFINITE], ids=lambda p: p.name)
def test_a_wide_reference_has_an_infinite_variance(problem):
    # σ_ref = 2 and σ_ref = 1.45, both ≥ √2: the variance (and the 4th moment) diverge; the mean is fine.
    for param in _kinds(problem, "k3"):
        assert param == {1: "ok", 2: "infinite", 4: "infinite"}


def test_a_finite_variance_beyond_reach_is_far_not_infinite():
    # σ_ref = 1.4 < √2: c < 0, so the variance is finite, but its integrand still rises at the grid's edge.
    for param in _kinds(FINITE_UNREACHABLE, "k3"):
        assert param[1] == "ok" and param[2] == "far"


def test_a_far_reference_carries_the_high_moments_out_of_reach():
    # π_ref = N(10,1): the 4th-moment integrand p⁴/q³·s⁴ peaks near x = 40σ, at the grid's end.
    for param in _kinds(FAR_VARIANCE, "k3"):
        assert param[1] == "ok" and param[4] == "far"


def _report(g_of_x) -> dict[int, object]:
    (param,) = tail_report(lambda x: {"g": g_of_x(x)}, parse_spec("normal:0,1"))["g"]
    return param


def test_an_overflowing_gradient_next_to_the_mass_is_not_estimable():
    param = _report(lambda x: torch.where(x > 0, torch.tensor(np.inf, dtype=torch.float64), 1.0))
    assert all(param[k].kind == "overflow" for k in ORDERS)
    assert "not estimable" in param[2].describe("variance")


def test_a_zero_gradient_is_trivially_ok():
    assert all(t.kind == "ok" for t in _report(lambda x: torch.zeros_like(x)).values())


def test_each_kind_says_what_it_means():
    infinite = _tails(HEAVY, "k3")[0][2]
    assert infinite.describe("variance") == "infinite variance: the integrand grows without bound in the tails"
    far = _tails(FINITE_UNREACHABLE, "k3")[0][2].describe("variance")
    assert far.startswith("variance carried") and "no sample will land there" in far


def _scaled(problem, a: float):
    """The same pair in x' = a·x: every tail kind is invariant under this change of units."""
    def spec(s):
        loc, scale = (float(v) for v in s.split(":")[1].split(","))
        return f"normal:{a * loc!r},{a * scale!r}"
    return type(problem)(f"{problem.name}×{a}", spec(problem.policy), spec(problem.ref), finite=False)


@pytest.mark.parametrize("a", [1e-5, 1e-3, 30.0])
@pytest.mark.parametrize("problem", [SEED003, HEAVY, FINITE_UNREACHABLE, FAR_VARIANCE], ids=lambda p: p.name)
def test_tail_kinds_do_not_depend_on_the_units_of_x(problem, a):
    assert _kinds(_scaled(problem, a), "k3") == _kinds(problem, "k3")


def test_a_narrow_policy_has_a_finite_mean_that_overflows_not_an_infinite_one():
    # π_θ = N(0, 1e-5), π_ref = N(−1.8, 1.1): E[∇k3 loss] = −E_ref[∇log π_θ] is finite (closed form), but
    # r = q/p overflows float64 37.6σ from the policy while the mean's mass lies on the reference's side:
    # not estimable. The variance ∫ q²/p·s² diverges (σ_ref² > 2σ²): infinite.
    narrow = type(SEED003)("narrow", "normal:0,1e-05", "normal:-1.8,1.1", finite=False)
    for param in _kinds(narrow, "k3"):
        assert param[1] == "overflow" and param[2] == "infinite"
