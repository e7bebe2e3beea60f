"""kl_grad.placements: every estimator × placement surrogate, its value and its autograd gradient per
sample, against the hand-derived placement formulas (tests/oracles.py: PLACEMENT_VALUE, PLACEMENT_GRADIENT).

With respect to log π_θ(x) itself the score is 1, so the gradient of a surrogate with respect to the
policy log-probs is the oracle's per-sample formula with s = 1. Expectations of the same formulas
(seed 001's table) are checked in tests/lab/test_quadrature.py, and their findings in tests/test_findings.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kl_grad.errors import KLGradError
from kl_grad.estimators import ESTIMATORS
from kl_grad.placements import PLACEMENTS, get_placement, importance_weight, surrogate
from tests import oracles


def log_probs(seed: int = 0, n: int = 200):
    """float64 (logp with grad, ref_logp, sampler_logp) with log-ratios of both signs up to |d| ≈ 6."""
    g = torch.Generator().manual_seed(seed)
    logp = (-3 * torch.rand(n, generator=g, dtype=torch.float64)).requires_grad_()
    ref = -3 * torch.rand(n, generator=g, dtype=torch.float64) - 3 * torch.rand(n, generator=g, dtype=torch.float64)
    sampler = logp.detach() + 0.5 * torch.randn(n, generator=g, dtype=torch.float64)
    return logp, ref, sampler


def test_every_placement_has_an_oracle():
    assert set(PLACEMENTS) == set(oracles.PLACEMENT_GRADIENT) == set(oracles.PLACEMENT_VALUE)


@pytest.mark.parametrize("off_policy", [False, True], ids=["on-policy", "off-policy"])
@pytest.mark.parametrize("placement", list(PLACEMENTS))
def test_surrogate_value_and_gradient_match_the_hand_derivation(placement, off_policy):
    logp, ref, sampler = log_probs()
    sampler_logp = sampler if off_policy else None
    d = (logp - ref).detach().numpy()
    w = np.exp(logp.detach().numpy() - sampler.numpy()) if off_policy else np.ones_like(d)
    for name, est in ESTIMATORS.items():
        out = surrogate(est, PLACEMENTS[placement], logp, ref, sampler_logp)
        (grad,) = torch.autograd.grad(out.sum(), logp)
        k, dk = oracles.VALUE[name](d), oracles.SLOPE[name](d)
        # float64 throughout; 1e-12 allows for the estimators' series/direct branches and operation order.
        np.testing.assert_allclose(out.detach().numpy(), oracles.PLACEMENT_VALUE[placement](k, w), rtol=1e-12,
                                   atol=1e-15, err_msg=name)
        np.testing.assert_allclose(grad.numpy(), oracles.PLACEMENT_GRADIENT[placement](k, dk, 1.0, w), rtol=1e-12,
                                   atol=1e-15, err_msg=name)


def test_a_precomputed_log_ratio_gives_the_same_surrogate():
    logp, ref, sampler = log_probs(1)
    for est in ESTIMATORS.values():
        for place in PLACEMENTS.values():
            a = surrogate(est, place, logp, ref, sampler)
            b = surrogate(est, place, logp, ref, sampler, log_ratio=logp - ref)
            assert torch.equal(a, b)


def test_importance_weight_is_one_on_policy_with_the_score_as_gradient():
    logp, _, sampler = log_probs(2, n=20)
    w = importance_weight(logp, None)
    assert torch.equal(w.detach(), torch.ones_like(w))
    (grad,) = torch.autograd.grad(w.sum(), logp)  # ∇w = w·∇log π_θ, and ∂ log π_θ/∂ logp = 1
    assert torch.equal(grad, torch.ones_like(grad))
    sampler = sampler.clone().requires_grad_()  # the sampler is a constant even if it tracks grad
    w = importance_weight(logp, sampler)
    torch.testing.assert_close(w.detach(), torch.exp(logp.detach() - sampler.detach()), rtol=1e-15, atol=0)
    w.sum().backward()
    assert sampler.grad is None


def test_only_the_plain_loss_ignores_the_weight():
    assert {name: p.weighted for name, p in PLACEMENTS.items()} == {"loss": False, "loss-sgw": True, "loss-w": True,
                                                                     "reward": True}
    k = torch.tensor([1.0, 2.0])
    assert torch.equal(PLACEMENTS["loss"].fn(k, None), k)  # never touches w, which is then not computed


def test_lookup_strips_spaces_and_unknown_names_list_the_allowed_ones():
    for name, place in PLACEMENTS.items():
        assert get_placement(f" {name} ") is place
    with pytest.raises(KLGradError, match="unknown placement 'penalty'; expected one of loss, loss-sgw, loss-w, "
                                          "reward$"):
        get_placement("penalty")
