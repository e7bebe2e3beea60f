"""Probes of a user's KL term on one battery problem: what the expectation alone would hide.

On points of the sampling distribution m (continuous families: ``PROBE_SAMPLES`` seeded draws; enumerable
families: the whole support, weighted by m) the probe evaluates the term and the per-sample coefficient
c_i = ∂L/∂ℓ_i of its gradient (ℓ_i = log π_θ(x_i), so the sample's gradient is c_i·∇θ ℓ_i), by autograd of
the term exactly as the runner differentiates it, and reports:

- ``zero_mass``: the m-mass on which c is exactly 0 (a clamp's flat side: those samples contribute no
  gradient at all), with its binomial standard error √(p(1−p)/N) (0 for an enumerated support);
- ``negative_mass``, ``nonfinite_mass``: of the function's per-sample values (a reduced scalar has none);
- ``out_dtype``: the dtype the function returns from float64 inputs (a downcast shows here);
- ``f32_error``: RMS of c(float32 inputs) − c(float64 inputs) over RMS of c (float64): how far the
  function's gradient moves in float32 (≈1e-7 for a well-conditioned one);
- ``frozen``: the share of points (where c ≠ 0) at which neither the value nor c changes when logp moves by
  ``NUDGE``·max(|logp|, 1): 1e-12 relative is ~1e4 float64 ulps but far below a float32 ulp (1.2e-7), so a
  function that computes in lower precision inside and casts back to float64 shows up here (``INTERNAL``);
  ``inner`` then names the narrowest of bfloat16, float16, float32 that holds every nonzero c exactly (the
  backward of a cast rounds the gradient to the narrow dtype, and the cast back and ± pass it unchanged);
- ``zero_flat``: of the zero-gradient mass, the share where the value is flat too (unchanged when those
  points' logp moves by ``FLAT_NUDGE`` relative): a clamp's flat side, not a detach;
- ``negative_max``: the largest |value| among negative values, and ``reward_form``: value = c at every point
  (a REINFORCE surrogate w·sg(k) on-policy: its value is the reward k, signed by design);

and raises a one-line ``KLGradError`` when no gradient reaches logp (a detached logp) or every value is NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ...errors import KLGradError
from ..montecarlo import mc_points
from .battery import AuditProblem
from .user_term import UserTerm

PROBE_SAMPLES = 50_000  # binomial se of a 0.64% zero mass: 0.036% (6% of it)
F32_UNSTABLE = 1e-4  # an RMS relative float32-vs-float64 gradient difference above this is "unstable"
NUDGE = 1e-12  # relative move of logp for the internal-precision check (see the module docstring)
INTERNAL = 0.5  # a share of frozen points above this means the function computes below float64 inside
FLAT_NUDGE = 1e-6  # relative move of the zero-gradient points' logp for the flatness check


@dataclass(frozen=True)
class Probe:
    zero_mass: float
    zero_se: float
    negative_mass: float  # NaN for a scalar-returning function
    nonfinite_mass: float
    out_dtype: torch.dtype
    f32_error: float  # NaN when the function cannot run in float32
    scalar: bool
    points: int
    frozen: float = 0.0
    inner: str = ""  # the lower precision the function computes in (``frozen``), "" when none is named
    zero_flat: float = 0.0
    negative_max: float = 0.0
    reward_form: bool = False
    batch_sum: bool = False  # a scalar that doubles when every sample is given twice: a sum, not a mean

    @property
    def low_precision(self) -> bool:
        """The function computes below float64: it returns a narrower dtype, or casts back (``frozen``)."""
        return self.out_dtype.itemsize < 8 or self.frozen > INTERNAL


def probe_points(ap: AuditProblem, samples: int, seed: int) -> tuple[torch.Tensor, np.ndarray | None]:
    """(N, 1) points of m, or (N, 1, L) sequences, and their weights (None: equal weights, sampled)."""
    m = ap.problem.sampling
    if m.fam.enumerable:
        x, w = m.fam.nodes(m, 0)[:2]
        return x, np.asarray(w, dtype=float)
    (pts,) = mc_points(m, 1, samples, seed, torch.float64, chunk_elements=samples)
    return pts.x.reshape(-1, 1), None


def log_probs_at(ap: AuditProblem, x: torch.Tensor, dtype: torch.dtype):
    p = ap.problem
    with torch.no_grad():
        ref = p.ref.build(dtype).log_prob(x)
        m = None if p.sampler is None else p.sampler.build(dtype).log_prob(x)
    logp = p.policy.build(dtype).log_prob(x).detach().requires_grad_()
    return logp, ref, m


def coefficients(term: UserTerm, ap: AuditProblem, x: torch.Tensor, dtype: torch.dtype = torch.float64,
                 nudge: float = 0.0):
    """(values (N, 1) as the function returned them, c (N, 1) float64): the term at points x and ∂L/∂ℓ,
    with logp moved by ``nudge``·max(|logp|, 1)."""
    logp, ref, m = log_probs_at(ap, x, dtype)
    if nudge:
        with torch.no_grad():
            logp = (logp + nudge * logp.abs().clamp(min=1.0)).requires_grad_()
    values = term.call(logp, ref, m)
    total = term.per_sample(logp, ref, m)
    if not total.requires_grad:
        raise KLGradError(f"no gradient reaches logp: {term.name} returns a value that does not depend on logp "
                          "through autograd (a .detach(), .item() or no-grad step?), so training would get a "
                          "silent zero gradient from it")
    (c,) = torch.autograd.grad(total.sum(), logp, allow_unused=True)
    if c is None:
        raise KLGradError(f"no gradient reaches logp: {term.name}'s output does not depend on logp")
    # A scalar S enters as the total numel·S (user_term), so c is the per-sample coefficient either way.
    return values.detach(), c.double()


def mass_of(mask: np.ndarray, w: np.ndarray | None, n: int) -> float:
    """m-mass of a mask over n points, each point's share the mean over its entries (a sequence's tokens)."""
    share = mask.reshape(n, -1).mean(axis=1)
    return float(share.mean()) if w is None else float(w @ share)


def probe(term: UserTerm, ap: AuditProblem, samples: int = PROBE_SAMPLES, seed: int = 0) -> Probe:
    """Evaluate ``term`` on problem ``ap`` (see the module docstring). On a sequence problem the masses are
    of (sequence, token) pairs: each sequence's m-mass shared equally among its tokens (per-sequence values
    count once per sequence)."""
    x, w = probe_points(ap, samples, seed)
    n = x.shape[0]
    values, c = coefficients(term, ap, x)
    v = values.double().numpy().ravel()
    scalar = values.dim() == 0
    if scalar:
        if not math.isfinite(float(v[0])):
            raise KLGradError(f"{term.name} returned {float(v[0])} on {ap.name}: expected a finite loss")
        negative, nonfinite = math.nan, 0.0
    else:
        finite = np.isfinite(v)
        if np.isnan(v).all():
            raise KLGradError(f"{term.name} returned NaN for every sample of {ap.name}: expected finite values")
        negative = mass_of(finite & (v < 0), w, n)
        nonfinite = mass_of(~finite, w, n)
    cn = c.numpy().ravel()
    zero = mass_of(cn == 0, w, n)
    zero_se = 0.0 if w is not None else math.sqrt(zero * (1 - zero) / n)
    frozen = _frozen(term, ap, x, values, cn)
    flat = mass_of((c == 0).numpy() & _flat(term, ap, x, values, c), w, n) / zero if zero > 0 else 0.0
    neg = (v < 0) & np.isfinite(v) if not scalar else np.zeros(1, bool)
    reward = not scalar and v.size == cn.size and bool(np.allclose(cn, v, rtol=1e-9, atol=1e-12, equal_nan=True))
    return Probe(zero, zero_se, negative, nonfinite, values.dtype, _f32_error(term, ap, x, cn), scalar, n,
                 frozen, _inner(cn) if frozen > INTERNAL else "", flat,
                 float(np.max(-v[neg])) if neg.any() else 0.0, reward, scalar and _sums_over_batch(term, ap, x))


# relative: the ratio is 1 or 2 up to the output dtype's rounding (a bfloat16 sum of 50 000 squared normals and
# of the same twice: 1.0% off 2, measured)
BATCH_SUM_TOL = 0.05


def _sums_over_batch(term: UserTerm, ap: AuditProblem, x: torch.Tensor) -> bool:
    """Whether a scalar output is a sum over the samples: given every sample twice, a mean keeps its value and a
    sum doubles, up to the rounding of a sum in the function's own dtype (float32, bf16 too), with no sampling
    noise either way."""
    logp, ref, m = log_probs_at(ap, x, torch.float64)
    with torch.no_grad():
        once = float(term.call(logp, ref, m))
        twice = float(term.call(*(None if t is None else torch.cat([t, t]) for t in (logp.detach(), ref, m))))
    finite = once != 0 and math.isfinite(once) and math.isfinite(twice)
    return finite and abs(twice - 2 * once) <= BATCH_SUM_TOL * abs(once)


def _inner(c: np.ndarray) -> str:
    """The narrowest of bfloat16, float16, float32 holding every finite nonzero c exactly, else ""."""
    live = torch.from_numpy(c[np.isfinite(c) & (c != 0)])
    if not live.numel():
        return ""
    return next((name for name, dt in (("bfloat16", torch.bfloat16), ("float16", torch.float16),
                                       ("float32", torch.float32)) if bool((live.to(dt).double() == live).all())), "")


def _flat(term: UserTerm, ap: AuditProblem, x: torch.Tensor, values: torch.Tensor, c: torch.Tensor) -> np.ndarray:
    """Per entry of c: is the value unchanged when the zero-gradient entries' logp move by FLAT_NUDGE?"""
    zero = c == 0
    logp, ref, m = log_probs_at(ap, x, torch.float64)
    with torch.no_grad():
        moved = logp + FLAT_NUDGE * logp.abs().clamp(min=1.0) * zero.reshape(logp.shape)
        after = term.call(moved, ref, m).detach()
    same = (after.double() == values.double()) | (after.isnan() & values.isnan())
    if same.dim() == 0:
        return np.full(tuple(c.shape), bool(same))
    n = x.shape[0]
    same, width = same.reshape(n, -1).numpy(), c.reshape(n, -1).shape[1]
    return np.broadcast_to(same, (n, width)).reshape(tuple(c.shape))  # per-sequence values: each token's


def _frozen(term: UserTerm, ap: AuditProblem, x: torch.Tensor, values: torch.Tensor, c64: np.ndarray) -> float:
    """Share of the points with c ≠ 0 where value and c are bitwise unchanged after a NUDGE of logp."""
    moved_values, moved_c = coefficients(term, ap, x, nudge=NUDGE)
    live = c64 != 0
    if not live.any():
        return 0.0
    n = x.shape[0]
    same_c = (moved_c.numpy().ravel() == c64).reshape(n, -1)
    v0, v1 = values.double().numpy().ravel(), moved_values.double().numpy().ravel()
    if v0.size == 1:  # a scalar: one value for every point
        same_v = np.full((n, 1), bool(v0[0] == v1[0]))
    else:  # per point: every one of its values (a sequence's tokens) unchanged
        same_v = (v0 == v1).reshape(n, -1).all(axis=1, keepdims=True)
    return float((same_c & same_v).ravel()[live].mean())


def _f32_error(term: UserTerm, ap: AuditProblem, x: torch.Tensor, c64: np.ndarray) -> float:
    try:
        _, c32 = coefficients(term, ap, x.float() if x.is_floating_point() else x, torch.float32)
    except (KLGradError, RuntimeError, TypeError, ValueError):
        return math.nan
    c32 = c32.numpy().ravel()
    ok = np.isfinite(c64) & np.isfinite(c32)
    scale = math.sqrt(float(np.mean(c64[ok] ** 2))) if ok.any() else 0.0
    if scale == 0:
        return math.nan
    return math.sqrt(float(np.mean((c32[ok] - c64[ok]) ** 2))) / scale


def pct(p: float) -> str:
    """A probability as a percentage with two significant digits, never in exponent form (0.64%, 0.0021%,
    12%, 100%)."""
    v = float(f"{100 * p:.2g}")
    return f"{v:.0f}%" if v >= 10 else np.format_float_positional(v, trim="-") + "%"
