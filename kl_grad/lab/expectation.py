"""The expectation contract: both backends yield weighted points, and nothing else.

    Monte Carlo (``montecarlo.py``)  rows = trials, cols = the trial's samples, equal weights
    exact       (``quadrature.py``)  rows = quadrature nodes or the enumerated support, cols = 1,
                                     weights = the rule's weights (summing to 1)

The gradient stage turns each row into one autograd gradient of the row-mean
surrogate, and ``statistics.py`` turns weighted per-row gradients (or values)
into means, standard errors, stdevs and verdicts. Equal weights are kept as
``None`` so that Monte-Carlo statistics use numpy's plain mean and std, whose
rounding the committed results were written with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Points:
    """``x``: (rows, cols) detached points (integers for enumerable families);
    ``weights``: (rows,) summing to 1, or None for equal weights (Monte-Carlo trials);
    ``log_weights``: their logs, given where a weight may underflow float64 while its point's value does not."""

    x: torch.Tensor
    weights: np.ndarray | None = None
    log_weights: np.ndarray | None = None  # (rows,), where weights may underflow (enumerated tiny probabilities)

    @property
    def rows(self) -> int:
        return self.x.shape[0]
