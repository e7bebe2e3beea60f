"""A log-softmax that keeps its digits where one token takes almost all the mass.

``torch.log_softmax`` forms log p_j = z_j − logsumexp(z): for the most probable token of a row with a logit gap
of 24, log p ≈ −4e-11 is the difference of two numbers near the largest logit, and every digit below
ulp(z_max) ≈ 2e-15 is lost (a relative error of 1e-5 here). Its backward, g_k − p_k·Σ_j g_j, forms
1 − p_k the same way. Both are the identity that gradients of near-deterministic rows (and the exact-mode
error bound sized on them) rely on, so the lab's softmax families use this one instead:

    forward   s = Σ_{i≠m} exp(z_i − z_m)  (m the argmax; every term ≤ 1, no cancellation)
              log p_m = −log1p(s);  log p_i = z_i − z_m − log1p(s) for i ≠ m (|log p_i| ≥ log 2 there)
    backward  ∂/∂z_k Σ_j g_j log p_j = g_k·(1 − p_k) − p_k·Σ_{j≠k} g_j,
              1 − p_m = −expm1(log p_m), and Σ_{j≠k} g_j as exclusive prefix plus suffix sums (no G − g_k)

so each output and each gradient component is accurate to a few ulps of its own size (or of the sum of
the |g_j·p_k| it adds, where the caller's g cancel). The backward is written in torch operations on the
saved output, so a second derivative works too.
"""

from __future__ import annotations

import torch


def _exclusive_sums(g: torch.Tensor) -> torch.Tensor:
    """Σ_{j≠k} g_j along the last axis, as (Σ_{j<k}) + (Σ_{j>k}): no subtraction of g_k from a total."""
    pad = torch.nn.functional.pad
    before = pad(torch.cumsum(g, -1)[..., :-1], (1, 0))
    after = torch.flip(pad(torch.cumsum(torch.flip(g, [-1]), -1)[..., :-1], (1, 0)), [-1])
    return before + after


def _parts(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p, argmax one-hot) of logits z (…, V)."""
    top = torch.argmax(z, dim=-1, keepdim=True)
    hot = torch.zeros_like(z, dtype=torch.bool).scatter_(-1, top, True)
    shifted = z - torch.gather(z, -1, top)
    s = torch.where(hot, torch.zeros((), dtype=z.dtype), torch.exp(shifted)).sum(-1, keepdim=True)
    lse = torch.log1p(s)
    return torch.where(hot, -lse, shifted - lse), hot


class _LogSoftmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z):
        out, hot = _parts(z)
        ctx.save_for_backward(out, hot)
        return out

    @staticmethod
    def backward(ctx, g):
        out, hot = ctx.saved_tensors
        p = torch.exp(out)
        complement = torch.where(hot, -torch.expm1(out), 1 - p)  # 1 − p_k; p_k ≤ 1/2 off the argmax
        return g * complement - p * _exclusive_sums(g)


def log_softmax(z: torch.Tensor) -> torch.Tensor:
    """log softmax(z) over the last axis (…, V) → (…, V), accurate near p = 1 (module docstring)."""
    return _LogSoftmax.apply(z)
