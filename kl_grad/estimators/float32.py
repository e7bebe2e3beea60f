"""Careful float32 forms of the registered estimators for ``kl_loss``'s fused per-token path (``kl_grad/fused.py``).

The registry's own forms (``schulman.py``) evaluate cancelling values in float64 and round back; that is what the
lab runs and keeps. Here each estimator is written for float32 with the fewest elementwise passes that keep a few
float32 ulps: ``FORMS[name](d, want)`` returns (k(d), second) where ``want`` picks the second tensor — "slope"
k'(d), "coef" k(d) + k'(d) (the on-policy score coefficient of w·k, placement loss-w), or "none" (None).

The cancelling k3 = e^(−d) − 1 + d is a Taylor series at |d| ≤ ``RADIUS`` and the direct expm1(−d) + d beyond
(``k3_float32``); the switch is an exact 0/1 weight, so each element takes exactly one branch. Measured against
mpmath at 40 digits (tests/test_float32_forms.py): value and slope within 3e-7 relative (2.5 float32 ulps) for
|d| ≤ 80 and 0 < |d| ≤ 1e-30; float64 inputs never come here.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

Tensor = torch.Tensor

RADIUS = 0.5  # series below, direct beyond: expm1 is within 0.52 ulp in torch's float32, so expm1(−d) + d at
#              |d| ≥ 0.5 loses at most |expm1(−d)|/k3 ≤ 4.4 times that (measured 2.0e-7 relative)
# k3(d) = Σ_{j≥2} (−d)^j/j! = d²·Σ_{i≥0} (−d)^i/(i+2)!; degree 6 in d after d²: the first omitted term is
# 0.5^7/9!/0.43 = 5e-8 of the value at |d| = 0.5 (0.43 = k3(0.5)/0.5²).
_K3_COEFFS = [torch.tensor((-1) ** i / math.factorial(i + 2)) for i in range(7)]  # float32 0-dim constants
_BIG = 2.0 ** 100  # (|d| − RADIUS)·2^100 clamped to [0, 1]: exactly 0 inside, exactly 1 at the next float up
_SHIFT, _SCALE = torch.tensor(-RADIUS * _BIG), torch.tensor(_BIG)

# Forms own their argument d (a fresh tensor) and may overwrite it; they allocate as few tensors as they can,
# because at (64, 8192) a fresh tensor's first touch costs more than several passes over one already mapped.


def k3_float32(d: Tensor, e: Tensor, overwrite_e: bool) -> Tensor:
    """k3(d) = e^(−d) − 1 + d, given e = expm1(−d), without cancellation, in a new tensor: the series where
    |d| ≤ RADIUS, e + d beyond (an exact 0/1 weight picks one branch per element). d = +inf gives +inf (e = −1),
    d = −inf NaN (as e^(−d) − 1 + d). Overwrites e if ``overwrite_e``, else d; the other is left as it was."""
    out = d.abs()
    torch.addcmul(_SHIFT, out, _SCALE, out=out).clamp_(0.0, 1.0)  # weight of the direct form: 0 or 1
    s = d.clamp(-RADIUS, RADIUS)
    torch.addcmul(s, s, out, value=-1.0, out=s)  # the series sees 0 where the direct form is used
    direct = e.add_(d) if overwrite_e else d.add_(e)
    direct.mul_(out)  # (e + d)·weight, finite wherever the series is used (|d| ≤ 0.5)
    torch.addcmul(_K3_COEFFS[-2], s, _K3_COEFFS[-1], out=out)  # Horner: Σ_i c_i s^i, then ·s²
    for c in reversed(_K3_COEFFS[:-2]):
        torch.addcmul(c, out, s, out=out)
    return out.mul_(s).mul_(s).add_(direct)


def _k1(d, want):
    if want == "coef":
        return d, d + 1
    return d, (1.0 if want == "slope" else None)  # a float coefficient: the gradient is grad·1.0


def _k2(d, want):
    k = d * d
    k.mul_(0.5)
    if want == "coef":
        return k, torch.mul(d, 0.5).add_(1.0).mul_(d)  # d·(d/2 + 1): d/2 + 1 is exact near its root d = −2
    return k, (d if want == "slope" else None)


def _k3(d, want):
    e = torch.neg(d).expm1_()  # r − 1
    k = k3_float32(d, e, overwrite_e=want != "slope")
    return k, (e.neg_() if want == "slope" else d if want == "coef" else None)  # k3' = 1 − r; k3 + k3' = d


def _reverse_k1(d, want):
    r = torch.neg(d).exp_()
    k = torch.mul(d, r).neg_()  # r·log r = −d·r (NaN at d = +inf: kl_loss then takes the float64 path)
    return k, (d.sub_(1.0).mul_(r) if want == "slope" else r.neg_() if want == "coef" else None)


def _reverse_k2(d, want):
    r = d.neg_().exp_()
    return r, (-r if want == "slope" else 0.0 if want == "coef" else None)


def _reverse_k1_cv(d, want):
    # r·log r − (r − 1) = r·(e^d − 1 − d) = r·k3(−d): a product of positive factors, no cancellation.
    em = torch.expm1(d)
    r = torch.neg(d).exp_()
    k = k3_float32(torch.neg(d), em, overwrite_e=want != "coef").mul_(r)  # k3 at −d takes expm1(d)
    return k, (d.mul_(r) if want == "slope" else em.mul_(r) if want == "coef" else None)  # k' = d·r; 1 − r


FORMS: dict[str, Callable] = {"k1": _k1, "k2": _k2, "k3": _k3, "reverse_k1": _reverse_k1,
                              "reverse_k2": _reverse_k2, "reverse_k1_cv": _reverse_k1_cv}
