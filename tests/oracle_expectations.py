"""Independent oracles: E_m and Var_m of the per-sample formulas, by scipy quad (Normal) or enumeration."""

from __future__ import annotations

import functools
import math

import numpy as np

from tests.oracle_formulas import VALUE, log_density, log_normal, normal_params, parse, per_sample_gradient, softmax

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
