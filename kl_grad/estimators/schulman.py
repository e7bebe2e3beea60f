"""Schulman's estimators (Schulman 2020, "Approximating KL Divergence"), the two aimed at KL(ref‖policy), the
straight-through ``k1+``/``k3+`` (verl) and verl's clamped k3; each elementwise in d with a careful value and a
closed-form derivative (``numerics.py``). ``k1_of_d`` … are the raw elementwise formulas, which the framework
variants (``frameworks.py``) compose."""

from __future__ import annotations

import math
from typing import Callable

import torch

from ..directions import POLICY_REF, REF_POLICY
from .numerics import EXPM1_MINUS_U, SERIES_TERMS, cancelling, smooth
from .registry import Estimator, register, straight_through

Tensor = torch.Tensor


def r_log_r(u: Tensor) -> Tensor:
    """r·log r = u·e^u with r = e^u, and its limit 0 at r = 0 (u = −inf), where u·e^u is −inf·0 = NaN."""
    return torch.where(torch.isneginf(u), torch.zeros_like(u), u * torch.exp(u))


def k1_of_d(d: Tensor) -> Tensor:
    return d


def k2_of_d(d: Tensor) -> Tensor:
    return 0.5 * d * d


def k3_of_d(d: Tensor) -> Tensor:
    # k3 = r − 1 − log r with log r = u = −d: e^u − 1 − u.
    return cancelling(-d, EXPM1_MINUS_U, lambda u: torch.expm1(u) - u)


def reverse_k1_of_d(d: Tensor) -> Tensor:
    return r_log_r(-d)  # r log r = u e^u with u = −d


def reverse_k2_of_d(d: Tensor) -> Tensor:
    return torch.exp(-d)


def _zero_at_ref_zero(d: Tensor, value: Tensor) -> Tensor:
    """``value`` with its limit 0 where π_ref = 0 (d = +inf), where e^−d·(1 − d) is 0·(−inf) = NaN."""
    return torch.where(torch.isposinf(d), torch.zeros_like(value), value)


# k'(d) in closed form, and c(d) = k(d) + k'(d), the on-policy score coefficient of w·k (placement loss-w),
# in forms that do not cancel (k3: (e^{−d} − 1 + d) + (1 − e^{−d}) = d exactly).
_DERIVATIVES = {
    "k1": (torch.ones_like, lambda d: d + 1),
    "k2": (lambda d: d.clone(), lambda d: d * (0.5 * d + 1)),
    "k3": (lambda d: -torch.expm1(-d), lambda d: d.clone()),
    "reverse_k1": (lambda d: _zero_at_ref_zero(d, -torch.exp(-d) * (1 - d)), lambda d: -torch.exp(-d)),
    "reverse_k2": (lambda d: -torch.exp(-d), torch.zeros_like),
}


def _smooth_kwargs(name: str, value: Callable[[Tensor], Tensor], autograd_exact: bool = False) -> dict:
    """Registry fields for an estimator with closed-form k' and k + k'. ``autograd_exact``: polynomials
    (k1, k2), whose autograd derivative is already exact, keep plain autograd (fewer passes per chunk)."""
    derivative, coefficient = _DERIVATIVES[name]
    return dict(of_log_ratio=value if autograd_exact else smooth(value, derivative), derivative=derivative,
                score_coefficient=coefficient)


k1 = register(Estimator("k1", "log(π_θ/π_ref)", POLICY_REF, True, source="Schulman 2020", aliases=("kl",),
                        **_smooth_kwargs("k1", k1_of_d, autograd_exact=True)))
k2 = register(Estimator("k2", "½·log(π_θ/π_ref)²", POLICY_REF, False, source="Schulman 2020", aliases=("mse",),
                        **_smooth_kwargs("k2", k2_of_d, autograd_exact=True)))
k3 = register(Estimator("k3", "r − 1 − log r", POLICY_REF, True, source="Schulman 2020",
                        **_smooth_kwargs("k3", k3_of_d)))
reverse_k1 = register(Estimator("reverse_k1", "r·log r", REF_POLICY, True,
                                source="importance-sampled KL(ref‖policy) (Schulman 2020)",
                                **_smooth_kwargs("reverse_k1", reverse_k1_of_d)))
reverse_k2 = register(Estimator("reverse_k2", "r", REF_POLICY, False,
                                source="∇E_q[r] = ∇KL(ref‖policy) (importance sampling)", gradient_only=True,
                                **_smooth_kwargs("reverse_k2", reverse_k2_of_d)))


# --- Variants used by production trainers ------------------------------------------------------

# r·log r − (r − 1) = u e^u − (e^u − 1) with u = −d: the control-variate form of reverse_k1 (value ≥ 0).
_U_EXP_MINUS_EXPM1 = [(k - 1) / math.factorial(k) for k in range(2, 2 + SERIES_TERMS)]


def reverse_k1_cv_of_d(d: Tensor) -> Tensor:
    return cancelling(-d, _U_EXP_MINUS_EXPM1, lambda u: r_log_r(u) - torch.expm1(u))


_DERIVATIVES["reverse_k1_cv"] = (lambda d: -r_log_r(-d), lambda d: -torch.expm1(-d))  # k' = −r log r; c = 1 − r


LOG_RATIO_CLAMP = 20.0  # |log r| clamp applied before exp, as verl's low_var_kl does
VALUE_CLAMP = 10.0  # k3 output clamp, as verl's low_var_kl does


def k3_clamped_of_d(d: Tensor) -> Tensor:
    # clamp has zero gradient outside its range: samples beyond either clamp stop contributing a gradient.
    return k3_of_d(d.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)).clamp(-VALUE_CLAMP, VALUE_CLAMP)


reverse_k1_cv = register(Estimator("reverse_k1_cv", "r·log r − (r − 1)", REF_POLICY, True,
                                   source="Schulman 2020 (r·log r with control variate r − 1)",
                                   **_smooth_kwargs("reverse_k1_cv", reverse_k1_cv_of_d)))
k1_st = register(Estimator("k1+", "value k1, gradient k2 (straight-through)", POLICY_REF, True, source="verl 'k1+'",
                           **straight_through(k1_of_d)))
k3_st = register(Estimator("k3+", "value k3, gradient k2 (straight-through)", POLICY_REF, True, source="verl 'k3+'",
                           **straight_through(k3_of_d)))


def k3_clamp_active(d: Tensor) -> Tensor:
    inside = d.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    return (d.abs() > LOG_RATIO_CLAMP) | (k3_of_d(inside) > VALUE_CLAMP)


k3_clamped = register(Estimator("k3_clamped", "k3 of clamp(d, ±20), clamped to ±10", POLICY_REF, False,
                                of_log_ratio=k3_clamped_of_d, source="verl low_var_kl's clamps",
                                clamp_active=k3_clamp_active, aliases=("verl:low_var_kl",)))
