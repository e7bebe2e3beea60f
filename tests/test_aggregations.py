"""kl_grad.aggregations: each reduction against its plain loop (tests/oracles.py: aggregate_loop).

Through ``kl_loss`` the same loops are checked in tests/test_loss.py.
"""

from __future__ import annotations

import pytest
import torch

from kl_grad.aggregations import AGGREGATIONS
from tests import oracles

B, T = 3, 5
MASKS = {
    "ragged": [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]],
    "empty row": [[1, 1, 1, 1, 1], [0, 0, 0, 0, 0], [1, 0, 1, 0, 0]],
    "all masked": [[0] * T] * B,
    "full": [[1] * T] * B,
}


def values(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_()


def test_every_aggregation_has_a_loop_oracle():
    # verl's loss_agg_mode names, plus a plain sum.
    assert tuple(AGGREGATIONS) == oracles.AGGREGATION_MODES


@pytest.mark.parametrize("mask_name", list(MASKS))
@pytest.mark.parametrize("mode", list(AGGREGATIONS))
def test_aggregation_matches_the_loop(mode, mask_name):
    x = values((B, T))
    mask = torch.tensor(MASKS[mask_name], dtype=torch.float64)
    got = AGGREGATIONS[mode](x, mask)
    assert got.dim() == 0
    assert got.item() == pytest.approx(oracles.aggregate_loop(x.tolist(), MASKS[mask_name], mode), rel=1e-12,
                                       abs=1e-15)
    # Masked entries get exactly zero gradient.
    (grad,) = torch.autograd.grad(got, x)
    assert (grad[mask == 0] == 0).all()


@pytest.mark.parametrize("mode", list(AGGREGATIONS))
def test_three_dimensions_flatten_into_sequences(mode):
    # (groups, sequences, tokens): every sequence counts once, whatever its group.
    g = torch.Generator().manual_seed(3)
    x = values((2, 3, T), seed=4)
    mask = (torch.rand(2, 3, T, generator=g) < 0.5).double()
    mask[0, 1] = 0  # one empty sequence
    got = AGGREGATIONS[mode](x, mask)
    assert got.item() == pytest.approx(oracles.aggregate_loop(x.tolist(), mask.tolist(), mode), rel=1e-12)


def test_an_empty_sequence_is_left_out_of_seq_mean_token_mean_but_counts_in_seq_mean_token_sum():
    x = torch.tensor([[2.0, 4.0], [8.0, 8.0]], dtype=torch.float64)
    mask = torch.tensor([[1.0, 1.0], [0.0, 0.0]], dtype=torch.float64)
    assert AGGREGATIONS["seq-mean-token-mean"](x, mask).item() == 3.0  # one non-empty sequence, mean 3
    assert AGGREGATIONS["seq-mean-token-sum"](x, mask).item() == 3.0  # (6 + 0) / 2 sequences
    assert AGGREGATIONS["token-mean"](x, mask).item() == 3.0
    assert AGGREGATIONS["sum"](x, mask).item() == 6.0
