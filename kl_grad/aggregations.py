"""How ``kl_loss`` reduces per-token surrogate values to one scalar: the aggregation registry.

Each entry maps (x, mask, horizon=None), x and mask both (batch, ..., tokens) with tokens last, to a 0-dim
tensor of x's dtype (mask may have a narrower one: tokens are counted in x's); masked tokens (mask 0) contribute
nothing. The names are the ones
trainers use (verl's ``loss_agg_mode``: token-mean, seq-mean-token-mean,
seq-mean-token-sum, seq-mean-token-sum-norm; TRL's ``loss_type`` through ``AGGREGATION_ALIASES``:
grpo, bnpo, dapo, dr_grpo). ``horizon`` is the fixed length the two length-normalised modes divide by
(verl's loss_scale_factor, TRL's max_completion_length; default: the number of token columns).
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor


def _token_mean(x: Tensor, mask: Tensor, horizon: float | None = None) -> Tensor:
    return (x * mask).sum() / mask.sum(dtype=x.dtype).clamp(min=1)


def _seq_mean_token_mean(x: Tensor, mask: Tensor, horizon: float | None = None) -> Tensor:
    # A sequence with no unmasked token has no token mean: it is left out of the mean over sequences
    # (counting it as 0 would shrink the loss with the number of empty rows); all empty gives 0.
    tokens = mask.sum(-1, dtype=x.dtype)  # (batch, ...); counted in x's dtype (a bf16 mask would round 257 to 256)
    per_seq = (x * mask).sum(-1) / tokens.clamp(min=1)
    return per_seq.sum() / (tokens > 0).sum().clamp(min=1)


def _seq_mean_token_sum(x: Tensor, mask: Tensor, horizon: float | None = None) -> Tensor:
    return (x * mask).sum(-1).mean()


def _sum(x: Tensor, mask: Tensor, horizon: float | None = None) -> Tensor:
    return (x * mask).sum()


def _horizon(x: Tensor, horizon: float | None) -> float:
    return float(x.shape[-1]) if horizon is None else float(horizon)


def _seq_mean_token_sum_norm(x: Tensor, mask: Tensor, horizon: float | None = None) -> Tensor:
    # verl core_algos.agg_loss "seq-mean-token-sum-norm" (Dr. GRPO, arXiv 2503.20783): the token sums of all
    # sequences over a fixed horizon, the same for every batch (no division by the number of sequences).
    return (x * mask).sum() / _horizon(x, horizon)


def _dr_grpo(x: Tensor, mask: Tensor, horizon: float | None = None) -> Tensor:
    # TRL GRPOTrainer loss_type "dr_grpo": sum / (number of sequences × max_completion_length).
    sequences = x[..., 0].numel()
    return (x * mask).sum() / (max(sequences, 1) * _horizon(x, horizon))


AGGREGATIONS = {
    "token-mean": _token_mean,  # mean over all unmasked tokens in the batch
    "seq-mean-token-mean": _seq_mean_token_mean,  # mean over tokens per sequence, then over non-empty sequences
    "seq-mean-token-sum": _seq_mean_token_sum,  # sum over tokens per sequence, mean over sequences
    "sum": _sum,
    "seq-mean-token-sum-norm": _seq_mean_token_sum_norm,  # all token sums / horizon (verl, Dr. GRPO)
    "dr-grpo": _dr_grpo,  # sum / (sequences × horizon) (TRL loss_type dr_grpo)
}
# TRL's loss_type names: grpo = per-sequence token mean then batch mean; bnpo and dapo = token mean.
AGGREGATION_ALIASES = {"grpo": "seq-mean-token-mean", "bnpo": "token-mean", "dapo": "token-mean",
                       "dr_grpo": "dr-grpo"}
PER_TOKEN = "none"  # kl_loss(aggregation="none"): the masked per-token values, not reduced
