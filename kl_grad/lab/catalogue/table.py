"""The framework catalogue, measured: which KL gradient each framework's term produces in expectation.

For every ``kl_grad.frameworks`` entry and every problem of a small battery, the expected autograd gradient
g = E_m[∇θ surrogate] of the term's per-token surrogate (``FrameworkTerm.surrogate``: the loss term exactly as
the framework forms it, or w·sg(value) for a reward penalty) is compared with ∇θ KL(policy‖ref) and
∇θ KL(ref‖policy) (closed forms, ``Problem.true_gradients``). Each sample is a one-token sequence, except on the
Markov chains (``markov-*``: the audit's sequence problems, 81 and 64 sequences enumerated exactly), where the
truth is the gradient of the sequence-level KL and each sequence's surrogate is
``FrameworkTerm.sequence_surrogate`` (loss terms summed over tokens; reward terms with reward-to-go): a term
unbiased for one token can follow nothing there (issue 12; the audit's ``follows_sequence``).

    exact   categorical problems (enumeration: exact for clamped terms too) and smooth terms on continuous
            problems (the lab's quadrature, ``quadrature.exact_moments``, with its tail analysis and stated
            error; a moment that does not settle is refused as NaN)
    mc      clamped or kinked terms on continuous problems: quadrature on a kinked integrand can claim
            convergence wrongly, so they get seeded Monte Carlo (``trials`` × ``samples``) with standard errors

``follows`` is the direction whose gradient g equals in every parameter by the lab's own rule
(``statistics.matches``: exact rows within their stated error, MC rows within t·se at false-alarm rate
6.3e-5 per parameter), ``zero`` when g is 0 within that tolerance, else ``none`` (``unknown`` when refused;
``unresolved`` when g is within tolerance of both directions although they differ: MC error too large to tell,
as for heavy-tailed k3 gradients on the far Gaussian).
``rel_bias_vs_<dir>`` = ‖g − t‖/‖t‖ (0 when it follows that direction exactly: below its own error);
``err_norm`` = ‖stated error‖ (exact) or ‖se‖ (MC); ``zero_grad_mass`` = the probability mass (enumeration) or
fraction of samples (MC) where the per-sample gradient ∂surrogate/∂log π_θ is 0 up to float64 rounding (clamps,
and exact cancellations such as 1 + d at d = −1; detected from the gradients); NaN where not measured (smooth
terms under quadrature).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd
import torch

from ...directions import DIRECTIONS, NONE, ZERO
from ...errors import KLGradError, choose, split_names
from ...frameworks import FRAMEWORK_TERMS, FrameworkTerm, get_term
from ..auditing.battery import SEQUENCE, SEQUENCE_OFF_POLICY
from ..experiments import Kind
from ..montecarlo import check_seed, mc_points
from ..problem import Problem
from ..quadrature import exact_moments
from ..report import views
from ..statistics import EXACT_UNBIASED, matches, tolerance
from ..threads import SMALL

F64 = torch.float64

# The battery: name -> (policy, ref, sampler or None). Logits of 4 tokens; Gaussians N(loc, scale); the audit's
# Markov chains (auditing/battery.py SEQUENCE, SEQUENCE_OFF_POLICY), whose truth is the sequence-level ∇KL.
PROBLEMS: dict[str, tuple[str, str, str | None]] = {
    "tokens-on": ("categorical:0,0.5,-0.5,1", "categorical:1,-0.5,0,0.5", None),
    "tokens-off": ("categorical:0,0.5,-0.5,1", "categorical:1,-0.5,0,0.5", "categorical:0.4,0.2,-0.2,0.6"),
    "tokens-far": ("categorical:0,0,0,0", "categorical:0,-25,-25,0", None),  # d ≈ 25 on two tokens: clamps bite
    "normal-near": ("normal:0,1", "normal:0.5,1.2", None),
    "normal-far": ("normal:0,1", "normal:6,1", None),  # d = 18 − 6x: k3 > 10 for most of the mass
    **{name: (*SEQUENCE[name], None) for name in SEQUENCE},
    **{name: (*SEQUENCE[base], m) for name, (base, m) in SEQUENCE_OFF_POLICY.items()},
}

COLUMNS = ["framework", "term", "problem", "placement", "mode", "follows", "rel_bias_vs_policy||ref",
           "rel_bias_vs_ref||policy", "err_norm", "zero_grad_mass", "warning"]


@dataclass(frozen=True)
class CatalogueExperiment:
    """The framework catalogue with measured columns (``kind = "frameworks"``)."""

    kind: ClassVar[str] = "frameworks"

    title: str
    terms: list[str] = field(default_factory=list)  # catalogue names; [] = every entry
    problems: list[str] = field(default_factory=lambda: list(PROBLEMS))  # names in PROBLEMS
    samples: int = 4000  # MC samples per trial (kinked terms on continuous problems)
    trials: int = 400  # MC trials
    seed: int = 42
    notes: str = ""


def _problem(name: str) -> Problem:
    policy, ref, sampler = choose("catalogue problem", name, PROBLEMS)  # type: ignore[misc]
    return Problem(policy, ref, sampler=sampler, dtype=F64)


def _terms(names: list[str]) -> list[FrameworkTerm]:
    return [get_term(n) for n in split_names(names)] if names else list(FRAMEWORK_TERMS.values())


def check(exp: CatalogueExperiment) -> None:
    """Every name and number, without running."""
    _terms(exp.terms)
    if not exp.problems:
        raise KLGradError("problems must name at least one of " + ", ".join(PROBLEMS))
    for name in exp.problems:
        _problem(name)
    for what, n, least in (("samples", exp.samples, 1), ("trials", exp.trials, 2)):
        if isinstance(n, bool) or not isinstance(n, int) or n < least:
            raise KLGradError(f"{what} must be an integer ≥ {least}, got {n!r}")
    check_seed(exp.seed)


ZERO_ULPS = 64  # a per-point coefficient within 64 ulps of its inputs' magnitude is 0 up to float64 rounding


def row_gradients(problem: Problem, term: FrameworkTerm, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row gradient of the row-mean surrogate, (rows, P), and whether ∂surrogate/∂log π_θ is 0 per token,
    (rows, cols, L) bool: |c| ≤ ``ZERO_ULPS``·eps·max(1, |log π_θ|, |log π_ref|), zero up to the rounding of a
    function of those log-probs (exactly 0 on a clamp's flat side; e.g. 1 + d at d = −1 where logits tie, which
    another CPU rounds to ±1 ulp).

    ``x``: (rows, cols) points, each a one-token sequence (L = 1), or (rows, cols, L) Markov-chain sequences; the
    per-sequence surrogate is ``FrameworkTerm.sequence_surrogate`` (a loss term summed over the tokens, a reward
    penalty with reward-to-go). One copy of θ per row (``DistSpec.leaves``).
    """
    rows, cols = x.shape[:2]
    leaves = problem.policy.leaves((rows, 1), F64)
    logp = problem.policy.build_from(leaves).log_prob(x)
    with torch.no_grad():
        ref = problem.ref.build(F64).log_prob(x)
        old = None if problem.sampler is None else problem.sampler.build(F64).log_prob(x)
    if not problem.policy.fam.sequential:  # a token axis of length 1
        logp, ref, old = logp.unsqueeze(-1), ref.unsqueeze(-1), None if old is None else old.unsqueeze(-1)
    s = term.sequence_surrogate(logp, ref, old)
    grads = torch.autograd.grad(s.sum() / cols, [logp, *leaves.values()])
    per_point = grads[0] * cols  # ∂s_i/∂logp_it (the row mean divided it by cols)
    size = torch.maximum(logp.detach().abs(), ref.abs()).clamp(min=1.0)
    zero = per_point.abs() <= ZERO_ULPS * torch.finfo(F64).eps * size
    return torch.cat([g.reshape(rows, 1) for g in grads[1:]], dim=1), zero


def _verdict(g: np.ndarray, err: np.ndarray, truth: dict[str, np.ndarray], draws: int | None,
             scale: np.ndarray) -> str:
    if not np.isfinite(g).all():
        return "unknown"
    exact = draws is None
    hits = [d for d in DIRECTIONS
            if all(matches(g[j], t, tolerance(t, err[j], draws, scale[j]), exact) for j, t in enumerate(truth[d]))]
    if len(hits) == len(DIRECTIONS) and not np.allclose(*(truth[d] for d in DIRECTIONS), rtol=EXACT_UNBIASED, atol=0):
        return "unresolved"  # both within tolerance although the two truths differ: the error is too large to tell
    if hits:
        return " and ".join(hits)
    zero = all(matches(g[j], 0.0, tolerance(0.0, err[j], draws, scale[j]), exact) for j in range(len(g)))
    return ZERO if zero else NONE


def _exact(problem: Problem, term: FrameworkTerm):
    centred, shift = problem.centred()
    moments = exact_moments(lambda x: {term.name: row_gradients(centred, term, x)[0]}, centred.sampling,
                            (centred.policy, centred.ref) if centred.sampler else (centred.ref,), shift)[term.name]
    zero = math.nan
    if problem.sampling.fam.enumerable:  # the mass where the per-sample gradient is exactly 0
        x, w = problem.sampling.fam.nodes(problem.sampling, 0)[:2]
        is_zero = row_gradients(problem, term, x)[1].numpy()  # each sequence's mass shared among its tokens
        zero = float(np.sum(np.asarray(w).ravel() * is_zero.reshape(np.size(w), -1).mean(axis=1)))
    warning = "; ".join(sorted({w for w in moments.warnings if w}))
    scale = moments.scale if moments.scale is not None else np.zeros_like(moments.mean)
    return moments.mean, moments.err, None, scale, zero, warning


def _mc(problem: Problem, term: FrameworkTerm, exp: CatalogueExperiment):
    per_trial, zeros = [], 0
    for points in mc_points(problem.sampling, exp.trials, exp.samples, exp.seed, F64):
        g, is_zero = row_gradients(problem, term, points.x)
        per_trial.append(g.detach().numpy())
        zeros += float(is_zero.reshape(is_zero.shape[0], is_zero.shape[1], -1).double().mean(-1).sum())
    g = np.concatenate(per_trial)
    mean, se = g.mean(axis=0), g.std(axis=0, ddof=1) / math.sqrt(len(g))
    return mean, se, len(g), np.zeros_like(mean), zeros / (exp.trials * exp.samples), ""


def measure(term: FrameworkTerm, problem_name: str, exp: CatalogueExperiment) -> dict:
    """One row of the table (``COLUMNS``)."""
    problem = _problem(problem_name)
    truth = problem.true_gradients()
    mc = term.kinked and not problem.sampling.fam.enumerable
    g, err, draws, scale, zero, warning = _mc(problem, term, exp) if mc else _exact(problem, term)
    follows = _verdict(g, err, truth, draws, scale)
    row = {"framework": term.framework, "term": term.name, "problem": problem_name, "placement": term.placement,
           "mode": "mc" if mc else "exact", "follows": follows, "err_norm": float(np.sqrt(np.sum(err * err))),
           "zero_grad_mass": zero, "warning": warning}
    for direction in DIRECTIONS:
        t = truth[direction]
        below = not mc and direction in follows.split(" and ")
        norm_t = float(np.sqrt(np.sum(t * t)))
        row[f"rel_bias_vs_{direction}"] = 0.0 if below else float(np.sqrt(np.sum((g - t) ** 2))) / norm_t
    return row


@SMALL
def run(exp: CatalogueExperiment, progress=None, figures: bool = True):
    """(table, {}) for the experiment: one row per term × problem, in catalogue order."""
    check(exp)
    rows = [measure(term, p, exp) for term in _terms(exp.terms) for p in exp.problems]
    return pd.DataFrame(rows, columns=COLUMNS), {}


def describe(exp: CatalogueExperiment) -> str:
    n = len(_terms(exp.terms))
    return (f"{n} framework KL terms × problems {', '.join(exp.problems)}; exact (enumeration, quadrature) "
            f"except clamped terms on Gaussians: MC {exp.trials} trials × {exp.samples} samples, seed {exp.seed}.")


def catalogue_markdown(table: pd.DataFrame) -> str:
    """GitHub table of every column but the error norm (6 significant digits)."""
    from tabulate import tabulate

    shown = table.drop(columns=["err_norm"])
    return tabulate(shown, headers="keys", tablefmt="github", showindex=False, floatfmt=".6g") + "\n"


def catalogue_text(table: pd.DataFrame) -> str:
    """What ``reproduce`` echoes: one line per term with its verdict on each problem."""
    lines = []
    for name, block in table.groupby("term", sort=False):
        lines.append(f"{name}: " + ", ".join(f"{p} {f}" for p, f in zip(block["problem"], block["follows"])))
    return "\n".join(lines) + "\n"


KIND = Kind(CatalogueExperiment, check, run, describe, views(catalogue_markdown), text=catalogue_text)
