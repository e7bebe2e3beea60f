"""How ``kl_loss`` reduces per-token surrogate values to one scalar: the aggregation registry.

Each entry maps (x, mask), both (batch, ..., tokens) with tokens last, to a 0-dim
tensor; masked tokens (mask 0) contribute nothing. The names are the ones
trainers use (verl's ``loss_agg_mode``: token-mean, seq-mean-token-mean,
seq-mean-token-sum).
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor


def _token_mean(x: Tensor, mask: Tensor) -> Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def _seq_mean_token_mean(x: Tensor, mask: Tensor) -> Tensor:
    # A sequence with no unmasked token has no token mean: it is left out of the mean over sequences
    # (counting it as 0 would shrink the loss with the number of empty rows); all empty gives 0.
    tokens = mask.sum(-1)  # (batch, ...)
    per_seq = (x * mask).sum(-1) / tokens.clamp(min=1)
    return per_seq.sum() / (tokens > 0).sum().clamp(min=1)


def _seq_mean_token_sum(x: Tensor, mask: Tensor) -> Tensor:
    return (x * mask).sum(-1).mean()


def _sum(x: Tensor, mask: Tensor) -> Tensor:
    return (x * mask).sum()


AGGREGATIONS = {
    "token-mean": _token_mean,  # mean over all unmasked tokens in the batch
    "seq-mean-token-mean": _seq_mean_token_mean,  # mean over tokens per sequence, then over non-empty sequences
    "seq-mean-token-sum": _seq_mean_token_sum,  # sum over tokens per sequence, mean over sequences
    "sum": _sum,
}
