"""kl_loss(placement="group-reward"): its gradient against a hand-written GRPO step with the KL in the reward.

The oracle is the trainer's loss itself, written here with plain loops: per group, R_i = T_i − β·Σ_t m_t k(d_t)
with d_t = old_logp − ref_logp (the rollout's penalty, as verl's apply_kl_penalty forms it),
advantages with ``statistics`` (Bessel std, eps), the policy-gradient loss −(1/B) Σ_i A_i Σ_t m_t w_t. Its
gradient minus the task-only loss's gradient must equal β × kl_loss's gradient (1e-12).
"""

import math
import statistics

import pytest
import torch

from kl_grad import GroupReward, kl_loss
from kl_grad.errors import KLGradError

B, T, G = 6, 5, 3
K = {"k1": lambda d: d, "k3": lambda d: math.exp(-d) - 1 + d}


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, 4, generator=g, dtype=torch.float64)
    tokens = torch.randint(4, (B, T), generator=g)
    ref = torch.log_softmax(torch.randn(B, T, 4, generator=g, dtype=torch.float64), -1)
    ref = ref.gather(-1, tokens[..., None])[..., 0]
    old = torch.log_softmax(logits + 0.3 * torch.randn(B, T, 4, generator=g, dtype=torch.float64), -1)
    old = old.gather(-1, tokens[..., None])[..., 0]
    mask = (torch.arange(T) < torch.tensor([[5], [3], [4], [5], [2], [1]])).double()
    task = torch.tensor([1.0, 0.0, 1.0, 1.0, 1.0, 1.0])  # the second group's task rewards tie
    return logits, tokens, ref, old, mask, task


def logp_of(logits, tokens):
    return torch.log_softmax(logits, -1).gather(-1, tokens[..., None])[..., 0]


def adv(r, norm, eps):
    m = statistics.fmean(r)
    if norm == "none":
        return r
    if norm == "mean":
        return [x - m for x in r]
    return [(x - m) / (statistics.stdev(r) + eps) for x in r]


def trainer_loss(logp, ref, old, mask, task, est, beta, norm, eps):
    """−(1/B) Σ_i A_i(β) Σ_t m_t·exp(logp_t − old_t), plain loops over groups and tokens."""
    rf, od, m = ref.tolist(), old.tolist(), mask.tolist()
    # the rollout's penalty: verl's apply_kl_penalty takes kl_penalty(old_log_probs, ref_log_prob)
    kl = [sum(m[i][t] * K[est](od[i][t] - rf[i][t]) for t in range(T)) for i in range(B)]
    loss = torch.zeros((), dtype=torch.float64)
    for start in range(0, B, G):
        rows = range(start, start + G)
        a = adv([task[i].item() - beta * kl[i] for i in rows], norm, eps)
        for ai, i in zip(a, rows):
            for t in range(T):
                if m[i][t]:
                    loss = loss - ai * torch.exp(logp[i, t] - od[i][t]) / B
    return loss


@pytest.mark.parametrize("norm", ["std", "mean", "none"])
@pytest.mark.parametrize("est", ["k1", "k3"])
def test_gradient_is_the_trainers_kl_part(norm, est):
    logits, tokens, ref, old, mask, task = batch()
    beta, eps = 0.3, 1e-6

    def grad(fn):
        x = logits.clone().requires_grad_()
        (g,) = torch.autograd.grad(fn(logp_of(x, tokens)), x)
        return g

    full = grad(lambda lp: trainer_loss(lp, ref, old, mask, task, est, beta, norm, eps))
    task_only = grad(lambda lp: trainer_loss(lp, ref, old, mask, task, est, 0.0, norm, eps))
    group = GroupReward(G, task, beta, norm, eps)
    bad = torch.where(mask > 0, ref, torch.full_like(ref, -math.inf))  # garbage at padding
    ours = grad(lambda lp: kl_loss(torch.where(mask > 0, lp, torch.nan), bad, mask=mask, old_logp=old,
                                   estimator=est, placement="group-reward", group=group,
                                   aggregation="seq-mean-token-sum"))
    torch.testing.assert_close(full - task_only, beta * ours, rtol=0, atol=1e-12)
    assert torch.isfinite(ours).all() and float(ours.abs().sum()) > 0


def test_none_is_reward_seq_on_policy():
    logits, tokens, ref, _, mask, _ = batch(1)
    x = logits.clone().requires_grad_()
    lp = logp_of(x, tokens)
    a = torch.autograd.grad(kl_loss(lp, ref, mask=mask, estimator="k3", placement="group-reward",
                                    group=GroupReward(G, normalisation="none"), aggregation="sum"), x,
                            retain_graph=True)[0]
    b = torch.autograd.grad(kl_loss(lp, ref, mask=mask, estimator="k3", placement="reward-seq", aggregation="sum"),
                            x)[0]
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_bad_group_input_is_one_line():
    logits, tokens, ref, _, mask, task = batch()
    lp = logp_of(logits, tokens)
    cases = [(dict(placement="group-reward"), "takes group"),
             (dict(placement="loss-w", group=GroupReward(G)), "takes group"),
             (dict(placement="group-reward", group=3), "GroupReward"),
             (dict(placement="group-reward", group=GroupReward(4, beta=0.1)), "multiple"),
             (dict(placement="group-reward", group=GroupReward(1, beta=0.1)), "≥ 2"),
             (dict(placement="group-reward", group=GroupReward(G)), "give beta"),
             (dict(placement="group-reward", group=GroupReward(G, beta=-1.0)), "beta"),
             (dict(placement="group-reward", group=GroupReward(G, task[:3], 0.1)), "one per sequence"),
             (dict(placement="group-reward", group=GroupReward(G, beta=0.1, normalisation="rank")), "normalisation")]
    for kwargs, words in cases:
        with pytest.raises(KLGradError, match=words) as info:
            kl_loss(lp, ref, mask=mask, **kwargs)
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_low_precision_inputs_give_the_float64_kl_part_to_their_precision(dtype):
    # float32/bf16 callers get the same surrogate, computed in float32 (kl_grad/groups.py in float64 inside)
    logits, tokens, ref, old, mask, task = batch(2)
    group = GroupReward(G, task, 0.3, "std", 1e-6)

    def grad(dt):
        x = logits.to(dt).clone().requires_grad_()
        lp = logp_of(x.double(), tokens).to(dt)
        loss = kl_loss(lp, ref.to(dt), mask=mask, old_logp=old.to(dt), estimator="k3", placement="group-reward",
                       group=group, aggregation="seq-mean-token-sum")
        return torch.autograd.grad(loss, x)[0].double(), loss.dtype

    (exact, _), (low, out_dtype) = grad(torch.float64), grad(dtype)
    assert out_dtype == torch.float32
    # inputs rounded to the dtype move d by ~2 ulps; the coefficients c are O(1): a relative 16-ulp budget
    ulp = torch.finfo(dtype).eps
    torch.testing.assert_close(low, exact, rtol=0, atol=float(16 * ulp * exact.abs().max() * 10))


def test_a_std_without_eps_and_non_finite_rewards_are_refused():
    logits, tokens, ref, _, mask, task = batch()
    lp = logp_of(logits, tokens)
    for group, words in [(GroupReward(G, task, 0.1, "std", 0.0), "eps > 0"),
                         (GroupReward(G, task.clone().fill_(math.nan), 0.1), "finite")]:
        with pytest.raises(KLGradError, match=words):
            kl_loss(lp, ref, mask=mask, placement="group-reward", group=group)
