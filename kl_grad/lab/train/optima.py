"""Analytic end points of KL-regularised training, for the dynamics runner's distances.

Objective followed by an unbiased construction: J(θ) = E_{π_θ}[R] − β·KL(π_θ‖π_ref). Its maximiser
over all distributions is the Gibbs policy π* ∝ π_ref·exp(R/β) (e.g. Rafailov et al. 2023, arXiv
2305.18290, eq. 4); it lies in the family here:

    categorical, rewards R_x     π*_x = p_x e^{R_x/β} / Σ_y p_y e^{R_y/β}
    normal, R = A·x              π* = N(μ_ref + A σ_ref²/β, σ_ref)   (∂/∂μ: A − β(μ − μ_ref)/σ_ref² = 0;
                                 ∂/∂σ: β(1/σ − σ/σ_ref²) = 0)
    normal, R = −C(x − B)²       π* = N((2CBσ_ref² + βμ_ref)/(2Cσ_ref² + β), σ_ref·√(β/(2Cσ_ref² + β)))
                                 (the product p·e^{R/β} of two Gaussians)

k3 as a plain loss follows ∇KL(π_ref‖π_θ) (the gradient tables), so it climbs
J'(θ) = E_{π_θ}[R] − β·KL(π_ref‖π_θ) instead. Its stationary points:

    categorical   R_j + β p_j/q_j = λ (Lagrange, Σq = 1): q_j = β p_j/(λ − R_j), λ > max R the root of
                  Σ_j q_j(λ) = 1 (decreasing in λ: one root; J' is concave in q, so it is the maximum)
    normal, A·x   ∂/∂μ: A − β(μ − μ_ref)/σ² = 0 → μ = μ_ref + Aσ²/β;
                  ∂/∂σ: β((σ_ref² + (μ − μ_ref)²)/σ³ − 1/σ) = 0 → σ² = σ_ref² + A²σ⁴/β², whose smaller root
                  σ² = β²(1 − √(1 − 4A²σ_ref²/β²))/(2A²) is the local maximum (J' → +∞ as σ → ∞ along
                  μ = μ_ref + Aσ²/β, so the larger root is a saddle and J' is unbounded). No stationary
                  point when β < 2|A|σ_ref: k3-loss training then has nowhere to stop (NaN here).
                  Example: A = 1, β = 3, ref N(0.5, 1.2): σ² = 1.8, N(1.1, 1.342).

Values are (P,) arrays in the policy's parameter order (logits with mean 0 for categorical: softmax
is shift-invariant), or None where no closed form is derived (quadratic reward for J').
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import brentq

from ..families import DistSpec
from .rewards import LinearReward, QuadraticReward, Reward, TokenReward


def _probs(z) -> np.ndarray:
    z = np.asarray(z, dtype=float)
    e = np.exp(z - z.max())
    return e / e.sum()


def gibbs_optimum(ref: DistSpec, reward: Reward, beta: float) -> np.ndarray:
    """π* = argmax E[R] − β·KL(π‖π_ref): probabilities (categorical) or (loc, scale) (normal)."""
    if isinstance(reward, TokenReward):
        return _probs(np.asarray(ref.values) + np.asarray(reward.values) / beta)
    mu, sigma = ref.values
    if isinstance(reward, LinearReward):
        return np.array([mu + reward.a * sigma**2 / beta, sigma])
    if isinstance(reward, QuadraticReward):
        c, b = reward.c, reward.b
        den = 2 * c * sigma**2 + beta
        return np.array([(2 * c * b * sigma**2 + beta * mu) / den, sigma * math.sqrt(beta / den)])
    raise TypeError(f"no optimum for reward {reward!r}")


def ref_policy_optimum(ref: DistSpec, reward: Reward, beta: float) -> np.ndarray | None:
    """The local maximum of E[R] − β·KL(π_ref‖π) (module doc); NaN where none exists, None where not derived."""
    if isinstance(reward, TokenReward):
        p, r = _probs(ref.values), np.asarray(reward.values)
        total = lambda lam: math.fsum(beta * p / (lam - r)) - 1.0  # noqa: E731
        lo = r.max() + beta * p[np.argmax(r)] * (1 - 1e-12)  # q of the best token ≤ 1 there: total(lo) ≥ 0
        hi = r.max() + beta * 2  # every q_j ≤ p_j/2 there: total(hi) < 0
        lam = brentq(total, lo, hi, xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=500)
        q = beta * p / (lam - r)
        return q / q.sum()
    if isinstance(reward, LinearReward):
        mu, sigma = ref.values
        a = reward.a
        if a == 0:
            return np.array([mu, sigma])
        disc = 1 - 4 * a**2 * sigma**2 / beta**2
        if disc < 0:
            return np.array([math.nan, math.nan])
        # β²(1 − √disc)/(2a²), rationalised: the direct form cancels (scale 0 at A = 1e-9; 3e-3 off at 1e-7)
        s2 = 2 * sigma**2 / (1 + math.sqrt(disc))
        return np.array([mu + a * s2 / beta, math.sqrt(s2)])
    return None


def as_point(policy: DistSpec) -> np.ndarray:
    """What distances are measured on: probabilities (categorical), the sequence probabilities (markov,
    markov-eos) or the parameters (normal)."""
    if policy.fam.sequential:
        from .sequences import sequence_probs

        return sequence_probs(policy)
    return _probs(policy.values) if policy.fam.enumerable else np.asarray(policy.values, dtype=float)


def distance(policy: DistSpec, target: np.ndarray | None) -> float:
    """Total variation ½Σ|q − π| (enumerable families; sequences: over sequences) or Euclidean distance of
    (loc, scale) (normal); NaN if unknown."""
    if target is None or not np.all(np.isfinite(target)):
        return math.nan
    here = as_point(policy)
    if policy.fam.enumerable:
        return 0.5 * math.fsum(np.abs(here - target))
    return float(np.linalg.norm(here - target))
