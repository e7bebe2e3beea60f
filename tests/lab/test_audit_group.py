"""``kl-grad audit --placement group-reward`` (kl_grad/lab/auditing/group_audit.py) against plain loops.

Oracles written here: a binary bigram chain's sequence probabilities and scores from the softmax by hand
(∂ log softmax(z)_j/∂z_k = δ_jk − p_k), group advantages with ``statistics`` (mean, Bessel stdev), and the
trainer's expected gradient E[∇J(β)] = Σ over all N^G ordered tuples of P(tuple)·(1/G) Σ_i A_i(β)·score(y_i);
the audit's E[∇kl] must equal −(E[∇J(β)] − E[∇J(0)])/β to 1e-9. k1 with ``none`` is checked against the lab's
exact ``reward-seq`` run (the gradient runner, a different code path), and mean against (1 − 1/G)× it.
"""

import itertools
import json
import math
import os
import statistics

import numpy as np
import pytest
import torch

from kl_grad.groups import GroupReward
from kl_grad.lab.auditing.auditor import audit
from kl_grad.lab.auditing.battery import AuditProblem, battery
from kl_grad.lab.auditing.group_audit import group_problem
from kl_grad.lab.auditing.user_term import UserTerm
from kl_grad.lab.cli import main
from kl_grad.lab.config import Mode
from kl_grad.lab.gradient_table import Budget, GradientJob, gradient_table
from kl_grad.lab.problem import Problem
from kl_grad.lab.terms import make_cases

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "examples", "trainer_kl_terms.py")
INIT, TRANS = [0.4, -0.4], [[0.8, -0.8], [-0.5, 0.5]]
RINIT, RTRANS = [0.0, 0.0], [[0.3, -0.3], [0.0, 0.2]]
TINY = AuditProblem("tiny", Problem("markov:2:0.4,-0.4:0.8,-0.8/-0.5,0.5", "markov:2:0,0:0.3,-0.3/0,0.2",
                                    dtype="float64"))
EPS = 1e-6


def k3_tokens(logp, ref_logp):  # per-token values (…, L)
    return torch.exp(ref_logp - logp) - 1 + (logp - ref_logp)


def k2_sequence(logp, ref_logp):  # per-sequence values (…,)
    return 0.5 * ((logp - ref_logp) ** 2).sum(-1)


ORACLE_K = {k3_tokens: lambda ds: sum(math.exp(-d) - 1 + d for d in ds),
            k2_sequence: lambda ds: sum(d * d / 2 for d in ds)}


def softmax(z):
    e = [math.exp(v) for v in z]
    return [v / sum(e) for v in e]


def chain(init, trans):
    """{sequence: (probability, per-token log-probs, score (6,))} of a binary bigram chain of 2 tokens, by hand."""
    out = {}
    for y in itertools.product(range(2), repeat=2):
        p0, row = softmax(init), softmax(trans[y[0]])
        score = np.zeros(6)
        score[:2] = np.eye(2)[y[0]] - p0
        score[2 + 2 * y[0]:4 + 2 * y[0]] = np.eye(2)[y[1]] - row
        out[y] = (p0[y[0]] * row[y[1]], [math.log(p0[y[0]]), math.log(row[y[1]])], score)
    return out


def advantages(r, norm):
    m = statistics.fmean(r)
    if norm == "none":
        return list(r)
    if norm == "mean":
        return [x - m for x in r]
    return [(x - m) / (statistics.stdev(r) + EPS) for x in r]


def loop_grad_kl(fn, norm, size, beta):
    """−(E[∇J(β)] − E[∇J(0)])/β over all ordered G-tuples, T = 0 (plain loops)."""
    pol, ref = chain(INIT, TRANS), chain(RINIT, RTRANS)
    kl = {y: ORACLE_K[fn]([a - b for a, b in zip(pol[y][1], ref[y][1])]) for y in pol}
    total = np.zeros(6)
    for group in itertools.product(pol, repeat=size):
        prob = math.prod(pol[y][0] for y in group)
        a_beta = advantages([-beta * kl[y] for y in group], norm)
        a_zero = advantages([0.0] * size, norm) if norm != "std" else [0.0] * size  # stdev 0: A(0) = 0/(0 + eps)
        for y, ab, a0 in zip(group, a_beta, a_zero):
            total += prob * (ab - a0) / size * pol[y][2]
    return -total / beta


@pytest.mark.parametrize("norm", ["std", "mean", "none"])
@pytest.mark.parametrize("size", [2, 3])
@pytest.mark.parametrize("fn", [k3_tokens, k2_sequence])
def test_matches_a_plain_loop_over_ordered_groups(fn, norm, size):
    beta = 0.3
    row = group_problem(UserTerm(fn, fn.__name__), TINY, GroupReward(size, beta=beta, normalisation=norm, eps=EPS))
    got = np.array([p["mean_grad"] for p in row["params"]])
    want = loop_grad_kl(fn, norm, size, beta)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9 * max(1.0, np.abs(want).max()))


def test_one_token_problem_matches_a_plain_loop():
    """tokens-3 as a sequence of one token: E[∇kl] for G = 3, mean, of per-token k3, by loops over 27 triples."""
    ap = next(ap for ap in battery(False) if ap.name == "tokens-3")
    row = group_problem(UserTerm(k3_tokens, "k3"), ap, GroupReward(3, normalisation="mean"))
    p, q = softmax([0, 0.5, -1]), softmax([0.3, -0.2, 0.4])
    k = [math.exp(-d) - 1 + d for d in (math.log(a / b) for a, b in zip(p, q))]
    want = np.zeros(3)
    for group in itertools.product(range(3), repeat=3):
        c = advantages([k[y] for y in group], "mean")
        for y, ci in zip(group, c):
            want += math.prod(p[j] for j in group) * ci / 3 * (np.eye(3)[y] - p)
    assert row["tokens"] == 1
    np.testing.assert_allclose([r["mean_grad"] for r in row["params"]], want, rtol=0, atol=1e-12)


def reward_seq(name):
    """The audit battery's problem measured as built-in k1/reward-seq by the exact gradient runner."""
    ap = next(ap for ap in battery(False) if ap.name == name)
    case = make_cases("k1", "reward-seq", sequence=True)[0]
    run = gradient_table(GradientJob(ap.problem, [case], Budget(Mode.EXACT, 1000, 2, 0), "policy||ref"))
    return run.table["mean_grad"].to_numpy(dtype=float), run.summary.iloc[0]


@pytest.mark.parametrize("name", ["markov-3x4", "markov-2x6"])
def test_k1_none_is_reward_seq_and_mean_is_its_leave_one_out_scaling(name):
    want, summary = reward_seq(name)
    result = audit(lambda logp, ref: logp - ref, placement="group-reward", name="k1", problems=[name],
                   group=GroupReward(2, normalisation="none"))
    row = result.problems[0]
    got = np.array([p["mean_grad"] for p in row["params"]])
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    assert row["follows"] == "policy||ref" == summary["follows"]
    for d in ("policy||ref", "ref||policy"):
        assert math.isclose(row[f"rel_bias_norm_vs_{d}"], float(summary[f"rel_bias_norm_vs_{d}"]), abs_tol=1e-9)
    for size in (2, 3):
        result = audit(lambda logp, ref: logp - ref, placement="group-reward", name="k1", problems=[name],
                       group=GroupReward(size, normalisation="mean"))
        row = result.problems[0]
        got = np.array([p["mean_grad"] for p in row["params"]])
        np.testing.assert_allclose(got, (1 - 1 / size) * want, rtol=1e-10, atol=1e-12)
        assert math.isclose(row["rel_bias_norm_vs_policy||ref"], 1 / size, rel_tol=1e-9)
        assert row["follows"] == "none" and row["follows_scaled"] == "policy||ref"
        assert row["rel_bias_scaled_vs_policy||ref"] < 1e-8 and row["factor"] == 1 - 1 / size


def test_std_warns_of_one_over_beta_and_scales_so():
    rows = {}
    for beta in (0.1, 0.2):
        result = audit(lambda logp, ref: logp - ref, placement="group-reward", name="k1", problems=["markov-2x6"],
                       group=GroupReward(2, beta=beta, normalisation="std", eps=0.0))
        rows[beta] = np.array([p["mean_grad"] for p in result.problems[0]["params"]])
        assert any("scales like 1/β" in w for w in result.warnings) and math.isnan(result.problems[0]["factor"])
    np.testing.assert_allclose(rows[0.1], 2 * rows[0.2], rtol=1e-9)  # eps = 0: c = (K − mean K)/(β·std K) exactly


def run(args, capsys):
    try:
        status = main(args)
    except SystemExit as exc:
        status = exc.code
    out = capsys.readouterr()
    return status, out.out, out.err


def test_cli_json(capsys):
    status, out, err = run(["audit", f"{EXAMPLES}:k1_loss", "--placement", "group-reward", "--group-size", "2",
                            "--format", "json", "-q"], capsys)
    assert status == 0, err
    doc = json.loads(out)
    assert [p["problem"] for p in doc["problems"]] == ["tokens-3", "tokens-6", "markov-3x4", "markov-2x6"]
    assert doc["follows"] == doc["follows_sequence"] == "none"  # (1 − 1/G)·∇KL: shrunk
    assert all(p["follows_scaled"] == "policy||ref" and abs(p["rel_bias_norm_vs_policy||ref"] - 0.5) < 1e-9
               for p in doc["problems"])
    assert any(w.startswith("skipped: gauss-near") for w in doc["warnings"])


def test_the_headline_says_what_the_kl_part_follows_once_shrinkage_is_undone(capsys):
    status, out, err = run(["audit", f"{EXAMPLES}:k1_loss", "--placement", "group-reward", "--group-size", "4",
                            "-q"], capsys)
    assert status == 0, err
    head = out.split("\n\n")[0]
    assert "÷ factor 0.75 (= 1 − 1/G): follows policy||ref on every on-policy single-token problem" in head
    assert "÷ factor 0.75 (= 1 − 1/G): follows policy||ref on every on-policy sequence problem" in head
    _, out, _ = run(["audit", f"{EXAMPLES}:k3_loss", "--placement", "group-reward", "--group-size", "2", "-q"], capsys)
    assert "÷ factor" not in out.split("\n\n")[0]  # k3: follows nothing, shrunk or not
    _, out, _ = run(["audit", f"{EXAMPLES}:k1_loss", "--placement", "group-reward", "--normalisation", "none", "-q"],
                    capsys)
    assert "÷ factor" not in out.split("\n\n")[0] and out.startswith("k1_loss: follows policy||ref")


@pytest.mark.parametrize("extra, match", [
    (["--group-size", "1"], "group size must be an integer ≥ 2"),
    (["--normalisation", "median"], "unknown normalisation 'median'"),
    (["--group-size", "5"], "the audit allows G ≤ 4"),
    (["--normalisation", "std"], "give --beta"),
    (["--normalisation", "std", "--beta", "-1"], "beta must be a positive finite number"),
    (["--dtype", "float32"], "--dtype does not combine"),
])
def test_cli_refusals(capsys, tmp_path, extra, match):
    out_file = tmp_path / "never.json"
    status, out, err = run(["audit", f"{EXAMPLES}:k1_loss", "--placement", "group-reward", *extra, "-o",
                            str(out_file)], capsys)
    assert status == 2 and out == "" and not out_file.exists()
    assert err.count("\n") == 1 and match in err, err


def test_cli_group_options_need_the_placement(capsys):
    status, _, err = run(["audit", f"{EXAMPLES}:k1_loss", "--group-size", "4"], capsys)
    assert status == 2 and "--group-size: only with --placement group-reward" in err and err.count("\n") == 1


def test_api_refuses_a_task_reward_and_an_unmeasured_problem():
    from kl_grad.errors import KLGradError

    with pytest.raises(KLGradError, match="no task reward"):
        audit(k3_tokens, placement="group-reward", group=GroupReward(2, rewards=torch.zeros(2), normalisation="mean"))
    with pytest.raises(KLGradError, match="unknown problem .* 'gauss-near'"):
        audit(k3_tokens, placement="group-reward", problems=["gauss-near"])


def test_docs_numbers_are_the_audits():
    """docs/audit.md's group-reward numbers, to their printed digits."""
    page = open(os.path.join(ROOT, "docs", "audit.md"), encoding="utf-8").read()
    def k1(logp, ref):
        return logp - ref

    def k2(logp, ref):
        return 0.5 * (logp - ref) ** 2

    cases = [(k1, "mean", None, "0.25 off", 0.25), (k3_tokens, "mean", None, "1.05 off", 1.05),
             (k2, "mean", None, "k2's 0.972", 0.972), (k1, "std", 0.1, "k1 4.87 off", 4.87)]
    for fn, norm, beta, text, value in cases:
        assert text in page, text
        row = audit(fn, placement="group-reward", problems=["markov-3x4"],
                    group=GroupReward(4, beta=beta, normalisation=norm)).problems[0]
        half_digit = 0.5 * 10 ** (math.floor(math.log10(value)) - 2)  # 3 significant digits
        assert abs(row["rel_bias_norm_vs_policy||ref"] - value) <= half_digit, text


def test_testing_helpers_refuse_group_reward():
    from kl_grad.errors import KLGradError
    from kl_grad.testing import assert_unbiased_kl_gradient

    with pytest.raises(KLGradError, match="does not take placement 'group-reward'"):
        assert_unbiased_kl_gradient(k3_tokens, placement="group-reward")
