"""The audit in a trainer's dtypes (``audit(fn, dtypes=["bfloat16"])``, ``kl-grad audit --dtype bf16``).

For float64 (the reference run, always) and each requested dtype, with the inputs cast as a trainer casts
them (``casts.CastTerm``: logp, ref_logp, old_logp cast, the gradient taken w.r.t. the cast leaf):

- the grid (``casts.GRID``, d = logp − ref_logp from 0 to ±100): the value and ∂L/∂ℓ at each d;
- every battery problem's points (the probe's: 50,000 seeded samples, or the enumerated support), the
  m-mass on which (float64 means the function computed in float64 at the same rounded inputs, so what the
  input rounding alone does, e.g. two log-probs that round to the same bfloat16 value, d = 0, is not
  counted against the function)
    nonfinite value / gradient   NaN, or ±inf where float64 gives a value the dtype can hold (so not k3's
                                 e^100 in float32, which no float32 computation can return finite);
                                 e.g. clamp(exp(x)) whose backward multiplies 0 by inf (OpenRLHF PR #1335)
    negative                     below 0 where float64 gives ≥ 0 (cancellation: float32 e^(−d) − 1 + d
                                 returns −5.96e-8 at d = 1e-6; unsloth-zoo PR #1240)
    vanished                     ∂L/∂ℓ exactly 0 where float64's is not (underflow or cancellation)
    overflow                     ±inf value or gradient where float64's exceeds the dtype's range (k3's e^20
                                 in float16: a trainer in that dtype gets inf there, whatever the function)
- the bias the cast adds (enumerable problems, exact): ‖E[g]_dtype − E[g]_float64‖ / ‖E[g]_float64‖ with
  E[g] = E_m[Σ_t c_t ∇θ ℓ_t] by enumeration of the support, c_t = ∂L/∂ℓ_t as the dtype run computes it and
  ∇θ ℓ_t in float64 in both; beside it the rounding floor: the same measure with the inputs rounded to the
  dtype but the function computed in float64 (what rounding the inputs alone adds). Continuous problems
  get none: their Monte-Carlo or quadrature error would swamp it.

Each dtype's findings are one line each (``findings``); a dtype the function cannot run in is one line.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ...errors import KLGradError, split_names
from ..gradient_table import exact_gradient_moments
from .battery import AuditProblem
from .casts import CastTerm, at_points, grid_rows
from .probe import PROBE_SAMPLES, log_probs_at, mass_of, pct, probe_points
from .user_term import UserTerm

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}
CHECKS = ("nonfinite_value", "nonfinite_grad", "negative", "vanished", "overflow")


def parse_dtypes(names) -> list[str]:
    """``"float32,bf16"`` or a list → canonical names (``DTYPES``); an unknown one is one line naming them."""
    out = []
    for name in split_names(names or []):
        key = ALIASES.get(name.lower(), name.lower())
        if key not in DTYPES:
            allowed = ", ".join([*DTYPES, *ALIASES])
            raise KLGradError(f"unknown dtype {name!r}; expected one of {allowed} (comma-separated, e.g. "
                              "--dtype float32,bfloat16)")
        if key not in out:
            out.append(key)
    if not out:
        raise KLGradError(f"no dtype given; expected one or more of {', '.join(DTYPES)}")
    return out


def unit_roundoff(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).eps / 2


def _flags(v64, c64, v, c, dtype) -> dict[str, np.ndarray]:
    """Boolean arrays (per point, values and c in the function's layout) of the ``CHECKS``: (v, c) of the
    dtype run against (v64, c64), the function in float64 at the same rounded inputs."""
    big = torch.finfo(dtype).max

    def bad(x, ref):
        return np.isnan(x) | (np.isinf(x) & (np.abs(ref) <= big))

    if dtype == torch.float64:
        none = np.zeros(v64.shape, bool)
        return {"nonfinite_value": ~np.isfinite(v64), "nonfinite_grad": ~np.isfinite(c64), "negative": none,
                "vanished": np.zeros(c64.shape, bool), "overflow": none}
    out_of_range = _either(np.isinf(v) & (np.abs(v64) > big), np.isinf(c) & (np.abs(c64) > big))
    return {"nonfinite_value": bad(v, v64), "nonfinite_grad": bad(c, c64), "negative": (v < 0) & (v64 >= 0),
            "vanished": (c == 0) & (c64 != 0) & np.isfinite(c64), "overflow": out_of_range}


def _either(value_flag: np.ndarray, grad_flag: np.ndarray) -> np.ndarray:
    """value_flag | grad_flag, both (n, entries) or 0-d; per point (any of its entries) where the value's and
    the gradient's entries differ in number (a per-sequence value beside per-token gradients)."""
    if value_flag.shape == grad_flag.shape or value_flag.ndim == 0 or grad_flag.ndim == 0:
        return value_flag | grad_flag
    return value_flag.any(axis=-1, keepdims=True) | grad_flag.any(axis=-1, keepdims=True)


def _problem_masses(term: UserTerm, ap: AuditProblem, dtypes: list[torch.dtype], seed: int) -> dict:
    """{dtype: {check: m-mass}} on the probe's points of ``ap``."""
    x, w = probe_points(ap, PROBE_SAMPLES, seed)
    n = x.shape[0]
    logp, ref, old = log_probs_at(ap, x, torch.float64)
    out = {}
    def per_point(t: torch.Tensor) -> np.ndarray:  # (n, entries): the function's layout and c's may differ
        return t.numpy() if t.dim() == 0 else t.reshape(n, -1).numpy()  # (a 0-d scalar loss stays 0-d)

    for dt in dtypes:
        v64, c64 = (per_point(t) for t in at_points(term, logp, ref, old, dt, floor=True))
        v, c = (v64, c64) if dt == torch.float64 else (per_point(t) for t in at_points(term, logp, ref, old, dt))
        flags = _flags(v64, c64, v, c, dt)
        if v.ndim == 0:  # a scalar loss: one value for every point
            flags = {k: (np.full(n, bool(f)) if f.ndim == 0 else f) for k, f in flags.items()}
        out[dt] = {k: mass_of(f, w, n) for k, f in flags.items()}
    return out


def _bias(term: UserTerm, ap: AuditProblem, dtypes: list[torch.dtype]) -> dict:
    """{dtype: (relative bias, rounding floor)} of the exact expected gradient (enumerable problems)."""
    base = CastTerm(term, torch.float64)
    cases = [base] + [CastTerm(term, dt, floor) for dt in dtypes for floor in (False, True)]
    moments = exact_gradient_moments(ap.problem, cases)
    g64 = moments[base.key].mean
    scale = float(np.linalg.norm(g64))
    out = {}
    for dt in dtypes:
        rel = [float(np.linalg.norm(moments[CastTerm(term, dt, f).key].mean - g64)) / scale if scale > 0 else math.nan
               for f in (False, True)]
        out[dt] = tuple(rel)
    return out


def dtype_report(term: UserTerm, aps: list[AuditProblem], names: list[str], seed: int = 0) -> list[dict]:
    """One dict per dtype (float64 first): ``dtype``, ``unit_roundoff``, ``grid`` (rows d, value, grad),
    ``problems`` (problem, the ``CHECKS`` masses, rel_bias, rounding_floor) and ``findings`` (lines)."""
    dts = [torch.float64] + [DTYPES[n] for n in names]
    reports = {dt: {"dtype": str(dt).replace("torch.", ""), "unit_roundoff": unit_roundoff(dt), "grid": [],
                    "problems": [], "findings": []} for dt in dts}
    for dt in list(dts):
        try:
            reports[dt]["grid"] = grid_rows(term, dt)
        except KLGradError as exc:
            reports[dt]["findings"].append(f"{reports[dt]['dtype']}: not run: {exc}")
            dts.remove(dt)
    for ap in aps:
        masses = _problem_masses(term, ap, dts, seed)
        # per dtype: one whose gradient is NaN/inf somewhere has no expected gradient (its finding says why),
        # and none has a bias where the float64 reference itself has none
        finite = [dt for dt in dts if dt != torch.float64 and not masses[dt]["nonfinite_grad"]]
        reference = torch.float64 in masses and not masses[torch.float64]["nonfinite_grad"]
        enumerable = not ap.continuous and reference and finite
        bias = _bias(term, ap, finite) if enumerable else {}
        for dt in dts:
            rel, floor = bias.get(dt, (math.nan, math.nan))
            reports[dt]["problems"].append({"problem": ap.name, **masses[dt], "rel_bias": rel, "rounding_floor": floor})
    out = list(reports.values())
    mark_grid([r for r in out if r["grid"]])
    for r in out:
        r["findings"] += findings(r)
    return out


WHAT = {  # check: (what it is, the likely cause)
    "nonfinite_grad": ("NaN/inf gradient", "e.g. a clamp or mask after exp(x) whose backward multiplies 0 by "
                       "exp(x) = inf (OpenRLHF PR #1335); bound x before the exp"),
    "nonfinite_value": ("NaN/inf value", "an overflow the float64 run does not have"),
    "negative": ("negative values where float64 gives ≥ 0", "cancellation, as e^(−d) − 1 + d near d = 0 in "
                 "unsloth-zoo PR #1240; expm1(−d) + d keeps it ≥ 0"),
    "vanished": ("gradient exactly 0 where float64's is not", "underflow or cancellation, e.g. 1 − e^(−d) "
                 "rounding to 0 for small d: those tokens get no KL gradient"),
    "overflow": ("±inf value or gradient beyond the dtype's range", "float64 gives a number larger than the "
                 "dtype's largest: a trainer computing in this dtype gets inf there; bound d or compute in float32"),
}
# float64 is the reference run: its own NaN/inf is the function's, not a cast's
FLOAT64_WHY = {"nonfinite_value": "the function itself returns NaN/inf there, in float64 too"}


def findings(report: dict) -> list[str]:
    """One line per check that fires for this dtype (grid points and problem masses), plus a cast bias
    more than 10× its rounding floor and above 10 unit roundoffs."""
    name, lines = report["dtype"], []
    for check, (what, why) in WHAT.items():
        why = FLOAT64_WHY.get(check, why) if name == "float64" else why
        at = [r["d"] for r in report["grid"] if r.get(check)]
        on = [f"{p['problem']} {pct(p[check])}" for p in report["problems"] if p[check] > 0]
        if at or on:
            where = "; ".join(x for x in (f"at d = {', '.join(f'{d:g}' for d in at)}" if at else "",
                                          f"on {', '.join(on)} of the mass" if on else "") if x)
            # beyond the dtype's range is the dtype's limit, not the function's failure: a "range" line
            lines.append(f"range: {name} {what} {where} ({why})" if check == "overflow"
                         else f"{name}: {what} {where} ({why})")
    u = report["unit_roundoff"]
    big = [p for p in report["problems"] if p["rel_bias"] > max(10 * p["rounding_floor"], 10 * u)]
    if big:
        lines.append(f"{name}: the cast biases the expected gradient beyond the inputs' rounding: "
                     + ", ".join(f"{p['problem']} {p['rel_bias']:.2g} (rounding floor {p['rounding_floor']:.2g})"
                                 for p in big) + " relative to float64 (exact enumeration)")
    return lines


def mark_grid(reports: list[dict]) -> None:
    """Set the ``CHECKS`` flags on each grid row against float64 at the same rounded inputs."""
    for rep in reports:
        dt = DTYPES.get(rep["dtype"], torch.float64)
        for r in rep["grid"]:
            flags = _flags(*(np.array(r[k]) for k in ("value_floor", "grad_floor", "value", "grad")), dt)
            r.update({k: bool(f) for k, f in flags.items()})
