"""Independent oracles for the kl_grad tests and the benchmark (not collected as tests).

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
import torch
from torch.distributions import Normal

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


# --------------------------------------------------------------------------- #
# Expectations: scipy quad (Normal) or enumeration (categorical)
# --------------------------------------------------------------------------- #

def _normal_window(*specs: str) -> tuple[float, float, list[float]]:
    """[lo, hi] = ±30 standard deviations of every distribution involved (each carries < e^(−450) of its
    mass outside), and their locations as breakpoints for quad."""
    params = [normal_params(s) for s in specs]
    lo = min(m - 30 * s for m, s in params)
    hi = max(m + 30 * s for m, s in params)
    return lo, hi, sorted({m for m, _ in params})


def _quad(f, lo, hi, points, epsabs, epsrel) -> float:
    from scipy.integrate import quad  # scipy is a test dependency only

    value, _err = quad(f, lo, hi, points=points, limit=500, epsabs=epsabs, epsrel=epsrel)
    return value


def _moments_of(f, sampling: str, others: tuple[str, ...], var: bool):
    """E_m[f] and Var_m[f] for f: points -> (N, P), m = ``sampling``."""
    family, values = parse(sampling)
    if family == "categorical":  # enumeration: a plain loop over the support
        probs = softmax(values)
        rows = [f(np.array([x]))[0] for x in range(len(probs))]
        mean = sum(probs[x] * rows[x] for x in range(len(probs)))
        variance = sum(probs[x] * (rows[x] - mean) ** 2 for x in range(len(probs)))
        return np.asarray(mean), np.asarray(variance)
    lo, hi, points = _normal_window(sampling, *others)
    with np.errstate(over="ignore", invalid="ignore"):  # a moment that overflows comes back inf or NaN, visibly
        return _quad_moments(f, values, lo, hi, points, var)


def _quad_moments(f, values, lo, hi, points, var):
    """E and Var under N(values) of f's components by scipy quad over [lo, hi] (breakpoints ``points``)."""
    @functools.lru_cache(maxsize=None)  # the components' and the variance's integrals revisit the same x
    def m_and_f(x: float) -> tuple[float, np.ndarray]:
        return math.exp(log_normal(x, *values)), f(np.array([x]))[0]

    n_out = len(m_and_f(values[0])[1])
    # Means to 1e-12 relative / 1e-13 absolute (a zero mean, e.g. E_q[s], reaches ~1e-14 before quad reports
    # roundoff), variances to 1e-10 relative: 10x inside what the tests allow.
    mean = np.array([_quad(lambda x: m_and_f(x)[0] * m_and_f(x)[1][j], lo, hi, points, 1e-13, 1e-12)
                     for j in range(n_out)])
    if not var:
        return mean, None
    variance = np.array([_quad(lambda x: m_and_f(x)[0] * (m_and_f(x)[1][j] - mean[j]) ** 2, lo, hi, points, 0.0,
                               1e-10) for j in range(n_out)])
    return mean, variance


def gradient_moments(estimator: str, placement: str, policy: str, ref: str, sampler: str | None = None,
                     var: bool = True):
    """E_m[g] and Var_m[g] of the per-sample gradient g (``per_sample_gradient``), m = sampler or policy.

    Normal: scipy quad of m(x)·g(x) over ±30σ of every distribution; needs finite moments (σ_ref < √2 σ_θ
    for the r-based estimators' variance). Categorical: exact sums over the support.
    """
    sampling = sampler or policy
    return _moments_of(lambda x: per_sample_gradient(estimator, placement, x, policy, ref, sampler),
                       sampling, (policy, ref), var)


def value_moments(estimator: str, policy: str, ref: str):
    """E_q[k(d)] and Var_q[k(d)] of one sample's value, samples from the policy q."""
    def f(x):
        return VALUE[estimator](log_density(policy, x) - log_density(ref, x))[:, None]

    mean, var = _moments_of(f, policy, (ref,), True)
    return float(mean[0]), float(var[0])


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


# --------------------------------------------------------------------------- #
# The seed-003 style per-trial loop (torch.distributions, no kl_grad)
# --------------------------------------------------------------------------- #

# Transcribed from seed 003's script, not derived: each formula takes (x, q, p) and calls log_prob itself
# (reverse_k1 evaluates each log-prob twice, as the script does), so that ``make bench`` times the seed's
# own computation and the runner is compared with the seed's numbers sample for sample.
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


LOOP_FORMULAS = dict(zip(SEED003_ESTIMATORS, (_loop_k1, _loop_k2, _loop_k3, _loop_reverse_k1, _loop_reverse_k2)))


def seed_style_loop(policy_spec: str, ref_spec: str, estimator_names, samples: int, trials: int, seed: int,
                    return_samples: bool = False, dtype=None):
    """Per-trial gradients the way the seed-003 script computes them.

    ``torch.manual_seed(seed)`` once, then per trial: fresh scalar leaves, ``x = q.sample((samples,))``,
    and per estimator its per-sample formula, ``.mean().backward()``, read and clear the leaves' grads.
    The caller's global RNG state is restored afterwards.

    Returns {name: (trials, 2) array of [d/dloc, d/dscale]}; with ``return_samples`` also the list of
    per-trial sample tensors.
    """
    dtype = dtype or torch.float32
    m1, s1 = normal_params(policy_spec)
    m2, s2 = normal_params(ref_spec)
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
