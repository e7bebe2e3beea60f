"""The catalogue experiment (lab/catalogue_table.py): verdicts on terms written the way trainers write them,
against hand-derived expectations (exact enumeration in plain loops), and the CLI listing."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from kl_grad import KLGradError
from kl_grad.lab.catalogue.table import PROBLEMS, CatalogueExperiment, check, run
from kl_grad.lab.cli import main
from kl_grad.lab.experiments import KINDS, parse_experiment

FAST = dict(samples=500, trials=40, seed=3)


def _table(terms, problems):
    table, figures = run(CatalogueExperiment("t", terms=terms, problems=problems, **FAST))
    assert figures == {}
    return table.set_index(["term", "problem"])


def test_known_terms_follow_what_their_formulas_imply():
    # k1 as a loss: zero; k2: policy||ref; k3: ref||policy; k3 × differentiable ratio: policy||ref;
    # k1 as a REINFORCE reward: policy||ref; straight-through k3+: policy||ref (exact enumeration and quadrature)
    want = {"verl:kl": "zero", "verl:mse": "policy||ref", "trl:k3": "ref||policy",
            "trl:k3-bias-corrected": "policy||ref", "verl:reward:kl": "policy||ref", "verl:k1+": "policy||ref"}
    table = _table(list(want), ["tokens-on", "normal-near"])
    for (term, problem), row in table.iterrows():
        assert row["follows"] == want[term], (term, problem)
        assert row["mode"] == "exact"
        assert row[f"rel_bias_vs_{want[term]}"] == 0.0 if want[term] != "zero" else True


def test_off_policy_weighting_decides():
    # samples from another policy: plain k2 follows nothing; k3 × π_θ/π_old still follows policy||ref
    table = _table(["verl:mse", "trl:k3-bias-corrected"], ["tokens-off"])
    assert table.loc[("verl:mse", "tokens-off"), "follows"] == "none"
    assert table.loc[("trl:k3-bias-corrected", "tokens-off"), "follows"] == "policy||ref"


def _softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def test_clamped_term_on_the_far_tokens_matches_a_plain_loop():
    # verl's low_var_kl on tokens-far: d = log π − log π_ref per token; the per-sample gradient w.r.t. the
    # logits is k'(d)·(e_x − π) with k' = 1 − e^(−d) where no clamp is active (|d| < 20 and k3 < 10), else 0.
    policy, ref, _ = PROBLEMS["tokens-far"]
    z = np.array([float(v) for v in policy.split(":")[1].split(",")])
    y = np.array([float(v) for v in ref.split(":")[1].split(",")])
    p, q = _softmax(z), _softmax(y)
    g, clamped = np.zeros(4), 0.0
    for x in range(4):
        d = math.log(p[x]) - math.log(q[x])
        live = abs(d) < 20 and math.exp(-d) - 1 + d < 10
        clamped += 0.0 if live else p[x]
        g += p[x] * (1 - math.exp(-d) if live else 0.0) * (np.eye(4)[x] - p)
    # ∇KL(ref‖policy) w.r.t. logits = π − π_ref; ∇KL(policy‖ref) = Σ_x π(x)(log π(x)/π_ref(x) + 1)(e_x − π)
    t_rp = p - q
    row = _table(["verl:low_var_kl"], ["tokens-far"]).loc[("verl:low_var_kl", "tokens-far")]
    assert row["zero_grad_mass"] == pytest.approx(clamped, rel=1e-12) and clamped == pytest.approx(0.5)
    assert row["rel_bias_vs_ref||policy"] == pytest.approx(np.linalg.norm(g - t_rp) / np.linalg.norm(t_rp), rel=1e-9)
    assert row["follows"] == "none"


def test_clamped_terms_on_gaussians_are_monte_carlo_with_their_clamped_mass():
    from scipy.optimize import brentq
    from scipy.stats import norm

    table = _table(["verl:low_var_kl", "openrlhf:k1"], ["normal-far"])
    n = FAST["samples"] * FAST["trials"]
    # d = 18 − 6x under x ~ N(0,1). verl: gradient 0 where k3(d) > 10 (d > a or d < b) or |d| > 20 (inside those).
    k3 = lambda d: math.exp(-d) - 1 + d  # noqa: E731
    a, b = brentq(lambda d: k3(d) - 10, 1, 20), brentq(lambda d: k3(d) - 10, -5, 0)
    p_verl = norm.cdf((18 - a) / 6) + norm.sf((18 - b) / 6)
    # OpenRLHF's k1: gradient 0 where |d| > 10, i.e. x < 4/3 or x > 14/3
    p_k1 = norm.cdf(4 / 3) + norm.sf(14 / 3)
    for term, p in (("verl:low_var_kl", p_verl), ("openrlhf:k1", p_k1)):
        row = table.loc[(term, "normal-far")]
        assert row["mode"] == "mc" and row["err_norm"] > 0
        # a binomial fraction of n samples: 5 standard errors (false alarm < 1e-6)
        assert abs(row["zero_grad_mass"] - p) < 5 * math.sqrt(p * (1 - p) / n), (term, row["zero_grad_mass"], p)
    # k1 as a loss has zero expected gradient, E[s] = 0; clamped at ±10 it keeps E[s·1{|d| < 10}] ≠ 0
    assert table.loc[("openrlhf:k1", "normal-far"), "follows"] == "none"


def test_config_is_checked_before_running():
    for bad, message in [(dict(terms=["verl:nope"]), "unknown framework KL term"),
                         (dict(problems=["tokens-x"]), "unknown catalogue problem"),
                         (dict(problems=[]), "problems must name at least one"),
                         (dict(trials=1), "trials must be an integer ≥ 2")]:
        with pytest.raises(KLGradError, match=message):
            check(CatalogueExperiment("t", **bad))
    exp = parse_experiment({"kind": "frameworks", "title": "x", "terms": ["trl:k3"]}, "here")
    assert isinstance(exp, CatalogueExperiment) and KINDS["frameworks"].config is CatalogueExperiment


def test_frameworks_listing_and_bad_format(capsys):
    assert main(["frameworks", "--format", "csv"]) == 0
    from io import StringIO

    table = pd.read_csv(StringIO(capsys.readouterr().out))
    assert {"verl:low_var_kl", "trl:k3-bias-corrected", "nemo-rl:k3", "slime:low_var_kl-is"} <= set(table["name"])
    assert main(["frameworks", "--framework", "trl"]) == 0
    out = capsys.readouterr().out
    assert "trl:k3" in out and "verl:" not in out
    assert main(["frameworks", "--format", "yaml"]) == 2
    err = capsys.readouterr().err
    assert err == "kl-grad: error: unknown format 'yaml'; expected one of markdown, csv, json\n"
    assert main(["frameworks", "--framework", "deepspeed"]) == 2
    assert "unknown framework 'deepspeed'" in capsys.readouterr().err


def _logits(spec):
    return np.array([float(v) for v in spec.split(":")[1].split(",")])


def test_weighted_k2_and_stale_k3_biases_match_plain_loops():
    # tokens-on, NeMo-RL's k2: w·k2 with w = π_θ/sg(π_θ) has per-sample gradient (k2 + k2')(e_x − π) = ∇E_π[k2];
    # tokens-off, TRL's plain k3 on samples from m (no weight): Σ_x m(x) k3'(d_x)(e_x − π).
    # Truth: ∇KL(π‖π_ref) w.r.t. logits = Σ_x π(x)(d_x + 1)(e_x − π), ∇KL(π_ref‖π) = π − π_ref.
    policy, ref, sampler = PROBLEMS["tokens-off"]
    p, q, m = (_softmax(_logits(s)) for s in (policy, ref, sampler))
    d = np.log(p) - np.log(q)
    t_pr = sum(p[x] * (d[x] + 1) * (np.eye(4)[x] - p) for x in range(4))
    t_rp = p - q
    g_k2 = sum(p[x] * (0.5 * d[x] ** 2 + d[x]) * (np.eye(4)[x] - p) for x in range(4))
    g_k3 = sum(m[x] * (1 - math.exp(-d[x])) * (np.eye(4)[x] - p) for x in range(4))
    table = _table(["nemo-rl:k2", "trl:k3"], ["tokens-on", "tokens-off"])
    k2 = table.loc[("nemo-rl:k2", "tokens-on")]
    assert k2["follows"] == "none"
    assert k2["rel_bias_vs_policy||ref"] == pytest.approx(np.linalg.norm(g_k2 - t_pr) / np.linalg.norm(t_pr), rel=1e-9)
    k3 = table.loc[("trl:k3", "tokens-off")]
    assert k3["follows"] == "none"
    assert k3["rel_bias_vs_ref||policy"] == pytest.approx(np.linalg.norm(g_k3 - t_rp) / np.linalg.norm(t_rp), rel=1e-9)


@pytest.mark.parametrize("nudge", [0.0, 16 * np.spacing(1.0)])
def test_zero_gradient_mass_counts_an_exact_cancellation_up_to_rounding(monkeypatch, nudge):
    """nemo-rl:k1 has c = 1 + d, exactly 0 where d = −1: on tokens-on, token 0 (tied logits). A numpy oracle gives
    that token's policy probability; moving one logit by 16 ulps (what another CPU's rounding does to d) must not
    change the mass (it did when only bitwise zeros counted)."""
    import kl_grad.lab.catalogue.table as catalogue

    def numbers(spec):
        return np.array([float(v) for v in spec.split(":")[1].split(",")])

    policy, ref, sampler = PROBLEMS["tokens-on"]
    logits = numbers(policy)
    logits[3] += nudge  # the most probable token: moves log-sum-exp, so d_0, by ~6 of its ulps
    monkeypatch.setitem(catalogue.PROBLEMS, "tokens-on",
                        ("categorical:" + ",".join(repr(float(v)) for v in logits), ref, sampler))
    lq = logits - np.log(np.exp(logits).sum())
    lp = numbers(ref) - np.log(np.exp(numbers(ref)).sum())
    oracle = float(np.exp(lq)[np.abs(1 + (lq - lp)) < 1e-12].sum())  # the tokens where c = 1 + d is 0
    assert oracle > 0.1
    row = _table(["nemo-rl:k1"], ["tokens-on"]).iloc[0]
    assert row["zero_grad_mass"] == pytest.approx(oracle, rel=1e-12)
