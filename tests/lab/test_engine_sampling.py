"""Sampling as inference engines do it (issue 21): temperature, top-k, top-p and the trainer's old_logp.

Oracle: the transform written here in plain numpy from vLLM's rule (temperature, then top-k keeping ties at
the K-th logit, then top-p: ascending sort, drop the tokens whose cumulative mass is ≤ 1 − P, keep the most
probable; renormalise), the per-sample gradient of each placement from the hand-derived formulas
(tests/oracle_formulas.py for tokens, the plain-loop chain oracle of tests/lab/test_sequences.py for Markov
chains), and the expectation as a sum over the processed sampler's support. Cases beyond the issue's.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from kl_grad.lab.cli import main
from kl_grad.lab.gradient_table import run_gradients
from tests.lab.test_sequences import Oracle
from tests.oracle_formulas import PLACEMENT_GRADIENT, SLOPE, VALUE


def _process(logits, temperature=1.0, top_k=0, top_p=1.0):
    """Processed probabilities of one row (numpy, vLLM's order)."""
    z = np.asarray(logits, dtype=float) / temperature
    if top_k and top_k < len(z):
        kth = np.sort(z)[-top_k]
        z = np.where(z < kth, -np.inf, z)
    if top_p < 1:
        order = np.argsort(z, kind="stable")
        e = np.exp(z[order] - z[order][-1])
        mass = np.cumsum(e / e.sum())
        drop = mass <= 1 - top_p
        drop[-1] = False
        z[order[drop]] = -np.inf
    e = np.exp(z - z.max())
    return e / e.sum()


def _softmax(z):
    e = np.exp(np.asarray(z, dtype=float) - np.max(z))
    return e / e.sum()


def _token_expectation(est, placement, policy, ref, transform, old_logp):
    q, p = _softmax(policy), _softmax(ref)
    m = _process(policy, **transform)
    old = m if old_logp == "processed" else q
    total = np.zeros(len(q))
    for x in np.flatnonzero(m > 0):
        d = math.log(q[x] / p[x])
        score = (np.arange(len(q)) == x) - q
        total += m[x] * PLACEMENT_GRADIENT[placement](VALUE[est](d), SLOPE[est](d), score, q[x] / old[x])
    return total


def _spec(z):
    return "categorical:" + ",".join(repr(float(v)) for v in z)


def test_the_issue_example_matches_its_hand_derivation():
    # π = (0.4, 0.3, 0.2, 0.1), π_ref reversed, top-3, processed old_logp: w·k3 expects (0.3165, −0.0569,
    # −0.2001, −0.0595) against the truth (0.3719, −0.0153, −0.1724, −0.1843), a relative bias of 0.32
    pol, ref = np.log([0.4, 0.3, 0.2, 0.1]), np.log([0.1, 0.2, 0.3, 0.4])
    table = run_gradients(_spec(pol), _spec(ref), ["k3", "k1"], ["loss-w"], mode="exact", top_k=3).table
    k3 = table[table.estimator == "k3"]
    np.testing.assert_allclose(k3.mean_grad, [0.3165, -0.0569, -0.2001, -0.0595], atol=5e-5)
    np.testing.assert_allclose(k3.true_grad, [0.3719, -0.0153, -0.1724, -0.1843], atol=5e-5)
    for est, want in (("k3", 0.32), ("k1", 0.090)):
        rows = table[table.estimator == est]
        rel = np.linalg.norm(rows.mean_grad - rows.true_grad) / np.linalg.norm(rows.true_grad)
        assert abs(rel - want) < 5e-3, (est, rel)


TOKEN_CASES = [  # (policy logits, ref logits, transform, old_logp)
    ([1.2, 0.3, -0.5, -1.0, 0.1], [0.0, 0.4, -0.2, 0.3, -1.0], dict(temperature=0.6, top_k=3, top_p=0.9), "processed"),
    ([1.2, 0.3, -0.5, -1.0, 0.1], [0.0, 0.4, -0.2, 0.3, -1.0], dict(temperature=0.6, top_k=3, top_p=0.9), "raw"),
    ([0.5, -0.5, 2.0, 0.0], [1.0, 1.0, -1.0, 0.0], dict(temperature=1.4, top_p=0.75), "processed"),
    ([0.5, -0.5, 2.0, 0.0], [1.0, 1.0, -1.0, 0.0], dict(top_k=2), "raw"),
    ([0.0, 0.1, 0.2], [0.3, -0.3, 0.0], dict(temperature=0.3), "processed"),
]


@pytest.mark.parametrize("policy, ref, transform, old_logp", TOKEN_CASES)
def test_token_expectations_match_a_numpy_enumeration(policy, ref, transform, old_logp):
    table = run_gradients(_spec(policy), _spec(ref), ["k1", "k2", "k3"], ["loss", "loss-sgw", "loss-w", "reward"],
                          mode="exact", old_logp=old_logp, **transform).table
    for (est, placement), rows in table.groupby(["estimator", "placement"]):
        want = _token_expectation(est, placement, policy, ref, transform, old_logp)
        np.testing.assert_allclose(rows.mean_grad, want, rtol=0, atol=1e-9, err_msg=f"{est} {placement}")
    assert table.warning.str.contains("draws from").all()


class EngineChain(Oracle):
    """The plain-loop chain oracle with the sampler processed row by row and the weights' denominator
    (``old``) either the processed sampler or the untruncated policy."""

    def __init__(self, length, v, policy, ref, transform, old_logp):
        super().__init__(length, v, policy, ref, policy)  # sampler: the policy at θ0, then processed
        self.transform, self.old_logp = transform, old_logp

    def _processed_probs(self, y):
        a = np.asarray(self.theta)
        rows = [_process(a[:self.v], **self.transform)]
        rows += [_process(a[self.v + i * self.v:self.v + (i + 1) * self.v], **self.transform) for i in range(self.v)]
        return [rows[0][y[0]]] + [rows[1 + y[t - 1]][y[t]] for t in range(1, self.L)]

    def token_probs(self, values, y):
        if values is self.sampler:  # the weights' denominator
            return self._processed_probs(y) if self.old_logp == "processed" else super().token_probs(self.theta, y)
        return super().token_probs(values, y)

    def expected(self, est, placement):
        total = 0.0
        for y in self.seqs:
            m = math.prod(self._processed_probs(y))
            if m > 0:
                total = total + m * self.placement_grad(est, placement, y)
        return total


@pytest.mark.parametrize("old_logp", ["processed", "raw"])
def test_markov_expectations_match_a_plain_loop_enumeration(old_logp):
    rng = np.random.default_rng(21)
    v, length = 3, 3
    pol = (rng.normal(0, 1, v), rng.normal(0, 1.2, (v, v)))
    ref = (rng.normal(0, 1, v), rng.normal(0, 1, (v, v)))
    transform = dict(temperature=0.8, top_k=2, top_p=0.85)
    oracle = EngineChain(length, v, pol, ref, transform, old_logp)
    row = lambda r: ",".join(repr(float(x)) for x in r)  # noqa: E731
    text = lambda c: f"markov:{length}:{row(c[0])}:" + "/".join(row(r) for r in c[1])  # noqa: E731
    placements = ["loss", "loss-w", "loss-prefix-w", "reward", "reward-prefix-w", "reward-seq", "both"]
    table = run_gradients(text(pol), text(ref), ["k1", "k3"], placements, mode="exact", old_logp=old_logp,
                          **transform).table
    for (est, placement), rows in table.groupby(["estimator", "placement"]):
        np.testing.assert_allclose(rows.mean_grad, oracle.expected(est, placement), rtol=0, atol=1e-9,
                                   err_msg=f"{est} {placement}")


@pytest.mark.parametrize("flags, message", [
    (["--temperature", "0"], "temperature must be a finite number ≥ 1e-06"), (["--top-p", "0"], "keeps no token"),
    (["--top-k", "-2"], "top-k must be"), (["--old-logp", "engine"], "expected one of processed, raw"),
])
def test_bad_engine_settings_are_one_line_refusals(flags, message, capsys):
    status = main(["table", "--policy", "categorical:0,1,2", "--ref", "categorical:0,0,0", "--mode", "exact", *flags])
    err = capsys.readouterr().err
    assert status == 2 and message in err and len(err.strip().splitlines()) == 1


def test_a_gaussian_sampler_cannot_be_truncated(capsys):
    status = main(["table", "--policy", "normal:0,1", "--ref", "normal:0,2", "--top-k", "2"])
    assert status == 2 and "act on softmax logits" in capsys.readouterr().err


def test_monte_carlo_rows_keep_the_engine_note():
    table = run_gradients("categorical:0,0.5,-1", "categorical:0.3,0,-1", ["k1"], ["loss"], samples=10, trials=3,
                          top_k=1).table
    assert table.warning.str.contains("draws from 0.5465 of π_θ's mass").all()


def test_a_support_too_large_to_sum_gets_the_note_without_the_mass():
    # 3^14 = 4.8M sequences: the note must not enumerate them (MC mode takes any length)
    from kl_grad.lab.problem import Problem

    problem = Problem("markov:14:0,0.5,-1:0,1,0/0.2,0,0/1,0,-1", "markov:14:0,0,0:0,0,0/0,0,0/0,0,0").with_engine(
        top_p=0.9)
    note = problem.engine_note()
    assert note.startswith("sampler top-p=0.9 leaves some tokens out") and "draws from" not in note
