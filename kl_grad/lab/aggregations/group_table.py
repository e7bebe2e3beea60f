"""KL in a group-normalised reward (experiment kind ``group_reward``): the KL part of a GRPO gradient.

For each estimator × normalisation (``kl_grad.groups.NORMALISATIONS``: std = GRPO, mean = Dr. GRPO, none = no
baseline, i.e. ``reward-seq``) × group size G × β, on-policy, one row compares E[∇kl], the expected gradient of
the surrogate ``kl_loss(placement="group-reward")`` returns (the trainer's KL part of E[∇J(β)] − E[∇J(0)] is
−β·E[∇kl]; ``group_expect.py``), with ∇KL(π_θ‖π_ref) of the sequence:

    rel_bias_norm   ‖E[∇kl] − ∇KL‖/‖∇KL‖ (= ‖KL part + β∇KL‖/‖β∇KL‖)
    cosine          cos(E[∇kl], ∇KL);  norm_ratio ‖E[∇kl]‖/‖∇KL‖
    rel_gap_closed  ‖E[∇kl] − F‖/‖F‖ with the closed form F of a linear normalisation: (1 − 1/G)·E[g·K] (mean),
                    E[g·K] (none), g·K the ``reward-seq`` gradient (NaN for std: none exists)

mode "exact" enumerates (multisets of groups); "mc" draws ``trials`` × ``groups_per_trial`` groups and adds
se_rel = ‖se‖/‖∇KL‖ and mc_max_abs_z = max over parameters of |MC mean − exact|/se where exact fits (else NaN).
A gap below its float64 rounding bound prints as 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd

from ...errors import KLGradError, choose
from ...estimators import get_estimator
from ...groups import NORMALISATIONS
from ..experiments import Kind
from ..problem import Problem
from ..report import github, views
from . import group_expect as expect

MODES = {"exact": "exact", "mc": "mc"}
COLUMNS = ["estimator", "normalisation", "group", "beta", "reward", "mode", "rel_bias_norm", "cosine", "norm_ratio",
           "rel_gap_closed", "se_rel", "mc_max_abs_z", "warning", "policy", "ref"]


@dataclass(frozen=True)
class GroupRewardExperiment:
    """The KL part of a group-normalised policy gradient (GRPO, KL in the reward) on a Markov chain."""

    kind: ClassVar[str] = "group_reward"

    title: str
    policy: str  # a markov spec
    ref: str
    estimators: list[str]
    normalisations: list[str] = field(default_factory=lambda: ["std", "mean", "none"])
    groups: list[int] = field(default_factory=lambda: [2, 4, 8])  # group sizes G
    betas: list[float] = field(default_factory=lambda: [0.1])
    rewards: list[str] = field(default_factory=lambda: ["none"])  # task rewards: sum:r_0,…, last:r_0,…, none
    eps: float = 1e-6  # std's guard (verl's default)
    mode: str = "exact"
    trials: int = 200
    groups_per_trial: int = 16
    seed: int = 0
    notes: str = ""


def parse_task_reward(text: str, problem: Problem):
    """None for "none", else a ``SequenceReward`` (sum:… or last:…) with one value per token of the chain."""
    if text.strip().lower() == "none":
        return None
    from ..families.markov import vocab_of
    from ..train.rewards import parse_reward
    from ..train.sequences import SequenceReward

    reward = parse_reward(text)
    v = vocab_of(len(problem.policy.values))
    if not isinstance(reward, SequenceReward) or len(reward.values) != v:
        raise KLGradError(f"group_reward: reward must be none, sum:r_0,…,r_{v - 1} or last:r_0,…,r_{v - 1} (one "
                          f"value per token of the chain), got {text!r}")
    return reward


def check(exp: GroupRewardExperiment) -> tuple[Problem, dict]:
    problem = Problem(exp.policy, exp.ref, dtype="float64")
    if problem.policy.family != "markov":
        raise KLGradError(f"group_reward needs a markov policy (fixed-length sequences), got {exp.policy!r}")
    for name in exp.estimators:
        get_estimator(name)
    for name in exp.normalisations:
        choose("normalisation", name, NORMALISATIONS)
    choose("mode", exp.mode, MODES)
    if not exp.estimators or not exp.normalisations or not exp.groups or not exp.betas:
        raise KLGradError("group_reward: estimators, normalisations, groups and betas must not be empty")
    if any(g < 2 for g in exp.groups):
        raise KLGradError(f"group_reward: group sizes are integers ≥ 2, got {exp.groups}")
    if any(not (math.isfinite(b) and b > 0) for b in exp.betas):
        raise KLGradError(f"group_reward: betas are positive finite numbers, got {exp.betas}")
    if not (math.isfinite(exp.eps) and exp.eps >= 0):
        raise KLGradError(f"group_reward: eps must be a finite number ≥ 0, got {exp.eps}")
    if exp.mode == "mc" and (exp.trials < 2 or exp.groups_per_trial < 1):
        raise KLGradError("group_reward: mc needs trials ≥ 2 and groups_per_trial ≥ 1")
    if exp.mode == "exact":
        n = problem.policy.fam.support_size(problem.policy)
        for g in exp.groups:  # refuse before any work
            if math.comb(n + g - 2, g - 1) > expect.MAX_MULTISETS:
                expect.multisets(n, g - 1, np.zeros(n))
    if not exp.rewards:
        raise KLGradError("group_reward: rewards must not be empty (none: no task reward)")
    return problem, {text: parse_task_reward(text, problem) for text in exp.rewards}


def _rel(a: np.ndarray, b: np.ndarray, bound: float) -> float:
    nb = float(np.linalg.norm(b))
    if nb == 0:
        return math.nan
    gap = float(np.linalg.norm(a - b))
    return 0.0 if gap <= bound else gap / nb


def _closed_form(normalisation: str, size: int, reward_seq: np.ndarray) -> np.ndarray | None:
    return {"mean": (1 - 1 / size) * reward_seq, "none": reward_seq}.get(normalisation)


def group_table(exp: GroupRewardExperiment) -> pd.DataFrame:
    """One row per estimator × normalisation × G × β (``COLUMNS``; see the module doc)."""
    problem, rewards = check(exp)
    return pd.concat([_rows(exp, problem, text, reward) for text, reward in rewards.items()], ignore_index=True)


def _rows(exp: GroupRewardExperiment, problem: Problem, text: str, reward) -> pd.DataFrame:
    true = expect.truth(problem)
    n = problem.policy.fam.support_size(problem.policy)
    enumerable = n <= expect.MAX_MULTISETS
    support = expect.enumerated(problem, reward) if enumerable else None
    rows = []
    for est in exp.estimators:
        kl = expect.sequence_kl(support, est) if support is not None else None
        rs = expect.reward_seq_gradient(support, kl) if support is not None else None
        for norm in exp.normalisations:
            linear = NORMALISATIONS[norm].linear
            for size in exp.groups:
                for beta in exp.betas[:1] if linear else exp.betas:  # linear: the same for every β
                    fits = support is not None and math.comb(n + size - 2, size - 1) <= expect.MAX_MULTISETS
                    exact, bound = (expect.exact_kl_gradient(support, kl, size, beta, norm, exp.eps) if fits
                                    else (None, 0.0))
                    se, z, warning = math.nan, math.nan, ""
                    if exp.mode == "mc":
                        per = expect.mc_kl_gradients(problem, reward, est, size, beta, norm, exp.eps, exp.trials,
                                                     exp.groups_per_trial, exp.seed)
                        mean, sd = per.mean(0), per.std(0, ddof=1) / math.sqrt(len(per))
                        se = float(np.linalg.norm(sd) / np.linalg.norm(true))
                        if exact is not None:
                            z = float(np.max(np.abs(mean - exact)[sd > 0] / sd[sd > 0], initial=0.0))
                        bound = 0.0
                    else:
                        mean = exact
                    closed = _closed_form(norm, size, rs) if rs is not None else None
                    zero = float(np.linalg.norm(mean)) <= bound
                    if zero:
                        warning = "E[∇kl] = 0 to rounding: no direction, cosine refused"
                    rows.append({
                        "estimator": est, "normalisation": norm, "group": size,
                        "beta": "any" if linear else f"{beta:g}", "reward": text, "mode": exp.mode,
                        "rel_bias_norm": _rel(mean, true, bound),
                        "cosine": math.nan if zero else float(mean @ true / (np.linalg.norm(mean) *
                                                                           np.linalg.norm(true))),
                        "norm_ratio": 0.0 if zero else float(np.linalg.norm(mean) / np.linalg.norm(true)),
                        "rel_gap_closed": math.nan if closed is None or exp.mode == "mc"
                        else _rel(mean, closed, bound),
                        "se_rel": se, "mc_max_abs_z": z, "warning": warning,
                        "policy": problem.policy.label, "ref": problem.ref.label})
    return pd.DataFrame(rows, columns=COLUMNS)


def run(exp: GroupRewardExperiment, progress=None, figures: bool = True):
    return group_table(exp), {}


def describe(exp: GroupRewardExperiment) -> str:
    budget = f"; {exp.trials} trials × {exp.groups_per_trial} groups, seed {exp.seed}" if exp.mode == "mc" else ""
    return (f"policy `{exp.policy}`, ref `{exp.ref}`, on-policy; task rewards {exp.rewards}, eps {exp.eps:g}; "
            f"{exp.mode}{budget}.")


def _check(exp: GroupRewardExperiment) -> None:
    check(exp)


KIND = Kind(GroupRewardExperiment, _check, run, describe,
            views(lambda t: github(t, floatfmt=".6g")))
