"""``true_gradients`` against hand-written closed forms, and the oracles against each other."""

from __future__ import annotations

import numpy as np
import pytest

from kl_grad.lab import true_gradients
from kl_grad.lab.families import parse_spec
from tests.oracles import (
    POLICY_REF,
    REF_POLICY,
    closed_form_grads,
    expected_grad_quad,
    kl_policy_ref,
    kl_ref_policy,
)

# (policy, ref) pairs; none has a gradient component near 0 (relative error
# would be meaningless there), loc and scale both move.
PAIRS = [
    ("normal:0,1", "normal:1,1.1"),
    ("normal:0.3,0.7", "normal:-0.5,2"),
    ("normal:-1.5,2.5", "normal:0.25,0.4"),
    ("normal:2,0.3", "normal:-3,1.7"),
]

KL = {POLICY_REF: kl_policy_ref, REF_POLICY: kl_ref_policy}


def _central_differences(direction: str, policy: str, ref: str, h: float = 1e-5) -> np.ndarray:
    m1, s1 = parse_spec(policy).values
    m2, s2 = parse_spec(ref).values
    f = KL[direction]
    return np.array([
        (f(m1 + h, s1, m2, s2) - f(m1 - h, s1, m2, s2)) / (2 * h),
        (f(m1, s1 + h, m2, s2) - f(m1, s1 - h, m2, s2)) / (2 * h),
    ])


@pytest.mark.parametrize("policy,ref", PAIRS)
@pytest.mark.parametrize("direction", [POLICY_REF, REF_POLICY])
def test_true_gradients_match_finite_differences_of_closed_form(policy, ref, direction):
    got = true_gradients(parse_spec(policy), parse_spec(ref))[direction]
    fd = _central_differences(direction, policy, ref)
    # Central differences with h = 1e-5: truncation ~h²·f'''/6 ≈ 1e-10 plus rounding; measured 2.2e-9
    # relative (a small component), so 2e-8 keeps a 10x margin.
    np.testing.assert_allclose(got, fd, rtol=2e-8, atol=0)


@pytest.mark.parametrize("policy,ref", PAIRS)
@pytest.mark.parametrize("direction", [POLICY_REF, REF_POLICY])
def test_true_gradients_match_hand_derived_partials(policy, ref, direction):
    got = true_gradients(parse_spec(policy), parse_spec(ref))[direction]
    exact = closed_form_grads(policy, ref)[direction]
    # Both are float64 evaluations of the same function: 1e-12 (~4500 eps)
    # allows for the different operation orders, nothing more.
    np.testing.assert_allclose(got, exact, rtol=1e-12, atol=0)


@pytest.mark.parametrize("policy,ref", PAIRS)
def test_hand_partials_match_finite_differences(policy, ref):
    # The oracle checks itself: hand-derived partials vs FD of the hand-written KL (same budget as above).
    for direction in (POLICY_REF, REF_POLICY):
        np.testing.assert_allclose(
            closed_form_grads(policy, ref)[direction], _central_differences(direction, policy, ref), rtol=2e-8
        )


def test_true_gradients_keys_and_dtype():
    out = true_gradients(parse_spec("normal:0,1"), parse_spec("normal:1,1.1"))
    assert set(out) == {POLICY_REF, REF_POLICY}
    for v in out.values():
        assert v.shape == (2,) and v.dtype == np.float64


@pytest.mark.parametrize("policy,ref", PAIRS[:2])
def test_quadrature_oracle_agrees_with_score_function_identities(policy, ref):
    """Quad of the hand-derived per-sample gradients reproduces the known expectations.

    E_q[s] = 0; E_q[d·s] = ∇KL(q‖p); E_q[(1−r)s] = E_q[−r s] = −∫p ∇log q = ∇KL(p‖q).
    quad is asked for 1e-11 relative / 1e-13 absolute; 1e-9 leaves a margin.
    """
    truth = closed_form_grads(policy, ref)
    np.testing.assert_allclose(expected_grad_quad("k1", policy, ref), 0.0, atol=1e-9)
    np.testing.assert_allclose(expected_grad_quad("k2", policy, ref), truth[POLICY_REF], rtol=1e-9)
    np.testing.assert_allclose(expected_grad_quad("k3", policy, ref), truth[REF_POLICY], rtol=1e-9)
    np.testing.assert_allclose(expected_grad_quad("reverse_k2", policy, ref), truth[REF_POLICY], rtol=1e-9)
    # reverse_k1's autograd gradient is NOT ∇KL(p‖q): it carries an extra ∫ p·d·s term.
    rk1 = expected_grad_quad("reverse_k1", policy, ref)
    assert np.all(np.abs(rk1 - truth[REF_POLICY]) > 0.1 * np.abs(truth[REF_POLICY]))
