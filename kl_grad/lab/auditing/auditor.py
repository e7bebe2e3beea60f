"""``audit(fn)``: which KL gradient does a user's KL term produce, at what variance, with which hazards?

For each battery problem (``battery.py``) the term is probed (``probe.py``) and measured by the
gradient runner (``gradient_table.gradient_table``) as a ``UserTerm`` (``user_term.py``), in float64:
exactly (quadrature or enumeration) unless the probe finds exactly-zero gradients on some mass (a clamp's
kink, which stops quadrature converging) or the function downcasts (its rounding, ~1e-7, would read as bias
against the exact verdict's 1e-8), or the quadrature refuses; then by Monte Carlo with standard errors and
the lab's Student-t verdict (false-alarm rate ``statistics.FALSE_ALARM`` per parameter). Per problem:

    follows             the vector verdict of ``summary.vector_summary`` (policy||ref, ref||policy, zero,
                        neither, unknown)
    rel_bias_norm_vs_D  ‖E[g] − ∇KL_D‖ / ‖∇KL_D‖ for both directions D; cosine_vs_D likewise
    stdev_ratio         √Σ_j stdev_j² of the term over that of the lowest-variance built-in (exact) that
                        follows the same direction on the same problem, both for a ``samples``-sample mean

Overall ``follows`` ∈ {policy||ref, ref||policy, zero, none}: the direction (or zero) that every on-policy
single-token problem with a verdict agrees on, else none; ``follows_sequence`` the same over the on-policy
sequence problems (Markov chains, ``battery.SEQUENCE``), whose truth is the gradient of the sequence-level
KL. They are apart because they differ for the commonest terms: a per-token k2 loss follows policy||ref for
one token but only the token-level partial gradient for sequences (issue 12; Tang & Munos, arXiv
2506.09477), and the audit says so in a warning.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from ...directions import DIRECTIONS, FOLLOWS, NONE, POLICY_REF
from ...errors import choose
from ..config import Mode
from ..gradient_table import Budget, GradientJob, gradient_table
from ..statistics import EXACT_UNBIASED, t_critical, tolerance
from ..summary import cosine, norm
from ..target import ROLES, bind, signature_roles
from ..terms import make_cases
from ..threads import work_threads
from .battery import AuditProblem, battery
from .dtypes import dtype_report, parse_dtypes
from .group_options import PLACEMENT as GROUP_PLACEMENT
from .group_options import refuse_with_group
from .notes import dedupe, dtype_notes, probe_notes, sequence_notes
from .padding import mask_check
from .probe import Probe, probe
from .user_term import UserTerm, user_placement

SAMPLES = 1000  # the stdev columns are of a SAMPLES-sample mean; MC trials are SAMPLES samples each
TRIALS = 200
SEED = 0
# The built-ins a term's stdev is compared with (those that follow the direction on the problem compete):
# coefficients d (k2 loss, k1 reward, k3 loss-w), d + 1 (k1 loss-w), d + d²/2 (k2 loss-w); 1 − r and −r.
BUILTINS = (("k1", "loss-w"), ("k1", "reward"), ("k2", "loss"), ("k2", "loss-w"), ("k3", "loss"), ("k3", "loss-w"),
            ("reverse_k2", "loss"))
# On sequence problems (kl_grad.sequences placements): reward-to-go, whole-sequence and prefix-weighted forms.
SEQUENCE_BUILTINS = (("k1", "reward"), ("k1", "reward-seq"), ("k1", "reward-prefix-w"), ("k1", "loss-prefix-w"),
                     ("k2", "loss-prefix-w"), ("k3", "loss-prefix-w"), ("k2", "both"), ("k3", "loss"))


@dataclass
class AuditResult:
    """``follows`` (one of ``FOLLOWS``, over the single-token problems), ``follows_sequence`` (the same over
    the sequence problems; none when none ran), ``warnings`` (strings), ``problems`` (one dict per battery
    problem: name, policy, ref, sampler, sequence, mode, follows, rel_bias_norm_vs_*, cosine_vs_*,
    stdev_ratio, zero_mass, ..., and ``params``: per-parameter mean_grad, se, true_grad_vs_*,
    tolerance_vs_*), ``table``: the problems as a DataFrame (no ``params``), and ``name`` of the function."""

    follows: str
    warnings: list[str]
    problems: list[dict]
    name: str = "fn"
    seconds: float = 0.0
    table: pd.DataFrame = field(default=None, repr=False)
    follows_sequence: str = NONE
    dtypes: list[dict] = field(default_factory=list)  # dtypes.dtype_report, float64 first; empty unless asked

    def as_dict(self) -> dict:
        out = {"function": self.name, "follows": self.follows, "follows_sequence": self.follows_sequence,
               "warnings": list(self.warnings), "problems": self.problems}
        return {**out, "dtypes": self.dtypes} if self.dtypes else out


@functools.lru_cache(maxsize=64)
def _builtin_summary(ap: AuditProblem, samples: int) -> pd.DataFrame:
    """Exact vector summary of the candidate built-ins on one problem (cached: the same for every audit)."""
    pairs = SEQUENCE_BUILTINS if ap.sequence else BUILTINS
    cases = [make_cases(e, p, sequence=ap.sequence)[0] for e, p in pairs]
    run = gradient_table(GradientJob(ap.problem, cases, Budget(Mode.EXACT, samples, 2, SEED), POLICY_REF))
    summary = run.summary
    norms = run.table.groupby(["estimator", "placement"], sort=False)["stdev"].apply(
        lambda s: norm(s.to_numpy(dtype=float)))
    summary["stdev_norm"] = [norms[(e, p)] for e, p in zip(summary["estimator"], summary["placement"])]
    return summary


def best_builtin(ap: AuditProblem, direction: str, samples: int = SAMPLES) -> tuple[str, float]:
    """(name "estimator/placement", stdev norm) of the lowest-variance built-in following ``direction``."""
    s = _builtin_summary(ap, samples)
    ok = s[s["follows"].astype(str).str.split(" and ").apply(lambda f: direction in f) & np.isfinite(s["stdev_norm"])]
    if ok.empty:
        return "", math.nan
    best = ok.loc[ok["stdev_norm"].idxmin()]
    return f"{best['estimator']}/{best['placement']}", float(best["stdev_norm"])


def _choose_mode(pr: Probe, ap: AuditProblem) -> tuple[Mode, str]:
    if pr.out_dtype.itemsize < 8:
        return Mode.MC, f"Monte Carlo: the function returns {str(pr.out_dtype).replace('torch.', '')}"
    if pr.low_precision:
        return Mode.MC, "Monte Carlo: the function computes below float64 inside (its values do not move with logp)"
    if pr.zero_mass > 0 and ap.continuous:
        return Mode.MC, "Monte Carlo: exactly-zero gradients (a kink) stop the quadrature converging"
    return Mode.EXACT, "exact"


def _measure(term: UserTerm, ap: AuditProblem, mode: Mode, samples: int, trials: int, seed: int):
    job = GradientJob(ap.problem, [term], Budget(mode, samples, trials, seed), POLICY_REF)
    run = gradient_table(job)
    return run, run.summary.iloc[0]


def _param_rows(table: pd.DataFrame, truth: dict, mode: Mode, trials: int) -> list[dict]:
    rows = []
    for j, row in enumerate(table.itertuples(index=False)):
        r = {"param": row.param, "mean_grad": float(row.mean_grad), "se": float(row.se)}
        for d in DIRECTIONS:
            true = float(truth[d][j])
            if mode is Mode.EXACT:
                tol = max(tolerance(true, r["se"]), EXACT_UNBIASED * abs(true))
            else:
                tol = t_critical(trials) * r["se"]
            r[f"true_grad_vs_{d}"] = true
            r[f"tolerance_vs_{d}"] = tol
        rows.append(r)
    return rows


def audit_problem(term: UserTerm, ap: AuditProblem, *, samples: int = SAMPLES, trials: int = TRIALS,
                  seed: int = SEED) -> tuple[dict, Probe, list[str]]:
    """One problem's details (a dict), its probe and the runner's warnings."""
    pr = probe(term, ap, seed=seed)
    mode, why = _choose_mode(pr, ap)
    run, s = _measure(term, ap, mode, samples, trials, seed)
    if mode is Mode.EXACT and not np.isfinite(run.table["mean_grad"].to_numpy(dtype=float)).all():
        mode, why = Mode.MC, "Monte Carlo: the quadrature did not converge (a kink or jump in the gradient)"
        run, s = _measure(term, ap, mode, samples, trials, seed)
    g = run.table["mean_grad"].to_numpy(dtype=float)
    stdev_norm = norm(run.table["stdev"].to_numpy(dtype=float))
    follows = str(s["follows"])
    out = {"problem": ap.name, "policy": ap.problem.policy.label, "ref": ap.problem.ref.label,
           "sampler": ap.problem.sampler_label, "on_policy": ap.on_policy, "sequence": ap.sequence,
           "tokens": ap.problem.policy.fam.point_size(ap.problem.policy), "mode": mode.value, "how": why,
           "follows": follows}
    for d in DIRECTIONS:
        out[f"rel_bias_norm_vs_{d}"] = float(s[f"rel_bias_norm_vs_{d}"])
        out[f"cosine_vs_{d}"] = cosine(g, run.truth[d])
    target = next((d for d in DIRECTIONS if d in follows.split(" and ")), None)
    name, best = best_builtin(ap, target, samples) if target else ("", math.nan)
    # A Monte-Carlo stdev of `trials` trials is itself uncertain (k3 in float32, whose true ratio is 1, gave
    # 0.87-0.98 over seeds 0-3 at 200 trials): no ratio rather than a finite number with unstated error.
    out["stdev_ratio"] = stdev_norm / best if best > 0 and mode is Mode.EXACT else math.nan
    if mode is Mode.MC and best > 0:
        out["how"] = f"{why}; stdev / best built-in not given (a {trials}-trial stdev is uncertain by ~10%)"
    out["best_builtin"] = name
    out["zero_mass"], out["zero_mass_se"] = pr.zero_mass, pr.zero_se
    out["negative_mass"] = pr.negative_mass
    out["dtype"] = str(pr.out_dtype).replace("torch.", "")
    out["f32_error"] = pr.f32_error
    out["frozen"] = pr.frozen
    out["samples"], out["trials"] = samples, (trials if mode is Mode.MC else None)
    out["params"] = _param_rows(run.table, run.truth, mode, trials)
    return out, pr, [f"{ap.name}: {w}" for w in _runner_warnings(run.table, mode)]


_SAID_ELSEWHERE = ("true value is 0", "clamp active")  # the audit's own probe and mode say these
_NOT_CONVERGED = re.compile(r"(exact counterpart: )?quadrature did not converge for the \w+( \([^)]*\))?")


def _runner_warnings(table: pd.DataFrame, mode: Mode) -> list[str]:
    """The table's warnings, less what the audit says itself (a kink's quadrature failure, which sent the
    problem to MC; the relative columns of a zero truth)."""
    parts = []
    for w in table["warning"].astype(str):
        w = _NOT_CONVERGED.sub("", w) if mode is Mode.MC else w
        for part in w.split("; ") if w and w != "nan" else []:
            part = part.strip()
            if not part:
                continue
            if not part.startswith(_SAID_ELSEWHERE) and part not in parts:
                parts.append(part.replace("exact counterpart: ", "exact: ") if mode is Mode.MC else part)
    return parts


def overall_follows(problems: list[dict], sequence: bool = False) -> str:
    """The direction (or zero) every on-policy problem with a verdict agrees on, among the single-token
    problems (``sequence`` False) or the sequence ones; else none."""
    sets = []
    for p in problems:
        if not p["on_policy"] or p["follows"] == "unknown" or p.get("sequence", False) != sequence:
            continue
        sets.append(set(p["follows"].split(" and ")) if p["follows"] != NONE else set())
    if not sets:
        return NONE
    common = set.intersection(*sets)
    return next((f for f in FOLLOWS[:-1] if f in common), NONE)


def audit(fn: Callable, *, kwargs: dict | None = None, placement: str | None = None, name: str | None = None,
          samples: int = SAMPLES, trials: int = TRIALS, seed: int = SEED, problems: list[str] | None = None,
          progress: Callable[[int, int], None] | None = None, dtypes=None, group=None) -> AuditResult:
    """Audit a KL term ``fn(logp, ref_logp)`` or ``fn(logp, ref_logp, old_logp)`` (see ``user_term``).

    Args:
        fn: returns per-sample values of logp's shape or a scalar mean; differentiated exactly as written.
        kwargs: extra keyword arguments bound with ``functools.partial`` (e.g. {"kl_penalty": "low_var_kl"}).
        placement: None (the output is the loss term as written) or a placement name wrapping a value-style
            fn: ``reward`` = w·sg(fn), ``loss-w`` = w·fn, ``loss-sgw`` = sg(w)·fn, ``loss`` = fn.
        samples, trials, seed: the stdev is of a ``samples``-sample mean; MC problems use ``trials`` trials
            of ``samples`` samples from ``seed`` (deterministic: the same seed gives the same digits).
        problems: names of battery problems to run (default all; ``battery.ON_POLICY``, ``battery.OFF_POLICY``,
            ``battery.SEQUENCE``, ``battery.SEQUENCE_OFF_POLICY``).
        progress: called as progress(done, total) after each problem.
        dtypes: None, or dtypes a trainer feeds the term ("float32", "bfloat16", "float16", or a comma-separated
            string): the inputs cast to each, checked for NaN/inf, negative values, vanished gradients and the
            expected gradient's bias against float64 (``dtypes.py``); ``AuditResult.dtypes`` holds the reports.
        group: with placement "group-reward", a ``kl_grad.groups.GroupReward`` (no rewards): the values as the KL
            in a group-normalised reward, exact E[∇kl] on the enumerable on-policy problems (``group_audit.py``).

    Returns:
        ``AuditResult`` with ``follows``, ``warnings`` and per-problem ``problems``.
    """
    # The audit's tensors are small (≤ 200k elements): extra threads only contend (7-14× slower on a loaded
    # 2-core machine; benchmarks/bench_audit.py). The caller's count is restored afterwards.
    with work_threads(0):
        if group is not None or (placement or "").strip() == GROUP_PLACEMENT:
            from .group_audit import group_audit

            refuse_with_group(placement, dtypes)
            return group_audit(fn, kwargs=kwargs, name=name, group=group, problems=problems, progress=progress)
        return _audit(fn, kwargs, placement, name, samples, trials, seed, problems, progress,
                      parse_dtypes(dtypes) if dtypes is not None else [])


def _audit(fn, kwargs, placement, name, samples, trials, seed, problems, progress, dtypes) -> AuditResult:
    import time

    start = time.perf_counter()
    label = name or getattr(fn, "__name__", None) or getattr(getattr(fn, "func", None), "__name__", "fn")
    fn = bind(fn, kwargs, label)
    roles = signature_roles(fn, label)
    term = UserTerm(fn, label, None if placement is None else user_placement(placement), roles)
    aps = battery(term.takes_old)
    if problems is not None:
        known = {ap.name: ap for ap in aps}
        for p in problems:
            choose("problem", p, known)
        aps = [ap for ap in aps if ap.name in problems]
    problems, probes, runner = [], [], []
    for i, ap in enumerate(aps):
        details, pr, warns = audit_problem(term, ap, samples=samples, trials=trials, seed=seed)
        problems.append(details)
        probes.append((ap, pr))
        runner += warns
        if progress:
            progress(i + 1, len(aps))
    notes = dtype_notes(problems, probes, label)
    plain = tuple(r for _, r, _ in roles) in (("logp", "ref"), ("logp", "ref", "old"))
    if not plain or any(not positional for _, _, positional in roles):
        notes.append(f"inputs: {label} received " + "; ".join(f"{n} = {ROLES[r]}" for n, r, _ in roles))
    notes += probe_notes(probes, label, reward=bool(term.wrap) and term.wrap.name.startswith("reward"))
    notes += runner
    padded = next((ap for ap in aps if ap.sequence and ap.on_policy), None)
    if padded is not None and any(r == "mask" for _, r, _ in roles):
        notes += [w for w in [mask_check(term, padded)] if w]
    follows, follows_sequence = overall_follows(problems), overall_follows(problems, sequence=True)
    single = [p for p in problems if not p["sequence"]]
    if single and not any(p["on_policy"] and p["follows"] != "unknown" for p in single):
        notes.append("no on-policy problem gave a verdict, so follows is none")
    notes += sequence_notes(problems, probes, label, follows, follows_sequence)
    reports = dtype_report(term, aps, dtypes, seed) if dtypes else []
    notes = dedupe(notes + [line for r in reports for line in r["findings"]])
    table = pd.DataFrame([{k: v for k, v in p.items() if k != "params"} for p in problems])
    return AuditResult(follows, notes, problems, label, time.perf_counter() - start, table, follows_sequence,
                       reports)
