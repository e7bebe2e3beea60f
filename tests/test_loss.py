"""kl_grad.loss.kl_loss, the training-ready API: per-token gradients, masks, aggregation, dtypes, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kl_grad import AGGREGATIONS, ESTIMATORS, PLACEMENTS, KLGradError, kl_loss
from tests import oracles

B, T = 3, 5


def batch(seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    logp = (-torch.rand(B, T, generator=g, dtype=torch.float64) * 3).to(dtype).requires_grad_(True)
    ref = (-torch.rand(B, T, generator=g, dtype=torch.float64) * 3).to(dtype)
    old = (logp.detach().double() + 0.1 * torch.randn(B, T, generator=g, dtype=torch.float64)).to(dtype)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], dtype=dtype)
    return logp, ref, old, mask


EMPTY_ROW = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 0, 0, 0], [1, 0, 1, 0, 0]], dtype=torch.float64)


@pytest.mark.parametrize("off_policy", [False, True], ids=["on-policy", "off-policy"])
@pytest.mark.parametrize("placement", list(PLACEMENTS))
def test_per_token_gradient_is_the_hand_derived_one(placement, off_policy):
    # aggregation "sum": ∂loss/∂logp per token is the placement's per-sample gradient with score 1.
    logp, ref, old, _ = batch(dtype=torch.float64)
    d = (logp - ref).detach().numpy()
    w = np.exp(logp.detach().numpy() - old.numpy()) if off_policy else np.ones_like(d)
    local = "reward-local" if placement == "reward" else placement  # kl_loss's per-token name for w·sg(k)
    for name in ESTIMATORS:
        loss = kl_loss(logp, ref, old_logp=old if off_policy else None, estimator=name, placement=local,
                       aggregation="sum")
        (grad,) = torch.autograd.grad(loss, logp)
        k, dk = oracles.VALUE[name](d), oracles.SLOPE[name](d)
        assert loss.item() == pytest.approx(oracles.PLACEMENT_VALUE[placement](k, w).sum(), rel=1e-12)
        np.testing.assert_allclose(grad.numpy(), oracles.PLACEMENT_GRADIENT[placement](k, dk, 1.0, w), rtol=1e-12,
                                   atol=1e-15, err_msg=name)


@pytest.mark.parametrize("empty_row", [False, True])
@pytest.mark.parametrize("mode", list(AGGREGATIONS))
def test_aggregation_matches_plain_loop(mode, empty_row):
    logp, ref, _, mask = batch(dtype=torch.float64)
    mask = EMPTY_ROW if empty_row else mask
    k3 = oracles.VALUE["k3"]((logp - ref).detach().numpy()).tolist()  # hand formula, on-policy plain loss
    got = kl_loss(logp, ref, mask=mask, estimator="k3", placement="loss", aggregation=mode)
    assert got.item() == pytest.approx(oracles.aggregate_loop(k3, mask.tolist(), mode), rel=1e-12)


@pytest.mark.filterwarnings("ignore:kl_loss\\(placement='reward'\\):FutureWarning")
@pytest.mark.parametrize("placement", ["loss", "loss-sgw", "loss-w", "reward-local", "reward", "loss-prefix-w",
                                       "reward-prefix-w", "reward-seq", "both", "trl-seq"])
def test_masked_tokens_get_zero_gradient_even_with_garbage(placement):
    logp, ref, old, mask = batch()
    ref = ref.clone()
    ref[mask == 0] = float("-inf")  # padding with garbage must not poison the gradient
    loss = kl_loss(logp, ref, mask=mask, old_logp=old, estimator="k3", placement=placement)
    (grad,) = torch.autograd.grad(loss, logp)
    assert torch.isfinite(grad).all()
    assert (grad[mask == 0] == 0).all() and (grad[mask == 1] != 0).all()


def test_on_policy_k3_loss_w_has_the_k2_gradient_per_token():
    # Hand derivation: d/dlogp [w·k3] with w = exp(logp − sg(logp)) is k3 + (1 − r) = d, and d/dlogp [d²/2] = d.
    logp, ref, _, mask = batch(dtype=torch.float64)
    g_w = torch.autograd.grad(kl_loss(logp, ref, mask=mask, estimator="k3", placement="loss-w"), logp)[0]
    g_2 = torch.autograd.grad(kl_loss(logp, ref, mask=mask, estimator="k2", placement="loss"), logp)[0]
    torch.testing.assert_close(g_w, g_2, rtol=1e-12, atol=1e-15)
    d = (logp - ref).detach()
    torch.testing.assert_close(g_2, d * mask / mask.sum(), rtol=1e-12, atol=1e-15)


def test_off_policy_weight_uses_old_logp():
    logp, ref, old, _ = batch(dtype=torch.float64)
    got = kl_loss(logp, ref, old_logp=old, estimator="k1", placement="reward-local", aggregation="sum")
    w = torch.exp(logp.detach() - old)
    assert got.item() == pytest.approx((w * (logp.detach() - ref)).sum().item(), rel=1e-12)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_half_inputs_are_computed_in_float32(dtype):
    logp, ref, _, mask = batch(dtype=dtype)
    loss = kl_loss(logp, ref, mask=mask)
    assert loss.dtype == torch.float32
    (grad,) = torch.autograd.grad(loss, logp)
    assert grad.dtype == dtype and torch.isfinite(grad).all()
    ref32 = kl_loss(logp.detach().float(), ref.float(), mask=mask.float())
    assert loss.item() == ref32.item()  # the same float32 computation, not a half-precision one


def test_float64_inputs_stay_float64():
    logp, ref, _, mask = batch(dtype=torch.float64)
    assert kl_loss(logp, ref, mask=mask).dtype == torch.float64


def test_any_shape_works_for_token_modes():
    logp = torch.randn(2, 3, 4, requires_grad=True)
    assert kl_loss(logp, torch.randn(2, 3, 4), aggregation="token-mean").dim() == 0


@pytest.mark.parametrize("kwargs, message", [
    ({"estimator": "k4"}, "unknown estimator 'k4'; expected one of k1, k2, k3"),
    ({"placement": "penalty"}, "unknown placement 'penalty'; expected one of loss, loss-sgw, loss-w, reward-local, "
                               "loss-prefix-w, reward,"),
    ({"aggregation": "mean"}, "unknown aggregation 'mean'; expected one of token-mean"),
    ({"mask": torch.ones(B, T + 1)}, r"mask has shape \(3, 6\) but logp has shape \(3, 5\)"),
    ({"old_logp": torch.zeros(T)}, r"old_logp has shape \(5,\)"),
    ({"ref_logp": torch.zeros(B, T, dtype=torch.int64)}, "ref_logp must hold floating-point log-probabilities"),
    ({"logp": torch.zeros(B, T, dtype=torch.int64)}, "logp must hold floating-point log-probabilities, got dtype "
                                                     "torch.int64"),
    ({"logp": [[0.0] * T] * B}, "logp must be a torch.Tensor, got list"),
    ({"mask": np.ones((B, T))}, "mask must be a torch.Tensor, got ndarray"),
])
def test_bad_arguments_have_clear_errors(kwargs, message):
    logp, ref, _, _ = batch()
    kwargs = dict(kwargs)  # the parametrize dict is shared between runs: do not pop from it
    logp, ref = kwargs.pop("logp", logp), kwargs.pop("ref_logp", ref)
    with pytest.raises(KLGradError, match=message):
        kl_loss(logp, ref, **kwargs)


def test_sequence_modes_need_two_dimensions():
    with pytest.raises(KLGradError, match="needs \\(batch, tokens\\)"):
        kl_loss(torch.zeros(4, requires_grad=True), torch.zeros(4), aggregation="seq-mean-token-sum")


def test_aliases_resolve():
    logp, ref, _, _ = batch(dtype=torch.float64)
    a = kl_loss(logp, ref, estimator="mse", placement="loss")
    b = kl_loss(logp, ref, estimator="k2", placement="loss")
    assert a.item() == b.item()


def test_defaults_are_k3_loss_w_token_mean():
    logp, ref, _, mask = batch(dtype=torch.float64)
    a = kl_loss(logp, ref, mask=mask)
    b = kl_loss(logp, ref, mask=mask, estimator="k3", placement="loss-w", aggregation="token-mean")
    assert a.item() == b.item()


@pytest.mark.parametrize("mode", list(AGGREGATIONS))
def test_an_all_masked_batch_is_zero_with_zero_gradient(mode):
    logp, ref, _, _ = batch()
    kl = kl_loss(logp, ref, mask=torch.zeros(B, T), placement="loss", aggregation=mode)
    kl.backward()
    assert kl.item() == 0.0 and torch.count_nonzero(logp.grad) == 0


def test_ref_logp_is_a_constant_even_when_it_carries_grad():
    # A reference computed by a model that still tracks grad must not receive the KL's gradient.
    logp, ref, _, mask = batch()
    ref = ref.clone().requires_grad_()
    kl_loss(logp, ref, mask=mask, estimator="k3", placement="loss").backward()
    assert ref.grad is None and logp.grad is not None


def test_seq_mean_token_mean_on_three_dimensions_matches_a_loop():
    # (groups, sequences, tokens): every sequence with a token counts once, whatever its group.
    g = torch.Generator().manual_seed(3)
    logp = (-3 * torch.rand(2, 3, T, generator=g, dtype=torch.float64)).requires_grad_()
    ref = -3 * torch.rand(2, 3, T, generator=g, dtype=torch.float64)
    mask = (torch.rand(2, 3, T, generator=g) < 0.5).double()
    mask[0, 1] = 0  # one empty sequence
    k2 = oracles.VALUE["k2"]((logp - ref).detach().numpy()).tolist()
    got = kl_loss(logp, ref, mask=mask, estimator="k2", placement="loss", aggregation="seq-mean-token-mean")
    assert got.item() == pytest.approx(oracles.aggregate_loop(k2, mask.tolist(), "seq-mean-token-mean"), rel=1e-12)


def test_unknown_aggregation_lists_every_name_that_works_none_included():
    logp, ref, _, _ = batch()
    with pytest.raises(KLGradError) as info:
        kl_loss(logp, ref, aggregation="nope")
    listed = str(info.value).split("expected one of ")[1].split(", ")
    assert "none" in listed
    for name in listed:  # each listed name is accepted
        out = kl_loss(logp, ref, aggregation=name)
        assert out.shape == (logp.shape if name == "none" else ())
