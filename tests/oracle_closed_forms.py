"""Independent oracles: closed-form KLs and gradients, Normal moments, Schulman's value moments, and
kl_loss's aggregations as plain loops."""

from __future__ import annotations

import math

import numpy as np

from tests.oracle_formulas import DIRECTIONS, POLICY_REF, REF_POLICY, log_softmax, parse, softmax

# --------------------------------------------------------------------------- #
# Closed forms
# --------------------------------------------------------------------------- #

def kl_normal(direction: str, m1: float, s1: float, m2: float, s2: float) -> float:
    """KL(q‖p) = log(s2/s1) + (s1² + (m1−m2)²)/(2 s2²) − 1/2; KL(p‖q) swaps the roles."""
    if direction == POLICY_REF:
        return math.log(s2 / s1) + (s1 * s1 + (m1 - m2) ** 2) / (2.0 * s2 * s2) - 0.5
    return math.log(s1 / s2) + (s2 * s2 + (m2 - m1) ** 2) / (2.0 * s1 * s1) - 0.5


def grad_kl_normal(direction: str, m1: float, s1: float, m2: float, s2: float) -> np.ndarray:
    """[∂/∂m1, ∂/∂s1] of KL(q‖p) = [(m1−m2)/s2², −1/s1 + s1/s2²]
    and of KL(p‖q) = [(m1−m2)/s1², 1/s1 − (s2² + (m2−m1)²)/s1³]."""
    if direction == POLICY_REF:
        return np.array([(m1 - m2) / (s2 * s2), -1.0 / s1 + s1 / (s2 * s2)])
    return np.array([(m1 - m2) / (s1 * s1), 1.0 / s1 - (s2 * s2 + (m2 - m1) ** 2) / s1**3])


def closed_form_kl(direction: str, policy: str, ref: str) -> float:
    """KL in ``direction``: the Normal formula above, or Σ_x a(x) log(a(x)/b(x)) over categories."""
    (fam, qv), (_, pv) = parse(policy), parse(ref)
    if fam == "normal":
        return kl_normal(direction, *qv, *pv)
    lq, lp = log_softmax(qv), log_softmax(pv)
    a, b = (lq, lp) if direction == POLICY_REF else (lp, lq)
    return float(np.sum(np.exp(a) * (a - b)))


def closed_form_grads(policy: str, ref: str) -> dict[str, np.ndarray]:
    """Hand-derived ∇θ KL at the policy's parameters, both directions.

    Categorical, with c = log q − log p and ∂ log q_i/∂ℓ_j = δ_ij − q_j:
    ∇ℓ KL(q‖p) = q ⊙ (c − KL(q‖p)) and ∇ℓ KL(p‖q) = −Σ_i p_i (δ_ij − q_j) = q − p.
    """
    (fam, qv), (_, pv) = parse(policy), parse(ref)
    if fam == "normal":
        return {d: grad_kl_normal(d, *qv, *pv) for d in DIRECTIONS}
    q, p = softmax(qv), softmax(pv)
    c = log_softmax(qv) - log_softmax(pv)
    return {POLICY_REF: q * (c - np.sum(q * c)), REF_POLICY: q - p}


def normal_moment(k: int, m: float, s: float) -> float:
    """E[X^k] for X ~ N(m, s): Σ_j C(k, j) m^(k−j) s^j E[Z^j], with E[Z^j] = (j − 1)!! for even j, 0 for odd."""
    def z_moment(j):
        return 0.0 if j % 2 else float(math.prod(range(j - 1, 0, -2)))

    return sum(math.comb(k, j) * m ** (k - j) * s**j * z_moment(j) for j in range(k + 1))


def schulman_value_moments(mu: float) -> dict[str, float]:
    """q = N(0,1), p = N(μ,1) (Schulman 2020): d = −μx + μ²/2 ~ N(μ²/2, μ²) under q, so
    KL = E[k1] = E[k3] = μ²/2, Var[k1] = μ², E[k2] = E[d²]/2 = (μ² + μ⁴/4)/2 (k2's relative bias μ²/4)."""
    return {"kl": mu * mu / 2, "var_k1": mu * mu, "mean_k2": (mu * mu + mu**4 / 4) / 2}


# --------------------------------------------------------------------------- #
# kl_loss's aggregations as loops
# --------------------------------------------------------------------------- #

def aggregate_loop(values, mask, mode: str, horizon: float | None = None) -> float:
    """``values``, ``mask``: nested lists (..., tokens); leading dimensions are flattened into sequences."""
    def rows(a):
        return [a] if not isinstance(a[0], list) else [r for sub in a for r in rows(sub)]

    seqs = [[v for v, m in zip(vr, mr) if m] for vr, mr in zip(rows(values), rows(mask))]
    n_seqs = len(seqs)
    if mode == "token-mean":  # mean over every unmasked token; no token at all gives 0
        flat = [v for s in seqs for v in s]
        return sum(flat) / len(flat) if flat else 0.0
    if mode == "seq-mean-token-mean":  # a sequence with no tokens has no mean: left out
        nonempty = [s for s in seqs if s]
        return sum(sum(s) / len(s) for s in nonempty) / len(nonempty) if nonempty else 0.0
    if mode == "seq-mean-token-sum":  # an empty sequence counts as 0
        return sum(sum(s) for s in seqs) / n_seqs
    if mode == "sum":
        return sum(v for s in seqs for v in s)
    horizon = len(rows(values)[0]) if horizon is None else horizon  # the token columns
    if mode == "seq-mean-token-sum-norm":  # verl: every sequence's token sum, over the horizon
        return sum(v for s in seqs for v in s) / horizon
    if mode == "dr-grpo":  # TRL: the sum over (sequences × horizon)
        return sum(v for s in seqs for v in s) / (n_seqs * horizon)
    raise KeyError(mode)


AGGREGATION_MODES = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "sum", "seq-mean-token-sum-norm",
                     "dr-grpo")
