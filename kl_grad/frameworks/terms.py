"""What a production trainer's KL term computes, per token: the ``FrameworkTerm`` record and its building blocks.

Every ``fn(logp, ref_logp, old_logp=None, mask=None)`` takes per-token log-probs of one shape (batch, tokens)
(``logp`` carries grad; ``ref_logp``/``old_logp`` are constants) and returns that shape: the per-token KL value
(placement "reward") or loss term (placement "loss") exactly as the framework forms it: its clamps in its
order relative to its weight, differentiable, detached or capped weights, straight-through ``+`` variants.
``old_logp`` None means on-policy: the framework's ratio π_θ/π_old is then exp(logp − sg(logp)) (value 1,
gradient the score), as every framework here forms it when the sampler is the current policy.
``mask`` (same shape, 1 = token counts) is used only by sequence-level ratios (masked mean over tokens).

The formulas are written here from each framework's documented semantics (no framework code is copied);
each entry's ``source`` names the repository, file and the version or date read. Notation: d = logp − ref_logp,
r = π_ref/π_θ = e^(−d), w = π_θ/π_old.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..sequences import to_go

Tensor = torch.Tensor
TermFn = Callable[..., Tensor]  # (logp, ref_logp, old_logp=None, mask=None) -> per-token tensor

PLACEMENTS = ("loss", "reward", "reward-seq")


@dataclass(frozen=True)
class FrameworkTerm:
    """One framework's KL term.

    ``name`` is namespaced ("verl:low_var_kl"); ``formula`` says what is computed, in the notation above;
    ``clamp`` the clamps and their order ("" if none); ``weight`` the importance weight and whether it carries
    grad; ``placement`` "loss" (the value is added to the loss and differentiated), "reward" (the value is a
    detached per-token reward penalty, differentiated only through the policy-gradient weight) or "reward-seq"
    (the penalty summed over the sequence and subtracted from its one reward, as RLOO does);
    ``aggregation`` the framework's default reduction (a ``kl_loss`` aggregation name); ``kinked`` marks terms
    with clamps or |·| (their expected gradient is not smooth: no exact quadrature, Monte Carlo instead);
    ``estimator`` names the registered estimator equal to this term when it is elementwise in d ("" if none).
    """

    name: str
    formula: str
    fn: TermFn
    placement: str
    aggregation: str
    source: str
    clamp: str = ""
    weight: str = "none"
    notes: str = ""
    kinked: bool = False
    estimator: str = ""
    uses_old: bool = False  # the framework's fn reads old_logp (off-policy weight)

    @property
    def framework(self) -> str:
        return self.name.split(":", 1)[0]

    def __post_init__(self):
        if self.placement not in PLACEMENTS:
            raise ValueError(f"{self.name}: placement must be one of {PLACEMENTS}, got {self.placement!r}")

    def surrogate(self, logp: Tensor, ref_logp: Tensor, old_logp: Tensor | None = None,
                  mask: Tensor | None = None) -> Tensor:
        """Per-token differentiable surrogate a trainer backpropagates: the loss term itself, or for a reward
        penalty w·sg(value) (REINFORCE with the penalty as reward, w = π_θ/sg(π_old), value 1 on-policy)."""
        value = self.fn(logp, ref_logp, old_logp, mask)
        if self.placement == "loss":
            return value
        return ratio(logp, old_logp) * value.detach()

    def sequence_surrogate(self, logp: Tensor, ref_logp: Tensor, old_logp: Tensor | None = None,
                           mask: Tensor | None = None) -> Tensor:
        """Per-sequence surrogate, tokens last: (…, L) per-token log-probs → (…,). A loss term is summed over
        the tokens (seq-mean-token-sum once averaged over sequences); a reward penalty is REINFORCE with
        reward-to-go, Σ_t w_t·sg(Σ_{t'≥t} value_t') (γ = λ = 1 returns, as verl's and OpenRLHF's PPO form
        them; ``kl_grad.sequences.to_go``); a sequence penalty ("reward-seq") Σ_t w_t·sg(Σ_t' value_t'). For
        L = 1 all are ``surrogate`` of the one token."""
        m = 1.0 if mask is None else mask.to(logp.dtype)
        value = self.fn(logp, ref_logp, old_logp, mask) * m
        if self.placement == "loss":
            return value.sum(-1)
        v = value.detach()
        returns = to_go(v) if self.placement == "reward" else v.sum(-1, keepdim=True)
        return (ratio(logp, old_logp) * returns * m).sum(-1)


# --- building blocks (per token; d = logp − ref_logp) -------------------------------------------------------

def ratio(logp: Tensor, old_logp: Tensor | None) -> Tensor:
    """w = exp(logp − sg(old_logp)), differentiable; on-policy (None) exp(logp − sg(logp)): value 1."""
    base = logp.detach() if old_logp is None else old_logp.detach()
    return torch.exp(logp - base)


def sequence_ratio(logp: Tensor, old_logp: Tensor | None, mask: Tensor | None) -> Tensor:
    """exp of the masked mean over tokens of (logp − sg(old_logp)), broadcast to every token (GSPO-style
    sequence-level importance ratio, arXiv 2507.18071); differentiable. Empty rows get ratio 1."""
    base = logp.detach() if old_logp is None else old_logp.detach()
    m = torch.ones_like(logp) if mask is None else mask.to(logp.dtype)
    mean = ((logp - base) * m).sum(-1, keepdim=True) / m.sum(-1, keepdim=True).clamp(min=1)
    return torch.exp(mean).expand_as(logp)


def k1(logp: Tensor, ref: Tensor) -> Tensor:
    return logp - ref


def k2(logp: Tensor, ref: Tensor) -> Tensor:
    return 0.5 * (logp - ref) ** 2


def k3(logp: Tensor, ref: Tensor, input_clamp: float | None = None) -> Tensor:
    """r − 1 − log r with log r = ref − logp, log r first clamped to ±input_clamp when given."""
    log_r = ref - logp
    if input_clamp is not None:
        log_r = log_r.clamp(-input_clamp, input_clamp)
    return torch.exp(log_r) - 1 - log_r


def clamp_value(x: Tensor, bound: float) -> Tensor:
    return x.clamp(-bound, bound)


def low_var_kl(logp: Tensor, ref: Tensor) -> Tensor:
    """verl's low_var_kl (also SkyRL's k3, cosmos-rl's k3): clamp(r − 1 − log r, ±10), log r = clamp(−d, ±20)."""
    return clamp_value(k3(logp, ref, input_clamp=20.0), 10.0)


def straight_through(value: Tensor, logp: Tensor, ref: Tensor) -> Tensor:
    """Value of ``value``, gradient of k2 = ½d² (verl's "+" variants): b − sg(b) + sg(value), b = k2."""
    b = k2(logp, ref)
    return b - b.detach() + value.detach()


def elementwise(f: Callable[[Tensor, Tensor], Tensor]) -> TermFn:
    """A function of (logp, ref_logp) as a ``TermFn`` (old_logp and mask unused)."""
    return lambda lp, ref, old=None, mask=None: f(lp, ref)


def absolute(logp: Tensor, ref: Tensor) -> Tensor:
    return (logp - ref).abs()


def at_sampler(value_of):
    """A reward penalty as a trainer computes it at rollout: from the sampler's log-probs (old_logp) where given,
    else from logp (on-policy they are equal): verl ``apply_kl_penalty`` takes ``old_log_probs``, OpenRLHF's
    experience maker the rollout's ``action_log_probs``."""
    return lambda lp, ref, old=None, mask=None: value_of(lp if old is None else old, ref)
