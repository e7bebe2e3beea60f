"""A user's own KL term as a measured term: ``UserTerm`` beside the registered ``Case`` (``terms.py``).

The runner asks every term one question, ``term.per_sample(logp, ref_logp, sampler_logp, log_ratio)``: the
per-sample surrogate whose autograd gradient is measured (``gradients.row_gradients``). A ``Case`` answers
with its estimator in its placement; a ``UserTerm`` calls the user's function exactly as written:

    fn(logp, ref_logp)                 two positional parameters
    fn(logp, ref_logp, old_logp)       a third positional parameter without a default (or *args): old_logp =
                                       log m(x) of the sampler, detached; on-policy
                                       old_logp = logp.detach() (value of log π_θ, no gradient)

``logp`` (rows, cols) float64 carries grad; ``ref_logp`` and ``old_logp`` are constants. The function returns
per-sample values of logp's shape, or an already reduced scalar, taken as the mean over all rows × cols
samples (``.mean()``, the usual token-mean loss; a ``.sum()`` would read as rows·cols times the KL term).
The runner differentiates each row's mean, so a scalar S becomes the total rows·cols·S: its sum over rows of
row means is then rows·S, and each row's gradient is what autograd gives the scalar, scaled to that row's mean.

``placement`` (optional, a registered placement name) wraps a value-style function the way that placement
wraps an estimator: ``reward`` gives w·sg(fn), ``loss-w`` w·fn, ``loss-sgw`` sg(w)·fn (w = π_θ/sg(m)).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from ..errors import KLGradError
from ..placements import Placement, importance_weight


@dataclass(frozen=True)
class _Label:
    """What the table columns read from a term: ``estimator.name``/``direction`` and ``placement.name``."""

    name: str
    direction: str = "policy||ref"
    clamp_active: Callable | None = None  # the registered clamps' detector; a user term's clamps are probed


@dataclass(frozen=True)
class UserTerm:
    """A user callable as a term the gradient runner measures (see the module docstring).

    ``takes_old``: fn takes old_logp as a third positional argument. ``wrap``: None (the output is the
    loss term as written) or a registered placement wrapping it; ``placement`` is its label for the tables.
    """

    fn: Callable = field(compare=False)
    name: str = "fn"
    takes_old: bool = False
    wrap: Placement | None = None

    @property
    def estimator(self) -> _Label:
        return _Label(self.name)

    @property
    def placement(self) -> _Label:
        return _Label(self.wrap.name if self.wrap else "as written")

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, self.placement.name)

    def call(self, logp: torch.Tensor, ref_logp: torch.Tensor, sampler_logp: torch.Tensor | None) -> torch.Tensor:
        """The function's raw output (its own dtype and shape), checked: logp's shape or a scalar."""
        old = logp.detach() if sampler_logp is None else sampler_logp.detach()
        try:
            out = self.fn(logp, ref_logp, old) if self.takes_old else self.fn(logp, ref_logp)
        except KLGradError:
            raise
        except Exception as exc:  # the user's function failed: one line with its own message
            call = "fn(logp, ref_logp, old_logp)" if self.takes_old else "fn(logp, ref_logp)"
            dtype = str(logp.dtype).replace("torch.", "")
            raise KLGradError(f"{self.name} raised {type(exc).__name__}: {exc} (called as {call} with {dtype} "
                              f"tensors of shape {tuple(logp.shape)})") from None
        if not isinstance(out, torch.Tensor):
            raise KLGradError(f"{self.name} returned {type(out).__name__}, expected a torch.Tensor of the log-probs' "
                              f"shape {tuple(logp.shape)} or a scalar")
        if out.dim() != 0 and tuple(out.shape) != tuple(logp.shape):
            raise KLGradError(f"{self.name} returned shape {tuple(out.shape)} for log-probs of shape "
                              f"{tuple(logp.shape)}: expected per-sample values of that shape or a scalar")
        if not out.is_floating_point():
            raise KLGradError(f"{self.name} returned dtype {out.dtype}, expected a floating-point tensor")
        return out

    def per_sample(self, logp, ref_logp, sampler_logp=None, log_ratio=None) -> torch.Tensor:
        """Per-sample surrogate (logp's shape), or a 0-d total rows·cols·S for a scalar output S."""
        out = self.call(logp, ref_logp, sampler_logp)
        if out.dim() == 0:
            if self.wrap is not None:
                raise KLGradError(f"--placement {self.wrap.name} needs per-sample values, but {self.name} "
                                  "returned a scalar")
            return out.to(logp.dtype) * logp.numel()
        out = out.to(logp.dtype)  # a float32 function's output: its rounding is kept, the graph continues in float64
        if self.wrap is None:
            return out
        w = importance_weight(logp, sampler_logp) if self.wrap.weighted else None
        return self.wrap.fn(out, w)
