"""Sequence placements: how per-token KL estimates become one differentiable surrogate per sequence.

Inputs are per-token log-probs of sampled sequences, shape (…, L): ``logp`` = log π_θ(y_t | y_<t) (with
grad), ``ref_logp`` = log π_ref(y_t | y_<t), and optionally ``sampler_logp`` = log m(y_t | y_<t) of the
behaviour policy (None: on-policy, m = sg(π_θ)). With sg = ``.detach()``:

    d_t = logp_t − ref_logp_t,   k_t = k(d_t),   w_t = π_θ(y_t|y_<t) / sg(m(y_t|y_<t)),   W_t = Π_{τ≤t} w_τ

(on-policy every w_t and W_t has value 1 and gradient the score: ∇w_t = s_t, ∇W_t = Σ_{τ≤t} s_τ). The
target is ∇θ of the sequence-level KL(π_θ‖π_ref) = E_π[Σ_t d_t]. Placements (per sequence, summed over
tokens; the caller averages over sequences):

    loss             Σ_t k_t                          the per-token KL loss (GRPO-style)
    loss-sgw         Σ_t sg(w_t)·k_t                  per-token importance weight, no score term
    loss-w           Σ_t w_t·k_t                      per-token differentiable weight
    loss-prefix-w    Σ_t W_t·k_t                      the weight of the whole prefix y_≤t
    reward           Σ_t w_t·sg(Σ_{t'≥t} k_t')        KL as a reward penalty, REINFORCE with reward-to-go
    reward-local     Σ_t w_t·sg(k_t)                  each token's KL as its own reward, no reward-to-go (NeMo-RL
                                                      Reinforce++, tinker-cookbook): gradient Σ_t w_t·s_t·k_t
    reward-prefix-w  Σ_t W_t·sg(k_t)                  gradient Σ_τ s_τ·Σ_{t≥τ} W_t k_t: reward-to-go with
                                                      prefix importance weights (off-policy)
    reward-seq       W_L·sg(Σ_t k_t)                  whole-sequence penalty: gradient (Σ_t s_t)·Σ_t k_t
                                                      on-policy, the sequence score times the total
    both             loss + reward                    Σ_t k_t + Σ_t w_t·sg(Σ_{t'≥t} k_t'), the fix of
                                                      "A Comedy of Estimators" (arXiv 2512.21852)
    trl-seq          ρ·Σ_t k_t,  ρ = exp(mean_t log w_t)   TRL's GRPOTrainer with importance_sampling_level
                                                      = "sequence" (GSPO's length-normalised sequence ratio,
                                                      arXiv 2507.18071) multiplying the per-token KL
                                                      (use_bias_correction_kl; trl/trainer/grpo_trainer.py)

Weights are formed in float64 (prefix products of ratios over many tokens), and the surrogate is
returned in float64. Per-token placements reuse ``placements.PLACEMENTS`` (their k3 loss-w closed form).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .errors import choose
from .estimators import Estimator
from .placements import PLACEMENTS, surrogate

Tensor = torch.Tensor


@dataclass(frozen=True)
class SequencePlacement:
    """A registered sequence placement: ``terms(estimator, logp, ref_logp, sampler_logp, mask)`` maps (…, L)
    per-token log-probs to (…, L) per-token surrogate terms (float64, 0 where ``mask`` is 0) whose sum over
    the tokens is the per-sequence surrogate (``fn``); ``kl_loss`` aggregates the terms."""

    name: str
    formula: str
    terms: Callable[[Estimator, Tensor, Tensor, Tensor | None, Tensor | None], Tensor]

    def fn(self, estimator: Estimator, logp: Tensor, ref_logp: Tensor, sampler_logp: Tensor | None = None,
           mask: Tensor | None = None) -> Tensor:
        """(…,) per-sequence surrogate values (float64)."""
        return self.terms(estimator, logp, ref_logp, sampler_logp, mask).sum(-1)


def _per_token_terms(name: str):
    """Per-token surrogate terms (…, L) of a single-token placement, float64, masked."""
    single = PLACEMENTS[name]

    def terms(est, lp, ref, smp, m=None):
        out = surrogate(est, single, lp, ref, smp).to(torch.float64)
        return out if m is None else out * m
    return terms


def _log_w(logp: Tensor, sampler_logp: Tensor | None, m: Tensor | None = None) -> Tensor:
    """log w_t = log π_θ − sg(log m), float64 (on-policy m = sg(π_θ): value 0, gradient the score); 0 at
    masked positions (a padded token's weight is 1 with no gradient)."""
    base = logp.detach() if sampler_logp is None else sampler_logp.detach()
    out = logp.to(torch.float64) - base.to(torch.float64)
    return out if m is None else out * m


def _k(est: Estimator, logp: Tensor, ref_logp: Tensor, m: Tensor | None = None) -> Tensor:
    """k_t in float64, 0 at masked positions (an estimator with k(0) ≠ 0 adds nothing from padding)."""
    out = est.of_log_ratio(logp - ref_logp).to(torch.float64)
    return out if m is None else out * m


def to_go(x: Tensor) -> Tensor:
    """Reward-to-go along the last axis: out_t = Σ_{t'≥t} x_t'."""
    return x.flip(-1).cumsum(-1).flip(-1)


def to_come(x: Tensor) -> Tensor:
    """What is still to come along the last axis: out_t = Σ_{t'>t} x_t'."""
    return torch.nn.functional.pad(to_go(x)[..., 1:], (0, 1))


def exclusive_prefix(log_w: Tensor) -> Tensor:
    """log W_{t−1} = Σ_{τ<t} log w_τ (W_{−1} = 1)."""
    return torch.nn.functional.pad(log_w.cumsum(-1)[..., :-1], (1, 0))


def _loss_prefix_w(est, logp, ref, smp, m=None):
    """W_{t−1}·(w_t k_t): the last factor is the per-token loss-w, whose closed-form gradient w·(k + k')
    does not add k and k' (for k3, e^{−d} − 1 + d and 1 − e^{−d}: 1e-8 relative lost at d = −20)."""
    return torch.exp(exclusive_prefix(_log_w(logp, smp, m))) * _per_token_terms("loss-w")(est, logp, ref, smp, m)


def _reward(est, logp, ref, smp, m=None):
    return torch.exp(_log_w(logp, smp, m)) * to_go(_k(est, logp, ref, m)).detach() * _ones(m)


def _reward_prefix_w(est, logp, ref, smp, m=None):
    return torch.exp(_log_w(logp, smp, m).cumsum(-1)) * _k(est, logp, ref, m).detach()


def _reward_seq(est, logp, ref, smp, m=None):
    """W_L·sg(k_t) per token: the sum over tokens is W_L·sg(Σ_t k_t)."""
    return torch.exp(_log_w(logp, smp, m).sum(-1, keepdim=True)) * _k(est, logp, ref, m).detach()


def _both(est, logp, ref, smp, m=None):
    """k_t + w_t·sg(k_t) + w_t·sg(Σ_{t'>t} k_t'), the first two written as loss-w's w_t·k_t (closed-form
    gradient w(k + k')) + (1 − sg w_t)·k_t + sg(w_t·k_t): the same value k + w·k and gradient
    k' + w·k = w(k + k') + (1 − w)k', without adding k' to k (exact zero weight 1 − w on-policy)."""
    k = _k(est, logp, ref, m)
    log_w = _log_w(logp, smp, m)
    w_k = _per_token_terms("loss-w")(est, logp, ref, smp, m)
    rest = -torch.expm1(log_w.detach()) * k + (torch.exp(log_w) * k).detach()
    future = to_come(k.detach())  # Σ_{t'>t} k_t'
    return w_k + rest + torch.exp(log_w) * future * _ones(m)


def _trl_seq(est, logp, ref, smp, m=None):
    """ρ·k_t with ρ = exp(mean of log w_t over the real tokens)."""
    log_w = _log_w(logp, smp, m)
    count = torch.full_like(log_w[..., :1], log_w.shape[-1]) if m is None else m.sum(-1, keepdim=True).clamp(min=1)
    return torch.exp(log_w.sum(-1, keepdim=True) / count) * _k(est, logp, ref, m)


def _ones(m: Tensor | None):
    return 1.0 if m is None else m


SEQUENCE_PLACEMENTS: dict[str, SequencePlacement] = {
    p.name: p
    for p in (
        SequencePlacement("loss", "Σ_t k_t", _per_token_terms("loss")),
        SequencePlacement("loss-sgw", "Σ_t sg(w_t)·k_t", _per_token_terms("loss-sgw")),
        SequencePlacement("loss-w", "Σ_t w_t·k_t", _per_token_terms("loss-w")),
        SequencePlacement("loss-prefix-w", "Σ_t W_t·k_t", _loss_prefix_w),
        SequencePlacement("reward", "Σ_t w_t·sg(Σ_{t'≥t} k_t')", _reward),
        SequencePlacement("reward-local", "Σ_t w_t·sg(k_t)", _per_token_terms("reward")),
        SequencePlacement("reward-prefix-w", "Σ_t W_t·sg(k_t)", _reward_prefix_w),
        SequencePlacement("reward-seq", "W_L·sg(Σ_t k_t)", _reward_seq),
        SequencePlacement("both", "Σ_t k_t + Σ_t w_t·sg(Σ_{t'≥t} k_t')", _both),
        SequencePlacement("trl-seq", "exp(mean_t log w_t)·Σ_t k_t", _trl_seq),
    )
}


def get_sequence_placement(name: str) -> SequencePlacement:
    """Look a sequence placement up by name; unknown names list the allowed ones."""
    return choose("sequence placement", name.strip(), SEQUENCE_PLACEMENTS)  # type: ignore[return-value]


def sequence_surrogate(estimator: Estimator | str, placement: SequencePlacement | str, logp: Tensor, ref_logp: Tensor,
                       sampler_logp: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
    """Per-sequence differentiable surrogate (…,) from per-token log-probs (…, L): float64 inside, returned
    in float64 for float64 ``logp`` and float32 otherwise (bf16/fp16 are computed in float32 and float64).
    ``mask`` (…, L): 1 for real tokens; padding may hold garbage or −inf and gets zero gradient.

    Usage in training code: ``sequence_surrogate("k3", "loss-prefix-w", logp, ref_logp, mask=mask).mean()``
    (``kl_loss`` takes the same placement names with its aggregations).
    """
    if isinstance(estimator, str):
        from .estimators import get_estimator

        estimator = get_estimator(estimator)
    if isinstance(placement, str):
        placement = get_sequence_placement(placement)
    out_dtype = torch.float64 if logp.dtype == torch.float64 else torch.float32
    if mask is None:
        return placement.fn(estimator, logp, ref_logp, sampler_logp).to(out_dtype)
    lp, ref, smp, m = _masked(logp, ref_logp, sampler_logp, mask)
    return placement.fn(estimator, lp, ref, smp, m).to(out_dtype)


def _masked(logp, ref_logp, sampler_logp, mask):
    """Inputs with padding replaced by 0 (garbage and −inf there never reach a gradient), and the mask."""
    keep = mask != 0
    zero = torch.zeros((), dtype=torch.float64)
    lp = torch.where(keep, logp.to(torch.float64), zero)
    ref = torch.where(keep, ref_logp.detach().to(torch.float64), zero)
    smp = None if sampler_logp is None else torch.where(keep, sampler_logp.detach().to(torch.float64), zero)
    return lp, ref, smp, keep.to(torch.float64)
