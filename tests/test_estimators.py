"""kl_grad.estimators: every registered estimator's values and autograd gradients against the float64
oracles (tests/oracles.py: VALUE, SLOPE, TARGET), the registry, and the framework variants."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kl_grad.directions import POLICY_REF, REF_POLICY
from kl_grad.errors import KLGradError
from kl_grad.estimators import ESTIMATORS, Estimator, get_estimator, register
from tests import oracles
from tests.problems import CLAMPS, SEED003, TOKENS

NAMES = list(ESTIMATORS)  # generic tests loop over the registry; each entry needs its oracle

# Log-ratios d = log π_θ − log π_ref: 1e-8 ≤ |d| ≤ 20, both signs, as float32.
_MAG = np.logspace(-8, math.log10(20.0), 400)
GRID32 = torch.tensor(np.concatenate([-_MAG[::-1], _MAG]), dtype=torch.float32)
GRID = GRID32.double().numpy()  # the exact float32 inputs, seen in float64

# float32 machine epsilon is 1.19e-7; 2e-6 (~17 eps) leaves room for the ≤1-ulp
# error of float32 exp/expm1 plus a couple of roundings, yet any formula that
# cancels (e.g. k3 = e^(−d) − 1 + d directly in float32) misses it by orders of magnitude.
RTOL32 = 2e-6


def _value_and_grad(name: str, d: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    d = d.clone().requires_grad_(True)
    values = ESTIMATORS[name].of_log_ratio(d)
    (grad,) = torch.autograd.grad(values.sum(), d)
    assert values.dtype == d.dtype and grad.dtype == d.dtype
    return values.detach().double().numpy(), grad.double().numpy()


def test_every_registered_estimator_has_an_oracle():
    # Adding an estimator means writing its value, slope and target in tests/oracles.py.
    assert set(ESTIMATORS) == set(oracles.VALUE) == set(oracles.SLOPE) == set(oracles.TARGET)


@pytest.mark.parametrize("name", NAMES)
def test_registered_direction_is_the_oracles_target(name):
    assert ESTIMATORS[name].direction == oracles.TARGET[name]


@pytest.mark.parametrize("name", NAMES)
def test_float32_values_match_float64_reference(name):
    values, _ = _value_and_grad(name, GRID32)
    ref = oracles.VALUE[name](GRID)
    rel = np.abs(values - ref) / np.abs(ref)
    assert rel.max() <= RTOL32, (name, GRID[rel.argmax()], rel.max())


@pytest.mark.parametrize("name", [n for n in NAMES if n != "reverse_k1"])
def test_float32_gradients_match_float64_reference(name):
    _, grads = _value_and_grad(name, GRID32)
    ref = oracles.SLOPE[name](GRID)
    # atol 0: where the oracle's slope is exactly 0 (a clamp is active) the gradient must be exactly 0.
    np.testing.assert_allclose(grads, ref, rtol=RTOL32, atol=0, err_msg=name)


def test_reverse_k1_gradient_absolute_error_near_its_root():
    # The gradient (d − 1)e^(−d) vanishes at d = 1, where relative error is
    # ill-conditioned. Autograd forms it by the product rule from the terms
    # e^(−d) and d·e^(−d); a few float32 ulps (~6e-8 each) of their total size
    # e^(−d)(1 + |d|) bound the error: 4e-7 is ~3.4 eps of that size.
    _, grads = _value_and_grad("reverse_k1", GRID32)
    ref = oracles.SLOPE["reverse_k1"](GRID)
    scale = np.exp(-GRID) * (1.0 + np.abs(GRID))
    err = np.abs(grads - ref) / scale
    assert err.max() <= 4e-7, (GRID[err.argmax()], err.max())
    # and away from the root (|d − 1| > 0.1) the relative error is as tight as the others
    away = np.abs(GRID - 1.0) > 0.1
    rel = np.abs(grads - ref)[away] / np.abs(ref)[away]
    assert rel.max() <= RTOL32 * 10  # ≤ 1/|d−1| ≤ 10 times the conditioning of the two terms


@pytest.mark.parametrize("name", NAMES)
def test_float64_values_and_gradients_are_float64_accurate(name):
    # float64 inputs: values to relative 1e-13 (~450 float64 eps) over the same
    # grid; any float32 detour would show up as ~1e-7 errors. Gradients get
    # 5e-13: k3's float64 Taylor branch (|d| < 1e-2, terms to d^6) has a
    # derivative whose first omitted term is |d|^5/720 ≈ 1.4e-13 relative at the edge.
    # reverse_k1_cv's direct branch (|d| ≥ 1e-2) subtracts e^u − 1 from u·e^u, both ~|d|, to get ~d²/2:
    # measured 2.2e-13 relative just above |d| = 1e-2, hence 5e-13 for it alone.
    d64 = torch.tensor(GRID, dtype=torch.float64)
    values, grads = _value_and_grad(name, d64)
    rtol = 5e-13 if name == "reverse_k1_cv" else 1e-13
    np.testing.assert_allclose(values, oracles.VALUE[name](GRID), rtol=rtol, atol=0)
    ref_g = oracles.SLOPE[name](GRID)
    if name == "reverse_k1":
        scale = np.exp(-GRID) * (1.0 + np.abs(GRID))
        assert (np.abs(grads - ref_g) / scale).max() <= 1e-15 * 8  # few float64 eps, as the float32 case
    else:
        np.testing.assert_allclose(grads, ref_g, rtol=5e-13, atol=0)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_finite_values_and_gradients_up_to_80(name, sign):
    d32 = torch.tensor(sign * np.linspace(0.0, 80.0, 2001), dtype=torch.float32)
    values, grads = _value_and_grad(name, d32)
    assert np.isfinite(values).all() and np.isfinite(grads).all(), name


@pytest.mark.parametrize("name", NAMES)
def test_any_shape_and_broadcasting(name):
    est = get_estimator(name)
    g = torch.Generator().manual_seed(0)
    logp = torch.randn(3, 4, 5, generator=g, requires_grad=True)
    ref_logp = torch.randn(3, 4, 5, generator=g)
    out = est(logp, ref_logp)
    assert out.shape == (3, 4, 5)
    out.sum().backward()
    assert logp.grad.shape == (3, 4, 5)
    # elementwise: equals the estimator applied to the flattened log-ratio
    flat = est.of_log_ratio((logp - ref_logp).reshape(-1)).reshape(3, 4, 5)
    assert torch.equal(out, flat)

    lp2 = torch.randn(2, 3, generator=g)
    rl2 = torch.randn(3, generator=g)
    out2 = est(lp2, rl2)
    assert out2.shape == (2, 3)
    assert torch.equal(out2, est(lp2, rl2.expand(2, 3)))


def test_gradient_wrt_logp_equals_gradient_wrt_log_ratio():
    g = torch.Generator().manual_seed(1)
    logp = torch.randn(50, generator=g, dtype=torch.float64, requires_grad=True)
    ref_logp = torch.randn(50, generator=g, dtype=torch.float64)
    d = (logp - ref_logp).detach().numpy()
    for name in NAMES:
        (grad,) = torch.autograd.grad(get_estimator(name)(logp, ref_logp).sum(), logp)
        np.testing.assert_allclose(grad.numpy(), oracles.SLOPE[name](d), rtol=1e-13, atol=1e-15, err_msg=name)


@pytest.mark.parametrize("problem", [SEED003, TOKENS], ids=lambda p: p.name)
@pytest.mark.parametrize("name", NAMES)
def test_unbiased_value_flag_matches_the_oracle_expectation(name, problem):
    # E_q[k] by quad/enumeration of the oracle's value formula against the closed-form KL of its target.
    # quad is asked for 1e-12 relative; 1e-10 leaves a margin.
    est = ESTIMATORS[name]
    mean, _ = oracles.value_moments(name, problem.policy, problem.ref)
    kl = oracles.closed_form_kl(oracles.TARGET[name], problem.policy, problem.ref)
    if est.unbiased_value:
        assert mean == pytest.approx(kl, rel=1e-10)
    elif est.gradient_only:  # r: E_q[r] = 1, no KL at all
        assert mean == pytest.approx(1.0, rel=1e-10)


@pytest.mark.parametrize("name", [n for n, e in ESTIMATORS.items() if not e.unbiased_value])
def test_estimators_flagged_biased_are_biased_where_it_shows(name):
    # CLAMPS: the reference 3.5σ away, where k3 > 10 on 0.64% of samples, so even the clamped k3's
    # value is visibly off (measured relative biases: k2 1.84, reverse_k2 0.84, k3_clamped 0.17; the 1e-4
    # threshold is far above quad's error, far below each bias).
    mean, _ = oracles.value_moments(name, CLAMPS.policy, CLAMPS.ref)
    kl = oracles.closed_form_kl(oracles.TARGET[name], CLAMPS.policy, CLAMPS.ref)
    assert abs(mean - kl) > 1e-4 * kl


def test_registry_aliases_and_names():
    assert set(oracles.SEED003_ESTIMATORS) <= set(ESTIMATORS)
    assert get_estimator("verl:low_var_kl") is ESTIMATORS["k3_clamped"]
    assert get_estimator("mse") is ESTIMATORS["k2"]
    assert get_estimator("kl") is ESTIMATORS["k1"]
    for name in NAMES:
        assert get_estimator(name) is ESTIMATORS[name]
        assert get_estimator(f"  {name} ") is ESTIMATORS[name]
        for alias in ESTIMATORS[name].aliases:
            assert get_estimator(alias) is ESTIMATORS[name]


def test_unknown_estimator_lists_allowed_names_and_aliases():
    with pytest.raises(KLGradError) as info:
        get_estimator("k4")
    msg = str(info.value)
    assert msg.startswith("unknown estimator 'k4'; expected one of k1, k2, k3")
    for name in NAMES:
        assert name in msg
    assert "verl:low_var_kl" in msg


def test_the_bare_low_var_kl_alias_is_retired_naming_both_replacements():
    with pytest.raises(KLGradError) as info:
        get_estimator("low_var_kl")
    msg = str(info.value)
    assert msg.startswith("estimator 'low_var_kl' is retired") and "'k3'" in msg and "'verl:low_var_kl'" in msg
    assert "\n" not in msg


@pytest.mark.parametrize("taken", ["k1", "verl:low_var_kl"])
def test_register_refuses_a_taken_name_or_alias(taken):
    before = dict(ESTIMATORS)
    with pytest.raises(ValueError, match="registered twice"):
        register(Estimator(taken, "d", POLICY_REF, True, lambda d: d, "test"))
    assert ESTIMATORS == before  # nothing half-registered


def test_registered_facts():
    # The targets and flags the README's estimator table states.
    assert [n for n, e in ESTIMATORS.items() if e.direction == REF_POLICY] == ["reverse_k1", "reverse_k2",
                                                                                "reverse_k1_cv"]
    assert [n for n, e in ESTIMATORS.items() if e.gradient_only] == ["reverse_k2"]
    assert [n for n, e in ESTIMATORS.items() if e.clamp_active is not None] == ["k3_clamped", "verl:abs", "openrlhf:k1",
                                                                                "openrlhf:k2", "openrlhf:k3"]


def test_k3_nonnegative_and_quadratic_at_tiny_d():
    values, _ = _value_and_grad("k3", GRID32)
    assert (values > 0).all()  # nonnegative, and no |d| ≥ 1e-8 underflows or cancels to 0
    for dtype in (torch.float32, torch.float64):
        d = torch.tensor([1e-8, -1e-8], dtype=dtype)
        got = ESTIMATORS["k3"].of_log_ratio(d).double()
        dd = d.double()
        # k3 = d²/2 − d³/6 + …: at |d| = 1e-8 the cubic term is 3e-9 relative,
        # so 1e-6 tests the value itself, not the series.
        torch.testing.assert_close(got, 0.5 * dd * dd, rtol=1e-6, atol=0)


# --- framework variants -------------------------------------------------------------------------


@pytest.mark.parametrize("name, value_of", [("k3+", "k3"), ("k1+", "k1")])
def test_straight_through_has_kx_value_and_k2_gradient(name, value_of):
    d = torch.linspace(-3, 3, 61, dtype=torch.float64, requires_grad=True)
    out = ESTIMATORS[name].of_log_ratio(d)
    np.testing.assert_allclose(out.detach().numpy(), oracles.VALUE[value_of](d.detach().numpy()), rtol=1e-12,
                               atol=1e-15)
    (grad,) = torch.autograd.grad(out.sum(), d)
    torch.testing.assert_close(grad, d.detach(), rtol=0, atol=0)  # d/dd (d²/2) = d exactly


def test_clamped_k3_zeroes_gradients_where_a_clamp_is_active():
    d = torch.tensor([-25.0, -3.0, 0.5, 5.0, 15.0, 25.0], dtype=torch.float64, requires_grad=True)
    est = ESTIMATORS["k3_clamped"]
    out = est.of_log_ratio(d)
    (grad,) = torch.autograd.grad(out.sum(), d)
    k3 = oracles.VALUE["k3"](d.detach().numpy())
    active = torch.tensor((k3 > 10) | (np.abs(d.detach().numpy()) > 20))  # output clamp at 10, log-ratio at 20
    assert (grad[active] == 0).all() and (grad[~active] != 0).all()
    assert out.max().item() == 10.0
    assert torch.equal(est.clamp_active(d.detach()), active)  # what the runner's clamped_frac counts


def test_reverse_k1_cv_float32_accuracy_and_nonnegativity():
    d = torch.logspace(-8, math.log10(20), 300, dtype=torch.float64)
    d = torch.cat([d, -d]).float().double()  # float32-representable inputs, so only the evaluation differs
    ref = oracles.VALUE["reverse_k1_cv"](d.numpy())
    got = ESTIMATORS["reverse_k1_cv"].of_log_ratio(d.float()).double().numpy()
    assert (got >= 0).all()
    assert (np.abs(got - ref) / ref).max() < 2e-6  # a few float32 ulps
