"""Placements: how a per-sample estimator becomes the differentiable surrogate a trainer backpropagates.

Samples x come from a sampling distribution m (m = π_θ on-policy, a fixed
behaviour policy off-policy); autograd never differentiates through m. With
d = log π_θ(x) − log π_ref(x), w = π_θ(x)/sg(m(x)) (value 1 on-policy, gradient
the score s = ∇ log π_θ) and sg = ``.detach()``:

    loss      k(d)            what GRPO-style code does
    loss-sgw  sg(w)·k(d)      importance-corrected value, no score term
    loss-w    w·k(d)          differentiable weight: adds the score term
    reward    w·sg(k(d))      KL as a reward penalty under REINFORCE

Each function takes tensors of one shape (any shape) and returns per-sample
surrogate values of that shape; the caller averages them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .errors import choose
from .estimators import Estimator

Tensor = torch.Tensor


# kl_loss's paths through a hand-written backward node raise this under create_graph=True instead of returning an
# incomplete second derivative; the float64 placements that are compositions of torch ops differentiate twice.
SECOND_DERIVATIVE = ("no second derivative (create_graph=True) through this KL term's closed-form backward; "
                     "placements loss, loss-sgw, reward-local, reward, reward-prefix-w, reward-seq and trl-seq "
                     "on float64 log-probs differentiate twice (loss-w, loss-prefix-w, both and full_kl_loss "
                     "do not)")


class _WeightedLoss(torch.autograd.Function):
    """w·k(d), w = exp(logp − base), d = logp − ref_logp, with the logp-gradient w·c(d), c = k + k' the
    estimator's closed form, all in float64.

    Autograd of w·k adds the two paths into logp, w·k and w·k', and for k3 that is
    (e^{−d} − 1 + d) + (1 − e^{−d}): in float32 (torch 2.13, CPU) that sum is −16 at d = −18 and −32 at
    d = −20. ``ref_logp`` gets −w·k'(d) (it carries grad only in
    pathwise runs); ``base`` is a constant (sg(π_θ) or the sampler).
    """

    @staticmethod
    def forward(ctx, logp, ref_logp, base, estimator):
        lp, ref, b = (t.to(torch.float64) for t in (logp, ref_logp, base))
        d, w = lp - ref, torch.exp(lp - b)
        ctx.save_for_backward(d, w)
        ctx.estimator = estimator
        return (w * estimator.of_log_ratio(d)).to(logp.dtype)

    @staticmethod
    def backward(ctx, grad):
        if torch.is_grad_enabled():  # create_graph: d and w were saved as constants, the Hessian would be short
            raise RuntimeError(SECOND_DERIVATIVE)
        d, w = ctx.saved_tensors
        g = grad.to(torch.float64) * w
        est = ctx.estimator
        grad_logp = (g * est.score_coefficient(d)).to(grad.dtype) if ctx.needs_input_grad[0] else None
        grad_ref = (-g * est.derivative(d)).to(grad.dtype) if ctx.needs_input_grad[1] else None
        return grad_logp, grad_ref, None, None


@dataclass(frozen=True)
class Placement:
    """A registered placement: ``fn(k, w)`` maps per-sample estimator values k(d) and weights w
    (same shape, any shape) to per-sample surrogate values; ``weighted=False`` means w is never used."""

    name: str
    formula: str
    fn: Callable[[Tensor, Tensor | None], Tensor]  # (k(d), w) -> per-sample surrogate
    weighted: bool = True  # False: fn ignores w, which is then not computed (a plain k(d) graph)
    # (estimator, logp, ref_logp, base) -> the same surrogate with a closed-form gradient, used for
    # estimators that give k' and k + k' (placements whose gradient adds k and k' on one sample)
    closed_form: Callable | None = None


PLACEMENTS: dict[str, Placement] = {
    p.name: p
    for p in (
        Placement("loss", "k(d)", lambda k, w: k, weighted=False),
        Placement("loss-sgw", "sg(w)·k(d)", lambda k, w: w.detach() * k),
        Placement("loss-w", "w·k(d)", lambda k, w: w * k, closed_form=_WeightedLoss.apply),
        Placement("reward", "w·sg(k(d))", lambda k, w: w * k.detach()),
    )
}


def get_placement(name: str) -> Placement:
    """Look a placement up by name; unknown names list the allowed ones."""
    return choose("placement", name.strip(), PLACEMENTS)  # type: ignore[return-value]


def importance_weight(logp: Tensor, sampler_logp: Tensor | None) -> Tensor:
    """w = exp(logp − sg(log m)); on-policy (``sampler_logp`` None) m = sg(π_θ), so w ≡ 1 with gradient s."""
    base = logp.detach() if sampler_logp is None else sampler_logp.detach()
    return torch.exp(logp - base)


def surrogate(
    estimator: Estimator,
    placement: Placement,
    logp: Tensor,
    ref_logp: Tensor,
    sampler_logp: Tensor | None = None,
    log_ratio: Tensor | None = None,
) -> Tensor:
    """Per-sample differentiable surrogate; ``logp`` carries grad, the others are constants.

    ``log_ratio`` may pass a precomputed ``logp - ref_logp`` (shared by several cases).
    """
    if placement.closed_form is not None and estimator.score_coefficient is not None:
        base = logp.detach() if sampler_logp is None else sampler_logp.detach()
        return placement.closed_form(logp, ref_logp, base, estimator)
    k = estimator.of_log_ratio(logp - ref_logp if log_ratio is None else log_ratio)
    return placement.fn(k, importance_weight(logp, sampler_logp) if placement.weighted else None)
