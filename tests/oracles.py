"""Independent oracles for the kl_grad tests and benchmark (not collected as tests).

Nothing here imports the code under test's estimator formulas, samplers or
gradient machinery; the only kl_grad import is ``parse_spec`` to read
``normal:LOC,SCALE`` strings into numbers.

* ``seed_style_loop``: the seed-003 blog script's plain per-trial loop, with each
  estimator's formula hand-written from log-probs and ``.mean().backward()``.
* Closed-form Normal KLs in both directions and their partial derivatives with
  respect to the policy's (loc, scale), derived by hand.
* ``expected_grad_quad``: E_{x~q}[per-sample autograd gradient] by quadrature of
  hand-derived per-sample gradient formulas.

Notation: policy q = N(m1, s1) (its parameters are differentiated), reference
p = N(m2, s2), d = log q(x) − log p(x), r = p(x)/q(x) = e^(−d).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.distributions import Normal

from kl_grad.lab.families import DistSpec, parse_spec

POLICY_REF = "policy||ref"
REF_POLICY = "ref||policy"


def _normal_values(spec) -> tuple[float, float]:
    """(loc, scale) floats from a ``normal:LOC,SCALE`` string or a DistSpec."""
    if not isinstance(spec, DistSpec):
        spec = parse_spec(spec)
    assert spec.family == "normal", spec
    loc, scale = spec.values
    return float(loc), float(scale)


# --------------------------------------------------------------------------- #
# The seed-003 style per-trial loop
# --------------------------------------------------------------------------- #

# Written as seed 003 writes them: each formula takes (x, q, p) and calls log_prob itself,
# so reverse_k1 evaluates each log-prob twice, exactly like the seed's script.
def _loop_k1(x, q, p):
    return q.log_prob(x) - p.log_prob(x)


def _loop_k2(x, q, p):
    return 0.5 * (q.log_prob(x) - p.log_prob(x)) ** 2


def _loop_k3(x, q, p):
    ratio = torch.exp(p.log_prob(x) - q.log_prob(x))
    return ratio - 1 - torch.log(ratio)


def _loop_reverse_k1(x, q, p):
    ratio = torch.exp(p.log_prob(x) - q.log_prob(x))
    return ratio * (p.log_prob(x) - q.log_prob(x))


def _loop_reverse_k2(x, q, p):
    return torch.exp(p.log_prob(x) - q.log_prob(x))


LOOP_FORMULAS = {
    "k1": _loop_k1,
    "k2": _loop_k2,
    "k3": _loop_k3,
    "reverse_k1": _loop_reverse_k1,
    "reverse_k2": _loop_reverse_k2,
}


def seed_style_loop(
    policy_spec,
    ref_spec,
    estimator_names,
    samples: int,
    trials: int,
    seed: int,
    return_samples: bool = False,
    dtype: torch.dtype = torch.float32,
):
    """Per-trial gradients the way the seed-003 script computes them.

    ``torch.manual_seed(seed)`` once, then per trial: fresh scalar leaves,
    ``x = q.sample((samples,))``, and per estimator its hand-written per-sample
    formula, ``.mean().backward()``, read and clear the leaves' grads. The
    caller's global RNG state is restored afterwards.

    Returns {name: (trials, 2) array of [d/dloc, d/dscale]}; with
    ``return_samples`` also the list of per-trial sample tensors.
    """
    m1, s1 = _normal_values(policy_spec)
    m2, s2 = _normal_values(ref_spec)
    names = list(estimator_names)
    out = {name: np.empty((trials, 2)) for name in names}
    drawn = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for t in range(trials):
            loc = torch.tensor(m1, dtype=dtype, requires_grad=True)
            scale = torch.tensor(s1, dtype=dtype, requires_grad=True)
            q = Normal(loc, scale)
            p = Normal(torch.tensor(m2, dtype=dtype), torch.tensor(s2, dtype=dtype))
            x = q.sample((samples,))
            if return_samples:
                drawn.append(x)
            for name in names:
                per_sample = LOOP_FORMULAS[name](x, q, p)
                per_sample.mean().backward()
                out[name][t] = (loc.grad.item(), scale.grad.item())
                loc.grad = None
                scale.grad = None
    return (out, drawn) if return_samples else out


# --------------------------------------------------------------------------- #
# Hand-derived closed forms for Normal q = N(m1, s1), p = N(m2, s2)
# --------------------------------------------------------------------------- #

def kl_policy_ref(m1: float, s1: float, m2: float, s2: float) -> float:
    """KL(q‖p) = log(s2/s1) + (s1² + (m1−m2)²)/(2 s2²) − 1/2."""
    return math.log(s2 / s1) + (s1 * s1 + (m1 - m2) ** 2) / (2.0 * s2 * s2) - 0.5


def grad_kl_policy_ref(m1: float, s1: float, m2: float, s2: float) -> np.ndarray:
    """[∂/∂m1, ∂/∂s1] KL(q‖p) = [(m1−m2)/s2², −1/s1 + s1/s2²]."""
    return np.array([(m1 - m2) / (s2 * s2), -1.0 / s1 + s1 / (s2 * s2)])


def kl_ref_policy(m1: float, s1: float, m2: float, s2: float) -> float:
    """KL(p‖q) = log(s1/s2) + (s2² + (m2−m1)²)/(2 s1²) − 1/2."""
    return math.log(s1 / s2) + (s2 * s2 + (m2 - m1) ** 2) / (2.0 * s1 * s1) - 0.5


def grad_kl_ref_policy(m1: float, s1: float, m2: float, s2: float) -> np.ndarray:
    """[∂/∂m1, ∂/∂s1] KL(p‖q) = [(m1−m2)/s1², 1/s1 − (s2² + (m2−m1)²)/s1³]."""
    return np.array([(m1 - m2) / (s1 * s1), 1.0 / s1 - (s2 * s2 + (m2 - m1) ** 2) / s1**3])


def closed_form_grads(policy, ref) -> dict[str, np.ndarray]:
    """Hand-derived ∇_(m1, s1) KL in both directions, keyed like kl_grad's directions."""
    m1, s1 = _normal_values(policy)
    m2, s2 = _normal_values(ref)
    return {POLICY_REF: grad_kl_policy_ref(m1, s1, m2, s2), REF_POLICY: grad_kl_ref_policy(m1, s1, m2, s2)}


# --------------------------------------------------------------------------- #
# E_q[per-sample gradient] by quadrature
# --------------------------------------------------------------------------- #
#
# With s = ∂ log q/∂θ (s_loc = (x−m1)/s1², s_scale = ((x−m1)² − s1²)/s1³) and
# ∂d/∂θ = s, differentiating each estimator as a function of d:
#   k1 = d                 -> s
#   k2 = d²/2              -> d·s
#   k3 = e^(−d) − 1 + d    -> (1 − e^(−d))·s = (1 − r)·s
#   reverse_k1 = r log r = −d e^(−d)
#                          -> (−e^(−d) + d e^(−d))·s = r·(d − 1)·s
#   reverse_k2 = r = e^(−d) -> −r·s
# The integrand is q(x)·g(x); in the terms carrying r we use q·r = p, i.e.
# exp(log p(x)), so that far tails never form 0·∞.

def _log_normal_pdf(x: float, m: float, s: float) -> float:
    return -0.5 * ((x - m) / s) ** 2 - math.log(s) - 0.5 * math.log(2.0 * math.pi)


def _weighted_grad(name: str, x: float, m1: float, s1: float, m2: float, s2: float, j: int) -> float:
    """q(x) × (component j of the per-sample gradient of estimator ``name``)."""
    lq = _log_normal_pdf(x, m1, s1)
    lp = _log_normal_pdf(x, m2, s2)
    q, qr = math.exp(lq), math.exp(lp)  # q(x) and q(x)·r(x) = p(x)
    d = lq - lp
    z = x - m1
    s = z / (s1 * s1) if j == 0 else (z * z - s1 * s1) / s1**3
    if name == "k1":
        return q * s
    if name == "k2":
        return q * d * s
    if name == "k3":
        return (q - qr) * s
    if name == "reverse_k1":
        return qr * (d - 1.0) * s
    if name == "reverse_k2":
        return -qr * s
    raise KeyError(name)


def expected_grad_quad(estimator_name: str, policy, ref) -> np.ndarray:
    """E_{x~q}[∇_(m1, s1) k(x)] for the on-policy ``loss`` placement, by scipy quad.

    Integrates over [min(m1−40 s1, m2−40 s2), max(m1+40 s1, m2+40 s2)]: both
    q and p carry less than e^(−800) mass outside it.
    """
    from scipy.integrate import quad  # scipy only needed by the statistical tests

    m1, s1 = _normal_values(policy)
    m2, s2 = _normal_values(ref)
    lo = min(m1 - 40 * s1, m2 - 40 * s2)
    hi = max(m1 + 40 * s1, m2 + 40 * s2)
    out = np.empty(2)
    for j in range(2):
        out[j], _err = quad(
            lambda x: _weighted_grad(estimator_name, x, m1, s1, m2, s2, j),
            lo, hi, points=sorted({m1, m2}), limit=400, epsabs=1e-13, epsrel=1e-11,
        )
    return out
