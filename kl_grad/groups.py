"""KL in a group-normalised reward (GRPO with ``use_kl_in_reward``): what part of the gradient the KL gets.

A trainer samples G sequences y_1..y_G per prompt and puts the per-token KL into the reward before the group
normalisation (verl ``ray_trainer.apply_kl_penalty``: token_level_rewards = token_level_scores − β·kld, then
``core_algos.compute_grpo_outcome_advantage`` on their sum; volcengine/verl, commit 26b5d6b):

    R_i = T_i − β·K_i,   K_i = Σ_t k_t(y_i) (detached),   T_i the task reward
    A_i = norm(R)_i:  std   (R_i − mean_G R)/(std_G R + eps)   GRPO (torch.std, Bessel's G − 1; verl eps 1e-6,
                                                               TRL scale_rewards="group" eps 1e-4)
                      mean  R_i − mean_G R                     Dr. GRPO (arXiv 2503.20783; verl
                                                               norm_adv_by_std_in_grpo=False)
                      none  R_i                                no baseline: REINFORCE with the sequence return

and the policy-gradient objective J(β) = (1/B) Σ_i sg(A_i)·Σ_t w_t with the per-token ratio w_t = π_θ/sg(π_old)
(verl's and TRL's token-level ratio, unclipped here; on-policy its value is 1 and its gradient the score s_t).
The KL's part of the loss −J(β) is what is left after the task-only loss −J(0):

    −J(β) = −J(0) + β·kl,   kl = (1/B) Σ_i sg(c_i)·Σ_t w_t,   c_i = (A_i(T) − A_i(T − βK)) / β

``group_reward_terms`` returns kl's per-token terms sg(c_i)·w_t; ``kl_loss(placement="group-reward",
group=GroupReward(...))`` aggregates them, so ``pg_loss_without_kl + beta * kl`` is the trainer's loss. For
``mean`` and ``none`` the normalisation is linear, so c = norm(K) for every β and T: c_i = K_i − mean_G K
(expected gradient (1 − 1/G)·E[(Σ_t s_t)·K], a leave-one-out-scaled ``reward-seq``) and c_i = K_i (exactly
``reward-seq`` on-policy). For ``std`` c depends on β and on the task rewards.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from .errors import KLGradError, choose
from .estimators import Estimator

Tensor = torch.Tensor


def _std(r: Tensor, eps: float) -> Tensor:
    return (r - r.mean(-1, keepdim=True)) / (r.std(-1, keepdim=True) + eps)


def _mean(r: Tensor, eps: float) -> Tensor:
    return r - r.mean(-1, keepdim=True)


def _none(r: Tensor, eps: float) -> Tensor:
    return r


@dataclass(frozen=True)
class Normalisation:
    """A group advantage: ``fn(R (…, G), eps)`` → A (…, G); ``linear``: norm(a + b) = norm(a) + norm(b)."""

    name: str
    formula: str
    fn: Callable[[Tensor, float], Tensor]
    linear: bool


NORMALISATIONS = {n.name: n for n in (
    Normalisation("std", "(R − mean_G R)/(std_G R + eps), Bessel std (GRPO)", _std, False),
    Normalisation("mean", "R − mean_G R (Dr. GRPO)", _mean, True),
    Normalisation("none", "R (no baseline)", _none, True),
)}


def group_advantages(rewards: Tensor, normalisation: str = "std", eps: float = 1e-6) -> Tensor:
    """A (…, G) from sequence rewards (…, G), groups along the last axis (float64 in, float64 out)."""
    return choose("normalisation", normalisation, NORMALISATIONS).fn(rewards, eps)  # type: ignore[union-attr]


def kl_coefficients(task: Tensor, kl: Tensor, beta: float | None, normalisation: str = "std",
                    eps: float = 1e-6) -> Tensor:
    """c = (A(T) − A(T − βK))/β (…, G), groups along the last axis: the KL's share of each advantage per unit β.
    Linear normalisations: norm(K), whatever β (None allowed)."""
    norm = choose("normalisation", normalisation, NORMALISATIONS)
    if norm.linear:  # type: ignore[union-attr]
        return norm.fn(kl, eps)  # type: ignore[union-attr]
    return (norm.fn(task, eps) - norm.fn(task - beta * kl, eps)) / beta  # type: ignore[union-attr,operator]


@dataclass(frozen=True)
class GroupReward:
    """How ``kl_loss(placement="group-reward")`` groups the batch: ``size`` G consecutive rows per prompt (TRL's
    and verl's ``repeat_interleave`` layout), ``rewards`` the task rewards (batch,) (None: 0), ``beta`` the KL
    coefficient (needed by ``std``), ``normalisation`` one of ``NORMALISATIONS``, ``eps`` std's guard."""

    size: int
    rewards: Tensor | None = None
    beta: float | None = None
    normalisation: str = "std"
    eps: float = 1e-6

    def check(self, rows: int) -> None:
        """Refuse what cannot be grouped; ``rows``: the batch size B (the length of the sequence axis)."""
        choose("normalisation", self.normalisation, NORMALISATIONS)
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 2:
            raise KLGradError(f"group size must be an integer ≥ 2 (the std of one reward is undefined), got "
                              f"{self.size!r}")
        if rows % self.size:
            raise KLGradError(f"the batch has {rows} sequences, not a multiple of the group size {self.size}")
        beta_ok = isinstance(self.beta, int | float) and not isinstance(self.beta, bool) and \
            math.isfinite(self.beta) and self.beta > 0
        if self.beta is not None and not beta_ok:
            raise KLGradError(f"beta must be a positive finite number, got {self.beta!r}")
        if self.beta is None and not NORMALISATIONS[self.normalisation].linear:
            raise KLGradError(f"normalisation {self.normalisation!r} is not linear in the reward: the KL's share "
                              "depends on beta, so give beta (the coefficient of the KL in the reward)")
        if not (isinstance(self.eps, int | float) and math.isfinite(self.eps) and self.eps >= 0):
            raise KLGradError(f"eps must be a finite number ≥ 0, got {self.eps!r}")
        if self.rewards is not None and not bool(torch.isfinite(torch.as_tensor(self.rewards)).all()):
            raise KLGradError("group rewards must be finite (a NaN or inf reward makes its whole group's "
                              "advantages NaN)")


def token_weights(logp: Tensor, old_logp: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
    """w_t = exp(log π_θ − sg(log π_old)) (…, T), float64; on-policy (None) value 1, gradient the score; 0 where
    ``mask`` is 0."""
    base = logp.detach() if old_logp is None else old_logp.detach()
    w = torch.exp(logp.to(torch.float64) - base.to(torch.float64))
    return w if mask is None else w * mask


def group_reward_terms(estimator: Estimator, logp: Tensor, ref_logp: Tensor, old_logp: Tensor | None,
                       mask: Tensor | None, group: GroupReward) -> Tensor:
    """Per-token terms sg(c_i)·w_t (…, B, T), float64, 0 where ``mask`` is 0: sequences along axis −2 in groups
    of ``group.size`` consecutive rows, tokens last; ``group.rewards`` (…, B). Padding must be zeroed by the
    caller (``kl_loss`` does)."""
    rows = logp.shape[-2]
    group.check(rows)
    if group.normalisation == "std" and group.eps == 0:  # the exact lab may take eps = 0; sampled groups tie
        raise KLGradError("normalisation 'std' needs eps > 0 (a group whose rewards tie has std 0: 0/0); "
                          "verl uses 1e-6, TRL 1e-4")
    # the penalty is the rollout's (verl apply_kl_penalty: kl_penalty(old_log_probs, ref_log_prob)): off-policy
    # its value is taken at the sampler's log-probs, on-policy at logp's value
    sampled = logp.detach() if old_logp is None else old_logp.detach()
    k = estimator.of_log_ratio(sampled - ref_logp.detach()).to(torch.float64)
    kl = (k if mask is None else k * mask).sum(-1)  # (…, B) K_i
    task = torch.zeros_like(kl) if group.rewards is None else torch.as_tensor(group.rewards).detach().to(kl)
    if task.shape != kl.shape:
        raise KLGradError(f"group rewards have shape {tuple(task.shape)}; they need one per sequence, "
                          f"{tuple(kl.shape)}")
    lead, g = kl.shape[:-1], group.size
    c = kl_coefficients(task.reshape(*lead, -1, g), kl.reshape(*lead, -1, g), group.beta, group.normalisation,
                        group.eps).reshape(kl.shape)
    return c.detach()[..., None] * token_weights(logp, old_logp, mask)
