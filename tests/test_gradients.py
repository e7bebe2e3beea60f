"""``row_gradients``' split form (chain rule at log π) against its single graph (θ to each loss).

The split contracts two autograd results, ∂L/∂log π per point and ∇θ log π per
point (from per-point parameter copies); the single graph backpropagates each
loss through ``log_prob`` to θ, as ``loss.backward()`` would. Both build the
same surrogates from the same distributions (those are checked against
hand-derived gradients elsewhere), so agreement checks the chain rule, the
per-point copies and the contraction, for every registered estimator and
placement, on- and off-policy, for both families (``row_gradients`` sends
categorical policies to the single graph, but the split must hold for them too).
"""

import pytest
import torch

from kl_grad.estimators import ESTIMATORS
from kl_grad.lab.families import parse_spec
from kl_grad.lab.gradients import row_gradients
from kl_grad.lab.problem import Problem
from kl_grad.lab.terms import Case
from kl_grad.placements import PLACEMENTS

CASES = [Case(e, p) for e in ESTIMATORS.values() for p in PLACEMENTS.values()]
SETUPS = {
    "normal on-policy": ("normal:0,1", "normal:1,1.1", None),
    "normal off-policy": ("normal:0,1", "normal:1,1.1", "normal:0.3,1.2"),
    "categorical on-policy": ("categorical:0,0.5,-1", "categorical:1,0,0", None),
    "categorical off-policy": ("categorical:0,0.5,-1", "categorical:1,0,0", "categorical:0,0,0"),
}


def _points(dist, dtype, shape=(6, 400)):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        return dist.build(dtype).sample(shape)  # (rows, cols); integers for categorical


@pytest.mark.parametrize("setup", SETUPS, ids=list(SETUPS))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_split_at_log_prob_equals_the_single_graph(setup, dtype):
    policy, ref, sampler = (parse_spec(s) if s else None for s in SETUPS[setup])
    points = _points(sampler or policy, dtype)
    problem = Problem(policy, ref, sampler, dtype)
    got = row_gradients(problem, points, CASES, form="split")
    want = row_gradients(problem, points, CASES, form="single")
    # Both are sums of the same 400 per-point terms in different orders. Measured worst cases:
    # float64 5.7e-14 absolute, float32 9e-6 relative (1.5e-5 absolute on O(1) gradients), so these
    # tolerances leave ~10x; a wrong score, a transposed contraction or a lost weight term is off by O(1).
    rtol, atol = (1e-12, 1e-13) if dtype == torch.float64 else (1e-4, 1e-5)
    assert set(got) == set(want) == {c.key for c in CASES}
    for key in want:
        assert got[key].shape == want[key].shape == (6, len(policy.params))
        torch.testing.assert_close(got[key], want[key], rtol=rtol, atol=atol, msg=lambda m: f"{key}: {m}")

