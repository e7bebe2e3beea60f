"""Gradient-coefficient curves c(d): the per-sample score coefficient of a KL term, read off autograd.

On-policy, with samples x ~ π_θ that autograd does not differentiate through and a constant
ref_logp, every KL term's per-sample gradient is c(d)·s, where d = log π_θ(x) − log π_ref(x) and
s = ∇log π_θ(x): a placement's surrogate depends on θ only through logp = log π_θ(x) (the weight
w = exp(logp − sg(logp)) has value 1 and gradient s). So c = ∂surrogate_i/∂logp_i, one backward
of the sum over a grid of d. This is the framing of Liu et al., "Rethinking KL Regularization in RLHF:
From Value Estimation to Gradient Optimization" (arXiv 2510.01555), which reads "k_n as loss" through
its equivalent coefficient in "k_n in reward".

What c(d) implies for the expected gradient E_{π_θ}[c(d)·s] (E_{π_θ}[s] = 0 removes constants):

    c(d) = d + b          E[c·s] = ∇KL(policy‖ref)     (∇KL(π_θ‖π_ref) = E_{π_θ}[d·s])
    c(d) = 1 − e^{−d} + b E[c·s] = ∇KL(ref‖policy)     (∇KL(π_ref‖π_θ) = −E_{π_ref}[s] = E_{π_θ}[(1 − r)·s])
    c(d) = b              E[c·s] = 0

for any constant b. The criterion is also necessary: if c(d) − d is not constant, a two-outcome
categorical policy (logits θ, s = e_j − π) whose outcomes have log-ratios a and b with
c(a) − a ≠ c(b) − b has E[(c − d)·s]_1 = π_1·π_2·((c(a) − a) − (c(b) − b)) ≠ 0. ``coefficient_table``
fits c = α·d + β·(1 − e^{−d}) + γ on the grid and reports E[c·s] = α·∇KL(policy‖ref) +
β·∇KL(ref‖policy) when the fit is exact; it can only see the grid points (a kink between two
points, such as a clamp, is invisible), so a built-in estimator with a kink (registry ``kinked``: a clamp
or |·|, or a ``clamp_active`` clamp) is also fitted on ``KINK_PROBE`` (d = −60..60, which reaches every
registered clamp) and labelled by that fit, with a warning when it differs from the grid's.
"""

from __future__ import annotations

import inspect
import math
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from ...directions import NONE, POLICY_REF, REF_POLICY, ZERO
from ...errors import KLGradError, split_names
from ...estimators import ESTIMATORS, get_estimator
from ...placements import PLACEMENTS, get_placement, surrogate
from ..threads import SMALL

AS_WRITTEN = "as written"  # the placement column of a user function: its output is the loss term itself
FIT_RTOL = 1e-9  # an exact fit: residual below this fraction of the coefficients' scale
# where kinked built-ins are also fitted: every registered clamp (|d| ≤ 20, |k| ≤ 10) and |·| kink lies inside
KINK_PROBE = np.linspace(-60.0, 60.0, 481)
LOGP_RTOL = 1e-9  # c(d) at two values of log π_θ must agree to this (relative), else the term uses logp on its own
MAX_GRID = 100_001
PROBLEM_DEPENDENT = "problem-dependent"  # c is no α·d + β·(1 − e^{−d}) + γ on the grid: some problem is biased
SHOWN = 9  # grid points shown in the markdown view (evenly spaced by index; CSV/JSON carry all)
COLUMNS = ["estimator", "placement", "d", "c", "c_policy_ref", "c_ref_policy", "expected_gradient", "follows",
           "warning"]


def parse_grid(text: str) -> np.ndarray:
    """``"LO:HI:STEP"`` → the float64 grid LO, LO + STEP, …, up to HI (included when on the grid).

    Values are rounded to 12 decimals, so ``-4:4:0.1`` holds 0.3 rather than 0.30000000000000004.
    """
    parts = str(text).split(":")
    try:
        lo, hi, step = (float(p) for p in parts) if len(parts) == 3 else (math.nan,) * 3
    except ValueError:
        lo = hi = step = math.nan
    if not all(math.isfinite(v) for v in (lo, hi, step)):
        raise KLGradError(f"grid {text!r} must be LO:HI:STEP with finite numbers, e.g. -4:4:0.25")
    if not (hi > lo and step > 0):
        raise KLGradError(f"grid {text!r} needs LO < HI and STEP > 0, e.g. -4:4:0.25")
    count = math.floor((hi - lo) / step * (1 + 1e-12) + 1e-9) + 1
    if count < 4 or count > MAX_GRID:
        raise KLGradError(f"grid {text!r} has {count} points; allowed: 4 to {MAX_GRID} (e.g. -4:4:0.25, 33 points)")
    return np.round(lo + step * np.arange(count), 12)


def _wants_old_logp(fn: Callable) -> bool:
    """Does ``fn`` take a third positional argument without a default (``fn(logp, ref_logp, old_logp)``)?"""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # builtins without a signature: call with two
        return False
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 3 and positional[2].default is inspect.Parameter.empty


def _call(fn: Callable, logp: torch.Tensor, ref_logp: torch.Tensor, three: bool) -> torch.Tensor:
    try:
        out = fn(logp, ref_logp, logp.detach()) if three else fn(logp, ref_logp)
    except KLGradError:
        raise
    except Exception as exc:  # the user's function failed: one line with its own message, as kl-grad audit says it
        call = "fn(logp, ref_logp, old_logp)" if three else "fn(logp, ref_logp)"
        raise KLGradError(f"the KL term raised {type(exc).__name__}: {exc} (called as {call} with float64 tensors "
                          f"of shape {tuple(logp.shape)})") from None
    if not isinstance(out, torch.Tensor):
        raise KLGradError(f"the KL term returned {type(out).__name__}; expected a tensor (per-sample values of "
                          f"logp's shape, or a scalar loss)")
    if out.shape not in (logp.shape, torch.Size([])) and out.numel() != 1:
        raise KLGradError(f"the KL term returned shape {tuple(out.shape)} for inputs of shape {tuple(logp.shape)}; "
                          "expected per-sample values of that shape or a scalar loss")
    if not out.requires_grad:
        raise KLGradError("the KL term's output carries no gradient with respect to logp (does it detach logp, "
                          "or compute under torch.no_grad()?)")
    return out


def _coefficients_at(fn: Callable, d: np.ndarray, logp_value: float, three: bool
                     ) -> tuple[np.ndarray, torch.dtype, bool]:
    """c_i = ∂fn_i/∂logp_i at logp = ``logp_value``, ref_logp = logp − d_i (float64 inputs).

    A per-sample output takes one backward of its sum. A scalar (an already reduced loss: mean, sum, ...)
    is evaluated one sample at a time, as a batch of one, where mean and sum agree (for a mean over n
    samples c_i = n·∂L/∂logp_i; a batch of one needs no guess of the reduction). Returns (c, the output's
    dtype, whether the output was per-sample).
    """
    dd = torch.as_tensor(d, dtype=torch.float64)
    logp = torch.full_like(dd, logp_value).requires_grad_(True)
    out = _call(fn, logp, logp.detach() - dd, three)
    if out.shape == logp.shape:
        (grad,) = torch.autograd.grad(out.sum(), logp, allow_unused=True)
        return (np.zeros(len(d)) if grad is None else grad.detach().numpy().copy()), out.dtype, True
    coeffs = np.empty(len(d))
    for i in range(len(d)):
        one = logp[i : i + 1].detach().clone().requires_grad_(True)
        out = _call(fn, one, one.detach() - dd[i : i + 1], three)
        (grad,) = torch.autograd.grad(out.sum(), one, allow_unused=True)
        coeffs[i] = 0.0 if grad is None else float(grad[0])
    return coeffs, out.dtype, False


def _fit(d: np.ndarray, c: np.ndarray) -> tuple[str, str]:
    """(expected_gradient, follows) from an exact fit c = α·d + β·(1 − e^{−d}) + γ on the grid (module docstring)."""
    if not np.isfinite(c).all():
        return "unavailable: c is not finite on the whole grid", NONE
    basis = np.stack([d, -np.expm1(-d), np.ones_like(d)], axis=1)
    size = 1.0 + np.abs(basis[:, :2]).sum(axis=1) + np.abs(c)  # each point's own scale: e^{−d} spans decades
    coef, *_ = np.linalg.lstsq(basis / size[:, None], c / size, rcond=None)
    exact = [k for k in (np.array([_snap(float(v)) for v in coef]), coef)
             if (np.abs(basis @ k - c) <= FIT_RTOL * size).all()]
    if not exact:
        return PROBLEM_DEPENDENT, NONE
    coef = exact[0]
    alpha, beta = coef[:2]
    terms = [(v < 0, f"{'' if abs(v) == 1 else f'{abs(v):.6g}·'}∇KL({name})")
             for v, name in ((alpha, "policy‖ref"), (beta, "ref‖policy")) if v != 0]
    text = "".join(f"{('−' if neg else '') if i == 0 else (' − ' if neg else ' + ')}{t}"
                   for i, (neg, t) in enumerate(terms)) or "0"
    follows = (ZERO if not terms else POLICY_REF if (alpha, beta) == (1.0, 0.0)
               else REF_POLICY if (alpha, beta) == (0.0, 1.0) else NONE)
    return text, follows


def _snap(v: float) -> float:
    """A fitted weight within the fit's rounding of a whole number (0, ±1, ...) is that number."""
    return float(round(v)) if abs(v - round(v)) <= 1e3 * FIT_RTOL * max(1.0, abs(v)) else v


def _rows(name: str, placement: str, d: np.ndarray, fn: Callable, kink: str | None = None) -> pd.DataFrame:
    """One term's rows; for ``kink`` (a kinked estimator's formula) the label is fitted on ``KINK_PROBE`` too."""
    three = _wants_old_logp(fn)
    # log π_θ = 0, log π_ref = −d: the log-ratio the function sees is d exactly (another base would round it,
    # e.g. (−31 − 1e-9) loses 7 of d's digits); a second base shows a function that uses log π_θ beyond d.
    base = 0.0
    c, dtype, per_sample = _coefficients_at(fn, d, base, three)
    c_other, *_ = _coefficients_at(fn, d, base - 2.0, three)
    warnings = []
    if per_sample:  # the grid split in two batches must give the same c, unless outputs depend on other samples
        half = len(d) // 2
        split = np.concatenate([_coefficients_at(fn, part, base, three)[0] for part in (d[:half], d[half:])])
        with np.errstate(invalid="ignore"):
            coupled = np.abs(split - c) > LOGP_RTOL * (1 + np.abs(c))
        if coupled.any():
            warnings.append("each output depends on the other samples in the batch (c differs when the grid is "
                            "split in two batches): c is of this grid as one batch")
    if dtype != torch.float64:
        warnings.append(f"the function computes in {str(dtype).replace('torch.', '')} (inputs were float64)")
    with np.errstate(invalid="ignore"):
        moved = np.abs(c - c_other) > LOGP_RTOL * (1 + np.abs(c))
    if moved.any():
        warnings.append(f"c at log π_θ = {base:g} and {base - 2:g} differ by up to {np.nanmax(abs(c - c_other)):.3g}"
                        " (it uses log π_θ beyond d, or rounds in lower precision); c shown at the first")
    expected, follows = _fit(d, c)
    if kink is not None:  # a clamp or |·| acts where the grid may not reach (openrlhf:k2 clamps at |d| ≥ √20):
        probe = np.union1d(d, KINK_PROBE)  # the label is the fit on a wide grid that reaches every registered kink
        wide_expected, wide_follows = _fit(probe, _coefficients_at(fn, probe, base, three)[0])
        if wide_expected != expected:
            warnings.append(f"kinked estimator ({kink}): c changes form beyond or between this grid's points "
                            f"(on d = −60..60 the fit says {wide_expected}; this grid's alone says {expected})")
        expected, follows = wide_expected, wide_follows
    group = "; ".join(warnings)
    row_warning = [("; ".join([group, "gradient not finite here"]).lstrip("; ") if not np.isfinite(v) else group)
                   for v in c]
    return pd.DataFrame({"estimator": name, "placement": placement, "d": d, "c": c + 0.0, "c_policy_ref": d,
                         "c_ref_policy": -np.expm1(-d), "expected_gradient": expected, "follows": follows,
                         "warning": row_warning})[COLUMNS]


def _builtin(estimator, placement) -> Callable:
    def term(logp, ref_logp):
        return surrogate(estimator, placement, logp, ref_logp)

    return term


@SMALL
def coefficient_table(grid: Sequence[float] | np.ndarray | str = "-4:4:0.25",
                      estimators: Sequence[str] | str | None = None, placements: Sequence[str] | str | None = None,
                      fn: Callable | None = None, name: str | None = None) -> pd.DataFrame:
    """Tidy table of c(d) = ∂surrogate_i/∂logp_i (autograd, float64, on-policy) on ``grid``.

    ``grid``: d values (array-like of shape (G,), at least 4 distinct) or ``"LO:HI:STEP"``.
    Built-ins: every ``estimators`` × ``placements`` (default: all registered), through
    ``kl_grad.placements.surrogate``. ``fn``: instead, a user's KL term ``fn(logp, ref_logp)`` or
    ``fn(logp, ref_logp, old_logp)`` (a third positional parameter without default; old_logp = sg(logp),
    on-policy) returning per-sample values of logp's shape (G,) or a scalar loss (then evaluated one
    sample at a time); it is differentiated exactly as written (placement column "as written"; bind
    extra arguments with ``functools.partial``). ``name`` labels its rows (default ``fn.__name__``).

    Columns: estimator, placement, d, c; ``c_policy_ref`` = d and ``c_ref_policy`` = 1 − e^{−d}, the
    coefficients whose E_{π_θ}[c·s] is ∇KL(policy‖ref) and ∇KL(ref‖policy) (each up to an added
    constant, which E[s] = 0 removes); ``expected_gradient`` E_{π_θ}[c·s] from an exact fit
    c = α·d + β·(1 − e^{−d}) + γ on the grid (else, and for a kinked estimator, "problem-dependent");
    ``follows`` ∈ {policy||ref, ref||policy, zero, none}; ``warning``. One row per grid point per term, G·terms rows.
    """
    d = parse_grid(grid) if isinstance(grid, str) else np.asarray(grid, dtype=np.float64).ravel()
    if len(np.unique(d)) < 4 or not np.isfinite(d).all():
        raise KLGradError("the grid needs at least 4 distinct finite d values (e.g. -4:4:0.25)")
    if fn is not None:
        if estimators or placements:
            raise KLGradError("give either fn (a user's KL term, differentiated as written) or estimators/"
                              "placements, not both")
        if not callable(fn):
            raise KLGradError(f"fn must be callable, got {type(fn).__name__}")
        return _rows(name or getattr(fn, "__name__", "fn"), AS_WRITTEN, d, fn).reset_index(drop=True)
    ests = [get_estimator(n) for n in split_names(estimators)] if estimators else list(ESTIMATORS.values())
    pls = [get_placement(n) for n in split_names(placements)] if placements else list(PLACEMENTS.values())
    if not ests or not pls:
        raise KLGradError("name at least one estimator and one placement")
    return pd.concat([_rows(e.name, p.name, d, _builtin(e, p), _kink(e)) for e in ests for p in pls],
                     ignore_index=True)


def _kink(estimator) -> str | None:
    """The formula of an estimator with a kink (registry ``kinked``: clamps, |·|; or a clamp with ``clamp_active``)."""
    return estimator.formula if estimator.kinked or estimator.clamp_active is not None else None


def shown_d(table: pd.DataFrame) -> np.ndarray:
    """The d values the markdown view shows: ``SHOWN`` grid points evenly spaced by index (all of a short grid)."""
    d = np.unique(table["d"].to_numpy(float))
    return d if len(d) <= SHOWN else d[np.unique(np.linspace(0, len(d) - 1, SHOWN).round().astype(int))]


def wide(table: pd.DataFrame) -> pd.DataFrame:
    """One row per term (the two reference coefficients first), c at ``shown_d`` in columns ``d=…``."""
    d = shown_d(table)
    first = table.drop_duplicates(["estimator", "placement"])
    pick = table[table["d"].isin(d)]
    refs = pick.drop_duplicates("d").set_index("d")
    rows = [{"estimator": "c = d", "placement": "reference", **{f"d={x:g}": refs.loc[x, "c_policy_ref"] for x in d},
             "expected_gradient": "∇KL(policy‖ref)"},
            {"estimator": "c = 1 − e^{−d}", "placement": "reference",
             **{f"d={x:g}": refs.loc[x, "c_ref_policy"] for x in d}, "expected_gradient": "∇KL(ref‖policy)"}]
    for _, head in first.iterrows():
        block = pick[(pick["estimator"] == head["estimator"]) & (pick["placement"] == head["placement"])]
        cells = dict(zip((f"d={x:g}" for x in block["d"]), block["c"]))
        rows.append({"estimator": head["estimator"], "placement": head["placement"], **cells,
                     "expected_gradient": head["expected_gradient"]})
    out = pd.DataFrame(rows)
    warned = table.groupby(["estimator", "placement"], sort=False)["warning"].agg(
        lambda w: "; ".join(dict.fromkeys(x for x in w if x)))
    if warned.any():
        out["warning"] = [""] * 2 + [warned.get((e, p), "") for e, p in zip(out["estimator"][2:], out["placement"][2:])]
    return out
