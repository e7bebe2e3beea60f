"""Token-like policies: categorical (softmax logits) family, exact by enumeration, against independent oracles.

Oracle: a plain loop over categories with the hand-derived softmax score
s_j(x) = 1[x = j] − p_j and per-sample gradient k'(d(x))·s(x)
(k1' = 1, k2' = d, k3' = 1 − r, reverse_k2' = −r, with r = e^(−d)).
"""

import math
import re

import numpy as np
import pytest
import torch

from kl_grad.directions import POLICY_REF, REF_POLICY
from kl_grad.errors import KLGradError
from kl_grad.lab import make_cases, run_gradients, run_values, true_gradients
from kl_grad.lab.families import parse_spec
from kl_grad.lab.gradient_table import exact_gradient_moments
from kl_grad.lab.problem import Problem

POLICY, REF = "categorical:0,0.5,-1,0.2", "categorical:0.3,-0.2,0.4,0"
NAMES = ["k1", "k2", "k3", "reverse_k1", "reverse_k2"]


def softmax(logits):
    e = [math.exp(v) for v in logits]
    return [v / sum(e) for v in e]


def loop_moments(name, policy_logits, ref_logits):
    q, p = softmax(policy_logits), softmax(ref_logits)
    k = len(q)
    grads = []
    for x in range(k):
        d = math.log(q[x]) - math.log(p[x])
        r = math.exp(-d)
        factor = {"k1": 1.0, "k2": d, "k3": 1 - r, "reverse_k1": r * (d - 1), "reverse_k2": -r}[name]
        grads.append([factor * ((1.0 if x == j else 0.0) - q[j]) for j in range(k)])
    mean = [sum(q[x] * grads[x][j] for x in range(k)) for j in range(k)]
    var = [sum(q[x] * (grads[x][j] - mean[j]) ** 2 for x in range(k)) for j in range(k)]
    return np.array(mean), np.array(var)


@pytest.mark.parametrize("name", NAMES)
def test_enumeration_matches_plain_loop(name):
    policy, ref = parse_spec(POLICY), parse_spec(REF)
    got = exact_gradient_moments(Problem(policy, ref), make_cases([name], ["loss"]))[(name, "loss")]
    mean, var = loop_moments(name, policy.values, ref.values)
    np.testing.assert_allclose(got.mean, mean, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(got.var, var, rtol=1e-12, atol=1e-15)
    assert got.warnings == [""] * 4  # finite support: no tail warnings


def test_directional_findings_hold_for_tokens():
    policy, ref = parse_spec(POLICY), parse_spec(REF)
    m = exact_gradient_moments(Problem(policy, ref), make_cases(["k1", "k2", "k3", "reverse_k2"], ["loss"]))
    truth = true_gradients(policy, ref)
    np.testing.assert_allclose(m[("k1", "loss")].mean, 0.0, atol=1e-15)
    np.testing.assert_allclose(m[("k2", "loss")].mean, truth[POLICY_REF], rtol=1e-12)
    np.testing.assert_allclose(m[("k3", "loss")].mean, truth[REF_POLICY], rtol=1e-12)
    np.testing.assert_allclose(m[("reverse_k2", "loss")].mean, truth[REF_POLICY], rtol=1e-12)


def test_true_gradient_matches_finite_differences():
    policy, ref = parse_spec(POLICY), parse_spec(REF)
    p = softmax(ref.values)

    def kl(logits):  # KL(policy‖ref), hand-written
        q = softmax(logits)
        return sum(qi * (math.log(qi) - math.log(pi)) for qi, pi in zip(q, p))

    h = 1e-6
    fd = [(kl([v + h * (i == j) for i, v in enumerate(policy.values)])
           - kl([v - h * (i == j) for i, v in enumerate(policy.values)])) / (2 * h) for j in range(4)]
    # h = 1e-6: truncation ~h² = 1e-12, rounding ~1e-16/h = 1e-10 (hence atol); measured within atol.
    np.testing.assert_allclose(true_gradients(policy, ref)[POLICY_REF], fd, rtol=1e-9, atol=1e-10)


def test_mc_agrees_with_enumeration_within_4_se():
    run = run_gradients(parse_spec(POLICY), parse_spec(REF), ["k2", "k3"], samples=500, trials=200, seed=4,
                        dtype=torch.float64)
    # 8 rows at 4 SE; fixed seed.
    assert (run.table["z_vs_exact"].abs() < 4).all()
    assert list(run.table["param"].unique()) == ["logits[0]", "logits[1]", "logits[2]", "logits[3]"]


def test_value_table_for_tokens():
    table = run_values(parse_spec(POLICY), parse_spec(REF), ["k1", "k2", "k3"], mode="exact").set_index("estimator")
    q, p = softmax(parse_spec(POLICY).values), softmax(parse_spec(REF).values)
    kl = sum(qi * math.log(qi / pi) for qi, pi in zip(q, p))
    np.testing.assert_allclose(table.loc[["k1", "k3"], "mean"], kl, rtol=1e-12)
    assert table.loc["k2", "verdict"] == "biased"


@pytest.mark.parametrize("text, message", [
    ("categorical:1", "expected categorical:L0,L1,... (two or more logits)"),
    ("categorical:0,inf", "logits[1] must be finite"),
    ("categorical:0,x", "is not a number"),
])
def test_bad_categorical_specs(text, message):
    with pytest.raises(KLGradError, match=re.escape(message)):
        parse_spec(text)
