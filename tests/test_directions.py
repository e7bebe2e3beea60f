"""kl_grad.directions: the two KL directions, their aliases, and kl(direction, q, p) against closed forms."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Categorical, Normal

from kl_grad.directions import (
    DIRECTIONS,
    POLICY_REF,
    REF_POLICY,
    kl,
    other,
    resolve_direction,
)
from kl_grad.errors import KLGradError
from tests import oracles
from tests.problems import PROBLEMS


def test_the_two_directions():
    assert DIRECTIONS == (POLICY_REF, REF_POLICY) == oracles.DIRECTIONS == ("policy||ref", "ref||policy")
    assert other(POLICY_REF) == REF_POLICY and other(REF_POLICY) == POLICY_REF


@pytest.mark.parametrize("name, canonical", [
    ("policy||ref", POLICY_REF), ("ref||policy", REF_POLICY), (" policy||ref ", POLICY_REF),
    # the papers' convention: reverse KL = KL(π_θ‖π_ref); any case for the words
    ("reverse", POLICY_REF), ("forward", REF_POLICY), ("Reverse", POLICY_REF), (" FORWARD ", REF_POLICY),
])
def test_resolve_direction(name, canonical):
    assert resolve_direction(name) == canonical


@pytest.mark.parametrize("name", ["backward", "POLICY||REF", "policy|ref", ""])
def test_unknown_direction_lists_names_and_aliases(name):
    with pytest.raises(KLGradError, match=r"unknown direction .*; expected one of policy\|\|ref, ref\|\|policy, "
                                          r"reverse, forward$"):
        resolve_direction(name)


def _torch_dist(spec: str):
    family, values = oracles.parse(spec)
    v = torch.tensor(values, dtype=torch.float64)
    return Normal(v[0], v[1]) if family == "normal" else Categorical(logits=v)


@pytest.mark.parametrize("problem", PROBLEMS, ids=lambda p: p.name)
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_kl_puts_the_arguments_in_the_named_order(direction, problem):
    got = kl(direction, _torch_dist(problem.policy), _torch_dist(problem.ref)).item()
    # torch's closed form vs the hand-written one, both float64: 1e-12 covers the operation order.
    assert got == pytest.approx(oracles.closed_form_kl(direction, problem.policy, problem.ref), rel=1e-12, abs=1e-15)
