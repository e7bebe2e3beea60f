"""The categorical family (softmax logits over K tokens): a one-token language-model policy, enumerable."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.distributions import Categorical as TorchCategorical
from torch.distributions import Distribution

from ...directions import POLICY_REF
from .base import Family
from .chain_kl import chain_kl_gradients
from .softmax import log_softmax


class Tokens(TorchCategorical):
    """torch's Categorical with its log-probs from ``softmax.log_softmax`` (torch's ``logits − logsumexp``
    loses the digits of log p near 0, and its backward those of 1 − p)."""

    def __init__(self, logits: torch.Tensor):
        super().__init__(logits=logits, validate_args=False)
        self.logits = self._param = log_softmax(logits)

    def step_log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """The whole distribution behind each point x (…): (…, 1, V), a sequence of one position."""
        return self.logits.expand(*x.shape, self.logits.shape[-1]).unsqueeze(-2)


class Categorical(Family):
    name = "categorical"
    arity = "categorical:L0,L1,... (two or more logits)"
    example = "categorical:0,0.5,-1"
    enumerable = True

    def param_names(self, k: int) -> tuple[str, ...]:
        return tuple(f"logits[{i}]" for i in range(k))

    def valid_count(self, k: int) -> bool:
        return k >= 2

    def logit_groups(self, values) -> list[np.ndarray]:
        return [np.asarray(values, dtype=float)]

    def probabilities(self, values) -> dict[str, list]:
        p = torch.softmax(torch.tensor(values, dtype=torch.float64), 0)
        return {"probs": [float(x) for x in p]}

    def make(self, spec, params: list[torch.Tensor]) -> Distribution:
        return Tokens(spec.logits(torch.stack(params, dim=-1)))

    def build(self, params: list[torch.Tensor]) -> Distribution:
        # logits stacked on a trailing axis: leaves of any batch shape (e.g. (rows, 1)) give that batch
        # shape, so log_prob broadcasts over (rows, cols) points exactly as the Normal's does.
        return Tokens(torch.stack(params, dim=-1))

    def kl_gradients(self, policy, ref) -> dict[str, np.ndarray]:
        """∇_logits KL with q = softmax(z), p = softmax(y) (z, y: policy and reference logits):

            ∂KL(q‖p)/∂z_j = q_j·Σ_i q_i (d_j − d_i)        ∂KL(p‖q)/∂z_j = q_j − p_j

        with d = log q − log p, so d_j − d_i = (z_j − z_i) − (y_j − y_i) from the logits and q_j − p_j
        summed from pairs that do not cancel (chain_kl.py, a chain of length 1). Autograd of torch's
        closed form subtracts O(1) numbers to get components of size 1e-15."""
        return chain_kl_gradients(policy.values, None, ref.values, None, 1)

    def kl_value(self, direction, policy, ref) -> float:
        """Σ_x a_x (log a_x − log b_x) from log-softmaxes (a, b = q, p for policy||ref): torch's closed form
        multiplies by probabilities that underflow to 0 (logit −800) and returns inf for a finite KL."""
        z, y = (torch.log_softmax(torch.tensor(s.values, dtype=torch.float64), 0).numpy() for s in (policy, ref))
        log_a, log_b = (z, y) if direction == POLICY_REF else (y, z)
        return math.fsum(np.exp(log_a) * (log_a - log_b))

    def nodes(self, spec, n: int, span=None) -> tuple[torch.Tensor, np.ndarray]:
        log_probs = log_softmax(spec.logits(torch.tensor(spec.values, dtype=torch.float64))).numpy()  # as
        kept = np.flatnonzero(np.isfinite(log_probs))  # ``Tokens``, so w = its q bitwise; a sampler's top-k/p
        return torch.tensor(kept).reshape(-1, 1), np.exp(log_probs[kept]), log_probs[kept]  # drops tokens
