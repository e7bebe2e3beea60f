"""kl_grad.audit on sequence problems (Markov chains, tokens last), against an independent numpy oracle.

The oracle enumerates every sequence of the battery's chains in plain loops (itertools.product) with
hand-derived scores of the softmax rows, ∇_z log softmax(z)[y] = e_y − softmax(z), so that for a sequence y
with per-token scores s_t = ∇θ log π_θ(y_t | y_{t−1}), S = Σ_t s_t and d_t = log π_θ(y_t|·) − log π_ref(y_t|·):

    ∇KL(π_θ‖π_ref) = E_π[S · Σ_t d_t]        (score function; E_π[∇Σ_t d_t] = E_π[S] = 0)
    ∇KL(π_ref‖π_θ) = −E_ref[S]
    E_π[autograd ∇ of Σ_t ½ d_t²] = E_π[Σ_t d_t s_t]   (the token-level partial gradient: no cross terms
                                                         E[s_t d_t'], t' > t; issue 12)

Everything is exact (enumeration), so agreement is to 1e-10 relative.
"""

import itertools

import numpy as np
import pytest
import torch

from kl_grad.lab.auditing.auditor import audit
from kl_grad.lab.auditing.battery import SEQUENCE, SEQUENCE_OFF_POLICY
from kl_grad.testing import assert_kl_gradient_follows, assert_unbiased_kl_gradient

SEQ = ["markov-3x4", "markov-2x6"]


def parse_markov(text):
    """markov:L:INIT:TRANS → (L, init (V,), trans (V, V)) by plain string handling."""
    _, length, init, trans = text.split(":")
    return int(length), np.array([float(x) for x in init.split(",")]), \
        np.array([[float(x) for x in row.split(",")] for row in trans.split("/")])


def log_softmax(z):
    z = z - z.max()
    return z - np.log(np.exp(z).sum())


def enumerate_chain(policy, ref):
    """Per sequence: (π(y), ref(y), d (L,), scores (L, P)) for all V^L sequences, params init then trans."""
    length, init, trans = parse_markov(policy)
    _, rinit, rtrans = parse_markov(ref)
    v = len(init)
    out = []
    for y in itertools.product(range(v), repeat=length):
        lp, lr, scores = [], [], []
        for t, tok in enumerate(y):
            z, zr = (init, rinit) if t == 0 else (trans[y[t - 1]], rtrans[y[t - 1]])
            lp.append(log_softmax(z)[tok])
            lr.append(log_softmax(zr)[tok])
            grad_z = -np.exp(log_softmax(z))
            grad_z[tok] += 1.0
            s = np.zeros(v + v * v)
            if t == 0:
                s[:v] = grad_z
            else:
                s[v + y[t - 1] * v: v + (y[t - 1] + 1) * v] = grad_z
            scores.append(s)
        out.append((np.exp(sum(lp)), np.exp(sum(lr)), np.array(lp) - np.array(lr), np.array(scores)))
    return out


def oracle(name):
    policy, ref = SEQUENCE[name]
    seqs = enumerate_chain(policy, ref)
    truth_pr = sum(p * s.sum(0) * d.sum() for p, _, d, s in seqs)
    truth_rp = -sum(r * s.sum(0) for _, r, _, s in seqs)
    k2_partial = sum(p * (d[:, None] * s).sum(0) for p, _, d, s in seqs)
    return truth_pr, truth_rp, k2_partial


def k2_per_token(logp, ref_logp):
    return 0.5 * (logp - ref_logp) ** 2


def k2_per_sequence(logp, ref_logp):
    return (0.5 * (logp - ref_logp) ** 2).sum(-1)


def k2_reduced(logp, ref_logp):  # seq-mean-token-sum, as a trainer reduces it
    return (0.5 * (logp - ref_logp) ** 2).sum(-1).mean()


def k3_prefix_weighted(logp, ref_logp, old_logp):
    """Σ_t W_t k3_t with W_t = exp(cumsum(logp − sg(logp))) (on-policy) or the prefix ratio to old_logp."""
    prefix = torch.exp(torch.cumsum(logp - old_logp, dim=-1))
    log_ratio = ref_logp - logp
    return prefix * (torch.exp(log_ratio) - log_ratio - 1)


def k1_sequence_reward(logp, ref_logp, old_logp):
    """The whole sequence's score times sg(Σ_t d_t): one value per sequence."""
    return torch.exp((logp - old_logp).sum(-1)) * (logp - ref_logp).sum(-1).detach()


@pytest.fixture(scope="module")
def k2_audit():
    return audit(k2_per_token, name="k2")


def test_k2_per_token_follows_policy_ref_for_one_token_but_only_the_partial_gradient_for_sequences(k2_audit):
    assert k2_audit.follows == "policy||ref" and k2_audit.follows_sequence == "none"
    for name in SEQ:
        p = next(p for p in k2_audit.problems if p["problem"] == name)
        assert p["sequence"] and p["mode"] == "exact" and p["follows"] == "none"
        truth_pr, truth_rp, partial = oracle(name)
        grad = np.array([q["mean_grad"] for q in p["params"]])
        np.testing.assert_allclose(grad, partial, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose([q["true_grad_vs_policy||ref"] for q in p["params"]], truth_pr, rtol=1e-10,
                                   atol=1e-12)
        np.testing.assert_allclose([q["true_grad_vs_ref||policy"] for q in p["params"]], truth_rp, rtol=1e-10,
                                   atol=1e-12)
        want = np.linalg.norm(partial - truth_pr) / np.linalg.norm(truth_pr)
        assert want > 0.05  # real dependence: the partial gradient is visibly off
        assert p["rel_bias_norm_vs_policy||ref"] == pytest.approx(want, rel=1e-8)
    (line,) = [w for w in k2_audit.warnings if w.startswith("sequences:")]
    assert "token-level partial gradient" in line and "markov-3x4" in line


@pytest.mark.parametrize("fn", [k2_per_sequence, k2_reduced])
def test_per_sequence_and_reduced_outputs_read_as_the_token_sum(fn, k2_audit):
    result = audit(fn, problems=SEQ + ["tokens-3"])
    assert result.follows == "policy||ref" and result.follows_sequence == "none"
    for p in result.problems:
        ref = next(r for r in k2_audit.problems if r["problem"] == p["problem"])
        np.testing.assert_allclose([q["mean_grad"] for q in p["params"]], [q["mean_grad"] for q in ref["params"]],
                                   rtol=1e-12, atol=1e-15)
    assert any(w.startswith("scalar:") for w in result.warnings) == (fn is k2_reduced)


@pytest.mark.parametrize("fn", [k3_prefix_weighted, k1_sequence_reward])
def test_sequence_level_terms_follow_the_sequence_kl(fn):
    names = SEQ + list(SEQUENCE_OFF_POLICY) + ["tokens-3", "tokens-3-offpolicy"]
    result = audit(fn, problems=names)
    assert result.follows == "policy||ref" and result.follows_sequence == "policy||ref", \
        [(p["problem"], p["follows"]) for p in result.problems]
    assert all(p["follows"] == "policy||ref" for p in result.problems)  # off-policy too (prefix ratios to old)
    assert not any(w.startswith("sequences:") for w in result.warnings)
    on = next(p for p in result.problems if p["problem"] == "markov-3x4")
    truth_pr, _, _ = oracle("markov-3x4")
    np.testing.assert_allclose([q["mean_grad"] for q in on["params"]], truth_pr, rtol=1e-9, atol=1e-12)
    assert np.isfinite(on["stdev_ratio"]) and on["best_builtin"]


def test_reward_placement_is_reward_to_go_on_sequences():
    def k1_value(logp, ref_logp):
        return logp - ref_logp

    result = audit(k1_value, placement="reward", problems=SEQ)
    assert result.follows_sequence == "policy||ref"  # Σ_t w_t·sg(Σ_{t'≥t} d_t'): unbiased for sequences


def test_testing_helpers_check_sequences_only_when_asked():
    assert_unbiased_kl_gradient(k2_per_token, problems=["tokens-3", "markov-3x4"])  # single tokens only
    with pytest.raises(AssertionError, match=r"markov-3x4 .*d/dtrans\[0\]\[0\]"):
        assert_unbiased_kl_gradient(k2_per_token, problems=["tokens-3", "markov-3x4"], sequences=True)
    assert_kl_gradient_follows(k1_sequence_reward, "policy||ref", problems=["tokens-3", "markov-3x4"],
                               sequences=True)
    with pytest.raises(AssertionError) as err:
        assert_kl_gradient_follows(k2_per_token, "policy||ref", problems=["tokens-3", "markov-3x4"], sequences=True)
    assert str(err.value).splitlines()[0] == "k2_per_token: follows_sequence none (expected policy||ref):"


def test_wrong_shapes_are_refused_on_sequences():
    from kl_grad.errors import KLGradError

    with pytest.raises(KLGradError, match=r"per-token values \(81, 1, 4\), per-sequence values \(81, 1\)"):
        audit(lambda logp, ref_logp: (logp - ref_logp).sum(0), problems=["markov-3x4"])
    with pytest.raises(KLGradError, match="--placement reward needs per-token values"):
        audit(k2_per_sequence, placement="reward", problems=["markov-3x4"])
