"""kl_grad.lab.gradients.row_gradients: per-row autograd gradients against the hand-derived per-sample
gradients (tests/oracles.py), and its split form (chain rule at log π) against its single graph.

The split contracts two autograd results, ∂L/∂log π per point and ∇θ log π per
point (from per-point parameter copies); the single graph backpropagates each
loss through ``log_prob`` to θ, as ``loss.backward()`` would. Agreement checks the
chain rule, the per-point copies and the contraction, for every registered
estimator and placement, on- and off-policy, for both families (``row_gradients``
sends categorical policies to the single graph, but the split must hold for them too).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kl_grad.estimators import ESTIMATORS
from kl_grad.lab.gradients import row_gradients
from kl_grad.lab.problem import Problem
from kl_grad.lab.terms import Case
from kl_grad.placements import PLACEMENTS
from tests import oracles
from tests.problems import SEED001_OFF, SEED003, TOKENS3, TOKENS3_OFF

CASES = [Case(e, p) for e in ESTIMATORS.values() for p in PLACEMENTS.values()]
SETUPS = [SEED003, SEED001_OFF, TOKENS3, TOKENS3_OFF]  # normal and categorical, on- and off-policy


def _points(problem: Problem, shape=(6, 400)):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        return problem.sampling.build(problem.dtype).sample(shape)  # (rows, cols); integers for categorical


@pytest.mark.parametrize("setup", SETUPS, ids=lambda p: p.name)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_split_at_log_prob_equals_the_single_graph(setup, dtype):
    problem = Problem(*setup.args, dtype)
    points = _points(problem)
    got = row_gradients(problem, points, CASES, form="split")
    want = row_gradients(problem, points, CASES, form="single")
    # Both are sums of the same 400 per-point terms in different orders. Measured worst cases:
    # float64 5.7e-14 absolute, float32 9e-6 relative (1.5e-5 absolute on O(1) gradients), so these
    # tolerances leave ~10x; a wrong score, a transposed contraction or a lost weight term is off by O(1).
    rtol, atol = (1e-12, 1e-13) if dtype == torch.float64 else (1e-4, 1e-5)
    assert set(got) == set(want) == {c.key for c in CASES}
    for key in want:
        assert got[key].shape == want[key].shape == (6, len(problem.param_names))
        torch.testing.assert_close(got[key], want[key], rtol=rtol, atol=atol, msg=lambda m: f"{key}: {m}")


@pytest.mark.parametrize("setup", SETUPS, ids=lambda p: p.name)
@pytest.mark.parametrize("form", ["split", "single"])
def test_each_row_is_the_mean_of_the_hand_derived_per_sample_gradients(setup, form):
    problem = Problem(*setup.args, torch.float64)
    points = _points(problem, (5, 40))
    got = row_gradients(problem, points, CASES, form=form)
    for case in CASES:
        g = oracles.per_sample_gradient(case.estimator.name, case.placement.name, points.numpy(), *setup.args)
        # float64 autograd vs float64 numpy of the same formulas, averaged over 40 points; 1e-10 relative allows
        # for the estimators' series/direct branches, e^(±d) of |d| up to ~10 and the summation order.
        np.testing.assert_allclose(got[case.key].numpy(), g.mean(axis=1), rtol=1e-10, atol=1e-12,
                                   err_msg=str(case.key))


def test_pathwise_rows_differentiate_through_the_sample():
    problem = Problem(*SEED003.args, dtype=torch.float64, pathwise=True)
    points = _points(problem, (5, 40))
    cases = [Case(e, PLACEMENTS["loss"]) for e in ESTIMATORS.values()]
    got = row_gradients(problem, points, cases)  # the default form for pathwise runs: the single graph
    for case in cases:
        g = oracles.pathwise_gradient(case.estimator.name, points.numpy(), SEED003.policy, SEED003.ref)
        np.testing.assert_allclose(got[case.key].numpy(), g.mean(axis=1), rtol=1e-10, atol=1e-12,
                                   err_msg=case.estimator.name)


def test_pathwise_refuses_the_split_form():
    problem = Problem(*SEED003.args, pathwise=True)
    with pytest.raises(ValueError, match="pathwise gradients need the single graph"):
        row_gradients(problem, _points(problem, (2, 3)), CASES[:1], form="split")


def test_columns_follow_the_policys_parameters():
    problem = Problem(*TOKENS3.args)
    out = row_gradients(problem, _points(problem, (3, 10)), CASES[:2])
    assert all(v.shape == (3, 3) for v in out.values())  # logits[0..2]
    assert list(out) == [c.key for c in CASES[:2]]  # in the order of the cases
