"""Does the installed framework still compute what its catalogue row says? ``check_term``, ``live_rows``.

For each catalogue entry with a ``LiveSpec`` (``live/``): import the framework's function if it is installed
(never installs anything; a failed import is ``not installed`` with its reason), read the installed
distribution's version, then evaluate the function and the catalogue's ``fn`` — value and autograd gradient
w.r.t. logp — on the grid ``D_GRID`` of log-ratios d = logp − ref_logp, on-policy and, for entries that read
``old_logp``, at the sampler offsets ``OLD_OFFSETS``. Statuses:

    agrees          every value and gradient within the tolerance
    drift           some are not: the largest difference, its d, condition and value/gradient
    not installed   the module does not import (absent, or a dependency missing: the reason)
    error           the module lacks the function, or the call raised or returned another shape (one line)
    no callable     the framework computes the term inline (``live.NO_CALLABLE``): nothing to call

Inputs are float64 of shape (1, len(D_GRID)); every logp, ref_logp and old_logp and every d is exactly
representable in float32 (the larger log-prob is −1, the small |d| is 2^-20 ≈ 9.5e-7, "a little" past a clamp
edge is 2^-10), so a framework that casts to float32 sees the same d. Tolerance, per value and gradient:
|live − catalogue| ≤ tol·max(1, |catalogue|), tol = ``TOL_F64`` for float64 computation and ``TOL_F32`` where the
function computes in float32 (``LiveSpec.float32``, or a float32 result); both far below a changed clamp or cap.
NaN equals NaN; ±inf equal only itself.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.metadata
import io
import math
import sys

import torch

from .catalogue import FRAMEWORK_TERMS
from .live import LIVE_SPECS, NO_CALLABLE, LiveSpec
from .terms import FrameworkTerm

F64 = torch.float64
TOL_F64 = 1e-9  # float64 arithmetic: rounding ~1e-16 per operation, far below
# float32 arithmetic: a straight-through sum value + s − sg(s) rounds at ulp(s); OpenRLHF's s = w·d²/2 reaches
# 20·50²/2 ≈ 2.5e4 on this grid (ulp 2e-3), i.e. up to 1e-4 on a value of 10: 1e-3 leaves a factor 10
TOL_F32 = 1e-3
# a gradient off by at most ROUNDING·ε·|value| is rounding: two summands of the value's size, each rounded (≤ ε
# relative) and the value itself (exp, then a subtraction), bound the error by ~4ε|v|: 8 leaves a factor 2
ROUNDING = 8.0
LITTLE = 2.0 ** -10
SMALL = 2.0 ** -20  # ≈ 1e-6
_EDGES = [e + s for e in (10.0, 20.0) for s in (-LITTLE, 0.0, LITTLE)]
# 12 and 15 lie between the clamp edges, where k3 = e^|d| is still small enough (≤ 3.3e6) that the rounding rule
# below forgives at most ~1.6 in float32: a gradient cut off between 10 and 20 is caught there
D_GRID = sorted({0.0, SMALL, 0.5, 1.0, 2.5, 5.0, *_EDGES, 12.0, 15.0, 30.0, 50.0} | {-x for x in
                (SMALL, 0.5, 1.0, 2.5, 5.0, *_EDGES, 12.0, 15.0, 30.0, 50.0)})
TOP = -1.0  # the larger of logp and ref_logp at every grid point (old_logp = logp + 0.75 stays a log-prob)
OLD_OFFSETS = (0.75, -3.0)  # old_logp = logp + offset: w = π_θ/π_old = e^(−offset) ≈ 0.47 and ≈ 20.1 (past caps at 10)
STATUSES = ("agrees", "drift", "not installed", "error", "no callable")
COLUMNS = ["framework", "name", "live", "version", "status", "scaled_diff", "where", "tolerance", "detail"]


def grid(dtype=F64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(d, logp, ref_logp), each (1, len(D_GRID)): logp − ref_logp = d exactly, max(logp, ref_logp) = −1."""
    d = torch.tensor([D_GRID], dtype=dtype)
    logp = torch.where(d >= 0, torch.full_like(d, TOP), TOP + d)
    return d, logp, logp - d


def conditions(term: FrameworkTerm) -> list[tuple[str, float | None]]:
    """(label, old_logp offset or None for on-policy) for ``term``."""
    reads_old = term.uses_old or term.placement != "loss"  # reward penalties take their value at old_logp
    off = [(f"old = logp {'+' if o >= 0 else '−'} {abs(o):g}", o) for o in OLD_OFFSETS] if reads_old else []
    return [("on-policy", None), *off]


def _import(module_name: str):
    """The module, or the one-line reason it does not import. What it prints on import (stdout) is swallowed so
    that it cannot mix into the table."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return importlib.import_module(module_name)
    except ImportError as exc:
        return f"import {module_name}: {_one_line(exc)}"
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - a package whose import fails otherwise is unusable
        return f"import {module_name} raised {type(exc).__name__}: {_one_line(exc)}"


def load(spec: LiveSpec, imported: dict | None = None):
    """(function, "module:function", version), or raises ``_NotInstalled`` / ``_Broken`` with a one-line reason.
    ``imported`` caches ``_import`` by module name across the specs of one run (a failed import is not retried)."""
    imported = {} if imported is None else imported
    reasons = []
    for target in spec.targets:
        module_name, _, attr = target.partition(":")
        if module_name not in imported:
            imported[module_name] = _import(module_name)
        module = imported[module_name]
        if isinstance(module, str):
            reasons.append(module)
            continue
        fn = getattr(module, attr, None)
        if fn is None:
            raise _Broken(target, version(module_name), f"{module_name} has no {attr}")
        fn = getattr(fn, "_torchdynamo_orig_callable", fn)  # torch.compile'd (slime): the eager function it wraps
        return fn, target, version(module_name)
    raise _NotInstalled("; ".join(reasons))


class _NotInstalled(Exception):
    pass


class _Broken(Exception):
    def __init__(self, target: str, version_: str, reason: str):
        super().__init__(reason)
        self.target, self.version = target, version_


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


@functools.lru_cache(maxsize=1)
def _distributions() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()  # {top-level package: [distribution names]}, ~0.1 s: once


def version(module_name: str) -> str:
    """The installed distribution(s) providing the top-level package, "name version"; else ``__version__``."""
    top = module_name.split(".")[0]
    dists = _distributions().get(top, [])
    found = []
    for name in dict.fromkeys(dists):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found.append(f"{name} {importlib.metadata.version(name)}")
    if found:
        return ", ".join(found)
    v = getattr(sys.modules.get(top), "__version__", None)
    return f"{top}.__version__ {v} (no distribution metadata)" if v else "unknown (no distribution metadata)"


def _evaluate(fn, term: FrameworkTerm, spec: LiveSpec, offset: float | None):
    """(d, catalogue value, catalogue grad, live value, live grad, dtype of the live result) at one condition."""
    d, logp, ref = grid()
    old = None if offset is None else logp + offset
    cat_lp = logp.clone().requires_grad_(True)
    cat = term.fn(cat_lp, ref, old, None)
    live_lp = logp.clone().requires_grad_(True)
    with contextlib.redirect_stdout(io.StringIO()):
        out = spec.call(fn, live_lp, ref.clone(), None if old is None else old.clone(), None)
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"returned {type(out).__name__}, not a tensor")
    if out.shape != logp.shape:
        raise ValueError(f"returned shape {tuple(out.shape)} for inputs of shape {tuple(logp.shape)}")
    return d[0], cat.detach()[0], _grad(cat, cat_lp), out.detach().to(F64)[0], _grad(out, live_lp), out.dtype


def _grad(out: torch.Tensor, lp: torch.Tensor) -> torch.Tensor:
    """Per-token ∂out/∂logp (each token's value depends on its own logp only); 0 where out carries no grad."""
    g = torch.autograd.grad(out.sum(), lp, allow_unused=True)[0] if out.requires_grad else None
    return torch.zeros_like(lp.detach())[0] if g is None else g.detach().to(F64)[0]


def scaled_diff(live: torch.Tensor, cat: torch.Tensor) -> torch.Tensor:
    """|live − catalogue| / max(1, |catalogue|) per point: 0 where equal (NaN = NaN, inf = inf), inf where only
    one is NaN or infinite."""
    equal = (live == cat) | (live.isnan() & cat.isnan())
    s = ((live - cat).abs() / cat.abs().clamp(min=1.0)).nan_to_num(nan=math.inf)
    return torch.where(equal, torch.zeros_like(s), s)


def compare(fn, term: FrameworkTerm, spec: LiveSpec) -> dict:
    """``agrees`` or ``drift`` for a loaded function: ``scaled_diff`` is the largest |Δ|/max(1, |catalogue|) over
    every value and gradient, ``where`` names that point when it exceeds the tolerance. Raises if the call does.

    A gradient that differs by no more than rounding of the row's value v, |Δg| ≤ 8·ε·|v| (ε = 2^-24 in float32,
    2^-53 in float64), agrees: where the product rule of a weighted term cancels two summands of v's size, w·v +
    w·v' (≈ 1e23 − 1e23 for w·k3 at d = −50), only that rounding is left, in the row and the framework alike
    (``ROUNDING``). ``tolerance`` says how many points agreed only so; a changed clamp or weight moves g by far
    more."""
    evaluated = [(label, offset, *_evaluate(fn, term, spec, offset)) for label, offset in conditions(term)]
    f32 = spec.float32 or any(e[-1] != F64 for e in evaluated)
    tol = TOL_F32 if f32 else TOL_F64
    worst, where, skipped = 0.0, "", 0
    eps = 2.0 ** (-24 if f32 else -53)
    for label, offset, d, cat_v, cat_g, live_v, live_g, _ in evaluated:
        for what, live, cat in (("value", live_v, cat_v), ("gradient", live_g, cat_g)):
            s = scaled_diff(live, cat)
            if what == "gradient":
                rounding = (s > tol) & ((live - cat).abs() <= ROUNDING * eps * cat_v.abs())
                skipped += int(rounding.sum())
                s = torch.where(rounding, torch.zeros_like(s), s)
            i = int(s.argmax())
            if float(s[i]) > worst:
                worst = float(s[i])
                where = (f"{what} at d = {float(d[i]):g} ({label}): live {float(live[i]) + 0.0:.6g}, "
                         f"catalogue {float(cat[i]) + 0.0:.6g}")  # + 0.0: −0 prints as 0
    tolerance = f"{tol:g}·max(1, abs(catalogue)), {'float32' if f32 else 'float64'}"
    if skipped:
        tolerance += f"; {skipped} gradient point(s) agree within rounding of the value ({ROUNDING:g}·ε·abs(value))"
    if worst <= tol:
        return {"status": "agrees", "scaled_diff": worst, "where": "", "tolerance": tolerance}
    return {"status": "drift", "scaled_diff": worst, "where": where, "tolerance": tolerance}


def check_term(term: FrameworkTerm, imported: dict | None = None) -> dict:
    """One row (``COLUMNS``) for a catalogue entry (``imported``: see ``load``)."""
    row = {"framework": term.framework, "name": term.name, "live": "", "version": "", "status": "",
           "scaled_diff": math.nan, "where": "", "tolerance": "", "detail": ""}
    spec = LIVE_SPECS.get(term.name)
    if spec is None:
        reason = NO_CALLABLE.get(term.framework, "no live spec written for this entry (kl_grad/frameworks/live/)")
        return {**row, "status": "no callable", "detail": reason}
    row["live"] = spec.live
    try:
        fn, row["live"], row["version"] = load(spec, imported)
    except _NotInstalled as exc:
        return {**row, "status": "not installed", "detail": str(exc)}
    except _Broken as exc:
        return {**row, "live": exc.target, "version": exc.version, "status": "error", "detail": str(exc)}
    try:
        result = compare(fn, term, spec)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - the framework's call failing is a finding, one line
        return {**row, "status": "error", "detail": f"the call raised {type(exc).__name__}: {_one_line(exc)}"}
    return {**row, **result, "detail": spec.source}


def live_rows(terms: list[FrameworkTerm] | None = None) -> list[dict]:
    """``check_term`` for ``terms`` (default: every catalogue entry), in catalogue order."""
    imported: dict = {}
    return [check_term(t, imported) for t in (list(FRAMEWORK_TERMS.values()) if terms is None else terms)]
