"""Careful float32 forms of the registered estimators for ``kl_loss``'s fused per-token path (``kl_grad/fused.py``).

The registry's own forms (``schulman.py``) evaluate cancelling values in float64 and round back; that is what the
lab runs and keeps. Here each estimator is written for float32 with the fewest elementwise passes (and fresh
tensors) that keep a few float32 ulps. ``FORMS[name] = (space, fn)``: fn takes x = d = log π_θ − log π_ref
(space "d") or x = u = −d (space "u"), a fresh tensor it may overwrite, ``want`` and ``spare`` (a fresh
tensor of x's shape it may overwrite, or None), and returns
(k(d), second, negate): second·(−1 if negate) is k'(d) (want "slope") or k(d) + k'(d) (want "coef", the
on-policy score coefficient of w·k, placement loss-w); a Python float for a constant; None for want "none".

The cancelling F(x) = e^x − 1 − x (k3 = F(−d); r·log r − (r − 1) = r·F(d)) is a Taylor series at |x| ≤ ``RADIUS``
and expm1(x) − x beyond (``expm1_minus``); hardshrink splits x so that each element takes exactly one branch.
Measured against mpmath at 40 digits (tests/test_fused.py): values and gradients within 2.3e-7 relative (2 float32
ulps) for |d| ≤ 80, |d| down to 1e-30 wherever the true value is a normal float32 (k2, k3 ≈ d²/2 are subnormal
below |d| ≈ 1.5e-19 and 0 below 3e-23, as in any float32 computation), and exactly 0 at d = 0; float64 inputs never
come here.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

Tensor = torch.Tensor

RADIUS = 0.5  # series below, direct beyond: expm1 is within 0.52 ulp in torch's float32, so expm1(x) − x at
#              |x| ≥ 0.5 loses at most |expm1(x)|/F(x) ≤ 4.4 times that (measured 2.0e-7 relative)
# F(x) = Σ_{j≥2} x^j/j! = x²·Σ_{i≥0} x^i/(i+2)!; degree 6 after x²: the first omitted term is
# 0.5^7/9!/0.43 = 5e-8 of the value at |x| = 0.5 (0.43 = F(−0.5)/0.5²).
_COEFFS = [torch.tensor(1.0 / math.factorial(i + 2)) for i in range(7)]  # float32 0-dim constants
_ON_DEVICE: dict[torch.device, list[Tensor]] = {}


def _coeffs(device: torch.device) -> list[Tensor]:
    return _COEFFS if device.type == "cpu" else _ON_DEVICE.setdefault(device, [c.to(device) for c in _COEFFS])


# Forms own their argument x (a fresh tensor) and may overwrite it; they allocate as few tensors as they can,
# because at (64, 8192) a fresh tensor's first touch costs more than several passes over one already mapped.


def expm1_minus(x: Tensor, want_expm1: bool = False, keep_x: bool = False,
                spare: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """F(x) = e^x − 1 − x without cancellation, in a new tensor, and expm1(x) if ``want_expm1`` (else None).

    With h = hardshrink(x, RADIUS) (x beyond the radius, 0 inside) and s = x − h (x inside, 0 beyond), exactly one
    is nonzero, so F(x) = [expm1(h) − h] + s²·P(s), P the Taylor series of F(s)/s², and expm1(x) = expm1(h) +
    s·(1 + s·P(s)). x = ±inf gives NaN (kl_loss then takes the registry's form). Overwrites x unless ``keep_x``,
    and ``spare`` (a tensor of x's shape and dtype that is no longer needed, or None).
    """
    h = torch.nn.functional.hardshrink(x, RADIUS)
    e = torch.expm1(h)
    s = torch.sub(x, h) if keep_x else torch.sub(x, h, out=x)
    value = torch.sub(e, h, out=h)  # e^x − 1 − x beyond the radius, 0 inside
    coeffs = _coeffs(x.device)
    acc = torch.addcmul(coeffs[-2], s, coeffs[-1], out=spare)  # Horner: P(s) = Σ_i c_i s^i, then s·P(s)
    for c in reversed(coeffs[:-2]):
        torch.addcmul(c, acc, s, out=acc)
    sp = acc.mul_(s)
    value.addcmul_(sp, s)
    return value, (e.addcmul_(s, sp.add_(1.0)) if want_expm1 else None)


def _k1(d, want, spare=None):
    if want == "coef":
        return d, d + 1, False
    return d, (1.0 if want == "slope" else None), False  # a float coefficient: the gradient is grad·1.0


def _k2(d, want, spare=None):
    k = torch.mul(d, d, out=spare).mul_(0.5)
    if want == "coef":
        return k, torch.mul(d, 0.5).add_(1.0).mul_(d), False  # d·(d/2 + 1): d/2 + 1 is exact near its root −2
    return k, (d if want == "slope" else None), False


def _k3(u, want, spare=None):  # u = −d: k3 = e^u − 1 − u = F(u); k3' = 1 − r = −expm1(u); k3 + k3' = d = −u
    k, e = expm1_minus(u, want_expm1=want == "slope", keep_x=want == "coef", spare=spare)
    return k, (e if want == "slope" else u if want == "coef" else None), want != "none"


def _reverse_k1(u, want, spare=None):  # r·log r = u·r, r = e^u (NaN at d = +inf: kl_loss takes the registry's)
    r = torch.exp(u, out=spare)
    k = torch.mul(u, r)
    return k, (u.add_(1.0).mul_(r) if want == "slope" else r if want == "coef" else None), want != "none"


def _reverse_k2(u, want, spare=None):  # r = e^u; r' = −r; r + r' = 0
    r = u.exp_()
    return r, (r if want == "slope" else 0.0 if want == "coef" else None), want == "slope"


def _reverse_k1_cv(d, want, spare=None):
    # r·log r − (r − 1) = r·(e^d − 1 − d) = r·F(d): a product of positive factors, no cancellation.
    r = torch.neg(d, out=spare).exp_()
    k, em = expm1_minus(d, want_expm1=want == "coef", keep_x=want == "slope")
    k.mul_(r)
    return k, (d.mul_(r) if want == "slope" else em.mul_(r) if want == "coef" else None), False  # d·r; 1 − r


FORMS: dict[str, tuple[str, Callable]] = {
    "k1": ("d", _k1), "k2": ("d", _k2), "k3": ("u", _k3), "reverse_k1": ("u", _reverse_k1),
    "reverse_k2": ("u", _reverse_k2), "reverse_k1_cv": ("d", _reverse_k1_cv)}
