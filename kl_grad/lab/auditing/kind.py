"""The ``audit`` experiment kind: audit a file's KL functions (``auditor.audit``) into one results table.

Example (``experiments/audit_trainer_terms.toml``)::

    kind = "audit"
    title = "What trainers' KL terms do"
    target = "examples/trainer_kl_terms.py"      # a file or module, as ``kl-grad audit`` takes it
    functions = ["k1_loss", "k2_loss", "k3_loss"]

The table has one row per function × battery problem (columns ``COLUMNS``); ``follows`` is the function's
overall verdict on the single-token problems, ``follows_sequence`` on the sequence ones (Markov chains,
against the sequence-level KL), ``problem_follows`` the problem's, ``tokens`` its L. A function the audit
refuses (e.g. no gradient reaches logp) gets one row with ``follows`` = ``error`` and the one-line reason in
``warning``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import pandas as pd
from tabulate import tabulate

from ...errors import KLGradError
from ..experiments import Kind
from ..report import views
from ..target import load_target
from .auditor import SAMPLES, SEED, TRIALS, audit
from .probe import pct

FROM_PROBLEM = ["rel_bias_norm_vs_policy||ref", "rel_bias_norm_vs_ref||policy", "stdev_ratio", "best_builtin",
                "zero_mass", "zero_mass_se", "dtype"]  # copied from the audit's per-problem details
COLUMNS = ["function", "follows", "follows_sequence", "problem", "tokens", "mode", "problem_follows", *FROM_PROBLEM,
           "warning"]


@dataclass(frozen=True)
class AuditExperiment:
    """Audit each of ``functions`` from ``target`` (a .py file or an importable module)."""

    kind: ClassVar[str] = "audit"

    title: str
    target: str  # "examples/trainer_kl_terms.py" or a module name
    functions: list[str]
    placement: str = ""  # "" = each output as written; else a placement wrapping every function
    samples: int = SAMPLES
    trials: int = TRIALS
    seed: int = SEED
    notes: str = ""


def check_audit(exp: AuditExperiment) -> None:
    if not exp.functions:
        raise KLGradError("functions is empty: name at least one function of the target")
    for name in exp.functions:
        load_target(f"{exp.target}:{name}")


def run_audit(exp: AuditExperiment, progress=None, figures: bool = True) -> tuple[pd.DataFrame, dict]:
    rows = []
    for name in exp.functions:
        fn = load_target(f"{exp.target}:{name}")
        try:
            result = audit(fn, placement=exp.placement or None, name=name, samples=exp.samples, trials=exp.trials,
                           seed=exp.seed)
        except KLGradError as exc:
            rows.append({"function": name, "follows": "error", "follows_sequence": "error", "warning": str(exc)})
            continue
        warning = "; ".join(result.warnings)
        for p in result.problems:
            rows.append({"function": name, "follows": result.follows, "follows_sequence": result.follows_sequence,
                         "problem": p["problem"], "tokens": p["tokens"], "mode": p["mode"],
                         "problem_follows": p["follows"], **{c: p[c] for c in FROM_PROBLEM}, "warning": warning})
            warning = ""  # once per function
    return pd.DataFrame(rows, columns=COLUMNS), {}


def describe_audit(exp: AuditExperiment) -> str:
    return (f"`kl-grad audit {exp.target}:FUNCTION` for {len(exp.functions)} functions over the audit's problem "
            f"battery (exact where it converges, else MC: {exp.trials} trials × {exp.samples} samples, "
            f"seed {exp.seed}).")


def audit_markdown(table: pd.DataFrame) -> str:
    """One line per function (overall follows on single tokens and on sequences, modes, stdev ratios), then its
    warnings."""
    lines = []
    for name, block in table.groupby("function", sort=False):
        follows, seq = block["follows"].iloc[0], block["follows_sequence"].iloc[0]
        ratios = block["stdev_ratio"].astype(float)
        ratio = f"{ratios.min():.3g}–{ratios.max():.3g}" if ratios.notna().any() else ""
        modes = ", ".join(sorted(set(block["mode"].dropna().astype(str))))
        per = ", ".join(f"{p} {f}" for p, f, s in zip(block["problem"], block["problem_follows"],
                                                      block["tokens"].fillna(1) > 1)
                        if isinstance(p, str) and f != (seq if s else follows))
        zero = block["zero_mass"].astype(float)
        zmax = pct(zero.max()) if zero.notna().any() and zero.max() > 0 else ""
        lines.append({"function": name, "follows": follows, "follows (sequences)": seq,
                      "modes": modes, "stdev / best built-in": ratio,
                      "max zero-grad mass": zmax, "problems that differ": per})
    head = tabulate(pd.DataFrame(lines), headers="keys", tablefmt="github", showindex=False) + "\n"
    notes = [f"- **{f}**: {w}" for f, w in zip(table["function"], table["warning"].astype(str))
             if w and w != "nan" and not (isinstance(w, float) and math.isnan(w))]
    return head + ("\nWarnings:\n\n" + "\n".join(notes) + "\n" if notes else "")


KIND = Kind(AuditExperiment, check_audit, run_audit, describe_audit, views(audit_markdown))
