"""``kl_loss`` along the token axis (issue 20, part 0): every sequence placement on padded (batch, tokens)
tensors reproduces the lab's exact expected gradients.

Every sequence of a chain is enumerated; its per-token log-probs are formed here from the chain's logits
(log-softmax rows gathered at the tokens, torch, differentiable in the logits), padded with garbage (−inf,
NaN, 1e30) beyond the real tokens; ``kl_loss(..., aggregation="none")`` gives the masked per-token terms,
their sum per sequence weighted by the sampling probability is E[surrogate], and its autograd gradient is
compared with ``run_gradients(mode="exact")`` on the same chain (variable lengths: markov-eos; extra padded
columns: markov). On- and off-policy (``old_logp`` = the sampler's log-probs).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kl_grad import kl_loss
from kl_grad.errors import KLGradError
from kl_grad.lab.families import parse_spec
from kl_grad.lab.gradient_table import run_gradients
from kl_grad.loss import ALONG_TOKENS

pytestmark = pytest.mark.filterwarnings("ignore:kl_loss\\(placement='reward'\\):FutureWarning")  # tested below
V, L = 3, 3
POLICY = "{f}:3:0.2,-0.4,0.1:0.5,-1,0.3/0,0.8,-0.6/-0.2,0.1,0.9"
REF = "{f}:3:-0.3,0.2,0.4:0.1,0.4,-0.5/0.6,-0.2,0.1/0.3,0.3,-0.7"
SAMPLER = "{f}:3:0,0,0:0.2,0,-0.2/0,0,0/-0.1,0.3,0"
GARBAGE = torch.tensor([float("-inf"), float("nan"), 1e30])


def _token_logp(values, seqs: torch.Tensor) -> torch.Tensor:
    """(N, L) log-probs of seqs under flat chain logits ``values`` (leaves or numbers)."""
    as_t = (lambda v: torch.stack(list(v))) if isinstance(values[0], torch.Tensor) else (  # noqa: E731
        lambda v: torch.tensor(v, dtype=torch.float64))
    init, trans = as_t(values[:V]), as_t(values[V:]).reshape(V, V)
    li, lt = torch.log_softmax(init, -1), torch.log_softmax(trans, -1)
    first = li[seqs[:, 0]].unsqueeze(1)
    rest = lt[seqs[:, :-1], seqs[:, 1:]]
    return torch.cat([first, rest], dim=1)


def _case(family: str, off: bool, extra: int):
    policy, ref = parse_spec(POLICY.format(f=family)), parse_spec(REF.format(f=family))
    sampler = parse_spec(SAMPLER.format(f=family)) if off else None
    sampling = sampler or policy
    x, w = sampling.fam.nodes(sampling, 0)[:2]
    seqs = x[:, 0, :]
    mask = sampling.build(torch.float64).mask(seqs) if family == "markov-eos" else torch.ones_like(seqs, dtype=bool)
    mask = torch.cat([mask, torch.zeros(len(seqs), extra, dtype=torch.bool)], dim=1)
    padded = torch.cat([seqs, torch.zeros(len(seqs), extra, dtype=seqs.dtype)], dim=1)
    return policy, ref, sampler, padded, mask, torch.tensor(w)


def _garbage(t: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    fill = GARBAGE[torch.arange(t.numel()) % 3].reshape(t.shape).to(t.dtype)
    return torch.where(mask, t, fill)


@pytest.mark.parametrize("family, off, extra", [("markov-eos", False, 0), ("markov-eos", True, 0),
                                                ("markov", False, 2), ("markov", True, 1)])
def test_kl_loss_on_enumerated_padded_sequences_is_the_exact_backend(family, off, extra):
    policy, ref, sampler, seqs, mask, weight = _case(family, off, extra)
    placements = [p for p in ALONG_TOKENS if not (family == "markov-eos" and p == "trl-seq")]
    names = placements + ["loss", "loss-w"]  # reward-local (per token) is checked by hand below
    run = run_gradients(policy, ref, ["k1", "k2", "k3"], names,
                        mode="exact", samples=1, dtype="float64", sampler=sampler)
    real = seqs[:, :L]
    for est in ("k1", "k2", "k3"):
        for name in names:
            leaves = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in policy.values]
            logp = torch.cat([_token_logp(leaves, real), torch.zeros(len(seqs), extra, dtype=torch.float64)], 1)
            ref_logp = torch.cat([_token_logp(ref.values, real).double(), torch.zeros(len(seqs), extra)], 1)
            old = None if sampler is None else torch.cat([_token_logp(sampler.values, real).double(),
                                                           torch.zeros(len(seqs), extra)], 1)
            per_token = kl_loss(_garbage(logp, mask), _garbage(ref_logp, mask), mask=mask,
                                old_logp=None if old is None else _garbage(old, mask),
                                estimator=est, placement=name, aggregation="none")
            grad = torch.stack(torch.autograd.grad((weight * per_token.sum(-1)).sum(), leaves)).numpy()
            assert np.isfinite(grad).all(), (est, name)
            rows = run.table[(run.table.estimator == est) & (run.table.placement == name)]
            np.testing.assert_allclose(grad, rows.exact_grad.to_numpy(), rtol=0, atol=1e-10, err_msg=f"{est} {name}")


def test_reward_local_is_the_per_token_penalty_and_reward_the_reward_to_go():
    torch.manual_seed(1)
    logp = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    ref = torch.randn(2, 4, dtype=torch.float64)
    d = (logp - ref).detach()
    local = kl_loss(logp, ref, estimator="k1", placement="reward-local", aggregation="none")
    to_go = kl_loss(logp, ref, estimator="k1", placement="reward", aggregation="none")
    torch.testing.assert_close(local.detach(), d)  # value w·k1 = d per token, w = 1 on-policy
    torch.testing.assert_close(to_go.detach(), d.flip(-1).cumsum(-1).flip(-1))  # Σ_{t'≥t} d_t'
    (g_local,) = torch.autograd.grad(local.sum(), logp)
    (g_to_go,) = torch.autograd.grad(to_go.sum(), logp)
    torch.testing.assert_close(g_local, d)
    torch.testing.assert_close(g_to_go, d.flip(-1).cumsum(-1).flip(-1))


def test_a_placement_along_tokens_needs_a_token_axis_and_dtypes_follow_the_input():
    with pytest.raises(KLGradError, match="reward-local"):
        kl_loss(torch.tensor(0.3, requires_grad=True), torch.tensor(0.1), placement="reward")
    logp = torch.randn(2, 4, dtype=torch.bfloat16, requires_grad=True)
    out = kl_loss(logp, torch.randn(2, 4, dtype=torch.bfloat16), placement="loss-prefix-w",
                  aggregation="seq-mean-token-sum")
    assert out.dtype == torch.float32
    out.backward()
    assert logp.grad.dtype == torch.bfloat16 and torch.isfinite(logp.grad).all()


def test_the_changed_meaning_of_reward_is_announced():
    with pytest.warns(FutureWarning, match="reward-local"):
        kl_loss(torch.randn(2, 4, requires_grad=True), torch.randn(2, 4), placement="reward")
