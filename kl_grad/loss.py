"""A KL term to paste into a PPO/GRPO step: per-token log-probs in, one scalar loss out.

Example, a GRPO loss whose KL gradient is an unbiased estimate of ∇KL(π_θ‖π_ref)
(on-policy, k3 with the differentiable importance weight, or k2 as a plain loss;
see README "Which KL term should I use?")::

    from kl_grad import kl_loss

    # logp, ref_logp, old_logp, mask: (batch, tokens); logp carries grad
    pg_loss = ...                                             # your clipped policy-gradient loss
    kl = kl_loss(logp, ref_logp, mask=mask, estimator="k3", placement="loss-w",
                 old_logp=old_logp, aggregation="token-mean")
    (pg_loss + beta * kl).backward()

Inputs in bf16/fp16 are computed in float32, through one fused autograd node for the Schulman estimators with a
per-token placement (``kl_grad/fused.py``). Placements follow ``kl_grad.placements``:
w = π_θ/sg(π_old) when ``old_logp`` is given (off-policy), else sg(π_θ).
"""

from __future__ import annotations

import math
import warnings

import torch

from .aggregations import AGGREGATION_ALIASES, AGGREGATIONS, PER_TOKEN
from .errors import KLGradError, choose
from .estimators import get_estimator
from .fused import fused_surrogate, supports
from .groups import GroupReward, group_reward_terms
from .placements import get_placement, surrogate
from .sequences import SEQUENCE_PLACEMENTS, SequencePlacement

Tensor = torch.Tensor


# One name, one meaning. Per token: loss, loss-sgw, loss-w and reward-local (w_t·sg(k_t), the placement
# ``placements.PLACEMENTS`` calls "reward" for one sample); along the token axis (``sequences.py``): reward
# (w_t·sg(Σ_{t'≥t} k_t'), REINFORCE with reward-to-go, what the Sequences findings mean by it), loss-prefix-w,
# reward-prefix-w, reward-seq, both, trl-seq.
PER_TOKEN_PLACEMENTS = {"loss": "loss", "loss-sgw": "loss-sgw", "loss-w": "loss-w", "reward-local": "reward"}
ALONG_TOKENS = ("loss-prefix-w", "reward", "reward-prefix-w", "reward-seq", "both", "trl-seq")  # + reward-local
GROUP_REWARD = "group-reward"  # across the sequences of a group (``kl_grad.groups``): needs ``group=``


def kl_loss_placement(name: str):
    """The ``Placement`` (per token) or ``SequencePlacement`` (along the token axis) ``kl_loss`` calls ``name``."""
    allowed = {n: n for n in (*PER_TOKEN_PLACEMENTS, *ALONG_TOKENS, GROUP_REWARD)}
    key = choose("placement", name.strip() if isinstance(name, str) else name, allowed)
    if key == GROUP_REWARD:
        return GROUP_REWARD
    return get_placement(PER_TOKEN_PLACEMENTS[key]) if key in PER_TOKEN_PLACEMENTS else SEQUENCE_PLACEMENTS[key]


def _check(name: str, t: Tensor | None, shape: torch.Size) -> None:
    if t is None:
        return
    if not isinstance(t, Tensor):
        raise KLGradError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.shape != shape:
        raise KLGradError(f"{name} has shape {tuple(t.shape)} but logp has shape {tuple(shape)}; they must match")


def kl_loss(
    logp: Tensor,
    ref_logp: Tensor,
    *,
    mask: Tensor | None = None,
    old_logp: Tensor | None = None,
    estimator: str = "k3",
    placement: str = "loss-w",
    aggregation: str = "token-mean",
    horizon: float | None = None,
    term: str | None = None,
    group: GroupReward | None = None,
) -> Tensor:
    """Scalar KL loss from per-token log-probs.

    Args:
        logp: (batch, tokens) log π_θ of the sampled tokens, with grad (any shape works; the
            sequence modes need at least 2 dimensions, tokens last).
        ref_logp: same shape, log π_ref (treated as a constant).
        mask: same shape, 1 for tokens that count, 0 for padding (default: all count).
        old_logp: same shape, log-probs of the policy that sampled the tokens (π_old); enables the
            off-policy weight w = π_θ/π_old. Default: on-policy, w = π_θ/sg(π_θ).
        estimator: registry name or alias (k1, k2, k3, k3+, verl:low_var_kl, openrlhf:k3, ...).
        placement: per token: loss, loss-sgw, loss-w, reward-local (w·sg(k), ``kl_grad.placements``'
            "reward"); along the token axis (``kl_grad.sequences``, tokens last): reward (REINFORCE with
            reward-to-go: the sequence gradient on-policy), loss-prefix-w, reward-prefix-w, reward-seq, both,
            trl-seq. Use aggregation seq-mean-token-sum (or sum) for the exact sequence gradient.
        aggregation: one of token-mean, seq-mean-token-mean, seq-mean-token-sum, sum,
            seq-mean-token-sum-norm (verl: all token sums / horizon), dr-grpo (TRL: sum / (sequences ×
            horizon)), TRL's loss_type names grpo (= seq-mean-token-mean), bnpo and dapo (= token-mean),
            dr_grpo; or "none" for the per-token masked values (same shape as logp, 0 at padding). In
            seq-mean-token-mean, sequences with no unmasked token are left out of the mean over
            sequences; seq-mean-token-sum counts them as 0 (their token sum).
        horizon: the fixed length seq-mean-token-sum-norm and dr-grpo divide by (verl's
            loss_scale_factor, TRL's max_completion_length); default: the number of token columns.
        term: a framework catalogue entry (``kl_grad.frameworks``, e.g. "verl:low_var_kl",
            "trl:k3-bias-corrected"): its per-token surrogate, exactly as that framework forms it,
            replaces ``estimator`` × ``placement``.
        group: for placement "group-reward" only (``kl_grad.groups``): the KL in a group-normalised reward
            (GRPO with the KL in the reward), ``GroupReward(size, rewards, beta, normalisation)``; rows
            (batch) come in groups of ``size`` consecutive sequences. The loss is β⁻¹ × the KL's part of the
            trainer's policy-gradient loss, so ``task_only_pg_loss + beta * kl`` is the trainer's loss.

    Returns:
        0-dim float32 (or float64) tensor (per-token tensor for aggregation "none"); masked-out
        tokens get exactly zero gradient.
    """
    if not isinstance(logp, Tensor):
        raise KLGradError(f"logp must be a torch.Tensor, got {type(logp).__name__}")
    for name, t in (("ref_logp", ref_logp), ("mask", mask), ("old_logp", old_logp)):
        _check(name, t, logp.shape)
    for name, t in (("logp", logp), ("ref_logp", ref_logp), ("old_logp", old_logp)):
        if t is not None and not t.is_floating_point():
            raise KLGradError(f"{name} must hold floating-point log-probabilities, got dtype {t.dtype}")
    if term is not None:
        from .frameworks import get_term  # the catalogue is torch-only and small

        framework_term = get_term(term)
        if group is not None:
            raise KLGradError("group is for placement 'group-reward'; a framework term takes no group")
    else:
        est, place = get_estimator(estimator), kl_loss_placement(placement)
        if isinstance(place, SequencePlacement) and logp.dim() < 1:
            raise KLGradError(f"placement {place.name!r} runs along the token axis, and logp has none; the per-token "
                              "REINFORCE penalty w·sg(k) is placement='reward-local'")
        if (place == GROUP_REWARD) != isinstance(group, GroupReward):
            raise KLGradError("placement 'group-reward' takes group=GroupReward(size, rewards, beta, normalisation) "
                              "and no other placement takes group" if group is None or isinstance(group, GroupReward)
                              else f"group must be a kl_grad.GroupReward, got {type(group).__name__}")
        if place == GROUP_REWARD and logp.dim() != 2:
            raise KLGradError(f"placement 'group-reward' needs (batch, tokens) inputs, got shape {tuple(logp.shape)}")
        if place is SEQUENCE_PLACEMENTS["reward"] and logp.dim() >= 1 and logp.shape[-1] > 1:
            warnings.warn("kl_loss(placement='reward') is REINFORCE with reward-to-go along the tokens since "
                          "December 2026 (the sequence gradient); the per-token penalty w·sg(k) it meant before "
                          "is placement='reward-local'", FutureWarning, stacklevel=2)
    # "none" (PER_TOKEN) is allowed too, and listed among the names a wrong one is told
    agg = choose("aggregation", aggregation, {**AGGREGATIONS, PER_TOKEN: None}, AGGREGATION_ALIASES)
    if horizon is not None and (isinstance(horizon, bool) or not isinstance(horizon, int | float)
                                or not horizon > 0 or horizon == float("inf")):
        raise KLGradError(f"horizon must be a positive finite number (a fixed token count), got {horizon!r}")
    if str(AGGREGATION_ALIASES.get(aggregation, aggregation)).startswith(("seq", "dr")) and logp.dim() < 2:
        raise KLGradError(f"aggregation {aggregation!r} needs (batch, tokens) inputs, got shape {tuple(logp.shape)}")
    dtype = torch.float64 if logp.dtype == torch.float64 else torch.float32  # bf16/fp16 -> float32
    if term is None and dtype == torch.float32 and place != GROUP_REWARD \
            and not isinstance(place, SequencePlacement) and supports(est, place.name):
        fast = _fused(est, place.name, logp, ref_logp, old_logp, mask, agg, horizon)
        if fast is not None:
            return fast
    lp, ref = logp.to(dtype), ref_logp.detach().to(dtype)
    old = None if old_logp is None else old_logp.detach().to(dtype)
    m = torch.ones_like(lp) if mask is None else mask.to(dtype)
    # Padding may hold garbage log-probs (even inf): zero them first so no NaN reaches the gradient.
    keep = m != 0
    lp = torch.where(keep, lp, torch.zeros_like(lp))
    ref = torch.where(keep, ref, torch.zeros_like(ref))
    old = None if old is None else torch.where(keep, old, torch.zeros_like(old))
    if term is not None:
        per_token = framework_term.surrogate(lp, ref, old, m)
    elif place == GROUP_REWARD:
        per_token = group_reward_terms(est, lp, ref, old, m, group).to(dtype)  # type: ignore[arg-type]
    elif isinstance(place, SequencePlacement):  # float64 inside (prefix products), the caller's dtype out
        per_token = place.terms(est, lp, ref, old, m).to(dtype)
    else:
        per_token = surrogate(est, place, lp, ref, old)
    if agg is None:
        return per_token * m
    return agg(per_token, m, horizon)  # type: ignore[operator]


def _fused(est, placement: str, logp: Tensor, ref_logp: Tensor, old_logp: Tensor | None, mask: Tensor | None,
           agg, horizon) -> Tensor | None:
    """The float32 fast path (``fused.py``): no dtype round trip, no cleaning of padding, one autograd node.
    Its result is kept only when it and the sum of the node's gradient coefficients are finite: then every
    masked-out token's value and coefficient were finite, so it added exactly 0 and gets gradient 0·coefficient
    = 0; otherwise (garbage or ±inf in padding, a reference probability of 0)
    None sends kl_loss down the path that zeroes padding first and uses the registry's forms (their limits at
    π_ref = 0, r·log r → 0, included)."""
    m = None if mask is None else mask.to(torch.float32)
    per_token, coef_sum = fused_surrogate(est, placement, logp, ref_logp, old_logp)
    if m is None:  # ones without a tensor's memory
        m = torch.ones((), dtype=per_token.dtype, device=per_token.device).expand_as(per_token)
    out = per_token * m if agg is None else agg(per_token, m, horizon)
    check = (out.sum() if agg is None else out).detach() + coef_sum  # one host read; inf − inf is NaN: refused too
    return out if math.isfinite(check.item()) else None
