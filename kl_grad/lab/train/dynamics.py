"""Training dynamics: where gradient ascent on a KL-regularised objective takes the policy, per KL choice.

Each step ascends J(θ) = E_{π_θ}[R] − β·KL(π_θ‖π_ref) with the direction a trainer would follow:

    θ ← θ + lr·(∇θ E[R] − β·g),    g = E_m[∇θ surrogate]   (the KL term's expected autograd gradient)

∇θ E[R] is the reward's closed form (``rewards.py``); g is the gradient tables' exact expected autograd
gradient of the chosen estimator × placement at the current θ (``kl_step.py``), or, with ``samples``, one
seeded Monte-Carlo gradient over that many draws per step. An unbiased construction (k2 loss, k3 loss-w,
k1 reward on-policy) has g = ∇KL(π_θ‖π_ref) and so ends at π* (``optima.py``); k3 as a plain loss has
g = ∇KL(π_ref‖π_θ) and ends at the optimum of E[R] − β·KL(π_ref‖π_θ); k1 as a plain loss has g = 0 and
follows the reward alone. A Markov policy (``markov:…``, a sequence reward ``sum:…``/``last:…``) is trained the
same way with the sequence placements; its optimum is the family's, found by gradient ascent on the exact
sequence objective (``sequences.py``: π* ∝ π_ref·exp(R/β) is in general not a homogeneous chain).

Stopping and refusals, per case:
    converged   ‖∇E[R] − β·g‖₂ < ``tol`` (exact mode) within ``steps``; MC steps never converge in this sense
    diverged    a parameter is not finite, a Normal scale leaves (0, ∞), or categorical logits (markov: the
                logits of one softmax row) spread beyond
                ``MAX_LOGIT_SPREAD`` (the policy is putting e^−50 on a token: probabilities growing without
                bound toward a vertex); the run stops there and the row says so
    refused     the exact gradient is NaN (its warning says why), or at a checkpoint (the first step, every
                ``check_every`` steps and the last) it differs from ``kl_step.independent_kl_gradient`` by more
                than both errors allow: the row's numbers are NaN with the reason
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from ...directions import POLICY_REF, REF_POLICY
from ...errors import KLGradError
from ..families import POSITIVE, DistSpec, as_spec, make_spec
from ..montecarlo import check_seed
from ..problem import Problem
from ..terms import Case, make_cases
from ..threads import SMALL
from .kl_step import exact_kl_gradients, independent_kl_gradient, mc_kl_gradients
from .optima import distance, gibbs_optimum, ref_policy_optimum
from .rewards import Reward, parse_reward

TOL = 1e-9  # gradient-norm threshold of "converged" (a TV of ~1e-9/curvature from the stationary point)
MAX_LOGIT_SPREAD = 50.0
CHECK_EVERY = 100
CHECK_SLACK = 1e-9  # relative slack of the exactness check beyond both stated errors (float64 autograd rounding)

RESULT_COLUMNS = ["estimator", "placement", "converged", "steps", "kl", "objective", "distance_to_optimum",
                  f"distance_to_optimum_{REF_POLICY}", "grad_norm", "diverged", "optimum",
                  f"optimum_{REF_POLICY}", "family", "policy", "ref", "reward", "beta", "lr", "sampler", "samples",
                  "warning"]
# converge within DEFAULT_STEPS on the README's examples: softmax logits (categorical, markov) and loc/scale
DEFAULT_LR = {"softmax logits": 1.0, "other parameters": 0.2}


def default_lr(spec: DistSpec) -> float:
    return DEFAULT_LR["softmax logits" if spec.fam.logit_groups(spec.values) else "other parameters"]
DEFAULT_STEPS = 400
MAX_STEPS = 1_000_000  # hours of exact steps at the least; beyond it a run is a typo (--steps 1e11)


@dataclass
class TrainRun:
    """``table``: one row per case (``RESULT_COLUMNS`` plus the end point: ``probs``, a list (categorical), or
    ``loc`` and ``scale`` (normal); ``optimum`` and ``optimum_ref||policy``: the two optima as text);
    ``trajectory``: one row per (case, step) with step, distance_to_optimum, kl, objective, grad_norm;
    ``optimum``: π* (probabilities or (loc, scale); markov: the family optimum's V^L sequence probabilities);
    ``ref_policy_optimum``: the other objective's."""

    table: pd.DataFrame
    trajectory: pd.DataFrame
    optimum: np.ndarray
    ref_policy_optimum: np.ndarray | None
    param_names: tuple[str, ...]


def check_training(policy, ref, reward, beta, estimators, placements, steps, lr, sampler=None, samples=None,
                   seed=0, tol=TOL):
    """Validate every input without running; returns (policy, ref, reward, cases, sampler)."""
    problem = Problem(policy, ref, sampler, "float64")
    reward = parse_reward(reward)
    reward.check(problem.policy)
    for name, value in (("beta", beta), ("lr", lr), ("tol", tol)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not (math.isfinite(value) and value > 0):
            raise KLGradError(f"{name} must be a positive finite number, got {value!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        raise KLGradError(f"steps must be an integer from 1 to {MAX_STEPS:_} (each step is one exact or sampled "
                          f"KL gradient, milliseconds to seconds), got {steps!r}")
    if samples is not None and (isinstance(samples, bool) or not isinstance(samples, int) or samples < 1):
        raise KLGradError(f"samples must be a positive integer (or omitted for exact steps), got {samples!r}")
    check_seed(seed)
    cases = make_cases(estimators, placements, sequence=problem.policy.fam.sequential)
    if any(getattr(c, "full", False) for c in cases):
        raise KLGradError("kl-grad train does not take the full-vocabulary KL yet (full, reverse_full); "
                          "kl-grad table measures it")
    return problem.policy, problem.ref, reward, cases, problem.sampler


INTERVALS = {POSITIVE[0]: "(0, ∞)"}  # a parameter rule as the interval a diverging parameter left


def _diverged(theta: np.ndarray, spec: DistSpec) -> str:
    """Why the parameters ``theta`` (of ``spec``'s family) left the family, or ""."""
    if not np.all(np.isfinite(theta)):
        return "diverged: a parameter is no longer finite"
    for name, value in zip(spec.param_names, theta):
        rule, holds = spec.fam.rule(name)
        if not holds(float(value)):
            return f"diverged: {name} left {INTERVALS.get(rule, rule)} (reached {value:.3g}; lower lr)"
    if any(np.ptp(g) > MAX_LOGIT_SPREAD for g in spec.fam.logit_groups(theta)):
        return (f"diverged: logits spread beyond {MAX_LOGIT_SPREAD:g} (a token's probability is heading to 0 "
                "without bound)")
    return ""


def _check(case: Case, spec: DistSpec, ref: DistSpec, sampler, g: np.ndarray, err: np.ndarray) -> str:
    """'' if the exact gradient agrees with the independent one within both errors, else the reason."""
    other, other_err = independent_kl_gradient(case, spec, ref, sampler)
    bound = err + other_err + CHECK_SLACK * np.maximum(np.abs(other), 1.0)
    if np.all(np.abs(g - other) <= bound):
        return ""
    j = int(np.argmax(np.abs(g - other) - bound))
    return (f"exactness check failed at {spec.label}: exact gradient {g[j]:.12g} vs independent {other[j]:.12g} "
            f"(parameter {j}), beyond their errors {bound[j]:.1e}")


def _train_case(case, policy, ref, reward, beta, steps, lr, sampler, samples, seed, tol, check_every, record):
    theta = np.asarray(policy.values, dtype=float)
    spec = policy
    out = dict(estimator=case.estimator.name, placement=case.placement.name, converged=False, diverged="",
               warning="", steps=0, grad_norm=math.nan)
    for step in range(steps + 1):
        record(step, spec)
        if step == steps:
            break
        if samples is None:
            g, err, warn = exact_kl_gradients(spec, ref, [case], sampler)[case.key]
            if not np.all(np.isfinite(g)):
                out["warning"] = f"refused at step {step}: the exact KL gradient is unavailable ({warn})"
                return out, spec, True
            if step % check_every == 0 or step == steps - 1:
                reason = _check(case, spec, ref, sampler, g, err)
                if reason:
                    out["warning"] = f"refused at step {step}: {reason}"
                    return out, spec, True
        else:
            g = mc_kl_gradients(spec, ref, [case], samples, seed + step, sampler)[case.key]
        direction = reward.gradient(spec) - beta * g
        out["grad_norm"] = float(np.linalg.norm(direction))
        if samples is None and out["grad_norm"] < tol:
            out.update(converged=True, steps=step)
            return out, spec, False
        theta = theta + lr * direction
        out["steps"] = step + 1
        out["diverged"] = _diverged(theta, spec)
        if out["diverged"]:
            return out, spec, False
        spec = make_spec(spec.family, theta, "policy during training", structure=spec.structure)
    if samples is not None:
        out["warning"] = (f"noisy steps ({samples} samples): converged is not assessed; the last step's gradient norm "
                          f"was {out['grad_norm']:.2e}")
    else:
        out["warning"] = (f"not converged: gradient norm {out['grad_norm']:.2e} ≥ {tol:g} after {steps} steps "
                          "(the KL term does not balance the reward here, or more steps / a larger lr are needed)")
    return out, spec, False


@SMALL
def run_training(policy: DistSpec | str, ref: DistSpec | str, reward: Reward | str, beta: float,
                 estimators: list[str] | str, placements: list[str] | str, steps: int = DEFAULT_STEPS,
                 lr: float | None = None, *,
                 sampler: DistSpec | str | None = None, samples: int | None = None, seed: int = 0,
                 tol: float = TOL, check_every: int = CHECK_EVERY,
                 progress: Callable[[int, int, str], None] | None = None) -> TrainRun:
    """Train each estimator × placement from ``policy`` (module doc); one row per case in ``.table``.
    ``lr`` None: ``default_lr`` of the policy (by its kind of parameters)."""
    if lr is None:
        lr = default_lr(as_spec(policy, "policy"))
    policy, ref, reward, cases, sampler = check_training(policy, ref, reward, beta, estimators, placements, steps,
                                                         lr, sampler, samples, seed, tol)
    if isinstance(check_every, bool) or not isinstance(check_every, int) or check_every < 1:
        raise KLGradError(f"check_every must be a positive integer, got {check_every!r}")
    if policy.fam.sequential:
        from .sequences import sequence_optima

        optimum, optimum_text, other, other_text = sequence_optima(policy, ref, reward, beta, lr)
    else:
        optimum, other = gibbs_optimum(ref, reward, beta), ref_policy_optimum(ref, reward, beta)
        probabilities = bool(policy.fam.logit_groups(policy.values))
        optimum_text, other_text = point_text(optimum, probabilities), point_text(other, probabilities)
    rows, traj = [], []
    for i, case in enumerate(cases):
        def record(step, spec, case=case, i=i):
            if progress:  # the caller throttles (progress.Progress): a step takes milliseconds
                progress(i, len(cases), f"{case.estimator.name} {case.placement.name}, step {step}/{steps}")
            problem = Problem(spec, ref)
            kl = problem.true_kl(POLICY_REF)
            traj.append(dict(estimator=case.estimator.name, placement=case.placement.name, step=step,
                             distance_to_optimum=distance(spec, optimum), kl=kl,
                             objective=reward.expected(spec) - beta * kl))

        out, spec, refused = _train_case(case, policy, ref, reward, beta, steps, lr, sampler, samples, seed, tol,
                                         check_every, record)
        kl = Problem(spec, ref).true_kl(POLICY_REF)
        out.update(kl=kl, objective=reward.expected(spec) - beta * kl, distance_to_optimum=distance(spec, optimum),
                   **{f"distance_to_optimum_{REF_POLICY}": distance(spec, other),
                      f"optimum_{REF_POLICY}": other_text},
                   optimum=optimum_text, family=policy.family, policy=policy.label,
                   ref=ref.label, reward=reward.label, beta=beta, lr=lr,
                   sampler=sampler.label if sampler else "policy", samples="exact" if samples is None else samples)
        if out["diverged"]:
            out["warning"] = "; ".join(filter(None, [out["diverged"], out["warning"]]))
        if refused:
            for key in ("kl", "objective", "distance_to_optimum", f"distance_to_optimum_{REF_POLICY}", "grad_norm"):
                out[key] = math.nan
        end = spec.fam.probabilities(spec.values) or spec.as_dict()  # the softmax probabilities, else loc, scale
        out.update({k: _nan_like(v) if refused else v for k, v in end.items()})
        rows.append(out)
    if progress:
        progress(len(cases), len(cases), "done")
    columns = RESULT_COLUMNS[:2] + list(end) + RESULT_COLUMNS[2:]
    table = pd.DataFrame(rows)[columns]
    table["diverged"] = table["diverged"] != ""
    return TrainRun(table, pd.DataFrame(traj), optimum, other, policy.param_names)


def _nan_like(v):
    return [_nan_like(x) for x in v] if isinstance(v, list) else math.nan


def point_text(point: np.ndarray | None, probabilities: bool) -> str:
    """(q_1, …) for probabilities, N(loc, scale) for a Normal, 6 significant digits; NaN: none exists."""
    if point is None:
        return "not derived for this reward"
    if not np.all(np.isfinite(point)):
        return "none (no stationary point)"
    text = ", ".join(f"{v:.6g}" for v in point)
    return f"({text})" if probabilities else f"N({text})"
