"""The full-vocabulary KL (issue 20): estimator ``full`` with placements loss / rb / reward, and ``full_kl_loss``.

Oracles (plain numpy enumeration of every sequence, tests/lab/test_sequences.py's ``Oracle``): ∇ of the
enumerated sequence KL, the token-level partial gradient Σ_t E[∇KL_t] with prefixes fixed, and the rb
per-sequence gradient written by hand, g(y) = Σ_t ∇KL_t(y_<t) + Σ_τ s_τ·Σ_{t>τ} KL_t(y_<t) with
∇KL(q‖p)/∂z = q·(D − Σ q D), D = log q − log p, for its exact variance. Chains drawn here (V = 2..4,
L up to 7), on- and off-policy.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kl_grad.full import full_kl_loss
from kl_grad.lab.families import parse_spec
from kl_grad.lab.gradient_table import run_gradients
from tests.lab.test_sequences import Oracle, _chain, _random_chain, _spec_text

SETUPS = [(7, 2, False, 1), (5, 3, False, 2), (4, 4, False, 3), (6, 2, True, 4), (4, 3, True, 5), (3, 4, True, 6)]


def _setup(length, v, off, seed):
    rng = np.random.default_rng(seed)
    pol, ref = _random_chain(rng, v, 1.3), _random_chain(rng, v)
    smp = _random_chain(rng, v, 0.8) if off else None
    return pol, ref, smp


def _rb_per_sequence(oracle: Oracle, y) -> np.ndarray:
    """rb's per-sequence gradient on-policy, by hand (module docstring)."""
    v = oracle.v
    q0, q = _chain(oracle.theta, v)
    p0, p = _chain(oracle.ref, v)
    s = oracle.scores(y)
    rows = [(slice(0, v), q0, p0)] + [(slice(v + y[t - 1] * v, v + (y[t - 1] + 1) * v), q[y[t - 1]], p[y[t - 1]])
                                      for t in range(1, oracle.L)]
    g, kls = np.zeros(len(oracle.theta)), []
    for where, a, b in rows:
        d = np.log(a / b)
        kls.append(float(a @ d))
        g[where] += a * (d - a @ d)
    for tau in range(oracle.L):
        g += s[tau] * sum(kls[tau + 1:])
    return g


@pytest.mark.parametrize("setup", SETUPS, ids=[f"L{s[0]}V{s[1]}{'off' if s[2] else 'on'}" for s in SETUPS])
def test_rb_gives_the_sequence_gradient_and_loss_the_token_level_partial(setup):
    length, v, off, seed = setup
    pol, ref, smp = _setup(length, v, off, seed)
    oracle = Oracle(length, v, pol, ref, smp)
    run = run_gradients(_spec_text(length, *pol), _spec_text(length, *ref), ["full", "k1"], ["loss", "rb", "reward"],
                        mode="exact", samples=64, dtype="float64",
                        sampler=None if smp is None else _spec_text(length, *smp))
    table = run.table
    rb = table[(table.estimator == "full") & (table.placement == "rb")]
    np.testing.assert_allclose(rb.mean_grad, oracle.true_grad("policy||ref"), rtol=0, atol=1e-8)
    assert rb.verdict.str.startswith("unbiased").all()
    if not off:
        loss = table[(table.estimator == "full") & (table.placement == "loss")]
        np.testing.assert_allclose(loss.mean_grad, oracle.token_level_partial(), rtol=0, atol=1e-8)
        # the variance beside k1 with reward-to-go, and rb's exact stdev against the hand-written gradient
        per_seq = np.array([_rb_per_sequence(oracle, y) for y in oracle.seqs])
        prob = np.array([oracle.seq_prob(oracle.theta, y) for y in oracle.seqs])
        mean = prob @ per_seq
        stdev = np.sqrt(prob @ (per_seq - mean) ** 2 / 64)
        np.testing.assert_allclose(rb.stdev, stdev, rtol=1e-9, atol=1e-15)
        k1_reward = table[(table.estimator == "k1") & (table.placement == "reward")]
        assert (rb.stdev.to_numpy() ** 2).sum() < (k1_reward.stdev.to_numpy() ** 2).sum()


def _chain_logits(spec_text: str, seqs: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(N, L, V) logits of every position of ``seqs`` (N, L) from a chain's parameters (leaves, returned)."""
    spec = parse_spec(spec_text)
    v = int(round((math.sqrt(1 + 4 * len(spec.values)) - 1) / 2))
    leaves = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in spec.values]
    init = torch.stack(leaves[:v])
    trans = torch.stack(leaves[v:]).reshape(v, v)
    rows = [init.expand(seqs.shape[0], v).unsqueeze(1)] + [trans[seqs[:, t - 1]].unsqueeze(1)
                                                            for t in range(1, seqs.shape[1])]
    return torch.cat(rows, dim=1), leaves


@pytest.mark.parametrize("family", ["markov", "markov-eos"])
def test_full_kl_loss_on_enumerated_sequences_is_the_exact_backend(family):
    rng = np.random.default_rng(20)
    length, v = 4, 3
    pol, ref = _random_chain(rng, v, 1.2), _random_chain(rng, v)
    text = lambda c: family + _spec_text(length, *c)[len("markov"):]  # noqa: E731
    policy = parse_spec(text(pol))
    x, w = policy.fam.nodes(policy, 0)[:2]
    seqs = x[:, 0, :]
    mask = policy.build(torch.float64).mask(seqs) if family == "markov-eos" else None
    logits, leaves = _chain_logits(text(pol), seqs)
    ref_logits, _ = _chain_logits(text(ref), seqs)
    if mask is not None:  # padding holds garbage, as trainers' batches do
        logits = torch.where(mask[..., None], logits, torch.tensor(float("inf")))
    run = run_gradients(text(pol), text(ref), ["full"], ["loss", "rb"], mode="exact", samples=1, dtype="float64")
    for placement in ("loss", "rb"):
        per_token = full_kl_loss(logits, ref_logits.detach(), seqs, mask=mask, placement=placement, aggregation="none")
        loss = (torch.tensor(w) * per_token.sum(-1)).sum()
        grad = torch.stack(torch.autograd.grad(loss, leaves, retain_graph=True)).numpy()
        want = run.table[run.table.placement == placement].mean_grad.to_numpy()
        np.testing.assert_allclose(grad, want, rtol=0, atol=1e-10, err_msg=placement)
        assert np.isfinite(grad).all()
    np.testing.assert_allclose(want, run.truth["policy||ref"], rtol=0, atol=1e-10)  # rb: the sequence gradient


def test_full_kl_loss_dtypes_aggregations_and_errors():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7, dtype=torch.bfloat16, requires_grad=True)
    ref = torch.randn(2, 5, 7, dtype=torch.bfloat16)
    tokens = torch.randint(0, 7, (2, 5))
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    out = full_kl_loss(logits, ref, tokens, mask=mask, aggregation="seq-mean-token-sum")
    assert out.dtype == torch.float32 and out.dim() == 0
    out.backward()
    assert logits.grad.dtype == torch.bfloat16 and (logits.grad[0, 3:] == 0).all()
    with pytest.raises(Exception, match="takes the placements|expected one of"):
        full_kl_loss(logits, ref, tokens, placement="loss-w")
    with pytest.raises(Exception, match="must be a floating"):
        full_kl_loss(logits[0], ref[0], tokens[0])
    with pytest.raises(Exception, match="integer token ids"):
        full_kl_loss(logits, ref, tokens.float())


@pytest.mark.parametrize("setup", SETUPS[:3], ids=["L7V2", "L5V3", "L4V4"])
def test_reward_local_k1_is_the_token_level_partial_gradient(setup):
    # issue 24: Σ_t w_t·sg(k1_t) (NeMo-RL Reinforce++, no reward-to-go) has E[Σ_t s_t·d_t] = Σ_t E[∇KL_t]
    length, v, off, seed = setup
    pol, ref, _ = _setup(length, v, off, seed)
    table = run_gradients(_spec_text(length, *pol), _spec_text(length, *ref), ["k1"], ["reward-local"],
                          mode="exact", samples=1, dtype="float64").table
    np.testing.assert_allclose(table.mean_grad, Oracle(length, v, pol, ref).token_level_partial(), rtol=0, atol=1e-9)


def test_the_audit_takes_reward_local():
    from kl_grad.lab.auditing.auditor import audit

    def k1_value(logp, ref_logp):
        return logp - ref_logp

    result = audit(k1_value, placement="reward-local", problems=["tokens-3", "markov-3x4"])
    assert result.follows == "policy||ref" and result.follows_sequence == "none"  # the token-level partial only


@pytest.mark.parametrize("direction", ["policy||ref", "ref||policy"])
@pytest.mark.parametrize("placement", ["loss", "rb", "reward"])
def test_full_kl_loss_chunks_weights_and_minus_inf_logits_match_plain_autograd(direction, placement):
    from kl_grad.full import full_surrogate, step_kl

    torch.manual_seed(3)
    logits = torch.randn(3, 4, 6, dtype=torch.float64)
    logits[0, 1, 5] = logits[2, 3, 0] = float("-inf")  # banned tokens: probability 0
    logits.requires_grad_()
    ref = torch.randn(3, 4, 6, dtype=torch.float64)
    ref[0, 1, 5] = ref[2, 3, 0] = float("-inf")  # banned in both (a padded vocabulary): every KL stays finite
    tokens = torch.randint(0, 5, (3, 4)).clamp(min=1)
    old = torch.log_softmax(torch.randn(3, 4, 6, dtype=torch.float64), -1).gather(-1, tokens[..., None])[..., 0]
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.float64)
    got = full_kl_loss(logits, ref, tokens, mask=mask, old_logp=old, placement=placement, direction=direction,
                       aggregation="sum", chunk_elements=13)  # 2 rows a chunk: 6 chunks
    (g,) = torch.autograd.grad(got, logits)
    lz, ly = torch.log_softmax(logits, -1), torch.log_softmax(ref, -1)
    want = full_surrogate(step_kl(lz, ly, direction), lz.gather(-1, tokens[..., None])[..., 0], old, mask,
                          placement).sum()
    (g_want,) = torch.autograd.grad(want, logits)
    assert torch.isfinite(g).all()
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
    assert torch.isfinite(g_want).all()
    torch.testing.assert_close(g, g_want, rtol=1e-10, atol=1e-14)


def test_full_kl_loss_refuses_what_it_cannot_read():
    logits, ref = torch.randn(2, 3, 5), torch.randn(2, 3, 5)
    with pytest.raises(Exception, match=r"ids in \[0, 5\).*found 7"):
        full_kl_loss(logits, ref, torch.tensor([[0, 1, 7], [0, 0, 0]]))
    full_kl_loss(logits, ref, torch.tensor([[0, 1, -100], [0, 0, 0]]), mask=torch.tensor([[1, 1, 0], [1, 1, 1]]))
    with pytest.raises(Exception, match="horizon must be"):
        full_kl_loss(logits, ref, torch.zeros(2, 3, dtype=torch.long), aggregation="dr-grpo", horizon=0)


@pytest.mark.parametrize("argv, message", [
    (["table", "--policy", "categorical:0,1,2", "--ref", "categorical:0,0,0", "--estimators", "k1,full",
      "--placements", "loss-w", "--mode", "exact"], "full has none of the placements given (loss-w)"),
    (["table", "--policy", "categorical:0,1,2", "--ref", "categorical:0,0,0", "--estimators", "k1,full",
      "--placements", "rb", "--mode", "exact"], "k1 has none of the placements given (rb)"),
    (["values", "--policy", "categorical:0,1", "--ref", "categorical:1,0", "--estimators", "full"],
     "value tables take per-sample estimators"),
    (["train", "--policy", "categorical:0,0.5,-1", "--ref", "categorical:0,0,0", "--reward", "1,0,0",
      "--estimators", "full", "--placements", "rb"], "does not take the full-vocabulary KL"),
])
def test_the_full_kl_where_it_does_not_apply_is_one_line(argv, message, capsys):
    from kl_grad.lab.cli import main

    status = main(argv)
    err = capsys.readouterr().err
    assert status == 2 and message in err and len(err.strip().splitlines()) == 1
