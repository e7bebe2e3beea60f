"""kl_grad.testing: assertions on a KL term's expected gradient, and their failure messages."""

import re

import pytest
import torch

from kl_grad.testing import assert_kl_gradient_follows, assert_unbiased_kl_gradient

FAST = ["gauss-near", "tokens-3"]


def k2(logp, ref_logp):
    return 0.5 * (logp - ref_logp) ** 2


def k3(logp, ref_logp):
    log_ratio = ref_logp - logp
    return torch.exp(log_ratio) - log_ratio - 1


def k1(logp, ref_logp):
    return logp - ref_logp


def test_passing_assertions():
    assert_unbiased_kl_gradient(k2, problems=FAST)
    assert_unbiased_kl_gradient(k3, "ref||policy", problems=FAST)
    assert_unbiased_kl_gradient(k3, "forward", problems=FAST)  # the documented alias of ref||policy
    assert_kl_gradient_follows(k1, "zero", problems=FAST)
    assert_kl_gradient_follows(k2, "policy||ref", problems=FAST)


def test_failure_names_problem_bias_uncertainty_and_threshold():
    with pytest.raises(AssertionError) as err:
        assert_unbiased_kl_gradient(k3, "policy||ref", problems=FAST)
    text = str(err.value)
    assert "follows ref||policy" in text
    # gauss-near, d/dloc: E[grad] = ∇_m1 KL(p‖q) = (m1 − m2)/s1² = −0.3, ∇_m1 KL(q‖p) = (m1 − m2)/s2² = −0.3/1.21
    line = next(x for x in text.splitlines() if "gauss-near" in x and "d/dloc" in x)
    bias = float(re.search(r"bias (\S+) ±", line).group(1))
    assert bias == pytest.approx(-0.3 + 0.3 / 1.21, rel=1e-3)
    assert "(se), threshold" in line
    assert "tokens-3" in text


def test_follows_failure():
    with pytest.raises(AssertionError, match=re.escape("k1: follows zero (expected policy||ref):")):
        assert_kl_gradient_follows(k1, "policy||ref", problems=FAST)
    with pytest.raises(AssertionError, match=re.escape("tokens-3: follows policy||ref")):
        assert_kl_gradient_follows(k2, "zero", problems=FAST)


def test_the_fixture_is_registered_by_the_entry_point(pytestconfig):
    assert pytestconfig.pluginmanager.hasplugin("kl_grad")


def test_kl_audit_fixture(kl_audit):
    kl_audit.assert_unbiased(k2, problems=FAST)
    kl_audit.assert_follows(k3, "ref||policy", problems=FAST)
    assert kl_audit.audit(k1, problems=FAST).follows == "zero"


@pytest.mark.parametrize("call", [
    lambda: assert_unbiased_kl_gradient(k1, problems=["markov-3x4"]),  # only a sequence problem, sequences off
    lambda: assert_kl_gradient_follows(k2, "policy||ref", problems=["tokens-3"], sequences=True),
])
def test_a_filter_that_checks_nothing_fails(call):
    with pytest.raises(AssertionError, match="no (problem was checked|sequence problem was run)"):
        call()


def k2_per_token(logp, ref_logp):  # unbiased for one token; the token-level partial gradient on sequences
    return 0.5 * (logp - ref_logp) ** 2


def test_the_headline_names_the_failing_field():
    with pytest.raises(AssertionError) as err:
        assert_unbiased_kl_gradient(k2_per_token, problems=["tokens-3", "markov-3x4"], sequences=True)
    assert str(err.value).splitlines()[0].startswith("k2_per_token: follows_sequence none (expected policy||ref):")
    with pytest.raises(AssertionError) as err:
        assert_unbiased_kl_gradient(k3, "policy||ref", problems=FAST)
    assert str(err.value).splitlines()[0].startswith("k3: follows ref||policy (expected policy||ref):")


@pytest.mark.parametrize("call", [
    lambda: assert_unbiased_kl_gradient(k3, "policy||ref", problems=["tokens-3"]),
    lambda: assert_kl_gradient_follows(k1, "policy||ref", problems=["tokens-3"]),
    lambda: assert_unbiased_kl_gradient(k1, problems=["markov-3x4"]),  # raised in _checked
])
def test_library_frames_are_hidden_from_pytest_tracebacks(call):
    with pytest.raises(AssertionError) as err:
        call()
    frames, tb = [], err.tb
    while tb is not None:
        if tb.tb_frame.f_globals.get("__name__") == "kl_grad.testing":
            frames.append(tb.tb_frame)
        tb = tb.tb_next
    assert frames  # the assertion is raised inside kl_grad.testing
    assert all(f.f_locals.get("__tracebackhide__") is True for f in frames), [f.f_code.co_name for f in frames]
