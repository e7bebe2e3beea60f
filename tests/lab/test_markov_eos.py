"""markov-eos (variable length) against an independent oracle: plain itertools enumeration of the
variable-length sequences, numpy softmax rows and the hand-derived score ∇ log softmax(z)[j] = e_j − softmax(z)."""

import itertools

import numpy as np
import pytest

from kl_grad.errors import KLGradError
from kl_grad.lab.families import parse_spec
from kl_grad.lab.gradient_table import run_gradients


def _softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def _chain(rng, v, scale=0.8):
    return rng.normal(0, scale, v), rng.normal(0, scale, (v, v))


def _spec(lmax, init, trans):
    row = lambda r: ",".join(repr(float(x)) for x in r)  # noqa: E731
    return f"markov-eos:{lmax}:{row(init)}:" + "/".join(row(r) for r in trans)


def _sequences(v, lmax):
    """Every variable-length sequence: T − 1 non-EOS tokens then EOS (T ≤ LMAX), or LMAX non-EOS tokens."""
    eos = v - 1
    out = [body + (eos,) for t in range(1, lmax + 1) for body in itertools.product(range(eos), repeat=t - 1)]
    return out + list(itertools.product(range(eos), repeat=lmax))


def _tokens(init, trans, y):
    """Per real token: (log-prob, score vector over init (V) then trans (V·V))."""
    v = len(init)
    out = []
    for t, tok in enumerate(y):
        s = np.zeros(v + v * v)
        if t == 0:
            q = _softmax(init)
            s[:v] = -q
            s[tok] += 1
        else:
            q = _softmax(trans[y[t - 1]])
            base = v + y[t - 1] * v
            s[base:base + v] = -q
            s[base + tok] += 1
        out.append((np.log(q[tok]), s))
    return out


def _kl(init, trans, rinit, rtrans, lmax):
    total = 0.0
    for y in _sequences(len(init), lmax):
        lq = sum(a for a, _ in _tokens(init, trans, y))
        lp = sum(a for a, _ in _tokens(rinit, rtrans, y))
        total += np.exp(lq) * (lq - lp)
    return total


def _k3(d):
    return np.exp(-d) - 1 + d


def _oracle(init, trans, rinit, rtrans, lmax):
    """{name: E[∇ per-sequence surrogate]} on-policy, with the true ∇KL(π‖ρ) = E[(Σ_t s_t)(Σ_t d_t)]."""
    out = {}
    for y in _sequences(len(init), lmax):
        q = _tokens(init, trans, y)
        r = _tokens(rinit, rtrans, y)
        p = np.exp(sum(a for a, _ in q))
        d = np.array([a - b for (a, _), (b, _) in zip(q, r)])
        s = np.array([sc for _, sc in q])  # (T, P)
        prefix = np.cumsum(s, axis=0)
        to_go = lambda x: np.cumsum(x[::-1])[::-1]  # noqa: E731
        grads = {
            "truth": s.sum(0) * d.sum(),
            ("k1", "loss-prefix-w"): (prefix * d[:, None] + s).sum(0),
            ("k3", "loss-prefix-w"): (prefix * _k3(d)[:, None] + (1 - np.exp(-d))[:, None] * s).sum(0),
            ("k1", "reward"): (s * to_go(d)[:, None]).sum(0),
            ("k3", "reward"): (s * to_go(_k3(d))[:, None]).sum(0),
        }
        for key, g in grads.items():
            out[key] = out.get(key, 0) + p * g
    return out


@pytest.mark.parametrize("seed,v,lmax", [(0, 3, 4), (1, 4, 3), (2, 2, 6)])
def test_truth_and_expected_gradients_match_the_oracle(seed, v, lmax):
    rng = np.random.default_rng(seed)
    (init, trans), (rinit, rtrans) = _chain(rng, v), _chain(rng, v)
    policy, ref = _spec(lmax, init, trans), _spec(lmax, rinit, rtrans)
    oracle = _oracle(init, trans, rinit, rtrans, lmax)
    run = run_gradients(policy, ref, ["k1", "k3"], ["loss-prefix-w", "reward"], mode="exact")
    np.testing.assert_allclose(run.truth["policy||ref"], oracle["truth"], atol=1e-10)
    for (est, place), want in [(k, g) for k, g in oracle.items() if k != "truth"]:
        rows = run.table[(run.table.estimator == est) & (run.table.placement == place)]
        np.testing.assert_allclose(rows["mean_grad"].to_numpy(float), want, atol=1e-8, err_msg=f"{est} {place}")
    # the EOS row of TRANS is never used
    assert np.all(run.truth["policy||ref"][v + (v - 1) * v:] == 0)


def test_truth_by_finite_differences():
    rng = np.random.default_rng(7)
    (init, trans), (rinit, rtrans) = _chain(rng, 3), _chain(rng, 3)
    theta = np.concatenate([init, trans.ravel()])
    h, fd = 1e-5, []
    for j in range(len(theta)):
        up, dn = theta.copy(), theta.copy()
        up[j] += h
        dn[j] -= h
        kl = lambda t: _kl(t[:3], t[3:].reshape(3, 3), rinit, rtrans, 4)  # noqa: E731
        fd.append((kl(up) - kl(dn)) / (2 * h))
    policy = parse_spec(_spec(4, init, trans))
    truth = policy.fam.kl_gradients(policy, parse_spec(_spec(4, rinit, rtrans)))["policy||ref"]
    np.testing.assert_allclose(truth, fd, atol=1e-8)


def test_enumeration_and_masks():
    rng = np.random.default_rng(3)
    init, trans = _chain(rng, 3)
    spec = parse_spec(_spec(4, init, trans))
    x, p = spec.fam.nodes(spec, 0)
    want = sorted(tuple(y) + (2,) * (4 - len(y)) for y in _sequences(3, 4))
    assert sorted(map(tuple, x[:, 0].tolist())) == want
    assert len(want) == spec.fam.support_size(spec) == 1 + 2 + 4 + 8 + 16
    assert abs(p.sum() - 1) < 1e-12
    # no gradient and no log-prob beyond the end: changing the padding changes nothing
    import torch

    leaves = spec.leaves((), torch.float64)
    chain = spec.build_from(leaves)
    y = torch.tensor([[0, 2, 1, 0], [1, 0, 2, 2], [1, 1, 1, 1]])
    assert chain.mask(y).tolist() == [[True, True, False, False], [True, True, True, False], [True] * 4]
    logp = chain.log_prob(y)
    assert (logp[0, 2:] == 0).all() and (logp[1, 3:] == 0).all()
    grads = torch.autograd.grad(logp[0, 2:].sum() + logp[1, 3], list(leaves.values()), allow_unused=True)
    assert all(g is None or float(g.abs().sum()) == 0 for g in grads)
    assert spec.label.startswith("markov-eos:4:")


def test_trl_seq_is_refused():
    spec = "markov-eos:3:0,0,0:0,0,0/0,0,0/0,0,0"
    with pytest.raises(KLGradError, match="trl-seq"):
        run_gradients(spec, spec, ["k1"], ["trl-seq"], mode="exact")


# --- aggregations as per-sequence weights (kl_grad/lab/length_weights.py) ---------------------------------

def _per_sequence(init, trans, rinit, rtrans, lmax):
    """[(π(y), T, {(est, placement): ∇S(y)}, Σ_t d_t)] over every sequence, on-policy (hand-derived scores)."""
    out = []
    for y in _sequences(len(init), lmax):
        q, r = _tokens(init, trans, y), _tokens(rinit, rtrans, y)
        d = np.array([a - b for (a, _), (b, _) in zip(q, r)])
        s = np.array([sc for _, sc in q])
        prefix = np.cumsum(s, axis=0)
        to_go = lambda x: np.cumsum(x[::-1])[::-1]  # noqa: E731
        g = {("k1", "loss-prefix-w"): (prefix * d[:, None] + s).sum(0),
             ("k3", "loss-prefix-w"): (prefix * _k3(d)[:, None] + (1 - np.exp(-d))[:, None] * s).sum(0),
             ("k1", "reward"): (s * to_go(d)[:, None]).sum(0),
             ("k3", "reward"): (s * to_go(_k3(d))[:, None]).sum(0),
             ("k1", "loss"): s.sum(0)}
        out.append((np.exp(sum(a for a, _ in q)), len(y), g, d.sum()))
    return out


def test_aggregated_gradients_match_the_oracle():
    from kl_grad.lab.aggregations.table import aggregated_gradients

    rng = np.random.default_rng(11)
    v, lmax = 3, 4
    (init, trans), (rinit, rtrans) = _chain(rng, v), _chain(rng, v)
    seqs = _per_sequence(init, trans, rinit, rtrans, lmax)
    out = aggregated_gradients(_spec(lmax, init, trans), _spec(lmax, rinit, rtrans), ["k1", "k3"],
                               ["loss", "loss-prefix-w", "reward"], [1, 2, None])
    mean_t = sum(p * t for p, t, _, _ in seqs)
    for key in seqs[0][2]:
        want = {
            "seq-mean-token-sum": sum(p * g[key] for p, _, g, _ in seqs),
            "seq-mean-token-mean": sum(p * g[key] / t for p, t, g, _ in seqs),
            "seq-mean-token-sum-norm": sum(p * g[key] / lmax for p, _, g, _ in seqs),
            ("token-mean", 1): sum(p * g[key] / t for p, t, g, _ in seqs),
            # a batch of two: E[(∇S_1 + ∇S_2) / (T_1 + T_2)] over all ordered pairs, plain loops
            ("token-mean", 2): sum(p1 * p2 * (g1[key] + g2[key]) / (t1 + t2)
                                   for p1, t1, g1, _ in seqs for p2, t2, g2, _ in seqs),
            ("token-mean", None): sum(p * g[key] for p, _, g, _ in seqs) / mean_t,
        }
        for agg, w in want.items():
            name, b = agg if isinstance(agg, tuple) else (agg, 1)
            np.testing.assert_allclose(out["rows"][key + (name, b)][0], w, atol=1e-10, err_msg=f"{key} {agg}")
    truth = sum(p * g[("k1", "loss-prefix-w")] for p, _, g, _ in seqs)  # = ∇KL: k1 loss-prefix-w is exact
    np.testing.assert_allclose(out["truth"], truth, atol=1e-10)
    # k1 loss: E[Σ_t s_t] = 0, but E[(1/T)·Σ_t s_t] is not: a length-dependent weight biases even k1
    assert np.linalg.norm(out["rows"][("k1", "loss", "seq-mean-token-sum", 1)][0]) < 1e-12
    assert np.linalg.norm(out["rows"][("k1", "loss", "seq-mean-token-mean", 1)][0]) > 1e-3


def test_own_objective_by_finite_differences():
    """∇θ E_π[(1/T)·Σ_t d_t] with the weights 1/T fixed, by central differences of a numpy enumeration."""
    from kl_grad.lab.aggregations.table import aggregated_gradients

    rng = np.random.default_rng(5)
    (init, trans), (rinit, rtrans) = _chain(rng, 3), _chain(rng, 3)
    theta = np.concatenate([init, trans.ravel()])

    def objective(t):
        total = 0.0
        for p, n, _, dsum in _per_sequence(t[:3], t[3:].reshape(3, 3), rinit, rtrans, 3):
            total += p * dsum / n
        return total

    h, fd = 1e-5, []
    for j in range(len(theta)):
        up, dn = theta.copy(), theta.copy()
        up[j] += h
        dn[j] -= h
        fd.append((objective(up) - objective(dn)) / (2 * h))
    out = aggregated_gradients(_spec(3, init, trans), _spec(3, rinit, rtrans), ["k1"], ["loss-prefix-w"], [1])
    np.testing.assert_allclose(out["rows"][("k1", "loss-prefix-w", "seq-mean-token-mean", 1)][1], fd, atol=1e-8)


def test_weighted_table_reads_zero_and_refuses_fixed_length():
    from kl_grad.lab.aggregations.table import weighted_table

    t = weighted_table("markov-eos:4:0,0.5,-1:0,1,0/0.2,0,0/1,0,-1",
                       "markov-eos:4:0.3,0,-0.5:0.4,0.6,-0.2/0,-0.3,0.4/0.6,0.2,-0.6", ["k1"],
                       ["loss", "loss-prefix-w"], [None])
    row = lambda p, a: t[(t.placement == p) & (t.aggregation == a)].iloc[0]  # noqa: E731
    assert row("loss-prefix-w", "seq-mean-token-sum").rel_bias_norm == 0.0
    assert row("loss-prefix-w", "seq-mean-token-sum-norm").rel_bias_norm == pytest.approx(1 - 1 / 4, abs=1e-12)
    assert row("loss-prefix-w", "token-mean").cosine == pytest.approx(1, abs=1e-12)
    zero = row("loss", "seq-mean-token-sum")
    assert zero.norm_ratio == 0.0 and np.isnan(zero.cosine)
    with pytest.raises(KLGradError, match="variable-length"):
        weighted_table("markov:3:0,0:0,0/0,0", "markov:3:0,0:0,0/0,0", ["k1"], ["loss"], [1])


def test_token_mean_of_a_finite_batch_by_monte_carlo():
    """Sampled batches of B = 4 sequences, the per-token terms of k1 loss-prefix-w (W_t·d_t) reduced by
    ``AGGREGATIONS["token-mean"]`` itself and differentiated by autograd, against the exact weights
    c = B·E[1/(T + R_3)]: every parameter's MC mean within 3.9 se (two-sided Bonferroni over 9 live means at a
    1e-3 family-wise false-alarm rate, normal approximation, 4000 trials; seed fixed). The B = 1 and B → ∞
    weights are off by 48 and 9 se on these draws, so the check tells the batch size apart."""
    import torch
    from scipy.stats import norm

    from kl_grad.aggregations import AGGREGATIONS
    from kl_grad.lab.aggregations.table import aggregated_gradients

    policy = parse_spec("markov-eos:4:0,0.5,-1:0,1,0/0.2,0,0/1,0,-1")
    ref = parse_spec("markov-eos:4:0.3,0,-0.5:0.4,0.6,-0.2/0,-0.3,0.4/0.6,0.2,-0.6")
    trials, batch = 4000, 4
    torch.manual_seed(0)
    y = policy.build(torch.float64).sample((trials, batch))  # (trials, B, LMAX), EOS-padded
    leaves = policy.leaves((trials, 1), torch.float64)  # one copy of θ per trial
    chain = policy.build_from(leaves)
    logp, mask = chain.log_prob(y), chain.mask(y)
    d = logp - ref.build(torch.float64).log_prob(y)
    x = torch.exp((logp - logp.detach()).cumsum(-1)) * d  # W_t·k1_t, per token
    loss = sum(AGGREGATIONS["token-mean"](x[i], mask[i].double()) for i in range(trials))
    g = torch.stack(torch.autograd.grad(loss, list(leaves.values())), -1).reshape(trials, -1).numpy()
    exact = aggregated_gradients(policy.label, ref.label, ["k1"], ["loss-prefix-w"], [batch])
    want = exact["rows"][("k1", "loss-prefix-w", "token-mean", batch)][0]
    se = g.std(0, ddof=1) / np.sqrt(trials)
    live = se > 0  # the EOS row of TRANS: gradient exactly 0 in every trial
    z = norm.isf(1e-3 / (2 * live.sum()))
    assert np.all(np.abs(g.mean(0) - want)[live] <= z * se[live])
    assert np.all(g[:, ~live] == 0) and np.all(want[~live] == 0)
