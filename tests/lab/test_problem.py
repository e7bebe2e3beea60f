"""kl_grad.lab.problem.Problem: validation at construction, and the truth it carries (true KL and ∇KL in
both directions) against hand-derived closed forms and finite differences (tests/oracles.py)."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
import torch

from kl_grad.errors import KLGradError
from kl_grad.lab import true_gradients
from kl_grad.lab.families import parse_spec
from kl_grad.lab.problem import Problem
from tests import oracles
from tests.oracles import DIRECTIONS, POLICY_REF, REF_POLICY
from tests.problems import PROBLEMS, SEED001_OFF, SEED003, select

NORMAL = select(family="normal")
CATEGORICAL = select(family="categorical")


# --- validation -----------------------------------------------------------------------------------

@pytest.mark.parametrize("args, kwargs, message", [
    (("normal:0,1", "categorical:0,1"), {},
     "ref categorical:0,1 does not match policy normal:0,1: expected the same family with 2 parameters"),
    (("categorical:0,1", "categorical:0,1,2"), {}, "ref categorical:0,1,2 does not match policy categorical:0,1"),
    (("normal:0,1", "normal:1,1", "categorical:0,1"), {}, "sampler categorical:0,1 does not match policy"),
    (("normal:0", "normal:1,1"), {}, "malformed policy 'normal:0'; expected normal:LOC,SCALE"),
    (("normal:0,1", "normal:1,-1"), {}, "invalid ref 'normal:1,-1': scale must be > 0 and finite, got -1"),
    (("normal:0,1", "normal:1,1", "normal:0,0"), {}, "invalid sampler 'normal:0,0': scale must be > 0"),
    (("normal:0,1", "normal:1,1"), {"dtype": "float16"}, "unknown dtype 'float16'; expected one of float32, float64"),
    (("normal:0,1", "normal:1,1"), {"dtype": torch.float16}, "unsupported dtype torch.float16; expected float32 or "
                                                             "float64"),
    (("categorical:0,1", "categorical:1,0"), {"pathwise": True},
     "categorical samples are discrete tokens, which cannot be reparameterised"),
    (("normal:0,1", "normal:1,1", "normal:0,2"), {"pathwise": True}, "on-policy only: drop the sampler"),
])
def test_invalid_problems_are_refused_at_construction(args, kwargs, message):
    with pytest.raises(KLGradError, match=re.escape(message)):
        Problem(*args, **kwargs)


def test_text_specs_and_dtype_names_are_normalised():
    p = Problem("normal:0,1", "normal:1,1.1", "normal:0.3,1.2", "float64")
    assert p.policy == parse_spec("normal:0,1") and p.sampler == parse_spec("normal:0.3,1.2")
    assert p.dtype is torch.float64
    assert p == Problem(parse_spec("normal:0,1"), parse_spec("normal:1,1.1"), parse_spec("normal:0.3,1.2"),
                        torch.float64)


def test_sampling_distribution_and_labels():
    on, off = Problem(*SEED003.args), Problem(*SEED001_OFF.args)
    assert on.sampling == on.policy and on.sampler_label == "policy"
    assert off.sampling == off.sampler == parse_spec("normal:0.3,1.2") and off.sampler_label == "normal:0.3,1.2"
    assert on.param_names == ("loc", "scale") and on.dtype is torch.float32  # float32 by default, as trainers
    assert Problem("categorical:0,1,2", "categorical:1,0,0").param_names == ("logits[0]", "logits[1]", "logits[2]")


def test_in_float64_is_a_float64_copy():
    p = Problem(*SEED003.args)
    p64 = p.in_float64()
    assert p64.dtype is torch.float64 and p.dtype is torch.float32
    assert dataclasses.replace(p64, dtype=torch.float32) == p


# --- the truth ------------------------------------------------------------------------------------

@pytest.mark.parametrize("problem", PROBLEMS, ids=lambda p: p.name)
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_true_kl_matches_the_closed_form(direction, problem):
    got = Problem(*problem.args).true_kl(direction)
    assert got == pytest.approx(oracles.closed_form_kl(direction, problem.policy, problem.ref), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("problem", PROBLEMS, ids=lambda p: p.name)
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_true_gradients_match_hand_derived_partials(direction, problem):
    got = Problem(*problem.args).true_gradients()[direction]
    exact = oracles.closed_form_grads(problem.policy, problem.ref)[direction]
    # Both are float64 evaluations of the same function: 1e-12 (~4500 eps)
    # allows for the different operation orders, nothing more. The absolute floor is for categorical
    # components near 0, where both sides carry float64 rounding of O(1) probabilities.
    np.testing.assert_allclose(got, exact, rtol=1e-12, atol=1e-15)


def _central_differences(direction: str, problem, h: float) -> np.ndarray:
    family, values = oracles.parse(problem.policy)
    out = []
    for j in range(len(values)):
        up = ",".join(str(v + h * (i == j)) for i, v in enumerate(values))
        down = ",".join(str(v - h * (i == j)) for i, v in enumerate(values))
        f = oracles.closed_form_kl
        out.append((f(direction, f"{family}:{up}", problem.ref) - f(direction, f"{family}:{down}", problem.ref))
                   / (2 * h))
    return np.array(out)


# Central differences: truncation ~h²·f'''/6 plus rounding ~1e-16/h. Normal, h = 1e-5: measured 2.2e-9
# relative (a small component), so rtol 2e-8 keeps a 10x margin; the atol is for components that are
# exactly 0 (equal locations). Categorical, h = 1e-6: truncation 1e-12, rounding 1e-10 (hence atol).
FD_SETTINGS = [(p, 1e-5, 2e-8, 1e-9) for p in NORMAL] + [(p, 1e-6, 1e-9, 1e-10) for p in CATEGORICAL]


@pytest.mark.parametrize("problem, h, rtol, atol", FD_SETTINGS, ids=lambda v: getattr(v, "name", ""))
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_true_gradients_match_finite_differences_of_the_closed_form(direction, problem, h, rtol, atol):
    got = true_gradients(problem.policy, problem.ref)[direction]
    np.testing.assert_allclose(got, _central_differences(direction, problem, h=h), rtol=rtol, atol=atol)


def test_true_gradients_keys_and_dtype():
    for problem in (SEED003, select(family="categorical")[0]):
        out = Problem(*problem.args).true_gradients()
        assert set(out) == {POLICY_REF, REF_POLICY}
        for v in out.values():
            assert v.shape == (len(oracles.parse(problem.policy)[1]),) and v.dtype == np.float64
