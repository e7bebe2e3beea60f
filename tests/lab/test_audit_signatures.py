"""The audit reads a trainer's signature (issue 24, item 5) and ``--kwarg`` takes a trainer's spelling (item 4).

``def k3_masked(logp, ref_logp, mask)`` once received old_logp as its mask and got "follows none" with
negative cosines; named parameters now get what their names say, and the audit says which received what.
Expected verdicts by hand: k3 = e^(−d) − 1 + d as a plain loss follows ∇KL(π_ref‖π_θ) for one token.
"""

from __future__ import annotations

import pytest
import torch

from kl_grad.errors import KLGradError
from kl_grad.lab.auditing.auditor import audit
from kl_grad.lab.target import load_target, parse_kwargs

FAST = ["tokens-3", "gauss-near"]


def k3_masked(logp, ref_logp, mask):
    d = ref_logp - logp
    return (torch.exp(d) - 1 - d) * mask


def k3_keyword_mask(logp, ref_logp, *, response_mask, old_log_probs):
    d = ref_logp - logp
    return torch.exp(logp - old_log_probs) * (torch.exp(d) - 1 - d) * response_mask


def test_a_mask_parameter_gets_a_mask_and_the_audit_says_so():
    result = audit(k3_masked, problems=FAST)
    assert result.follows == "ref||policy"
    assert any(w.startswith("inputs: k3_masked received") and "mask = ones" in w for w in result.warnings)


def test_keyword_only_trainer_names_are_filled():
    result = audit(k3_keyword_mask, problems=FAST)  # w·k3 with the sampler's log-probs: ∇KL(π_θ‖π_ref)
    assert result.follows == "policy||ref"
    assert any("old_log_probs = the sampler's log-probs" in w for w in result.warnings)


def test_an_unknown_required_parameter_is_one_line_naming_kwarg():
    def needs_beta(logp, ref_logp, beta):
        return beta * (logp - ref_logp)

    with pytest.raises(KLGradError, match="needs parameter 'beta'.*--kwarg beta=VALUE"):
        audit(needs_beta, problems=FAST)
    assert audit(needs_beta, kwargs={"beta": 0.5}, problems=FAST).follows == "zero"  # β·k1 as a loss


def test_kwarg_values_that_are_not_literals_are_strings(tmp_path):
    (tmp_path / "verlish.py").write_text(
        "import torch\n"
        "def kl_penalty(logprob, ref_logprob, kl_penalty='kl'):\n"
        "    d = logprob - ref_logprob\n"
        "    return {'kl': d, 'k3+': torch.exp(-d) - 1 + d}[kl_penalty]\n")
    fn = load_target(f"{tmp_path / 'verlish.py'}:kl_penalty", parse_kwargs(["kl_penalty=k3+"]))  # as the CLI reads it
    assert audit(fn, problems=FAST).follows == "ref||policy"


def test_logits_parameters_are_refused_and_unnamed_ones_counted_alone():
    def from_logits(logits, ref_logits):
        return logits - ref_logits

    with pytest.raises(KLGradError, match="not logits over the vocabulary"):
        audit(from_logits, problems=FAST)

    def mask_first(mask, x, y):  # x, y: the first two unnamed parameters → logp, ref_logp
        d = y - x
        return (torch.exp(d) - 1 - d) * mask

    assert audit(mask_first, problems=FAST).follows == "ref||policy"


class K2Module(torch.nn.Module):  # a KL term as a module: __call__ is (*args, **kwargs), forward names the inputs
    def forward(self, logp, ref_logp):
        return 0.5 * (logp - ref_logp) ** 2


def k2_function(logp, ref_logp):
    return 0.5 * (logp - ref_logp) ** 2


def test_an_nn_module_is_audited_through_its_forward():
    module, plain = audit(K2Module(), name="m", problems=FAST), audit(k2_function, name="f", problems=FAST)
    assert module.follows == plain.follows == "policy||ref"
    for got, want in zip(module.problems, plain.problems):
        assert got["rel_bias_norm_vs_policy||ref"] == want["rel_bias_norm_vs_policy||ref"]


def test_a_star_args_function_that_fails_names_what_it_was_given():
    def star(*args):
        raise ValueError("boom")

    with pytest.raises(KLGradError, match=r"called as fn\(logp, ref_logp, old_logp\)"):
        audit(star, name="star", problems=FAST)
