"""Value tables: how well does mean(k) estimate the KL itself? (Schulman 2020; seeds 000, 002, 004.)

Samples come from the policy q = π_θ. For each estimator k of the KL in its
direction (k1, k2, k3 → KL(policy‖ref); reverse_k1 → KL(ref‖policy)) the table
gives true_kl (``torch.distributions.kl_divergence``), the expected value
``mean``, bias_rel = |mean − true_kl| / true_kl, and stdev_rel = per-sample
stdev / true_kl, which is Schulman's "stdev/true" column. ``exact`` mode integrates
with the same quadrature and tail checks as the gradient tables. ``mc`` draws
``samples`` samples with ``seed``, and also reports the standard error and the
z-score against exact.
"""

from __future__ import annotations

import math

import pandas as pd
import torch
from torch.distributions import kl_divergence

from .analysis import check_compatible, make_cases
from .directions import POLICY_REF, resolve_direction
from .errors import KLGradError
from .estimators import ESTIMATORS, Estimator
from .exact import exact_moments
from .families import DistSpec, as_spec
from .statistics import matches, relative, verdict

VALUE_COLUMNS = ["estimator", "direction", "true_kl", "mean", "bias_rel", "stdev_rel", "se", "samples", "mode",
                 "verdict", "exact_mean", "z_vs_exact", "warning", "policy", "ref"]


def _value_estimators(names: list[str] | str) -> list[Estimator]:
    ests = [case.estimator for case in make_cases(names, "loss")]  # names, emptiness and duplicates checked there
    for e in ests:
        if e.gradient_only:
            allowed = ", ".join(name for name, est in ESTIMATORS.items() if not est.gradient_only)
            raise KLGradError(f"{e.name} ({e.formula}) is a gradient surrogate, not a KL value estimator; "
                              f"value estimators: {allowed}")
    return ests


def _evaluate(policy: DistSpec, ref: DistSpec, ests: list[Estimator]):
    def evaluate(x: torch.Tensor) -> dict:  # x: float or integer points; values in float64
        logq, logp = policy.build(torch.float64).log_prob(x), ref.build(torch.float64).log_prob(x)
        return {e.name: e(logq, logp).reshape(-1, 1) for e in ests}  # (N, 1)
    return evaluate


def true_kl(policy: DistSpec, ref: DistSpec, direction: str) -> float:
    """Closed-form KL in ``direction`` (canonical name or alias), float64."""
    direction = resolve_direction(direction)
    q, p = policy.build(torch.float64), ref.build(torch.float64)
    return float(kl_divergence(q, p) if direction == POLICY_REF else kl_divergence(p, q))


def run_values(policy: DistSpec, ref: DistSpec, estimators: list[str], *, mode: str = "exact",
               samples: int = 500_000, seed: int = 42) -> pd.DataFrame:
    """One row per estimator: its value as an estimate of the KL it targets."""
    if mode not in ("mc", "exact"):
        raise KLGradError(f"unknown mode {mode!r}; expected one of mc, exact")
    if samples < (2 if mode == "mc" else 1):  # MC needs two for a standard error; exact uses none
        raise KLGradError(f"samples must be an integer >= {2 if mode == 'mc' else 1} in {mode} mode, got {samples}")
    policy, ref = as_spec(policy, "policy"), as_spec(ref, "ref")
    check_compatible(policy, ref)
    ests = _value_estimators(estimators)
    evaluate = _evaluate(policy, ref, ests)
    exact = exact_moments(evaluate, policy)
    if mode == "mc":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            x = policy.build(torch.float64).sample((samples, 1))  # (samples, 1)
        draws = {k: v.numpy()[:, 0] for k, v in evaluate(x).items()}
    rows = []
    for e in ests:
        ex = exact[e.name]
        truth = true_kl(policy, ref, e.direction)
        row = {"estimator": e.name, "direction": e.direction, "true_kl": truth, "samples": samples, "mode": mode,
               "exact_mean": ex.mean[0], "warning": ex.warnings[0], "policy": policy.label, "ref": ref.label}
        if mode == "exact":
            row.update(mean=ex.mean[0], stdev=math.sqrt(ex.var[0]), se=ex.err[0])
        else:
            v = draws[e.name]
            se = v.std(ddof=1) / math.sqrt(samples)
            row.update(mean=v.mean(), stdev=v.std(), se=se, z_vs_exact=(v.mean() - ex.mean[0]) / se)
        exact_mode = mode == "exact"
        row["verdict"] = verdict(not matches(row["mean"], truth, row["se"], exact_mode), row["mean"], exact_mode)
        row.update(relative(row["mean"], row.pop("stdev"), truth, row))
        rows.append(row)
    table = pd.DataFrame(rows)
    return table[[c for c in VALUE_COLUMNS if c in table.columns]]


def values_markdown(table: pd.DataFrame) -> str:
    """Schulman's layout: bias/true and stdev/true per estimator."""
    from tabulate import tabulate

    cols = [c for c in ("estimator", "direction", "true_kl", "mean", "bias_rel", "stdev_rel", "se", "z_vs_exact",
                        "verdict", "warning") if c in table.columns]
    return tabulate(table[cols], headers="keys", tablefmt="github", showindex=False, floatfmt=".6g") + "\n"

