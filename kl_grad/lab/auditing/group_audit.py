"""``audit(fn, placement="group-reward", group=GroupReward(...))``: a user's KL value in a group-normalised reward.

The function's per-token values k_t (or per-sequence values) give K(y) = Σ_t k_t, detached, as a GRPO trainer
puts the KL into the reward (``kl_grad/groups.py``: R_i = T_i − β·K_i, A = norm(R), verl ``use_kl_in_reward``).
With no task reward (T = 0) the surrogate is ``kl_loss(placement="group-reward")``'s kl = (1/G) Σ_i sg(c_i)·Σ_t w_t,
c_i = (A_i(0) − A_i(−βK))/β, and the trainer's loss adds β·kl. Measured is E[∇kl] on-policy, exactly, over the
multisets of a group (``aggregations/group_expect.py``, the lab kind ``group_reward``'s machinery, with the user's
function in place of a registered estimator), on the battery's enumerable on-policy problems: the Markov chains
(against the sequence-level ∇KL) and the token problems (a sequence of one token). Per problem:

    follows                      policy||ref, ref||policy (both), zero or none: ‖E[∇kl] − ∇KL_D‖ ≤ bound + 1e-8·‖∇KL_D‖,
                                 bound the float64 rounding bound of the enumeration (``exact_kl_gradient``)
    rel_bias_norm_vs_D, cosine   ‖E[∇kl] − ∇KL_D‖/‖∇KL_D‖ (0 below the bound), cos(E[∇kl], ∇KL_D)
    factor                       the closed form of a linear normalisation: E[∇kl] = factor·E[∇ reward-seq] with
                                 factor 1 − 1/G (mean: c_i = K_i − mean_G K, Dr. GRPO) or 1 (none: c_i = K_i);
                                 NaN for std (none exists: c depends on β)
    rel_bias_scaled_vs_D,        the same for E[∇kl]/factor: the bias left once the known shrinkage is undone
    follows_scaled

Gaussian problems (a group's expectation would be a G-dimensional integral) and off-policy ones (the group
machinery is on-policy) are skipped, and a note says so.
"""

from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np
import pandas as pd
import torch

from ...directions import DIRECTIONS, NONE, ZERO
from ...errors import KLGradError, choose
from ...groups import NORMALISATIONS, GroupReward
from ..aggregations import group_expect as expect
from ..statistics import EXACT_UNBIASED
from ..summary import cosine, norm
from ..target import bind, signature_roles
from .auditor import AuditResult, overall_follows
from .battery import AuditProblem, battery
from .group_options import DEFAULT_NORMALISATION, DEFAULT_SIZE, PLACEMENT
from .user_term import UserTerm

FACTORS = {"mean": lambda size: 1 - 1 / size, "none": lambda size: 1.0}  # E[∇kl] = factor·E[∇ reward-seq]


def group_problems(aps: list[AuditProblem]) -> list[AuditProblem]:
    """The problems group-reward measures: on-policy with an enumerable policy."""
    return [ap for ap in aps if ap.on_policy and not ap.continuous]


def largest_group(aps: list[AuditProblem]) -> int:
    """The largest G whose multisets fit ``expect.MAX_MULTISETS`` on every problem."""
    g = 2
    while all(math.comb(n + g - 1, g) <= expect.MAX_MULTISETS for n in _sizes(aps)):
        g += 1
    return g


def _sizes(aps: list[AuditProblem]) -> list[int]:
    return [ap.problem.policy.fam.support_size(ap.problem.policy) for ap in aps]


def check_group(group: GroupReward, aps: list[AuditProblem]) -> None:
    """One line for what cannot be measured: a bad GroupReward, a task reward, a group too big to enumerate."""
    choose("normalisation", group.normalisation, NORMALISATIONS)
    group.check(group.size)
    if group.rewards is not None:
        raise KLGradError("the audit's group-reward has no task reward (T = 0): give GroupReward(size, beta=…, "
                          "normalisation=…) without rewards; the lab kind group_reward takes task rewards")
    for ap, n in zip(aps, _sizes(aps)):
        count = math.comb(n + group.size - 2, group.size - 1)
        if count > expect.MAX_MULTISETS:
            raise KLGradError(f"group size {group.size}: the exact expectation on {ap.name} enumerates {count} "
                              f"multisets of the other G − 1 of its {n} sequences, more than {expect.MAX_MULTISETS}; "
                              f"the audit allows G ≤ {largest_group(aps)}")


def _values(term: UserTerm, ap: AuditProblem, dtypes: set) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """(logp (N, L), ref (N, L)) → the function's per-token (N, L) or per-sequence (N,) values, called as the
    audit calls it ((1, N, L) tensors, tokens last; old_logp = logp on-policy), refused when not finite;
    ``dtypes`` collects the output's dtype."""
    def values(logp: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        out = term.call(logp.detach().clone()[None], ref[None], None)
        if out.dim() == 0:
            raise KLGradError(f"--placement {PLACEMENT} needs per-token (or per-sequence) values, but {term.name} "
                              "returned a scalar")
        dtypes.add(str(out.dtype).replace("torch.", ""))
        out = out.detach()[0]
        bad = int((~torch.isfinite(out.reshape(len(logp), -1))).any(-1).sum())
        if bad:
            raise KLGradError(f"{term.name} returned NaN or inf on {ap.name} at {bad} of its {len(logp)} "
                              "sequences: K(y) = Σ_t k_t is not finite")
        return out
    return values


def _follows(g: np.ndarray, truth: dict[str, np.ndarray], bound: float) -> str:
    hits = [d for d in DIRECTIONS if norm(g - truth[d]) <= bound + EXACT_UNBIASED * norm(truth[d])]
    if hits:
        return " and ".join(hits)
    return ZERO if norm(g) <= bound else NONE


def _rel(g: np.ndarray, true: np.ndarray, bound: float) -> float:
    nt, gap = norm(true), norm(g - true)
    return math.nan if nt == 0 else (0.0 if gap <= bound else gap / nt)


def group_problem(term: UserTerm, ap: AuditProblem, group: GroupReward, dtypes: set | None = None) -> dict:
    """One problem's row (the keys of ``auditor.audit_problem``'s where they mean the same, see the module doc)."""
    support = expect.enumerated(ap.problem, None)
    kl = expect.sequence_kl(support, _values(term, ap, set() if dtypes is None else dtypes))
    g, bound = expect.exact_kl_gradient(support, kl, group.size, group.beta, group.normalisation, group.eps)
    truth = ap.problem.true_gradients()
    factor = FACTORS[group.normalisation](group.size) if group.normalisation in FACTORS else math.nan
    n = len(support["probs"])
    out = {"problem": ap.name, "policy": ap.problem.policy.label, "ref": ap.problem.ref.label, "sampler": "policy",
           "on_policy": True, "sequence": ap.sequence, "tokens": int(support["x"].shape[-1]), "mode": "exact",
           "how": f"exact: {n} sequences × {math.comb(n + group.size - 2, group.size - 1)} multisets of the other "
                  f"G − 1", "follows": _follows(g, truth, bound), "factor": factor}
    for d in DIRECTIONS:
        out[f"rel_bias_norm_vs_{d}"] = _rel(g, truth[d], bound)
        out[f"cosine_vs_{d}"] = math.nan if norm(g) <= bound else cosine(g, truth[d])
    scaled = math.isfinite(factor)
    out["follows_scaled"] = _follows(g / factor, truth, bound / factor) if scaled else ""
    for d in DIRECTIONS:
        out[f"rel_bias_scaled_vs_{d}"] = _rel(g / factor, truth[d], bound / factor) if scaled else math.nan
    out["rounding_bound"] = bound
    out["params"] = [{"param": j, "mean_grad": float(g[j]), **{f"true_grad_vs_{d}": float(truth[d][j])
                                                              for d in DIRECTIONS}} for j in range(len(g))]
    return out


def group_notes(label: str, group: GroupReward, skipped: list[str], takes_old: bool) -> list[str]:
    """What was measured, the closed form of a linear normalisation, std's 1/β, and what was skipped."""
    norm_ = NORMALISATIONS[group.normalisation]
    beta = f", β = {group.beta:g}" if group.beta is not None else ""
    notes = [f"group-reward: K(y) = Σ_t {label}_t, detached, is the KL in a group-normalised reward R_i = −β·K_i "
             f"(no task reward), A = {norm_.formula}, G = {group.size}{beta}, eps {group.eps:g}; the rows are "
             "E[∇kl] of kl = (1/G) Σ_i sg(c_i)·Σ_t w_t, c_i = (A_i(0) − A_i(−βK))/β (the trainer's loss adds β·kl), "
             "on-policy, exact over the multisets of a group"]
    if group.normalisation == "mean":
        notes.append(f"mean: c_i = K_i − mean_G K, so E[∇kl] = (1 − 1/G)·E[∇ reward-seq] = "
                     f"{1 - 1 / group.size:.6g}× the whole-sequence penalty's gradient; 'rel bias ÷ factor' is the "
                     "bias of E[∇kl]/(1 − 1/G) (the shrinkage undone, as β·G/(G − 1) would)")
    elif group.normalisation == "none":
        notes.append("none: c_i = K_i, so E[∇kl] = E[∇ reward-seq] (factor 1, any G)")
    else:
        notes.append(f"std with no task reward: c_i = (K_i − mean_G K)/(β·std_G K + eps), so E[∇kl] scales like 1/β "
                     f"(the trainer's KL part β·E[∇kl] does not shrink with β) and the numbers hold for β = "
                     f"{group.beta:g} only; no closed form (factor NaN); with task rewards see the lab kind "
                     "group_reward")
    if skipped:
        notes.append(f"skipped: {', '.join(skipped)} (continuous: a group's expectation would be a G-dimensional "
                     "integral)")
    if takes_old:
        notes.append(f"{label} takes old_logp: group-reward is measured on-policy only (old_logp = logp.detach()); "
                     "the off-policy problems are skipped")
    return notes


def group_audit(fn: Callable, *, kwargs: dict | None = None, name: str | None = None,
                group: GroupReward | None = None, problems: list[str] | None = None,
                progress: Callable[[int, int], None] | None = None) -> AuditResult:
    """The audit of ``fn``'s values in a group-normalised reward (module doc); ``group`` default
    GroupReward(DEFAULT_SIZE, normalisation=DEFAULT_NORMALISATION); ``problems`` names among the measured ones."""
    start = time.perf_counter()
    group = group or GroupReward(DEFAULT_SIZE, normalisation=DEFAULT_NORMALISATION)
    label = name or getattr(fn, "__name__", None) or getattr(getattr(fn, "func", None), "__name__", "fn")
    fn = bind(fn, kwargs, label)
    term = UserTerm(fn, label, None, signature_roles(fn, label))
    every = battery(False)
    aps = group_problems(every)
    skipped = [ap.name for ap in every if ap not in aps]
    if problems is not None:
        known = {ap.name: ap for ap in aps}
        for p in problems:
            choose("problem (group-reward: enumerable, on-policy)", p, known)
        aps, skipped = [ap for ap in aps if ap.name in problems], []
    check_group(group, aps)
    rows, dtypes = [], set()
    for i, ap in enumerate(aps):
        rows.append(group_problem(term, ap, group, dtypes))
        if progress:
            progress(i + 1, len(aps))
    table = pd.DataFrame([{k: v for k, v in p.items() if k != "params"} for p in rows])
    notes = group_notes(label, group, skipped, term.takes_old)
    low = sorted(d for d in dtypes if d != "float64")
    if low:
        notes.append(f"dtype: {label} returns {', '.join(low)}: K carries its rounding, which the exact verdict "
                     "(1e-8 relative) can read as bias")
    return AuditResult(overall_follows(rows), notes, rows, label, time.perf_counter() - start, table,
                       overall_follows(rows, sequence=True))
