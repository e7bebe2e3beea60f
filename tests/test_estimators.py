"""Estimator values and autograd gradients against independent float64 references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kl_grad.errors import KLGradError
from kl_grad.estimators import ESTIMATORS, get_estimator

NAMES = ["k1", "k2", "k3", "reverse_k1", "reverse_k2"]

# Log-ratios d = log π_θ − log π_ref: 1e-8 ≤ |d| ≤ 20, both signs, as float32.
_MAG = np.logspace(-8, math.log10(20.0), 400)
GRID32 = torch.tensor(np.concatenate([-_MAG[::-1], _MAG]), dtype=torch.float32)
GRID = GRID32.double().numpy()  # the exact float32 inputs, seen in float64

# float32 machine epsilon is 1.19e-7; 2e-6 (~17 eps) leaves room for the ≤1-ulp
# error of float32 exp/expm1 plus a couple of roundings, yet any formula that
# cancels (e.g. k3 = e^(−d) − 1 + d directly in float32) misses it by orders of magnitude.
RTOL32 = 2e-6


def _k3_reference(d: np.ndarray) -> np.ndarray:
    """e^u − 1 − u with u = −d in float64: Taylor series for |d| < 0.1, direct formula beyond.

    Series: Σ_{k=2..14} u^k/k!; the first omitted term is < 0.1^15/15! ≈ 8e-28,
    i.e. < 2e-25 relative to the value (≥ 0.1²/2·0.9). Beyond 0.1 the direct
    formula's cancellation costs at most a factor ~40 on 1e-16.
    """
    u = -d
    series = np.zeros_like(u)
    for k in range(14, 1, -1):
        series = (series + 1.0 / math.factorial(k)) * (u if k > 2 else 1.0)
    series = series * u * u  # Σ u^k/k! for k = 2..14, Horner
    direct = np.exp(u) - 1.0 - u
    return np.where(np.abs(d) < 0.1, series, direct)


def _reference_values(name: str, d: np.ndarray) -> np.ndarray:
    if name == "k1":
        return d
    if name == "k2":
        return 0.5 * d * d
    if name == "k3":
        return _k3_reference(d)
    if name == "reverse_k1":  # r log r with r = e^(−d)
        return -d * np.exp(-d)
    if name == "reverse_k2":
        return np.exp(-d)
    raise KeyError(name)


def _reference_grads(name: str, d: np.ndarray) -> np.ndarray:
    """d k / d d, differentiated by hand."""
    if name == "k1":
        return np.ones_like(d)
    if name == "k2":
        return d
    if name == "k3":  # 1 − e^(−d), accurate for tiny d through expm1
        return -np.expm1(-d)
    if name == "reverse_k1":  # d/dd (−d e^(−d)) = (d − 1) e^(−d)
        return (d - 1.0) * np.exp(-d)
    if name == "reverse_k2":
        return -np.exp(-d)
    raise KeyError(name)


def _value_and_grad(name: str, d32: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    d = d32.clone().requires_grad_(True)
    values = ESTIMATORS[name].of_log_ratio(d)
    (grad,) = torch.autograd.grad(values.sum(), d)
    assert values.dtype == d32.dtype and grad.dtype == d32.dtype
    return values.detach().double().numpy(), grad.double().numpy()


def test_taylor_reference_matches_direct_formula_where_both_are_accurate():
    # At |d| = 0.1 the series (truncation < 1e-24 relative) and the direct
    # formula (cancellation ≲ 1e-14 relative) must agree; 1e-13 is that budget.
    d = np.array([-0.1, 0.1, -0.0999, 0.0999])
    series = _k3_reference(d * (1 - 1e-15))  # just inside the series branch
    direct = np.exp(-d) - 1.0 + d
    np.testing.assert_allclose(series, direct, rtol=1e-13)


@pytest.mark.parametrize("name", NAMES)
def test_float32_values_match_float64_reference(name):
    values, _ = _value_and_grad(name, GRID32)
    ref = _reference_values(name, GRID)
    rel = np.abs(values - ref) / np.abs(ref)
    assert rel.max() <= RTOL32, (name, GRID[rel.argmax()], rel.max())


@pytest.mark.parametrize("name", [n for n in NAMES if n != "reverse_k1"])
def test_float32_gradients_match_float64_reference(name):
    _, grads = _value_and_grad(name, GRID32)
    ref = _reference_grads(name, GRID)
    rel = np.abs(grads - ref) / np.abs(ref)
    assert rel.max() <= RTOL32, (name, GRID[rel.argmax()], rel.max())


def test_reverse_k1_gradient_absolute_error_near_its_root():
    # The gradient (d − 1)e^(−d) vanishes at d = 1, where relative error is
    # ill-conditioned. Autograd forms it by the product rule from the terms
    # e^(−d) and d·e^(−d); a few float32 ulps (~6e-8 each) of their total size
    # e^(−d)(1 + |d|) bound the error: 4e-7 is ~3.4 eps of that size.
    _, grads = _value_and_grad("reverse_k1", GRID32)
    ref = _reference_grads("reverse_k1", GRID)
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
    d64 = torch.tensor(GRID, dtype=torch.float64)
    values, grads = _value_and_grad(name, d64)
    np.testing.assert_allclose(values, _reference_values(name, GRID), rtol=1e-13, atol=0)
    ref_g = _reference_grads(name, GRID)
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
        np.testing.assert_allclose(grad.numpy(), _reference_grads(name, d), rtol=1e-13, atol=1e-15)


def test_registry_aliases_and_names():
    assert set(NAMES) <= set(ESTIMATORS)
    assert get_estimator("low_var_kl") is ESTIMATORS["k3"]
    assert get_estimator("mse") is ESTIMATORS["k2"]
    assert get_estimator("kl") is ESTIMATORS["k1"]
    for name in NAMES:
        assert get_estimator(name) is ESTIMATORS[name]
        assert get_estimator(f"  {name} ") is ESTIMATORS[name]


def test_unknown_estimator_lists_allowed_names():
    with pytest.raises(KLGradError) as info:
        get_estimator("k4")
    msg = str(info.value)
    assert "k4" in msg
    for name in NAMES:
        assert name in msg


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


@pytest.mark.parametrize("name, value_of", [("k3+", lambda d: torch.expm1(-d) + d), ("k1+", lambda d: d)])
def test_straight_through_has_kx_value_and_k2_gradient(name, value_of):
    d = torch.linspace(-3, 3, 61, dtype=torch.float64, requires_grad=True)
    out = ESTIMATORS[name].of_log_ratio(d)
    torch.testing.assert_close(out.detach(), value_of(d.detach()), rtol=1e-12, atol=1e-15)
    (grad,) = torch.autograd.grad(out.sum(), d)
    torch.testing.assert_close(grad, d.detach(), rtol=0, atol=0)  # d/dd (d²/2) = d exactly


def test_clamped_k3_zeroes_gradients_where_a_clamp_is_active():
    d = torch.tensor([-25.0, -3.0, 0.5, 5.0, 15.0, 25.0], dtype=torch.float64, requires_grad=True)
    out = ESTIMATORS["k3_clamped"].of_log_ratio(d)
    (grad,) = torch.autograd.grad(out.sum(), d)
    k3 = torch.expm1(-d.detach()) + d.detach()
    active = (k3 > 10) | (d.detach().abs() > 20)  # output clamp at 10 or log-ratio clamp at 20
    assert (grad[active] == 0).all() and (grad[~active] != 0).all()
    assert out.max().item() == 10.0


def test_reverse_k1_cv_float32_accuracy_and_nonnegativity():
    d = torch.logspace(-8, math.log10(20), 300, dtype=torch.float64)
    d = torch.cat([d, -d]).float().double()  # float32-representable inputs, so only the evaluation differs
    u = -d
    # Series Σ_{k≥2} u^k (k−1)/k! for |u| < 0.5 (float64 oracle), closed form beyond.
    series = sum(u**k * ((k - 1) / math.factorial(k)) for k in range(2, 30))
    ref = torch.where(u.abs() < 0.5, series, u * torch.exp(u) - torch.expm1(u))
    got = ESTIMATORS["reverse_k1_cv"].of_log_ratio(d.float()).double()
    assert (got >= 0).all()
    assert ((got - ref).abs() / ref).max().item() < 2e-6  # a few float32 ulps
