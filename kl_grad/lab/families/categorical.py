"""The categorical family (softmax logits over K tokens): a one-token language-model policy, enumerable."""

from __future__ import annotations

import numpy as np
import torch
from torch.distributions import Categorical as TorchCategorical
from torch.distributions import Distribution

from . import Family


class Categorical(Family):
    name = "categorical"
    arity = "categorical:L0,L1,... (two or more logits)"
    example = "categorical:0,0.5,-1"
    enumerable = True

    def param_names(self, k: int) -> tuple[str, ...]:
        return tuple(f"logits[{i}]" for i in range(k))

    def valid_count(self, k: int) -> bool:
        return k >= 2

    def build(self, params: list[torch.Tensor]) -> Distribution:
        # logits stacked on a trailing axis: leaves of any batch shape (e.g. (rows, 1)) give that batch
        # shape, so log_prob broadcasts over (rows, cols) points exactly as the Normal's does.
        return TorchCategorical(logits=torch.stack(params, dim=-1), validate_args=False)

    def nodes(self, spec, n: int) -> tuple[torch.Tensor, np.ndarray]:
        probs = spec.build(torch.float64).probs.numpy()
        return torch.arange(len(probs)).reshape(-1, 1), probs
