"""A user's term run on inputs cast as a trainer casts them (``audit(fn, dtypes=...)``, ``--dtype``).

A trainer in bfloat16 hands its KL term log-probs in bfloat16: the float64 values rounded once, and the
gradient the model's backward receives is ∂L/∂ℓ with respect to that bfloat16 leaf. ``CastTerm`` does the
same inside the runner: logp, ref_logp and old_logp are cast to ``dtype``, the user's function runs on them
(in whatever precision it computes), ``c = ∂L/∂ℓ`` is taken by autograd w.r.t. the cast leaf, and the
surrogate handed back to the runner is Σ_t sg(c_t)·ℓ_t in float64, so the runner's exact enumeration gives

    E_m[Σ_t c_t(dtype) · ∇θ log π_θ(y_t|y_<t)]      (the model's own backward ∇θ ℓ stays float64)

``floor=True`` rounds the inputs to ``dtype`` but computes in float64: the bias that rounding the inputs
alone adds, which no function of those inputs can avoid (the cast's rounding floor).

``grid_points``/``at_points`` evaluate a term at given log-probs in a dtype: values as the function returned
them and the coefficient c (float64 copy of the dtype's gradient).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .user_term import TermLabel, UserTerm

# The log-ratios d = logp − ref_logp the grid probes: 0, tiny (float32 cancellation: unsloth-zoo PR #1240),
# moderate, and extreme (exp overflows float16 at 11.1, float32/bfloat16 at 88.7: OpenRLHF PR #1335).
GRID = tuple(sorted({0.0, *(s * v for v in (1e-6, 1e-3, 1.0, 10.0, 20.0, 50.0, 88.0, 100.0) for s in (1, -1))}))


def grid_inputs(d: float) -> tuple[float, float]:
    """(logp, ref_logp) with logp − ref_logp = d and both ≤ 0 (one of them 0): d is then exact up to the
    dtype's rounding of |d| itself, as when the two log-probs are close to 0 or each other's cast is exact."""
    return min(d, 0.0), min(-d, 0.0)


@dataclass(frozen=True)
class CastTerm:
    """``inner`` measured on inputs cast to ``dtype`` (see the module docstring); ``floor``: rounding only."""

    inner: UserTerm
    dtype: torch.dtype
    floor: bool = False

    @property
    def label(self) -> str:
        return str(self.dtype).replace("torch.", "") + (" floor" if self.floor else "")

    @property
    def estimator(self) -> TermLabel:
        return TermLabel(f"{self.inner.name}@{self.label}")

    @property
    def placement(self) -> TermLabel:
        return self.inner.placement

    @property
    def key(self) -> tuple[str, str]:
        return (self.estimator.name, self.placement.name)

    def coefficients(self, logp, ref_logp, sampler_logp=None, mask=None):
        """(total surrogate in the computing dtype, c = ∂total/∂leaf as float64) at the cast inputs."""
        cast = (lambda t: t.detach().to(self.dtype).double()) if self.floor else (lambda t: t.detach().to(self.dtype))
        leaf = cast(logp).requires_grad_()
        ref = cast(ref_logp)
        old = None if sampler_logp is None else cast(sampler_logp)
        m = None if mask is None else mask.to(leaf.dtype)
        total = self.inner.per_sample(leaf, ref, old, mask=m)
        (c,) = torch.autograd.grad(total.sum(), leaf, allow_unused=True)
        c = torch.zeros_like(leaf) if c is None else c
        return total, c.double()

    def per_sample(self, logp, ref_logp, sampler_logp=None, log_ratio=None) -> torch.Tensor:
        _, c = self.coefficients(logp, ref_logp, sampler_logp)
        out = c.detach() * logp
        return out.sum(-1) if logp.dim() == 3 else out


def at_points(term: UserTerm, logp64: torch.Tensor, ref64: torch.Tensor, old64: torch.Tensor | None,
              dtype: torch.dtype, floor: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(values as float64, c float64) of ``term`` at float64 log-probs (runner layout) cast to ``dtype``
    (``floor``: rounded to it, computed in float64); values are the function's raw output upcast (a scalar
    stays 0-d)."""
    cast = (lambda t: t.detach().to(dtype).double()) if floor else (lambda t: t.detach().to(dtype))
    leaf = cast(logp64).requires_grad_()
    ref = cast(ref64)
    old = None if old64 is None else cast(old64)
    values = term.call(leaf, ref, old)
    total = term.per_sample(leaf, ref, old)
    (c,) = torch.autograd.grad(total.sum(), leaf, allow_unused=True)
    c = torch.zeros_like(leaf) if c is None else c
    return values.detach().double(), c.double()


def grid_rows(term: UserTerm, dtype: torch.dtype) -> list[dict]:
    """One row per ``GRID`` log-ratio d: the term's value and c at (logp, ref_logp) = ``grid_inputs(d)``
    cast to ``dtype``, on-policy (old_logp = logp), one call per point (a scalar output is that point's);
    ``value_floor``/``grad_floor``: the same inputs rounded to ``dtype``, computed in float64."""
    rows = []
    for d in GRID:
        lp, ref = (torch.tensor([[x]], dtype=torch.float64) for x in grid_inputs(d))
        value, c = at_points(term, lp, ref, None, dtype)
        value0, c0 = at_points(term, lp, ref, None, dtype, floor=True)
        rows.append({"d": d, "value": float(value.reshape(-1)[0]), "grad": float(c.reshape(-1)[0]),
                     "value_floor": float(value0.reshape(-1)[0]), "grad_floor": float(c0.reshape(-1)[0])})
    return rows
