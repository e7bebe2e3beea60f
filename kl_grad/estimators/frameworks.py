"""Framework formulas that are elementwise in d, registered as estimators under their namespaced names.

``kl_grad.estimators`` imports this module with the Schulman estimators, so ``get_estimator("verl:k3+")`` works
everywhere (kl_loss, ``kl-grad table``, exact mode). verl's clamped low_var_kl is ``k3_clamped``
(alias ``verl:low_var_kl``).
Clamped and kinked entries carry ``clamp_active`` (where the gradient is exactly zero) and no closed-form
derivative, so placement loss-w differentiates them by plain autograd.
"""

from __future__ import annotations

import torch

from ..directions import POLICY_REF
from .numerics import smooth
from .registry import Estimator, register, straight_through
from .schulman import VALUE_CLAMP, k1_of_d, k2_of_d, k3_clamped_of_d, k3_of_d

OPENRLHF_CLAMP = 10.0  # compute_approx_kl clamps every estimator's output to ±10

def _abs(d):
    return d.abs()

def _clamped(f):
    return lambda d: f(d).clamp(-OPENRLHF_CLAMP, OPENRLHF_CLAMP)

def _beyond(f):
    return lambda d: f(d).abs() > OPENRLHF_CLAMP

verl_abs = register(Estimator("verl:abs", "|log(π_θ/π_ref)|", POLICY_REF, False, _abs,
                              source="verl core_algos.kl_penalty 'abs'", clamp_active=lambda d: d == 0,
                              kinked=True))
verl_k3_st = register(Estimator("verl:k3+", "value verl:low_var_kl (clamped k3), gradient k2 (straight-through)",
                                POLICY_REF, False, source="verl core_algos.kl_penalty 'k3+' / 'low_var_kl+'",
                                aliases=("verl:low_var_kl+",), kinked=True, **straight_through(k3_clamped_of_d)))
openrlhf_k1 = register(Estimator("openrlhf:k1", "clamp(d, ±10)", POLICY_REF, False, _clamped(k1_of_d),
                                 source="OpenRLHF compute_approx_kl 'k1'", clamp_active=_beyond(k1_of_d), kinked=True))
openrlhf_k2 = register(Estimator("openrlhf:k2", "clamp(½d², ±10)", POLICY_REF, False, _clamped(k2_of_d),
                                 source="OpenRLHF compute_approx_kl 'k2'", clamp_active=_beyond(k2_of_d), kinked=True))
def _k3_clamped_slope(d):
    """k3' = 1 − e^(−d) in closed form (as kl_grad's k3), 0 where the ±10 value clamp is active."""
    return torch.where(k3_of_d(d) > VALUE_CLAMP, torch.zeros_like(d), -torch.expm1(-d))


openrlhf_k3 = register(Estimator("openrlhf:k3", "clamp(r − 1 − log r, ±10)", POLICY_REF, False,
                                 smooth(_clamped(k3_of_d), _k3_clamped_slope),
                                 source="OpenRLHF compute_approx_kl 'k3' (also slime/ROLL low_var_kl)",
                                 clamp_active=lambda d: k3_of_d(d) > VALUE_CLAMP, kinked=True))

__all__ = ["openrlhf_k1", "openrlhf_k2", "openrlhf_k3", "verl_abs", "verl_k3_st"]
