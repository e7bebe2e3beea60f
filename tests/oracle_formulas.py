"""Independent oracles, the formulas: specs, densities, scores, estimators and placements per sample.

(``tests/oracles.py`` gathers every oracle module; this one and its siblings hold them.)

INDEPENDENCE. Nothing in this file imports kl_grad. The oracles never use kl_grad's estimators,
placements, gradients, quadrature, families or runners: they are closed forms derived by hand,
score-function identities, plain loops over categories, numpy/scipy evaluations of hand-written
per-sample formulas, and one transcription of the seed-003 script (torch.distributions only). Specs such
as ``normal:0,1`` are parsed into numbers here, by hand. A bug in the package therefore cannot hide in its
own reference. Each formula is written once; the tests import it from here.

Notation: policy q = π_θ (its parameters are differentiated), reference p = π_ref, sampling distribution
m (m = q on-policy), d = log q(x) − log p(x), r = p(x)/q(x) = e^(−d), score s = ∇θ log q(x) (= ∇θ d,
since p does not depend on θ), importance weight w = q(x)/m(x) (value 1 on-policy, gradient w·s).
Normal: q = N(m1, s1), p = N(m2, s2); categorical: q = softmax(logits).

Contents:
* Spec parsing, log-densities, scores (Normal and categorical).
* ``VALUE[name](d)`` and ``SLOPE[name](d)`` = dk/dd for every registered estimator.
* ``PLACEMENT_GRADIENT[placement](k, dk, s, w)``: the per-sample autograd gradient of each placement.
* ``per_sample_gradient``: the two combined for a problem's points; ``pathwise_gradient``: through x(θ).
* ``gradient_moments`` / ``value_moments``: E_m and Var_m of those, by scipy quad (Normal) or enumeration.
* Closed-form KLs and their gradients in both directions; Normal raw moments; Schulman's value moments.
* ``aggregate_loop``: kl_loss's aggregations as plain loops.
* ``seed_style_loop``: the seed-003 script's per-trial loop (also timed by ``make bench``).
"""

from __future__ import annotations

import functools
import math

import numpy as np

POLICY_REF = "policy||ref"  # KL(π_θ‖π_ref)
REF_POLICY = "ref||policy"  # KL(π_ref‖π_θ)
DIRECTIONS = (POLICY_REF, REF_POLICY)


# --------------------------------------------------------------------------- #
# Specs, densities, scores
# --------------------------------------------------------------------------- #

@functools.lru_cache(maxsize=None)
def parse(spec: str) -> tuple[str, tuple[float, ...]]:
    """``"normal:0,1"`` -> ("normal", (0.0, 1.0)), by hand."""
    family, _, values = spec.partition(":")
    return family.strip(), tuple(float(v) for v in values.split(","))


def normal_params(spec: str) -> tuple[float, float]:
    family, values = parse(spec)
    assert family == "normal" and len(values) == 2, spec
    return values  # type: ignore[return-value]


def log_normal(x, m: float, s: float):
    """log N(x; m, s), for floats or numpy arrays."""
    return -0.5 * ((x - m) / s) ** 2 - math.log(s) - 0.5 * math.log(2.0 * math.pi)


def log_softmax(logits) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    top = z.max()
    return z - top - math.log(np.exp(z - top).sum())


def softmax(logits) -> np.ndarray:
    return np.exp(log_softmax(logits))


def log_density(spec: str, x) -> np.ndarray:
    """log of the spec's density (Normal) or probability (categorical; x are category indices)."""
    family, values = parse(spec)
    if family == "normal":
        return log_normal(np.asarray(x, dtype=np.float64), *values)
    return log_softmax(values)[np.asarray(x, dtype=np.int64)]


def score(spec: str, x) -> np.ndarray:
    """s = ∇θ log q(x), shape x.shape + (P,).

    Normal (θ = loc, scale): s_loc = (x − m)/s², s_scale = ((x − m)² − s²)/s³.
    Categorical (θ = logits): s_j = 1[x = j] − q_j.
    """
    family, values = parse(spec)
    if family == "normal":
        m, s = values
        z = np.asarray(x, dtype=np.float64) - m
        return np.stack([z / s**2, (z * z - s * s) / s**3], axis=-1)
    k = len(values)
    return np.eye(k)[np.asarray(x, dtype=np.int64)] - softmax(values)


# --------------------------------------------------------------------------- #
# Estimators: value k(d) and slope dk/dd, float64
# --------------------------------------------------------------------------- #

def k3_value(d):
    """e^u − 1 − u with u = −d in float64: Taylor series for |d| < 0.1, direct formula beyond.

    Series: Σ_{k=2..14} u^k/k!; the first omitted term is < 0.1^15/15! ≈ 8e-28, i.e. < 2e-25
    relative to the value (≥ 0.1²/2·0.9). Beyond 0.1 the direct formula's cancellation costs at most
    a factor ~40 on 1e-16.
    """
    d = np.asarray(d, dtype=np.float64)
    u = -d
    series = np.zeros_like(u)
    for k in range(14, 1, -1):
        series = (series + 1.0 / math.factorial(k)) * (u if k > 2 else 1.0)
    series = series * u * u  # Σ u^k/k! for k = 2..14, Horner
    with np.errstate(over="ignore"):
        direct = np.exp(u) - 1.0 - u
    return np.where(np.abs(d) < 0.1, series, direct)


def reverse_k1_cv_value(d):
    """r·log r − (r − 1) = u e^u − (e^u − 1), u = −d: series Σ_{k=2..29} u^k (k−1)/k! for |u| < 0.5
    (first omitted term < 0.5^30/30! ≈ 4e-42), closed form beyond (cancellation ≲ 1e-15 relative there)."""
    u = -np.asarray(d, dtype=np.float64)
    series = sum(u**k * ((k - 1) / math.factorial(k)) for k in range(2, 30))
    with np.errstate(over="ignore", invalid="ignore"):
        direct = u * np.exp(u) - np.expm1(u)
    return np.where(np.abs(u) < 0.5, series, direct)


LOG_RATIO_CLAMP, VALUE_CLAMP = 20.0, 10.0  # verl's low_var_kl: |d| clamped to 20, k3 to 10


def _k3_clamp_active(d):
    d = np.asarray(d, dtype=np.float64)
    return (np.abs(d) > LOG_RATIO_CLAMP) | (k3_value(np.clip(d, -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)) > VALUE_CLAMP)


# Values, with r = e^(−d):
#   k1 = d, k2 = d²/2, k3 = r − 1 − log r = e^(−d) − 1 + d          (Schulman 2020)
#   reverse_k1 = r log r = −d e^(−d), reverse_k2 = r, reverse_k1_cv = r log r − (r − 1)
#   k1+, k3+ (straight-through): the value of k1, k3; k3_clamped = clip(k3(clip(d, ±20)), ±10)
VALUE = {
    "k1": lambda d: np.asarray(d, dtype=np.float64),
    "k2": lambda d: 0.5 * np.asarray(d, dtype=np.float64) ** 2,
    "k3": k3_value,
    "reverse_k1": lambda d: -np.asarray(d, dtype=np.float64) * np.exp(-np.asarray(d, dtype=np.float64)),
    "reverse_k2": lambda d: np.exp(-np.asarray(d, dtype=np.float64)),
    "reverse_k1_cv": reverse_k1_cv_value,
    "k1+": lambda d: np.asarray(d, dtype=np.float64),
    "k3+": k3_value,
    "k3_clamped": lambda d: np.clip(k3_value(np.clip(d, -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)), -VALUE_CLAMP,
                                    VALUE_CLAMP),
}

# Slopes dk/dd, differentiated by hand:
#   k1' = 1, k2' = d, k3' = 1 − e^(−d) (= −expm1(−d), accurate for tiny d), reverse_k1' = (d − 1) e^(−d),
#   reverse_k2' = −e^(−d), reverse_k1_cv' = d e^(−d) (d/du of u e^u − e^u + 1 is u e^u, u = −d),
#   k1+' = k3+' = d (k2's: straight-through), k3_clamped' = k3' where no clamp is active, else 0.
SLOPE = {
    "k1": lambda d: np.ones_like(np.asarray(d, dtype=np.float64)),
    "k2": lambda d: np.asarray(d, dtype=np.float64),
    "k3": lambda d: -np.expm1(-np.asarray(d, dtype=np.float64)),
    "reverse_k1": lambda d: (np.asarray(d, dtype=np.float64) - 1.0) * np.exp(-np.asarray(d, dtype=np.float64)),
    "reverse_k2": lambda d: -np.exp(-np.asarray(d, dtype=np.float64)),
    "reverse_k1_cv": lambda d: np.asarray(d, dtype=np.float64) * np.exp(-np.asarray(d, dtype=np.float64)),
    "k1+": lambda d: np.asarray(d, dtype=np.float64),
    "k3+": lambda d: np.asarray(d, dtype=np.float64),
    "k3_clamped": lambda d: np.where(_k3_clamp_active(d), 0.0, -np.expm1(-np.asarray(d, dtype=np.float64))),
}

# Which KL each estimator's value (or, for gradient surrogates, gradient) targets:
# E_q[d] = KL(q‖p); E_q[r log r] = E_p[log r] = KL(p‖q); E_q[∇r] = −E_p[s] = ∇KL(p‖q).
TARGET = {"k1": POLICY_REF, "k2": POLICY_REF, "k3": POLICY_REF, "reverse_k1": REF_POLICY, "reverse_k2": REF_POLICY,
          "reverse_k1_cv": REF_POLICY, "k1+": POLICY_REF, "k3+": POLICY_REF, "k3_clamped": POLICY_REF}

# The estimators registered under framework names (verl:abs, verl:k3+, openrlhf:k1..k3): tests/framework_oracles.py
from tests.framework_oracles import ESTIMATOR_SLOPE as _FW_SLOPE  # noqa: E402
from tests.framework_oracles import ESTIMATOR_VALUE as _FW_VALUE  # noqa: E402

VALUE.update(_FW_VALUE)
SLOPE.update(_FW_SLOPE)
TARGET.update({name: POLICY_REF for name in _FW_VALUE})

# Seed 003's five estimators, in its tables' order (the loop below writes them as its script does).
SEED003_ESTIMATORS = ("k1", "k2", "k3", "reverse_k1", "reverse_k2")


# --------------------------------------------------------------------------- #
# Placements: per-sample autograd gradient
# --------------------------------------------------------------------------- #
#
# With k = k(d), k' = dk/dd, ∇k = k'·s, and w = e^(log q − sg(log m)) (∇w = w·s), the product rule gives
# the gradient of each placement's per-sample surrogate (placements.py's table):
#   loss      k(d)          -> k'·s
#   loss-sgw  sg(w)·k(d)    -> w·k'·s
#   loss-w    w·k(d)        -> w·(k + k')·s       (adds the score term w·k·s)
#   reward    w·sg(k(d))    -> w·k·s
# With respect to log q itself (kl_loss's logp) the "score" is 1.

PLACEMENT_VALUE = {
    "loss": lambda k, w: k,
    "loss-sgw": lambda k, w: w * k,
    "loss-w": lambda k, w: w * k,
    "reward": lambda k, w: w * k,
}

PLACEMENT_GRADIENT = {
    "loss": lambda k, dk, s, w: dk * s,
    "loss-sgw": lambda k, dk, s, w: w * dk * s,
    "loss-w": lambda k, dk, s, w: w * (k + dk) * s,
    "reward": lambda k, dk, s, w: w * k * s,
}


def per_sample_gradient(estimator: str, placement: str, x, policy: str, ref: str, sampler: str | None = None):
    """∇θ of one sample's surrogate at points x (Normal reals or categorical indices): shape x.shape + (P,)."""
    logq = log_density(policy, x)
    d = logq - log_density(ref, x)
    w = np.ones_like(d) if sampler is None else np.exp(logq - log_density(sampler, x))
    k, dk = VALUE[estimator](d), SLOPE[estimator](d)
    return PLACEMENT_GRADIENT[placement](k[..., None], dk[..., None], score(policy, x), w[..., None])


def pathwise_gradient(estimator: str, x, policy: str, ref: str) -> np.ndarray:
    """∇θ k(d(x(θ))) for reparameterised Normal samples x = m1 + s1·ε (placement ``loss``), shape x.shape + (2,).

    With ε held fixed, ∂x/∂m1 = 1 and ∂x/∂s1 = ε = (x − m1)/s1, and ∂d/∂x = −(x − m1)/s1² + (x − m2)/s2²,
    so the total derivative of d is ∇d = s + ∂d/∂x·∂x/∂θ = [(x − m2)/s2², −1/s1 + (x − m1)(x − m2)/(s1·s2²)].
    """
    (m1, s1), (m2, s2) = normal_params(policy), normal_params(ref)
    x = np.asarray(x, dtype=np.float64)
    d = log_normal(x, m1, s1) - log_normal(x, m2, s2)
    grad_d = np.stack([(x - m2) / s2**2, -1.0 / s1 + (x - m1) * (x - m2) / (s1 * s2**2)], axis=-1)
    return SLOPE[estimator](d)[..., None] * grad_d
