"""kl-grad train on a variable-length chain (markov-eos): the sequence reward and the end points against a plain
numpy enumeration of the stopped chain written here (sequences end at their first EOS, the EOS included)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from kl_grad.lab.families import parse_spec
from kl_grad.lab.train.dynamics import run_training
from kl_grad.lab.train.rewards import parse_reward

POLICY = "markov-eos:3:0.2,-0.4,0.1:0.3,0,-0.2/0,0.5,0.1/0,0,0"
REF = "markov-eos:3:0,0.5,-1:0,1,0/0.2,0,0/1,0,-1"


def _softmax(z):
    e = np.exp(np.asarray(z, float) - np.max(z))
    return e / e.sum()


def _stopped_sequences(values, v, lmax):
    """{real-token tuple: probability} of the chain that stops at its first EOS (= v − 1) or after lmax tokens."""
    init, trans = _softmax(values[:v]), [_softmax(values[v + i * v:v + (i + 1) * v]) for i in range(v)]
    out = {}
    for length in range(1, lmax + 1):
        for seq in itertools.product(range(v), repeat=length):
            stops = [t for t, y in enumerate(seq) if y == v - 1]
            if stops and stops[0] != length - 1 or (not stops and length < lmax):
                continue  # an EOS before the end, or a sequence that neither stops nor reaches lmax
            p = init[seq[0]] * math.prod(trans[a][b] for a, b in zip(seq, seq[1:]))
            out[seq] = p
    return out


def _expected(values, reward, where, v=3, lmax=3):
    r = np.asarray(reward, float)
    seqs = _stopped_sequences(values, v, lmax)
    assert math.isclose(sum(seqs.values()), 1.0, rel_tol=1e-13)
    return math.fsum(p * (sum(r[y] for y in s) if where == "sum" else r[s[-1]]) for s, p in seqs.items())


@pytest.mark.parametrize("where", ["sum", "last"])
def test_the_sequence_reward_of_a_stopped_chain_matches_a_plain_enumeration(where):
    policy, reward = parse_spec(POLICY), parse_reward(f"{where}:1,-0.5,2")
    values = np.array(policy.values)
    assert reward.expected(policy) == pytest.approx(_expected(values, [1, -0.5, 2], where), rel=1e-13)
    h = 1e-6  # central differences: error O(h²) ≈ 1e-12 against gradients of size 0.1
    fd = [(_expected(values + h * e, [1, -0.5, 2], where) - _expected(values - h * e, [1, -0.5, 2], where)) / (2 * h)
          for e in np.eye(len(values))]
    np.testing.assert_allclose(reward.gradient(policy), fd, rtol=0, atol=1e-8)


def test_training_a_stopped_chain_ends_where_the_exact_sequence_gradient_leads():
    run = run_training(POLICY, REF, "sum:1,0,0.5", 1.0, ["k1", "k2"], ["loss-prefix-w", "loss"], steps=400)
    rows = run.table.set_index(["estimator", "placement"])
    exact = rows.loc[("k1", "loss-prefix-w")]
    assert exact["converged"] and exact["distance_to_optimum"] < 1e-8 and exact["warning"] == ""
    # the token-level construction stops elsewhere (it is not the sequence gradient)
    assert rows.loc[("k2", "loss"), "distance_to_optimum"] > 1e-3
    # the end point's objective is the best of the four rows: E[R] − β·KL by the plain enumeration
    seqs = _stopped_sequences(np.array(parse_spec(REF).values), 3, 3)

    def objective(values):
        mine = _stopped_sequences(values, 3, 3)
        kl = math.fsum(p * math.log(p / seqs[s]) for s, p in mine.items())
        return _expected(values, [1, 0, 0.5], "sum") - kl

    theta = np.log([*exact["init_probs"], *[x for row in exact["trans_probs"] for x in row]])
    assert objective(theta) == pytest.approx(exact["objective"], rel=1e-12)
    assert objective(theta) >= max(rows["objective"]) - 1e-12
