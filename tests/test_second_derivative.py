"""A second derivative (``create_graph=True``) through ``kl_loss`` and ``full_kl_loss``: right or refused.

"Right" means what autograd gives twice for the same surrogate written as plain float64 torch (the textbook
k(d), the same detaches, token-mean over the mask): with a stop-gradient the second derivative of a surrogate is
not the derivative of its first gradient, so finite differences of the gradient are not the oracle here. Paths
through a hand-written backward node (the float32 fused path, loss-w's closed form and the sequence placements
built on it, ``full_kl_loss``'s recomputed chunks) must raise rather than return a short Hessian.
"""

from __future__ import annotations

import pytest
import torch

from kl_grad import full_kl_loss, kl_loss

pytestmark = pytest.mark.filterwarnings("ignore:kl_loss\\(placement='reward'\\):FutureWarning")  # its meaning is tested

K = {"k1": lambda d: d, "k2": lambda d: 0.5 * d * d, "k3": lambda d: torch.exp(-d) - 1 + d}


def _to_go(x):
    return x.flip(-1).cumsum(-1).flip(-1)


PLAIN = {  # (k per token, log w per token, mask) -> per-token surrogate, as kl_grad.placements/sequences define them
    "loss": lambda k, lw, m: k,
    "loss-sgw": lambda k, lw, m: lw.exp().detach() * k,
    "reward-local": lambda k, lw, m: lw.exp() * k.detach(),
    "reward": lambda k, lw, m: lw.exp() * _to_go(k * m).detach(),
    "reward-prefix-w": lambda k, lw, m: lw.cumsum(-1).exp() * (k * m).detach(),
    "reward-seq": lambda k, lw, m: lw.sum(-1, keepdim=True).exp() * (k * m).detach(),
    "trl-seq": lambda k, lw, m: (lw.sum(-1, keepdim=True) / m.sum(-1, keepdim=True)).exp() * k * m,
}
REFUSED = ("loss-w", "loss-prefix-w", "both")


def _inputs():
    g = torch.Generator().manual_seed(3)
    logp = -torch.rand(3, 5, generator=g, dtype=torch.float64) * 2 - 0.1
    ref = logp + 0.6 * torch.randn(3, 5, generator=g, dtype=torch.float64)
    old = logp + 0.3 * torch.randn(3, 5, generator=g, dtype=torch.float64)
    mask = torch.ones(3, 5, dtype=torch.float64)
    mask[0, 3:] = 0
    v = torch.randn(3, 5, generator=g, dtype=torch.float64)
    return logp, ref, old, mask, v


def _hvp(loss_of, logp, v):
    x = logp.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(loss_of(x), x, create_graph=True)
    if g.grad_fn is None:  # a first gradient that does not depend on logp: the Hessian is 0
        return torch.zeros_like(x)
    (hv,) = torch.autograd.grad((g * v).sum(), x, allow_unused=True)
    return torch.zeros_like(x) if hv is None else hv


@pytest.mark.parametrize("off_policy", [False, True], ids=["on-policy", "off-policy"])
@pytest.mark.parametrize("estimator", list(K))
@pytest.mark.parametrize("placement", list(PLAIN))
def test_float64_second_derivatives_equal_the_plain_surrogates(placement, estimator, off_policy):
    logp, ref, old, mask, v = _inputs()
    old = old if off_policy else None

    def plain(x):
        log_w = (x - (x if old is None else old).detach()) * mask
        per_token = PLAIN[placement](K[estimator](x - ref), log_w, mask)
        return (per_token * mask).sum() / mask.sum()

    got = _hvp(lambda x: kl_loss(x, ref, mask=mask, old_logp=old, estimator=estimator, placement=placement), logp, v)
    torch.testing.assert_close(got, _hvp(plain, logp, v), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("placement", REFUSED)
def test_closed_form_placements_refuse_a_second_derivative(placement):
    logp, ref, old, mask, _ = _inputs()
    x = logp.requires_grad_(True)
    loss = kl_loss(x, ref, mask=mask, old_logp=old, estimator="k3", placement=placement)
    with pytest.raises(RuntimeError, match="no second derivative.*loss-sgw"):
        torch.autograd.grad(loss, x, create_graph=True)
    torch.autograd.grad(kl_loss(x, ref, mask=mask, old_logp=old, estimator="k3", placement=placement), x)  # once: fine


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_float32_path_refuses_and_names_what_differentiates_twice(dtype):
    logp, ref, _, mask, _ = _inputs()
    x = logp.to(dtype).requires_grad_(True)
    loss = kl_loss(x, ref.to(dtype), mask=mask.to(dtype), estimator="k3", placement="loss")
    with pytest.raises(RuntimeError, match="float32 path: no second derivative.*float64"):
        torch.autograd.grad(loss, x, create_graph=True)


def test_full_kl_loss_refuses_a_second_derivative():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    ref = torch.randn(2, 3, 4, generator=g, dtype=torch.float64)
    tokens = torch.randint(0, 4, (2, 3), generator=g)
    with pytest.raises(RuntimeError, match="full_kl_loss: no second derivative"):
        torch.autograd.grad(full_kl_loss(logits, ref, tokens), logits, create_graph=True)
