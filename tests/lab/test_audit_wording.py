"""What the audit's warnings say (issue 24, items 5 and 4): what was found, once, in plain percentages; and a
mask checked against padding.

Expected words come from how each function is written (a bfloat16 step, a clamp, a detach, a reward
surrogate); the padded loss of a function that divides a masked sum by every position is 4/6 of the
unpadded one (L = 4 real tokens of 6), so its relative change is 1/3.
"""

from __future__ import annotations

import functools
import os
import re
import warnings

import pytest
import torch

import kl_grad
from kl_grad.lab.auditing.auditor import audit
from kl_grad.lab.auditing.notes import dedupe
from kl_grad.lab.auditing.probe import pct
from kl_grad.lab.target import load_target

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "examples", "trainer_kl_terms.py")
FAST = ["gauss-near", "tokens-3"]


@functools.lru_cache(maxsize=None)
def example(name, problems=tuple(FAST)):
    return audit(load_target(f"{EXAMPLES}:{name}"), name=name, problems=list(problems))


def k3_step(dtype):
    def fn(logp, ref_logp):
        d = (ref_logp - logp).to(dtype)
        return (torch.exp(d) - 1 - d).double()
    return fn


@pytest.mark.parametrize("dtype, name", [(torch.bfloat16, "bfloat16"), (torch.float16, "float16"),
                                         (torch.float32, "float32")])
def test_an_inner_step_is_named_by_its_dtype(dtype, name):
    (line,) = [w for w in audit(k3_step(dtype), problems=FAST).warnings if "computes in lower precision" in w]
    assert f"a {name} step and a cast back" in line
    assert all(f"a {other} step" not in line for other in ("bfloat16", "float16", "float32") if other != name)


def test_zero_gradient_is_a_clamp_only_where_the_value_is_flat():
    def half_detached(logp, ref_logp):  # k2 whose gradient is stopped where d ≤ 0: the value still moves there
        d = logp - ref_logp
        return torch.where(d > 0, 0.5 * d ** 2, (0.5 * d ** 2).detach())

    lines = audit(half_detached, problems=FAST).warnings
    (line,) = [w for w in lines if "exactly zero" in w]
    assert line.startswith("zero gradient:") and "clamp" not in line and "stop-gradient" in line
    clamped = example("verl_low_var_kl", ("gauss-far",)).warnings
    assert any(w.startswith("clamp:") and "flat" in w for w in clamped)


def test_negative_values_are_not_flagged_for_a_reward_surrogate():
    assert not any(w.startswith("negative values") for w in example("k1_reward").warnings)
    assert not any(w.startswith("negative values") for w in example("k1_sequence_reward").warnings)
    assert any(w.startswith("negative values:") for w in example("k1_loss").warnings)  # k1 as a loss: still said
    value_k1 = audit(lambda logp, ref_logp: logp - ref_logp, placement="reward", problems=FAST)
    assert not any(w.startswith("negative values") for w in value_k1.warnings)


def test_rounding_sized_negatives_are_named_as_cancellation():
    lines = example("k3_float32", ("gauss-near", "gauss-far", "gauss-narrow-ref", "gauss-wide-ref", "tokens-3"))
    (line,) = [w for w in lines.warnings if w.startswith("negative values")]
    assert line.startswith("negative values (rounding):") and "float32" in line
    worst = float(re.search(r"at most (\S+) on", line).group(1))
    assert 0 < worst <= 64 * 2.0 ** -24


def test_each_warning_is_printed_once():
    lines = example("k3_float32", ("gauss-far",)).warnings
    assert len(lines) == len(set(lines))
    assert sum("variance not estimable" in w for w in lines) == 1  # was twice: (x = 12.9) and (x = 13.28)
    assert dedupe(["a (x = 12.9)", "a (x = 13.28)", "b", "b"]) == ["a (x = 12.9)", "b"]


@pytest.mark.parametrize("p", [1.0, 0.999, 0.5, 0.123, 0.0064, 2.1e-5, 3e-7])
def test_percentages_have_no_exponent_and_two_significant_digits(p):
    text = pct(p)
    assert "e" not in text and text.endswith("%") and ".0%" not in text
    assert float(text[:-1]) == pytest.approx(100 * p, rel=0.05)  # two significant digits: within 5%
    assert pct(1.0)[:-1] == "100"


def test_a_mask_that_padding_leaks_through_is_reported():
    def sum_over_all(logp, ref_logp, mask):  # masks the values, but divides by every position
        d = ref_logp - logp
        return ((torch.exp(d) - 1 - d) * mask).sum() / mask.numel()

    # the padding's values stay out; only the normaliser counts the 2 padded positions: a common factor 4/6
    (line,) = [w for w in audit(sum_over_all, problems=["markov-3x4"]).warnings if w.startswith("mask:")]
    scale = float(re.search(r"scale by (\S+) \(= 4/6", line).group(1))
    assert scale == pytest.approx(4 / 6, abs=5e-5) and "normalises by the padded length" in line  # 4 digits

    def half_masked(logp, ref_logp, mask):  # the value masked, the count not, and a stray second factor
        d = ref_logp - logp
        return ((torch.exp(d) - 1 - d) * mask).sum(-1) / mask.shape[-1] ** 2

    (line,) = [w for w in audit(half_masked, problems=["markov-3x4"]).warnings if w.startswith("mask:")]
    scale = float(re.search(r"scale by (\S+) \(one common factor", line).group(1))
    assert scale == pytest.approx(16 / 36, abs=5e-5)

    def masked_mean(logp, ref_logp, mask):  # per sequence, over its valid tokens: no warning
        d = ref_logp - logp
        return ((torch.exp(d) - 1 - d) * mask).sum(-1) / mask.sum(-1)

    assert not [w for w in audit(masked_mean, problems=["markov-3x4"]).warnings if w.startswith("mask:")]

    def ignores(logp, ref_logp, mask):  # no mask at all: the garbage d = 23 enters
        d = ref_logp - logp
        return torch.exp(d) - 1 - d

    (line,) = [w for w in audit(ignores, problems=["markov-3x4"]).warnings if w.startswith("mask:")]
    assert "padded positions receive gradient" in line


def test_a_mask_that_is_respected_gives_no_warning():
    def kl_loss_seq(logp, ref_logp, mask):
        return kl_grad.kl_loss(logp, ref_logp, mask=mask, placement="reward", aggregation="seq-mean-token-sum")

    def k3_masked(logp, ref_logp, mask):
        d = ref_logp - logp
        return (torch.exp(d) - 1 - d) * mask

    for fn in (kl_loss_seq, k3_masked):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # kl_loss(placement="reward") announces its meaning
            result = audit(fn, problems=["markov-3x4"])
        assert not any(w.startswith("mask:") for w in result.warnings)


def where_both_branches(logp, ref_logp):  # exp on both branches of a where: the unused one's inf·0 is a NaN gradient
    d = logp - ref_logp
    return torch.where(d > 0, torch.exp(1000 * d) * 0 + d, torch.exp(-1000 * d) * 0 - d)


def test_a_warning_about_non_finite_trials_is_one_line_with_balanced_parentheses():
    result = audit(where_both_branches, name="w", problems=["gauss-near"])
    lines = [w for w in result.warnings if "trial gradients are not finite" in w]
    assert lines and all(w.count("(") == w.count(")") for w in result.warnings), result.warnings


def k2_batch_sum(logp, ref_logp):
    return (0.5 * (logp - ref_logp) ** 2).sum()


def k2_batch_mean(logp, ref_logp):
    return (0.5 * (logp - ref_logp) ** 2).sum(-1).mean()


def k2_batch_sum_bf16(logp, ref_logp):  # a trainer's low-precision sum: 50 000 terms rounded in bfloat16
    return (0.5 * (logp - ref_logp) ** 2).to(torch.bfloat16).sum()


def test_a_scalar_summed_over_the_batch_is_named_and_a_mean_is_not():
    # Given every sample twice, a sum doubles and a mean (over sequences of token sums) keeps its value.
    for fn in (k2_batch_sum, k2_batch_sum_bf16):
        summed = audit(fn, name="s", problems=["tokens-3", "gauss-near", "markov-3x4"])
        assert sum("returns a sum over the batch" in w for w in summed.warnings) == 1, fn.__name__
    mean = audit(k2_batch_mean, name="m", problems=["tokens-3", "gauss-near", "markov-3x4"])
    assert not any("sum over the batch" in w for w in mean.warnings)
