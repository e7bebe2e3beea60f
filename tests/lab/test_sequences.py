"""Sequences (issue 12): the Markov family and the sequence placements against a plain-numpy oracle.

The oracle enumerates every sequence in plain loops, forms the softmax rows and their hand-derived scores
(∂ log softmax(z)_y / ∂z_j = δ_yj − softmax(z)_j, per position), and writes each placement's per-sequence
gradient from its formula (sequences.py) by the chain rule with k1' = 1, k2' = d, k3' = 1 − e^{−d}.
The truth is ∇ of the enumerated sequence KL, also checked by central finite differences.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.stats import norm

from kl_grad.errors import KLGradError
from kl_grad.lab.families import parse_spec
from kl_grad.lab.gradient_table import run_gradients
from kl_grad.lab.problem import Problem
from kl_grad.sequences import SEQUENCE_PLACEMENTS

K = {"k1": (lambda d: d, lambda d: 1.0), "k2": (lambda d: 0.5 * d * d, lambda d: d),
     "k3": (lambda d: math.exp(-d) - 1 + d, lambda d: 1 - math.exp(-d))}
PLACEMENTS = list(SEQUENCE_PLACEMENTS)


def _softmax(z):
    e = np.exp(z - np.max(z))
    return e / e.sum()


def _chain(values, v):
    """(first-token probs (V,), transition probs (V, V)) of flat logits init + trans row-major."""
    a = np.asarray(values, dtype=float)
    return _softmax(a[:v]), np.array([_softmax(a[v + i * v:v + (i + 1) * v]) for i in range(v)])


def _spec_text(length, init, trans):
    row = lambda r: ",".join(repr(float(x)) for x in r)  # noqa: E731
    return f"markov:{length}:{row(init)}:" + "/".join(row(r) for r in trans)


def _random_chain(rng, v, scale=1.0):
    return rng.normal(0, scale, v), rng.normal(0, scale, (v, v))


class Oracle:
    """Plain enumeration of all V^L sequences of a chain with flat parameters θ = (init, trans)."""

    def __init__(self, length, v, policy, ref, sampler=None):
        self.L, self.v = length, v
        self.theta = np.concatenate([policy[0], np.ravel(policy[1])])
        self.ref = np.concatenate([ref[0], np.ravel(ref[1])])
        self.sampler = None if sampler is None else np.concatenate([sampler[0], np.ravel(sampler[1])])
        self.seqs = list(itertools.product(range(v), repeat=length))

    def token_probs(self, values, y):
        q0, q = _chain(values, self.v)
        return [q0[y[0]]] + [q[y[t - 1], y[t]] for t in range(1, self.L)]

    def scores(self, y):
        """Per-token ∇θ log π_θ(y_t | y_{t−1}), (L, P), from δ − softmax."""
        q0, q = _chain(self.theta, self.v)
        out = np.zeros((self.L, self.v + self.v * self.v))
        for j in range(self.v):
            out[0, j] = (y[0] == j) - q0[j]
        for t in range(1, self.L):
            i = y[t - 1]
            for j in range(self.v):
                out[t, self.v + i * self.v + j] = (y[t] == j) - q[i, j]
        return out

    def seq_prob(self, values, y):
        return math.prod(self.token_probs(values, y))

    def kl(self, theta, direction):
        total = 0.0
        for y in self.seqs:
            a, b = self.seq_prob(theta, y), self.seq_prob(self.ref, y)
            total += a * math.log(a / b) if direction == "policy||ref" else b * math.log(b / a)
        return total

    def true_grad(self, direction):
        g = np.zeros_like(self.theta)
        for y in self.seqs:
            s = self.scores(y).sum(0)
            a, b = self.seq_prob(self.theta, y), self.seq_prob(self.ref, y)
            g += a * s * (math.log(a / b) + 1) if direction == "policy||ref" else -b * s
        return g

    def placement_grad(self, est, placement, y):
        k, dk = K[est]
        s = self.scores(y)
        p, r = self.token_probs(self.theta, y), self.token_probs(self.ref, y)
        m = p if self.sampler is None else self.token_probs(self.sampler, y)
        d = [math.log(p[t] / r[t]) for t in range(self.L)]
        kt, dkt = [k(x) for x in d], [dk(x) for x in d]
        w = [p[t] / m[t] for t in range(self.L)]
        W = [math.prod(w[:t + 1]) for t in range(self.L)]
        prefix = [s[:t + 1].sum(0) for t in range(self.L)]
        to_go = [sum(kt[t:]) for t in range(self.L)]
        g = np.zeros(s.shape[1])
        L = self.L
        if placement in ("loss", "both"):
            g += sum(dkt[t] * s[t] for t in range(L))
        if placement == "loss-sgw":
            g += sum(w[t] * dkt[t] * s[t] for t in range(L))
        if placement == "loss-w":
            g += sum(w[t] * (kt[t] + dkt[t]) * s[t] for t in range(L))
        if placement == "loss-prefix-w":
            g += sum(W[t] * (kt[t] * prefix[t] + dkt[t] * s[t]) for t in range(L))
        if placement in ("reward", "both"):
            g += sum(w[t] * s[t] * to_go[t] for t in range(L))
        if placement == "reward-local":
            g += sum(w[t] * s[t] * kt[t] for t in range(L))
        if placement == "reward-prefix-w":
            g += sum(W[t] * kt[t] * prefix[t] for t in range(L))
        if placement == "reward-seq":
            g += W[-1] * s.sum(0) * sum(kt)
        if placement == "trl-seq":
            rho = math.prod(w) ** (1 / L)
            g += rho * (s.sum(0) / L * sum(kt) + sum(dkt[t] * s[t] for t in range(L)))
        return g

    def token_level_partial(self):
        """Σ_t E_{y_<t}[∇θ KL(π_θ(·|y_{t−1}) ‖ π_ref(·|y_{t−1}))] with the prefix distribution held fixed
        (Tang & Munos, arXiv 2506.09477): per row, ∂KL(q‖p)/∂z = q·(D − Σ q D), D = log q − log p."""
        q0, q = _chain(self.theta, self.v)
        p0, p = _chain(self.ref, self.v)
        row = lambda a, b: a * (np.log(a / b) - np.sum(a * np.log(a / b)))  # noqa: E731
        g = np.zeros_like(self.theta)
        for y in self.seqs:
            prob = self.seq_prob(self.theta, y)
            g[:self.v] += prob * row(q0, p0)
            for t in range(1, self.L):
                i = y[t - 1]
                g[self.v + i * self.v:self.v + (i + 1) * self.v] += prob * row(q[i], p[i])
        return g

    def expected(self, est, placement):
        sampling = self.theta if self.sampler is None else self.sampler
        return sum(self.seq_prob(sampling, y) * self.placement_grad(est, placement, y) for y in self.seqs)


def _setups():
    rng = np.random.default_rng(12)
    out = []
    for length, v, off in ((4, 3, False), (3, 3, True), (4, 2, True), (5, 2, False)):
        pol, ref = _random_chain(rng, v), _random_chain(rng, v)
        smp = _random_chain(rng, v, 0.7) if off else None
        out.append((length, v, pol, ref, smp))
    return out


SETUPS = _setups()


@pytest.mark.parametrize("setup", SETUPS, ids=[f"L{s[0]}V{s[1]}{'off' if s[4] else 'on'}" for s in SETUPS])
def test_every_placement_matches_the_numpy_oracle(setup):
    length, v, pol, ref, smp = setup
    oracle = Oracle(length, v, pol, ref, smp)
    run = run_gradients(_spec_text(length, *pol), _spec_text(length, *ref), ["k1", "k2", "k3"], PLACEMENTS,
                        mode="exact", samples=1, sampler=None if smp is None else _spec_text(length, *smp))
    table = run.table
    for direction in ("policy||ref", "ref||policy"):
        np.testing.assert_allclose(run.truth[direction], oracle.true_grad(direction), rtol=0, atol=1e-10)
    for est in K:
        for placement in PLACEMENTS:
            rows = table[(table.estimator == est) & (table.placement == placement)]
            want = oracle.expected(est, placement)
            np.testing.assert_allclose(rows.exact_grad.to_numpy(), want, rtol=0, atol=1e-8,
                                       err_msg=f"{est} {placement}")


def test_per_token_losses_give_the_token_level_partial_gradient():
    """k2 loss, k1 loss-w and k3 loss-w (on-policy): the partial gradient, not the sequence one (L ≥ 2)."""
    length, v, pol, ref, _ = SETUPS[0]
    oracle = Oracle(length, v, pol, ref)
    partial = oracle.token_level_partial()
    table = run_gradients(_spec_text(length, *pol), _spec_text(length, *ref), ["k1", "k2", "k3"],
                          ["loss", "loss-w"], mode="exact").table
    for est, placement in (("k2", "loss"), ("k1", "loss-w"), ("k3", "loss-w")):
        rows = table[(table.estimator == est) & (table.placement == placement)]
        np.testing.assert_allclose(rows.exact_grad.to_numpy(), partial, rtol=0, atol=1e-10)
    assert np.abs(partial - oracle.true_grad("policy||ref")).max() > 1e-3


def test_true_gradient_equals_finite_differences():
    length, v, pol, ref, _ = SETUPS[0]
    oracle = Oracle(length, v, pol, ref)
    truth = Problem(_spec_text(length, *pol), _spec_text(length, *ref)).true_gradients()
    h = 1e-5
    for direction in ("policy||ref", "ref||policy"):
        fd = []
        for j in range(len(oracle.theta)):
            e = np.zeros_like(oracle.theta)
            e[j] = h
            fd.append((oracle.kl(oracle.theta + e, direction) - oracle.kl(oracle.theta - e, direction)) / (2 * h))
        np.testing.assert_allclose(truth[direction], fd, rtol=0, atol=1e-8)  # central difference error O(h²)


def test_true_kl_value_is_the_enumerated_sum():
    length, v, pol, ref, _ = SETUPS[1]
    oracle = Oracle(length, v, pol, ref)
    problem = Problem(_spec_text(length, *pol), _spec_text(length, *ref))
    for direction in ("policy||ref", "ref||policy"):
        assert problem.true_kl(direction) == pytest.approx(oracle.kl(oracle.theta, direction), rel=1e-12)


def test_monte_carlo_agrees_with_exact_within_its_standard_errors():
    """Every MC row's mean within z·se of the exact mean, z for a 1e-3 family-wise false-alarm rate
    (Bonferroni over the rows; se from 400 trials: a Student-t margin is < 1% wider, covered by z's slack)."""
    length, v, pol, ref, smp = SETUPS[1]
    args = (_spec_text(length, *pol), _spec_text(length, *ref), ["k1", "k3"], ["loss", "reward", "loss-prefix-w",
                                                                            "reward-seq"])
    kw = dict(samples=8, sampler=_spec_text(length, *smp), dtype="float64")
    mc = run_gradients(*args, mode="mc", trials=400, seed=5, **kw).table
    z = norm.ppf(1 - 1e-3 / (2 * len(mc)))
    dev = (mc.mean_grad - mc.exact_grad).abs()
    assert (dev <= z * 1.01 * mc.se).all(), mc.loc[dev > z * mc.se, ["estimator", "placement", "param"]]
    oracle = Oracle(length, v, pol, ref, smp)
    np.testing.assert_allclose(mc[(mc.estimator == "k3") & (mc.placement == "reward")].exact_grad.to_numpy(),
                               oracle.expected("k3", "reward"), atol=1e-8)


def test_length_one_equals_the_categorical_family():
    rng = np.random.default_rng(3)
    z, y, m = rng.normal(size=3), rng.normal(size=3), rng.normal(size=3)
    zeros = np.zeros((3, 3))
    cat = lambda a: "categorical:" + ",".join(repr(float(x)) for x in a)  # noqa: E731
    for sampler in (None, m):
        kw = dict(mode="exact", samples=10)
        seq = run_gradients(_spec_text(1, z, zeros), _spec_text(1, y, zeros), ["k1", "k2", "k3"],
                            ["loss", "loss-sgw", "loss-w", "reward"],
                            sampler=None if sampler is None else _spec_text(1, sampler, zeros), **kw).table
        one = run_gradients(cat(z), cat(y), ["k1", "k2", "k3"], ["loss", "loss-sgw", "loss-w", "reward"],
                            sampler=None if sampler is None else cat(sampler), **kw).table
        first = seq[seq.param.str.startswith("init")].reset_index(drop=True)
        for col in ("true_grad", "exact_grad", "stdev"):
            np.testing.assert_allclose(first[col].to_numpy(), one[col].to_numpy(), rtol=1e-12, atol=1e-15)
        assert list(first.verdict) == list(one.verdict)
        rest = seq[seq.param.str.startswith("trans")]
        assert (rest.exact_grad == 0).all() and (rest.true_grad == 0).all()


@pytest.mark.parametrize("text, message", [
    ("markov:4:0,1:0,1/0,1,2", "TRANS must be 2 rows of 2"),
    ("markov:x:0,1:0,1/0,1", "length L"),
    ("markov:0:0,1:0,1/0,1", "length L from 1"),
    ("markov:4:0,1", "expected markov:L:INIT:TRANS"),
    ("markov:2:0,a:0,1/0,1", "init[1]"),
])
def test_malformed_specs_say_what_is_allowed(text, message):
    with pytest.raises(KLGradError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_spec(text, "policy")


def test_reference_must_have_the_same_length_and_vocabulary():
    with pytest.raises(KLGradError, match="sequence length"):
        Problem("markov:3:0,1:0,1/0,1", "markov:4:0,1:0,1/0,1")
    with pytest.raises(KLGradError, match="same family"):
        Problem("markov:3:0,1:0,1/0,1", "markov:3:0,1,0:0,1,0/0,1,0/0,0,0")


def test_single_token_placement_names_only_where_they_mean_something():
    with pytest.raises(KLGradError, match="placement"):
        run_gradients("categorical:0,1", "categorical:1,0", "k1", "reward-seq", mode="exact")
    with pytest.raises(KLGradError, match="sequence placement"):
        run_gradients("markov:2:0,1:0,1/0,1", "markov:2:1,0:0,1/0,1", "k1", "bogus", mode="exact")


def test_label_round_trips():
    spec = parse_spec("markov:4:0,0.5,-1:0,1,0/0.2,0,0/1,0,-1")
    assert parse_spec(spec.label) == spec
    assert spec.param_names[:4] == ("init[0]", "init[1]", "init[2]", "trans[0][0]")


def test_too_many_sequences_are_refused_before_any_work_and_values_are_refused():
    with pytest.raises(KLGradError, match=r"enumerates 1099511627776 sequences"):
        run_gradients("markov:40:0,0:0,1/1,0", "markov:40:0,1:0,0/0,0", "k1", "loss", mode="exact")
    from kl_grad.lab.value_table import run_values
    with pytest.raises(KLGradError, match="value tables take single-point families"):
        run_values("markov:2:0,0:0,1/1,0", "markov:2:0,1:0,0/0,0", "k1")
