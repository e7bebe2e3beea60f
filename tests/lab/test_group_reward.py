"""Kind group_reward (kl_grad/lab/aggregations/group_*.py) against plain loops over every ordered group of a tiny chain.

Oracles written here: sequence probabilities and scores of a bigram chain from the softmax by hand (∂ log
softmax(z)_j/∂z_k = δ_jk − p_k), k1/k2/k3 as plain formulas, group advantages with ``statistics`` (mean, stdev),
and the expected gradient of the trainer's objective J(β) = (1/G) Σ_i A_i(β)·score(y_i) summed over all N^G
ordered tuples. The KL part E[∇J(β)] − E[∇J(0)] must equal −β·E[∇kl] of the lab to 1e-9.
"""

import itertools
import math
import statistics

import numpy as np
import pytest
from scipy import stats

from kl_grad.errors import KLGradError
from kl_grad.lab.aggregations import group_expect as expect
from kl_grad.lab.aggregations.group_table import GroupRewardExperiment, group_table
from kl_grad.lab.experiments import parse_experiment
from kl_grad.lab.problem import Problem

INIT, TRANS = [0.4, -0.4], [[0.8, -0.8], [-0.5, 0.5]]
RINIT, RTRANS = [0.0, 0.0], [[0.3, -0.3], [0.0, 0.2]]
POLICY = "markov:2:0.4,-0.4:0.8,-0.8/-0.5,0.5"  # 4 sequences
REF = "markov:2:0,0:0.3,-0.3/0,0.2"
K = {"k1": lambda d: d, "k2": lambda d: d * d / 2, "k3": lambda d: math.exp(-d) - 1 + d}
EPS = 1e-6


def softmax(z):
    e = [math.exp(v) for v in z]
    return [v / sum(e) for v in e]


def chain(init, trans, length):
    """{sequence: (probability, per-token log-probs, score (6,))} of a binary bigram chain, by hand."""
    out = {}
    for y in itertools.product(range(2), repeat=length):
        p0 = softmax(init)
        logps, score = [math.log(p0[y[0]])], np.zeros(6)
        score[:2] += np.eye(2)[y[0]] - p0
        for t in range(1, length):
            row = softmax(trans[y[t - 1]])
            logps.append(math.log(row[y[t]]))
            score[2 + 2 * y[t - 1]:4 + 2 * y[t - 1]] += np.eye(2)[y[t]] - row
        out[y] = (math.exp(sum(logps)), logps, score)
    return out


def advantages(r, norm):
    m = statistics.fmean(r)
    if norm == "none":
        return list(r)
    if norm == "mean":
        return [x - m for x in r]
    s = statistics.stdev(r)
    return [(x - m) / (s + EPS) for x in r]


def loop_kl_part(est, norm, size, beta, task, length=2):
    """E[∇J(β)] − E[∇J(0)] over all ordered G-tuples (plain loops)."""
    pol, ref = chain(INIT, TRANS, length), chain(RINIT, RTRANS, length)
    kl = {y: sum(K[est](a - b) for a, b in zip(pol[y][1], ref[y][1])) for y in pol}
    total = np.zeros(6)
    for group in itertools.product(pol, repeat=size):
        prob = math.prod(pol[y][0] for y in group)
        t = [task(y) for y in group]
        a_beta = advantages([ti - beta * kl[y] for ti, y in zip(t, group)], norm)
        a_zero = advantages(t, norm)
        for y, ab, a0 in zip(group, a_beta, a_zero):
            total += prob * (ab - a0) / size * pol[y][2]
    return total


TASKS = {"none": lambda y: 0.0, "sum:1,0": lambda y: float(sum(1 for v in y if v == 0))}


def lab_kl_part(est, norm, size, beta, reward):
    problem = Problem(POLICY, REF, dtype="float64")
    from kl_grad.lab.aggregations.group_table import parse_task_reward

    support = expect.enumerated(problem, parse_task_reward(reward, problem))
    grad, _ = expect.exact_kl_gradient(support, expect.sequence_kl(support, est), size, beta, norm, EPS)
    return -beta * grad


@pytest.mark.parametrize("norm", ["std", "mean", "none"])
@pytest.mark.parametrize("reward", ["none", "sum:1,0"])
@pytest.mark.parametrize("size", [2, 3])
def test_exact_matches_a_plain_loop_over_ordered_groups(norm, reward, size):
    for est, beta in (("k1", 0.3), ("k3", 2.0)):
        want = loop_kl_part(est, norm, size, beta, TASKS[reward])
        got = lab_kl_part(est, norm, size, beta, reward)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-9 * max(1.0, np.abs(want).max()))


def test_mean_only_is_leave_one_out_scaled_reward_seq():
    """Dr. GRPO: E[∇kl] = (1 − 1/G)·E[score·K]; for k1, E[score·K] = ∇KL (finite differences of the summed KL)."""
    pol, ref = chain(INIT, TRANS, 2), chain(RINIT, RTRANS, 2)
    for est in ("k1", "k2", "k3"):
        reward_seq = sum(p * sum(K[est](a - b) for a, b in zip(lp, ref[y][1])) * s for y, (p, lp, s) in pol.items())
        for size in (2, 3, 5, 8):
            got = lab_kl_part(est, "mean", size, 0.7, "sum:1,0") / -0.7
            np.testing.assert_allclose(got, (1 - 1 / size) * reward_seq, rtol=1e-12, atol=1e-14)

    def kl_value(theta):
        p = chain(list(theta[:2]), [list(theta[2:4]), list(theta[4:])], 2)
        return sum(v[0] * sum(a - b for a, b in zip(v[1], ref[y][1])) for y, v in p.items())

    theta, h = np.array(INIT + TRANS[0] + TRANS[1]), 1e-5
    fd = np.array([(kl_value(theta + h * e) - kl_value(theta - h * e)) / (2 * h) for e in np.eye(6)])
    np.testing.assert_allclose(lab_kl_part("k1", "mean", 4, 0.2, "none") / -0.2, 0.75 * fd, atol=1e-9)


def test_table_mean_row_bias_is_one_over_g_for_k1():
    exp = GroupRewardExperiment("t", POLICY, REF, ["k1"], normalisations=["mean", "none"], groups=[2, 4])
    table = group_table(exp)
    mean = table[table.normalisation == "mean"]
    np.testing.assert_allclose(mean.rel_bias_norm, [0.5, 0.25], atol=1e-12)
    np.testing.assert_allclose(mean.cosine, 1.0, atol=1e-12)
    assert (table.rel_gap_closed == 0).all()
    assert (table[table.normalisation == "none"].rel_bias_norm < 1e-12).all()


def test_mc_agrees_with_exact():
    """MC rows carry max |MC mean − exact|/se over 6 parameters; 5 rows = 30 means. Bonferroni bound for a 1e-3
    family-wise false-alarm rate, two-sided, Student t with trials − 1 degrees of freedom (fixed seed)."""
    exp = GroupRewardExperiment("t", "markov:3:0.4,-0.4:0.8,-0.8/-0.5,0.5", "markov:3:0,0:0.3,-0.3/0,0.2",
                                ["k1", "k3"], normalisations=["std", "mean"], groups=[4], betas=[0.05, 0.5],
                                rewards=["sum:1,0"], mode="mc", trials=300, groups_per_trial=4, seed=3)
    table = group_table(exp)
    assert len(table) == 6 and table.mc_max_abs_z.notna().all()
    bound = stats.t.ppf(1 - 1e-3 / (2 * 6 * 6), 299)
    assert table.mc_max_abs_z.max() < bound, table[["estimator", "normalisation", "beta", "mc_max_abs_z"]]
    assert (table.se_rel > 0).all()


def test_mc_detects_a_wrong_expectation():
    """Power: the k1 mean rows' MC is far from ∇KL's (1 − 1/G)-less truth when judged against it."""
    problem = Problem("markov:3:0.4,-0.4:0.8,-0.8/-0.5,0.5", "markov:3:0,0:0.3,-0.3/0,0.2", dtype="float64")
    per = expect.mc_kl_gradients(problem, None, "k1", 2, 0.1, "mean", EPS, 400, 16, 0)
    z = np.abs(per.mean(0) - expect.truth(problem)) / (per.std(0, ddof=1) / math.sqrt(len(per)))
    assert z.max() > 10  # E[∇kl] = ∇KL/2 here


def test_refusals_are_one_line():
    with pytest.raises(KLGradError, match="multisets"):
        expect.multisets(81, 7, np.zeros(81))
    base = dict(kind="group_reward", title="t", policy=POLICY, ref=REF, estimators=["k1"])
    for bad, words in ((dict(groups=[1]), "≥ 2"), (dict(normalisations=["rank"]), "normalisation"),
                       (dict(rewards=["last:1"]), "reward"), (dict(betas=[0.0]), "betas"),
                       (dict(policy="normal:0,1", ref="normal:1,1"), "markov")):
        with pytest.raises(KLGradError, match=words) as info:
            group_table(parse_experiment({**base, **bad}, "x.toml"))
        assert "\n" not in str(info.value)
    with pytest.raises(KLGradError, match="multisets"):  # 81 sequences, G = 8: refused before any work
        group_table(parse_experiment({**base, "policy": "markov:4:0,0,0:0,0,0/0,0,0/0,0,0",
                                      "ref": "markov:4:0,1,0:0,0,0/0,0,0/0,0,0", "groups": [8]}, "x.toml"))
