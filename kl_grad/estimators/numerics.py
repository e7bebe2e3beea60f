"""Careful float forms for the estimators: cancelling O(u²) expressions and closed-form derivatives.

``cancelling`` evaluates a function that is O(u²) but whose direct formula cancels (e^u − 1 − u) in float64,
with a Taylor series near 0; ``smooth`` gives an estimator the derivative of its own closed form instead of
autograd's derivative of the careful value (see ``_Smooth``).
"""

from __future__ import annotations

import math
from typing import Callable

import torch

Tensor = torch.Tensor

SERIES_RADIUS = 1e-2  # float64 only: series below, expm1 beyond (both errors < 1e-13 relative)
SERIES_TERMS = 5  # u^2 .. u^6; first omitted term is 4e-14 of the value at |u| = 1e-2


def series(u: Tensor, coeffs: list[float]) -> Tensor:
    """Horner evaluation of sum_k coeffs[k-2] * u^k for k = 2, 3, ..."""
    acc = torch.full_like(u, coeffs[-1])
    for c in reversed(coeffs[:-1]):
        acc = acc * u + c
    return acc * u * u


def cancelling(u: Tensor, coeffs: list[float], direct) -> Tensor:
    """A function that is O(u^2) but whose direct formula cancels, evaluated carefully.

    Inputs below float64 are evaluated by the direct formula in float64 and
    rounded back: its cancellation error, about 2e-16/|u| relative, is far
    below a float32 ulp for |u| >= 1e-8 (measured: <= 1 ulp over 1e-8..20).
    float64 inputs switch to the Taylor series for |u| < 1e-2. One ``where``
    is NaN-safe here because both branches are finite wherever float64 is.
    """
    if u.dtype == torch.float64:
        return torch.where(u.abs() < SERIES_RADIUS, series(u, coeffs), direct(u))
    return direct(u.to(torch.float64)).to(u.dtype)


# e^u − 1 − u = sum_{k>=2} u^k / k!
EXPM1_MINUS_U = [1.0 / math.factorial(k) for k in range(2, 2 + SERIES_TERMS)]


class _Smooth(torch.autograd.Function):
    """k(d) whose derivative is the stated closed form k'(d), evaluated in d's dtype.

    Autograd of a careful value formula is not always careful: torch's ``expm1`` backward
    multiplies by (result + 1), which is 0 in float64 once e^u < 1e-16, so the derivative of
    u·e^u − expm1(u) came out (1 + u)·e^u instead of u·e^u (off by 1/u for d ≳ 37). The
    derivative here is its own closed form, finite wherever its limit is (d = +inf: ref prob 0).
    """

    @staticmethod
    def forward(ctx, d, value, derivative):
        ctx.save_for_backward(d)
        ctx.derivative = derivative
        return value(d)  # the value functions are careful in any dtype (``cancelling``)

    @staticmethod
    def backward(ctx, grad):
        (d,) = ctx.saved_tensors
        return grad * ctx.derivative(d), None, None  # closed forms: accurate in d's own dtype


def smooth(value: Callable[[Tensor], Tensor], derivative: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """The differentiable estimator d ↦ value(d) with gradient derivative(d), both in d's dtype."""
    return lambda d: _Smooth.apply(d, value, derivative)
