"""A user's own KL term as a measured term: ``UserTerm`` beside the registered ``Case`` (``terms.py``).

The runner asks every term one question, ``term.per_sample(logp, ref_logp, sampler_logp, log_ratio)``: the
per-sample surrogate whose autograd gradient is measured (``gradients.row_gradients``). A ``Case`` answers
with its estimator in its placement; a ``UserTerm`` calls the user's function exactly as written:

    fn(logp, ref_logp)                 two positional parameters
    fn(logp, ref_logp, old_logp)       a third positional parameter without a default (or *args): old_logp =
                                       log m(x) of the sampler, detached; on-policy
                                       old_logp = logp.detach() (value of log π_θ, no gradient)

Tokens are last, as in a trainer's (batch, tokens) tensors: ``logp`` (rows, cols, L) float64 carries grad,
``ref_logp`` and ``old_logp`` are constants of that shape, L the tokens of a sequence problem
(``battery.SEQUENCE``) and L = 1 on the single-token problems (the runner's (rows, cols) log-probs get a
trailing token axis here). The function returns one of

    per-token values      (rows, cols, L)   the sequence's loss is their sum over tokens (a trainer's
                                            seq-mean-token-sum aggregation, whose mean over sequences the
                                            runner takes)
    per-sequence values   (rows, cols)      one loss per sequence, e.g. a whole-sequence reward term
    a scalar              ()                an already reduced loss, read as the mean over all rows × cols
                                            sequences of the per-sequence loss: ``x.sum(-1).mean()`` of
                                            per-token x (for L = 1 that is ``x.mean()``; a token mean
                                            ``x.mean()`` over L > 1 tokens reads as 1/L of the sequence loss)

The runner differentiates each row's mean over its sequences, so a scalar S becomes the total rows·cols·S:
its sum over rows of row means is then rows·S, and each row's gradient is what autograd gives the scalar,
scaled to that row's mean.

``placement`` (optional, a registered placement name) wraps per-token values the way that placement wraps
an estimator, token by token (w_t = π_θ(y_t|y_<t)/sg(m(y_t|y_<t))), then sums over tokens: ``loss-w`` gives
Σ_t w_t·fn_t, ``loss-sgw`` Σ_t sg(w_t)·fn_t, and ``reward`` the REINFORCE reward penalty with reward-to-go,
Σ_t w_t·sg(Σ_{t'≥t} fn_t') (``kl_grad.sequences``' ``reward``; for L = 1 it is w·sg(fn)).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from ...directions import POLICY_REF
from ...errors import KLGradError
from ...placements import Placement, get_placement, importance_weight
from ...sequences import to_go


@dataclass(frozen=True)
class TermLabel:
    """What the table columns read from a term: ``estimator.name``/``direction`` and ``placement.name``."""

    name: str
    direction: str = POLICY_REF
    clamp_active: Callable | None = None  # the registered clamps' detector; a user term's clamps are probed


@dataclass(frozen=True)
class UserTerm:
    """A user callable as a term the gradient runner measures (see the module docstring).

    ``roles``: ((parameter, role, positional), ...) from ``target.signature_roles`` (default: fn(logp,
    ref_logp)); ``takes_old`` says whether one of them is the sampler's log-probs. ``wrap``: None (the output is the
    loss term as written) or a registered placement wrapping it; ``placement`` is its label for the tables.
    """

    fn: Callable = field(compare=False)
    name: str = "fn"
    wrap: Placement | None = None
    roles: tuple = (("logp", "logp", True), ("ref_logp", "ref", True))

    @property
    def takes_old(self) -> bool:
        return any(role == "old" for _, role, _ in self.roles)

    @property
    def estimator(self) -> TermLabel:
        return TermLabel(self.name)

    @property
    def placement(self) -> TermLabel:
        return TermLabel(self.wrap.name if self.wrap else "as written")

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, self.placement.name)

    @staticmethod
    def tokens_last(t: torch.Tensor | None, sequence: bool) -> torch.Tensor | None:
        """The runner's log-probs in the function's layout: (rows, cols) gets a token axis of length 1."""
        return t if t is None or sequence else t.unsqueeze(-1)

    def call(self, logp: torch.Tensor, ref_logp: torch.Tensor, sampler_logp: torch.Tensor | None,
             mask: torch.Tensor | None = None) -> torch.Tensor:
        """The function's raw output (its own dtype; per-token (…, L), per-sequence (…) or a scalar), checked.
        Inputs are the runner's: (rows, cols) single-token or (rows, cols, L) sequence log-probs; ``mask``
        (logp's layout, default ones) goes to a mask parameter (``padding.py`` pads with it)."""
        sequence = logp.dim() == 3
        old = logp.detach() if sampler_logp is None else sampler_logp.detach()
        mask = torch.ones_like(logp.detach()) if mask is None else mask
        logp, ref_logp, old, mask = (self.tokens_last(t, sequence) for t in (logp, ref_logp, old, mask))
        values = {"logp": logp, "ref": ref_logp, "old": old, "mask": mask}
        roles = self.roles
        args = [values[role] for _, role, positional in roles if positional]
        kwargs = {name: values[role] for name, role, positional in roles if not positional}
        try:
            out = self.fn(*args, **kwargs)
        except KLGradError:
            raise
        except Exception as exc:  # the user's function failed: one line with its own message
            call = "fn(" + ", ".join(name for name, _, _ in roles) + ")"
            dtype = str(logp.dtype).replace("torch.", "")
            raise KLGradError(f"{self.name} raised {type(exc).__name__}: {exc} (called as {call} with {dtype} "
                              f"tensors of shape {tuple(logp.shape)}, tokens last)") from None
        shape = tuple(logp.shape)
        if not isinstance(out, torch.Tensor):
            raise KLGradError(f"{self.name} returned {type(out).__name__}, expected a torch.Tensor: per-token "
                              f"values {shape}, per-sequence values {shape[:-1]} or a scalar")
        if out.dim() != 0 and tuple(out.shape) not in (shape, shape[:-1]):
            raise KLGradError(f"{self.name} returned shape {tuple(out.shape)} for log-probs of shape {shape} "
                              f"(tokens last): expected per-token values {shape}, per-sequence values "
                              f"{shape[:-1]} or a scalar")
        if not out.is_floating_point():
            raise KLGradError(f"{self.name} returned dtype {out.dtype}, expected a floating-point tensor")
        return out

    def per_sample(self, logp, ref_logp, sampler_logp=None, log_ratio=None, mask=None) -> torch.Tensor:
        """Per-sequence surrogate (the runner's (rows, cols)), or a 0-d total rows·cols·S for a scalar output S."""
        out = self.call(logp, ref_logp, sampler_logp, mask)
        sequence = logp.dim() == 3
        length = logp.shape[-1] if sequence else 1
        if out.dim() == 0:
            if self.wrap is not None:
                raise KLGradError(f"--placement {self.wrap.name} needs per-token values, but {self.name} "
                                  "returned a scalar")
            return out.to(logp.dtype) * (logp.numel() // length)
        out = out.to(logp.dtype)  # a float32 function's output: its rounding is kept, the graph continues in float64
        per_token = out.dim() == logp.dim() + (0 if sequence else 1)
        if self.wrap is None:
            return out.sum(-1) if per_token else out
        if not per_token:
            if length > 1:
                raise KLGradError(f"--placement {self.wrap.name} needs per-token values, but {self.name} returned "
                                  f"per-sequence values of shape {tuple(out.shape)}")
            out = out.unsqueeze(-1)
        lp = self.tokens_last(logp, sequence)
        w = importance_weight(lp, self.tokens_last(sampler_logp, sequence)) if self.wrap.weighted else None
        if self.wrap.name == "reward":  # REINFORCE with reward-to-go; for L = 1 exactly the placement's w·sg(fn)
            return (w * to_go(out).detach()).sum(-1)
        return self.wrap.fn(out, w).sum(-1)


REWARD_LOCAL = Placement("reward-local", "w·sg(fn) per token, no reward-to-go", lambda k, w: w * k.detach())


def user_placement(name: str) -> Placement:
    """A registered placement, or reward-local (each token's value as its own REINFORCE reward; ``reward``
    wraps with reward-to-go)."""
    return REWARD_LOCAL if name.strip() == "reward-local" else get_placement(name)
