"""``kl_loss``'s per-token surrogate for float32, bfloat16 and float16 inputs in one autograd node.

``fused_surrogate(estimator, placement, logp, ref_logp, base)`` returns the same per-token values as
``placements.surrogate`` (loss k(d), loss-sgw sg(w)·k(d), loss-w w·k(d), reward w·sg(k(d)); w = e^(logp − base),
w ≡ 1 on-policy), computed in float32, with the logp-gradient of each placement in closed form:

    loss: k'(d)    loss-sgw: w·k'(d)    loss-w: w·(k(d) + k'(d))    reward: w·k(d)

— the derivatives ``placements._WeightedLoss`` and ``estimators.numerics._Smooth`` give (tests/test_placements_numerics
derives them by hand). The backward is one multiplication by that saved coefficient, and the forward has no
dtype round trip: the estimators' careful float32 forms (``estimators/float32.py``) replace the float64 detour.
``ref_logp`` and ``base`` are constants here (kl_loss detaches them). Padding is not cleaned here: the node also
returns the sum of its saved coefficients (a 0-dim float32 tensor, not differentiable), and ``kl_loss`` keeps the
result only when that sum and the loss are finite (one host read for both), so masked-out tokens get gradient
0·coefficient = 0 with no pass over the mask in the backward.
"""

from __future__ import annotations

import torch

from .estimators import Estimator
from .estimators.float32 import FORMS
from .placements import SECOND_DERIVATIVE

Tensor = torch.Tensor
_WANT = {"loss": "slope", "loss-sgw": "slope", "loss-w": "coef", "reward": "none"}


def supports(estimator: Estimator, placement: str) -> bool:
    """True where the fused node applies: a per-token placement and an estimator with a float32 form. The others
    (straight-through, clamped, framework-named) keep the registry's forms: k3+'s loss-w coefficient k3 + d has a
    root near d = −1.26 where a float32 sum loses every digit, and _WeightedLoss evaluates it in float64."""
    return placement in _WANT and estimator.name in FORMS


class _Fused(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logp, ref_logp, base, estimator, placement):
        # float32 copies of half-precision inputs are made once and then overwritten (mixed-dtype kernels copy)
        f32 = torch.float32
        lp, ref = logp.to(f32), ref_logp.to(f32)
        w = None
        if base is not None and placement != "loss":  # w = π_θ/sg(m) (loss ignores it; on-policy it is 1)
            b = base.to(f32)
            w = torch.sub(lp, b, out=b).exp_() if b is not base else torch.sub(lp, b).exp_()
        space, form = FORMS[estimator.name]
        fresh_lp, fresh_ref = lp is not logp, ref is not ref_logp
        if space == "d":  # x = logp − ref_logp
            x = lp.sub_(ref) if fresh_lp else torch.sub(lp, ref, out=ref) if fresh_ref else torch.sub(lp, ref)
        else:  # x = ref_logp − logp
            x = ref.sub_(lp) if fresh_ref else torch.sub(ref, lp, out=lp) if fresh_lp else torch.sub(ref, lp)
        spare = lp if fresh_lp and x is not lp else ref if fresh_ref and x is not ref else None  # a dead copy
        k, second, negate = form(x, _WANT[placement], spare)
        if w is None:  # loss ignores w; on-policy w = π_θ/sg(π_θ) = 1
            value, coef = k, (k if placement == "reward" else second)
        else:
            value = k.mul_(w)
            if placement == "reward" or second is k:
                coef = value
            elif isinstance(second, float):  # k1's slope 1, reverse_k2's score coefficient 0
                coef = w.mul_(second) if second != 1.0 else w
            else:
                coef = second.mul_(w)
        ctx.coef = coef if isinstance(coef, float) else None
        ctx.negate = negate and placement != "reward"
        ctx.save_for_backward(None if isinstance(coef, float) else coef)
        ctx.dtype = logp.dtype
        # value's own finiteness kl_loss reads from the loss; a coefficient that is not value is summed
        check = torch.zeros((), dtype=f32, device=value.device) if ctx.coef is not None or coef is value \
            else coef.sum()
        ctx.mark_non_differentiable(check)
        return value, check

    @staticmethod
    def backward(ctx, grad, _):
        if torch.is_grad_enabled():  # create_graph: the saved coefficient is a constant, k''(d) would be lost
            raise RuntimeError(f"kl_loss's float32 path: {SECOND_DERIVATIVE}")
        (coef,) = ctx.saved_tensors
        if coef is None and ctx.coef == 1.0 and grad.dtype == ctx.dtype:
            return grad, None, None, None, None
        out = torch.empty(grad.shape, dtype=ctx.dtype, device=grad.device)
        if coef is None:
            return out.copy_(grad).mul_(ctx.coef), None, None, None, None
        torch.mul(grad, coef, out=out)
        if ctx.negate:
            out.neg_()
        return out, None, None, None, None


def fused_surrogate(estimator: Estimator, placement: str, logp: Tensor, ref_logp: Tensor,
                    base: Tensor | None) -> tuple[Tensor, Tensor]:
    """(per-token float32 surrogate of ``placement``, a ``placements.PLACEMENTS`` name, with its closed-form
    logp-gradient; the sum of the saved gradient coefficients, 0-dim: finite iff none overflowed, unless the sum
    itself did). ``base`` is log sg(m) (None: on-policy). Use the surrogate only where that sum is finite: a
    masked-out token's gradient is 0·coefficient."""
    return _Fused.apply(logp, ref_logp.detach(), None if base is None else base.detach(), estimator, placement)
