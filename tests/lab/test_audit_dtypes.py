"""``audit(fn, dtypes=...)`` / ``kl-grad audit --dtype``: a KL term on inputs cast as a trainer casts them.

Oracles: float32 arithmetic emulated in numpy (IEEE float32 +, −, × are correctly rounded; exp is taken in
float64 and rounded once to float32, the correctly rounded value except at double-rounding ties, which
these inputs are not at), the published numbers of unsloth-zoo PR #1240 (float32 exp(δ) − δ − 1 = −5.96e-8
= −2^-24 at δ = 1e-6) and OpenRLHF PR #1335 (exp overflows float32 beyond 88.72, and 0·inf = NaN), bfloat16's
8 significant bits by hand, and the softmax score e_x − π for the enumerated expected gradient.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import kl_grad
from kl_grad.errors import KLGradError
from kl_grad.frameworks import get_term
from kl_grad.lab.auditing.auditor import audit
from kl_grad.lab.auditing.casts import GRID
from kl_grad.lab.auditing.dtypes import parse_dtypes
from kl_grad.lab.target import load_target

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "examples", "trainer_kl_terms.py")
TOKENS = ["tokens-3"]
F32 = np.float32


def exp32(x):
    return F32(np.exp(np.float64(x)))


def k3_naive(logp, ref_logp):  # e^(−d) − 1 + d, as a float32 trainer writes it
    d = logp - ref_logp
    return torch.exp(-d) - 1 + d


def k3_unsloth(logp, ref_logp):  # unsloth-zoo before PR #1240: δ = ref − new, exp(δ) − δ − 1
    delta = ref_logp - logp
    return torch.exp(delta) - delta - 1


def kl_loss_audited(logp, ref_logp, mask):
    return kl_grad.kl_loss(logp, ref_logp, mask=mask)


def grid(result, dtype):
    return {r["d"]: r for r in next(rep for rep in result.dtypes if rep["dtype"] == dtype)["grid"]}


def test_the_grid_covers_the_issue_points():
    assert set(GRID) == {0.0, *(s * v for v in (1e-6, 1e-3, 1, 10, 20, 50, 88, 100) for s in (1, -1))}


def test_float32_cancellation_of_unsloth_zoo_1240_is_reproduced():
    result = audit(k3_unsloth, name="k3_unsloth", problems=TOKENS, dtypes="float32")
    row = grid(result, "float32")[-1e-6]  # d = −1e-6: logp = −1e-6, ref_logp = 0, δ = 1e-6
    delta = F32(0) - F32(-1e-6)
    want = exp32(delta) - delta - F32(1)
    assert want == pytest.approx(-2.0 ** -24, abs=1e-15)  # the PR's −5.96e-8
    assert row["value"] == pytest.approx(float(want), abs=1e-15) and row["negative"]
    assert grid(result, "float64")[-1e-6]["value"] == pytest.approx(5e-13, rel=1e-3)  # δ²/2, ≥ 0
    (line,) = [w for w in result.warnings if w.startswith("float32: negative values")]
    assert "d = -1e-06" in line and "unsloth-zoo PR #1240" in line


def test_float32_e_minus_d_form_is_negative_too():
    result = audit(k3_naive, problems=TOKENS, dtypes="float32")
    row = grid(result, "float32")[-1e-6]
    d = F32(-1e-6) - F32(0)
    want = (exp32(-d) - F32(1)) + d  # 2^-20·… : (1 + 8·2^-23) − 1 − 1e-6 rounded
    assert want < 0 and row["value"] == pytest.approx(float(want), abs=1e-15)


def test_openrlhf_1335_nan_gradient_is_reproduced_and_its_fix_is_clean():
    fn = load_target(f"{EXAMPLES}:openrlhf_k3_clamped")
    result = audit(fn, name="openrlhf_k3_clamped", problems=TOKENS, dtypes="float32,bfloat16")
    with np.errstate(over="ignore", invalid="ignore"):
        assert np.isinf(exp32(100.0)) and np.isnan(F32(0) * exp32(100.0))  # what backward multiplies
        assert np.isfinite(exp32(88.0))
    for dtype in ("float64", "float32", "bfloat16"):  # the function casts to float32 itself, so float64 too
        rows = grid(result, dtype)
        assert np.isnan(rows[-100.0]["grad"]) and rows[-100.0]["value"] == 10.0  # finite, clamped value
        assert rows[-88.0]["grad"] == 0 and rows[-88.0]["value"] == 10.0
        assert [d for d, r in rows.items() if r["nonfinite_grad"]] == [-100.0]
        assert any(w.startswith(f"{dtype}: NaN/inf gradient at d = -100") and "OpenRLHF PR #1335" in w
                   for w in result.warnings)

    after = get_term("openrlhf-1335:k3").fn  # the catalogue's row after the PR: bounded where the cap saturates

    def bounded(logp, ref_logp):  # as compute_approx_kl casts: float32 inside
        return after(logp.float(), ref_logp.float())

    fixed = audit(bounded, problems=TOKENS, dtypes="float32,bfloat16,float16")
    assert not any("NaN/inf" in w or w.startswith("range:") for w in fixed.warnings)
    for dtype in ("float32", "bfloat16", "float16"):
        rows = grid(fixed, dtype)
        assert rows[-100.0]["grad"] == 0 and rows[-100.0]["value"] == 10.0  # saturated: the old row's value


def test_kl_loss_reports_none_in_any_dtype():
    result = audit(kl_loss_audited, name="kl_loss", dtypes="float32,bfloat16,float16")
    dtype_lines = [w for w in result.warnings if w.split(":")[0] in ("float64", "float32", "bfloat16", "float16")]
    assert dtype_lines == []
    assert not any(w.startswith("mask:") for w in result.warnings)
    for rep in result.dtypes:
        for p in rep["problems"]:
            assert p["nonfinite_grad"] == p["negative"] == p["vanished"] == 0, (rep["dtype"], p)


def test_bfloat16_rounds_a_small_k3_gradient_to_zero():
    # c = 1 − e^(−d) (k3 written exp(δ) − δ − 1): at d = 1e-3, e^(−d) = 0.9990005 is nearer 1 than 1 − 2^-8
    # (bfloat16 holds 8 significant bits: spacing 2^-8 just below 1), so c rounds to exactly 0
    assert abs(np.exp(-1e-3) - 1) < 2.0 ** -9
    result = audit(k3_unsloth, problems=TOKENS, dtypes="bfloat16")
    row = grid(result, "bfloat16")[1e-3]
    assert row["grad"] == 0 and grid(result, "float64")[1e-3]["grad"] == pytest.approx(1 - np.exp(-1e-3), rel=1e-12)
    assert row["vanished"]
    assert any(w.startswith("bfloat16: gradient exactly 0") and "0.001" in w for w in result.warnings)


def test_cast_bias_matches_a_numpy_enumeration():
    """k2 (c = d) on tokens-3: E[g] = Σ_x π(x) c(x) (e_x − π) w.r.t. the logits, c from float32 inputs
    (float32 subtraction) vs float64; the floor takes the float32-rounded inputs, subtracted in float64."""
    result = audit(lambda logp, ref_logp: 0.5 * (logp - ref_logp) ** 2, problems=TOKENS, dtypes="float32")
    logits_p, logits_r = np.array([0.0, 0.5, -1.0]), np.array([0.3, -0.2, 0.4])
    lp = logits_p - np.log(np.exp(logits_p).sum())
    lr = logits_r - np.log(np.exp(logits_r).sum())
    pi = np.exp(lp)
    score = np.eye(3) - pi

    def expected(c):
        return (pi * c) @ score

    g64 = expected(lp - lr)
    g32 = expected((lp.astype(F32) - lr.astype(F32)).astype(float))
    g_floor = expected(lp.astype(F32).astype(float) - lr.astype(F32).astype(float))
    (row,) = next(r for r in result.dtypes if r["dtype"] == "float32")["problems"]
    assert row["rel_bias"] == pytest.approx(np.linalg.norm(g32 - g64) / np.linalg.norm(g64), rel=1e-6)
    assert row["rounding_floor"] == pytest.approx(np.linalg.norm(g_floor - g64) / np.linalg.norm(g64), rel=1e-6)
    assert 0 < row["rel_bias"] < 1e-6  # float32 rounding, ~1e-7
    want = result.problems[0]["params"]  # the float64 run is the audit's own exact gradient
    assert [q["mean_grad"] for q in want] == pytest.approx(list(g64), rel=1e-12)


def test_continuous_problems_get_no_bias_number():
    result = audit(k3_unsloth, problems=["gauss-near"], dtypes="float32")
    (row,) = next(r for r in result.dtypes if r["dtype"] == "float32")["problems"]
    assert np.isnan(row["rel_bias"]) and np.isnan(row["rounding_floor"])


@pytest.mark.parametrize("text, want", [("float32", ["float32"]), ("bf16, fp16", ["bfloat16", "float16"]),
                                        (["float16", "half"], ["float16"])])
def test_dtype_names(text, want):
    assert parse_dtypes(text) == want


def test_bad_dtype_is_one_line_naming_the_allowed_ones(capsys, tmp_path):
    from kl_grad.lab.cli import main

    with pytest.raises(KLGradError, match="unknown dtype 'float8'; expected one of float32, bfloat16, float16"):
        parse_dtypes("float32,float8")
    out = tmp_path / "audit.json"
    status = main(["audit", f"{EXAMPLES}:k3_loss", "--dtype", "bf17", "-q", "-o", str(out)])
    err = capsys.readouterr().err
    assert status == 2 and not out.exists()
    (line,) = err.strip().splitlines()
    assert "unknown dtype 'bf17'" in line and "bfloat16" in line


def test_json_carries_the_dtype_reports():
    import json

    from kl_grad.lab.auditing.views import render_audit

    result = audit(k3_unsloth, problems=TOKENS, dtypes="float16")
    doc = json.loads(render_audit(result, "json"))
    assert [r["dtype"] for r in doc["dtypes"]] == ["float64", "float16"]
    assert len(doc["dtypes"][1]["grid"]) == len(GRID)
    text = render_audit(result, "markdown")
    assert "float16 grad" in text and "rel bias of E[grad] vs float64" in text


def steep_exp(logp, ref_logp):  # e^(10·u), u = ref_logp − logp: overflows float16 (max 65504) where u > 1.1
    return torch.exp(10 * (ref_logp - logp))


def _softmax(logits):
    z = np.exp(np.asarray(logits, dtype=np.float64) - max(logits))
    return z / z.sum()


@pytest.mark.parametrize("problem", ["tokens-3", "tokens-6"])
def test_the_overflow_mass_is_of_the_points_where_value_or_gradient_overflows(problem):
    # The value comes back in the function's layout and c in the runner's: the flags are combined per point, not
    # broadcast against each other (which once gave tokens-3 0.41 instead of π(token 3) = 0.122, and a
    # 50 000 × 50 000 array on the Gaussian problems). Oracle: the softmax by hand, and where e^(10u) or its
    # slope 10·e^(10u) exceeds float16's largest, in float64.
    from kl_grad.lab.auditing.battery import ON_POLICY
    policy, ref = (_softmax([float(v) for v in spec.split(":")[1].split(",")]) for spec in ON_POLICY[problem])
    u = np.log(ref) - np.log(policy)
    big = float(torch.finfo(torch.float16).max)
    want = float(policy[(np.exp(10 * u) > big) | (10 * np.exp(10 * u) > big)].sum())
    result = audit(steep_exp, name="steep_exp", problems=[problem], dtypes="float16")
    (row,) = next(rep for rep in result.dtypes if rep["dtype"] == "float16")["problems"]
    assert want > 0 and row["overflow"] == pytest.approx(want, rel=1e-12, abs=0)


def test_the_overflow_mass_on_a_gaussian_problem_matches_the_normal_integral():
    # gauss-far: π = N(0, 1), π_ref = N(3.5, 1.2). u(x) = log π_ref(x) − log π(x) is a quadratic a·x² + b·x + c0;
    # the slope 10·e^(10u) passes float16's largest (first, before the value) where u > ln(65504/10)/10, outside
    # its two roots: mass Φ(r1) + 1 − Φ(r2) (scipy). The audit's is a mean over the probe's 50 000 draws from π:
    # within 5 binomial standard errors (two-sided false-alarm rate 5.7e-7).
    from scipy.stats import norm

    from kl_grad.lab.auditing.probe import PROBE_SAMPLES

    big = float(torch.finfo(torch.float16).max)
    m, s = 3.5, 1.2
    threshold = min(np.log(big / 10), np.log(big)) / 10
    r1, r2 = np.sort(np.roots([0.5 - 1 / (2 * s * s), m / (s * s), -m * m / (2 * s * s) - np.log(s) - threshold]))
    want = norm.cdf(r1) + norm.sf(r2)
    result = audit(steep_exp, name="steep_exp", problems=["gauss-far"], dtypes="float16")
    (row,) = next(rep for rep in result.dtypes if rep["dtype"] == "float16")["problems"]
    assert 0.01 < want < 0.1 and abs(row["overflow"] - want) <= 5 * np.sqrt(want * (1 - want) / PROBE_SAMPLES)


def nan_in_float16(logp, ref_logp):  # 0·inf = NaN in the backward where exp(60u) overflows float16 (tokens-3: u = 1.2)
    u = ref_logp - logp
    return torch.where(u > 1.0, u, torch.exp(60 * u))


def test_a_dtype_with_nan_gradients_leaves_the_other_dtypes_bias_alone():
    # The cast bias of float32 and bfloat16 on tokens-3 does not depend on whether float16 (NaN gradient at
    # token 3, whose π_θ mass is 0.122: softmax by hand) is audited beside them.
    both = audit(nan_in_float16, name="f", problems=TOKENS, dtypes="float32,bfloat16")
    three = audit(nan_in_float16, name="f", problems=TOKENS, dtypes="float32,bfloat16,float16")
    rows = {r["dtype"]: r["problems"][0] for r in three.dtypes}
    for rep in both.dtypes:
        if rep["dtype"] == "float64":
            continue
        want = rep["problems"][0]
        assert np.isfinite(want["rel_bias"]) and rows[rep["dtype"]]["rel_bias"] == want["rel_bias"]
        assert rows[rep["dtype"]]["rounding_floor"] == want["rounding_floor"]
    policy = _softmax([0.0, 0.5, -1.0])
    half = rows["float16"]
    assert half["nonfinite_grad"] == pytest.approx(policy[2], rel=1e-12) and np.isnan(half["rel_bias"])



def steep_exp_per_sequence(logp, ref_logp):  # one value per sequence beside per-token gradients
    return torch.exp(10 * (ref_logp - logp)).sum(-1)


def _chain(spec):
    _, length, init, trans = spec.split(":")
    return (int(length), np.log(_softmax([float(v) for v in init.split(",")])),
            [np.log(_softmax([float(v) for v in row.split(",")])) for row in trans.split("/")])


def test_a_per_sequence_value_and_per_token_gradients_count_a_sequence_once():
    # markov-3x4 by hand: all 81 sequences, π_θ's probability and u_t = log π_ref − log π_θ per token; a sequence
    # counts (once) when its value Σ_t e^(10·u_t) or any token's slope 10·e^(10·u_t) passes float16's largest.
    import itertools

    from kl_grad.lab.auditing.battery import SEQUENCE
    (length, p0, pt), (_, r0, rt) = (_chain(spec) for spec in SEQUENCE["markov-3x4"])
    big, want = float(torch.finfo(torch.float16).max), 0.0
    for seq in itertools.product(range(3), repeat=length):
        lp = np.array([p0[seq[0]]] + [pt[seq[t - 1]][seq[t]] for t in range(1, length)])
        lr = np.array([r0[seq[0]]] + [rt[seq[t - 1]][seq[t]] for t in range(1, length)])
        e = np.exp(10 * (lr - lp))
        want += np.exp(lp.sum()) * float((10 * e > big).any() or e.sum() > big)
    result = audit(steep_exp_per_sequence, name="s", problems=["markov-3x4"], dtypes="float16")
    (row,) = next(rep for rep in result.dtypes if rep["dtype"] == "float16")["problems"]
    assert 0.1 < want < 0.9 and row["overflow"] == pytest.approx(want, rel=1e-12, abs=0)
