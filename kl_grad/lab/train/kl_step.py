"""The KL term of one training step: the expected autograd gradient of a KL surrogate at the current θ.

``exact_kl_gradients`` builds a ``Problem`` from the current parameters and asks the gradient tables'
own machinery (``gradient_table.exact_gradient_moments``: ``row_gradients`` on quadrature nodes or the
enumerated support) for E_m[∇θ surrogate], so what training follows is exactly what autograd produces
from the surrogate a trainer writes, averaged with no sampling noise. ``mc_kl_gradients`` is the noisy
counterpart: one autograd gradient of the mean surrogate over ``samples`` draws, as one trainer step.
A Markov policy's cases are sequence placements (``kl_grad/sequences.py``), on the enumerated sequences.

``independent_kl_gradient`` recomputes the same expectation another way, for the runner's exactness
check: a plain loop over tokens (``math.fsum`` of q_x · autograd gradient of that token's surrogate) or over
sequences (``train_sequences.independent_sequence_kl_gradient``), or
``scipy.integrate.quad_vec`` of m(x) · (autograd gradient at x) for a Normal. Neither uses the lab's
families, nodes or batched gradients; both call only ``placements.surrogate``, the definition under study.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import integrate

from ...placements import surrogate
from ..families import DistSpec
from ..gradient_table import exact_gradient_moments
from ..gradients import row_gradients
from ..montecarlo import mc_points
from ..problem import Problem
from ..terms import Case


def exact_kl_gradients(policy: DistSpec, ref: DistSpec, cases: list[Case],
                       sampler: DistSpec | None = None) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray, str]]:
    """{case.key: (mean (P,), stated error (P,), warning)}: E_m[∇θ surrogate] at ``policy``'s parameters,
    float64, from the gradient tables' exact backend (a refused mean is NaN and the warning says why)."""
    moments = exact_gradient_moments(Problem(policy, ref, sampler, torch.float64), cases)
    # Only a refused mean concerns training (a variance warning sizes MC noise, which exact steps do not have).
    return {key: (m.mean, m.err, "; ".join(w for w, v in zip(m.warnings, m.mean) if w and not np.isfinite(v)))
            for key, m in moments.items()}


def mc_kl_gradients(policy: DistSpec, ref: DistSpec, cases: list[Case], samples: int, seed: int,
                    sampler: DistSpec | None = None) -> dict[tuple[str, str], np.ndarray]:
    """{case.key: (P,)}: autograd gradient of the mean surrogate over ``samples`` draws from the sampler
    (the policy on-policy), seeded with ``seed`` (float64)."""
    problem = Problem(policy, ref, sampler, torch.float64)
    (points,) = mc_points(problem.sampling, 1, samples, seed, torch.float64, chunk_elements=samples)
    return {key: g[0].numpy() for key, g in row_gradients(problem, points.x, cases).items()}


def _point_gradient(case: Case, policy: DistSpec, ref: DistSpec, sampler: DistSpec | None, x) -> np.ndarray:
    """∇θ of the surrogate at one sample x, by autograd through fresh torch distributions (float64)."""
    theta = torch.tensor(policy.values, dtype=torch.float64, requires_grad=True)
    x = torch.as_tensor(x, dtype=torch.int64 if policy.fam.enumerable else torch.float64)
    build = (lambda v: torch.distributions.Categorical(logits=v)) if policy.fam.enumerable else \
        (lambda v: torch.distributions.Normal(v[0], v[1]))
    const = lambda spec: torch.tensor(spec.values, dtype=torch.float64)  # noqa: E731
    logp = build(theta).log_prob(x)
    ref_logp = build(const(ref)).log_prob(x)
    sampler_logp = None if sampler is None else build(const(sampler)).log_prob(x)
    (grad,) = torch.autograd.grad(surrogate(case.estimator, case.placement, logp, ref_logp, sampler_logp), theta)
    return grad.numpy()


def independent_kl_gradient(case: Case, policy: DistSpec, ref: DistSpec,
                            sampler: DistSpec | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(E_m[∇θ surrogate] (P,), its error bound (P,)) computed without the lab's expectation machinery."""
    m = sampler or policy
    if policy.fam.sequential:
        from .sequences import independent_sequence_kl_gradient

        return independent_sequence_kl_gradient(case, policy, ref, sampler)
    if policy.fam.enumerable:
        z = np.asarray(m.values)
        w = np.exp(z - z.max())
        w /= w.sum()
        grads = np.array([_point_gradient(case, policy, ref, sampler, x) for x in range(len(z))])
        mean = np.array([math.fsum(w * grads[:, j]) for j in range(grads.shape[1])])
        return mean, 1e-13 * (np.abs(w[:, None] * grads).sum(axis=0) + 1e-300)
    # moved so the sampler sits at 0 (translation invariant): x = loc + scale·u keeps the digits of scale·u
    shift = -m.values[0]
    if all(math.isfinite(s.values[0] + shift) for s in (policy, ref, m)):
        policy, ref, m = (s.fam.moved(s, shift) for s in (policy, ref, m))
        sampler = None if sampler is None else m
    loc, scale = m.values
    density = torch.distributions.Normal(*(torch.tensor(v, dtype=torch.float64) for v in (loc, scale)))

    def integrand(x):
        return math.exp(float(density.log_prob(torch.tensor(x, dtype=torch.float64)))) * \
            _point_gradient(case, policy, ref, sampler, x)

    # The mass of E_m[g] lies within the sampler's ±40σ unless the tails are heavy, where the exact backend
    # refuses or re-lays its nodes; points= makes quad look at the policy and the reference.
    lo, hi = loc - 40 * scale, loc + 40 * scale
    inner = sorted({lo, hi, *(min(max(s.values[0], lo), hi) for s in (policy, ref))})
    mean, err = np.zeros(2), np.zeros(2)
    for a, b in zip(inner[:-1], inner[1:]):
        if b > a:
            part, part_err = integrate.quad_vec(integrand, a, b, epsabs=1e-13, epsrel=1e-11)
            mean, err = mean + part, err + part_err
    return mean, np.full(2, err) if np.ndim(err) == 0 else err
