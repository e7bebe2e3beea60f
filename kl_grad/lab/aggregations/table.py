"""Token aggregations with variable length (experiment kind ``length_weights``): what they do to the gradient.

A trainer reduces per-token surrogate terms x_t (masked beyond each sequence's end) with an aggregation of
``kl_grad/aggregations.py``. Every sequence placement of ``kl_grad/sequences.py`` is a per-sequence sum
S(y) = Σ_{t<T} x_t, and every aggregation there sees x only through each sequence's masked sum and the mask,
so on a batch of B i.i.d. sequences its expected gradient is Σ_y π(y)·c(y)·∇S(y), with a per-sequence
weight c that depends on the lengths only (computed here by calling the aggregation itself on one
sequence whose masked terms sum to 1, x_t = 1/T):

    seq-mean-token-sum       c = 1            the sequence KL's own scale: E[∇S]
    seq-mean-token-mean      c = 1/T          reweights short sequences up (verl's, TRL's "grpo")
    seq-mean-token-sum-norm  c = 1/LMAX       a constant (Dr. GRPO, arXiv 2503.20783): no reweighting
                                              (per sequence; the batch sum makes it B/LMAX for B sequences)
    token-mean, batch B      c = B·E[1/(T + R_{B−1})],  R_{B−1} the total length of the B − 1 other sequences
                             (B = 1: 1/T, as seq-mean-token-mean; B → ∞: 1/E[T], a constant rescaling of
                             seq-mean-token-sum, by the law of large numbers for Σ_i S_i / Σ_i T_i)

The lengths' distribution is exact (convolution of the enumerated length pmf), so every row is exact:
per-sequence autograd gradients ∇S(y) come from the runner's ``row_gradients`` at every enumerated
sequence (``markov-eos`` family). Each row compares E[c·∇S] with ∇KL(π_θ‖π_ref) (relative bias norm,
cosine, norm ratio) and with ∇θ E_π[c·Σ_{t<T} d_t] (c held fixed), the objective its weights would suggest.
A relative bias below the row's float64 rounding bound (16·N·ε·Σ_y π|c∇S| per parameter) prints as 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd
import torch

from ...aggregations import AGGREGATIONS
from ...directions import POLICY_REF
from ...errors import KLGradError, choose
from ..experiments import Kind
from ..gradient_table import check_gradient_request
from ..gradients import row_gradients
from ..problem import Problem
from ..report import github, views

WEIGHTED = ("seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm", "token-mean")
COLUMNS = ["estimator", "placement", "aggregation", "batch", "rel_bias_norm", "cosine", "norm_ratio",
           "rel_bias_norm_vs_own", "warning", "policy", "ref"]
EPS = np.finfo(np.float64).eps


def length_pmf(lengths: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """pmf[T] of the sequence length T (index 0..LMAX) from enumerated lengths (N,) and probabilities (N,)."""
    return np.bincount(lengths, weights=probs, minlength=int(lengths.max()) + 1)


def sequence_weights(mask: torch.Tensor, probs: np.ndarray, aggregation: str, batch: int | None = None) -> np.ndarray:
    """Per-sequence weights c (N,) of ``aggregation`` for the enumerated sequences' real-token mask (N, LMAX).

    ``batch`` (token-mean only): the number of sequences B sharing the denominator; None: B → ∞.
    """
    choose("aggregation", aggregation, dict.fromkeys(WEIGHTED))
    mask = mask.to(torch.float64)
    lengths = mask.sum(-1)
    if aggregation == "token-mean" and batch != 1:
        t = lengths.numpy().astype(int)
        pmf = length_pmf(t, probs)
        if batch is None:
            return np.full(len(t), 1.0 / float(np.arange(len(pmf)) @ pmf))
        if batch < 1:
            raise KLGradError(f"batch must be a positive integer or none (B → ∞), got {batch}")
        rest = np.array([1.0])  # pmf of R_{B−1}, the other sequences' total length
        for _ in range(batch - 1):
            rest = np.convolve(rest, pmf)
        r = np.arange(len(rest))
        return np.array([batch * float(rest @ (1.0 / (ti + r))) for ti in t])
    x = mask / lengths[:, None]  # one sequence whose masked terms sum to 1
    fn = AGGREGATIONS[aggregation]
    return np.array([float(fn(x[i:i + 1], mask[i:i + 1])) for i in range(len(x))])


def _own_objective(problem: Problem, x: torch.Tensor, c: np.ndarray) -> np.ndarray:
    """∇θ Σ_y π_θ(y)·c(y)·Σ_{t<T} d_t(y), c fixed, by autograd of the enumerated sum (float64)."""
    leaves = problem.policy.leaves((), torch.float64)
    logp = problem.policy.build_from(leaves).log_prob(x)
    ref = problem.ref.build(torch.float64).log_prob(x)
    value = (torch.exp(logp.sum(-1)) * torch.as_tensor(c) * (logp - ref).sum(-1)).sum()
    return torch.stack(torch.autograd.grad(value, list(leaves.values()))).numpy()


def _rel(a: np.ndarray, b: np.ndarray, bound: float) -> float:
    nb = float(np.linalg.norm(b))
    if nb == 0:
        return math.nan
    gap = float(np.linalg.norm(a - b))
    return 0.0 if gap <= bound else gap / nb


def aggregated_gradients(policy, ref, estimators, placements, batches: list[int | None]) -> dict:
    """Exact expected gradients of every (estimator, placement) under every aggregation, on-policy (float64).

    Returns {"truth": (P,) ∇KL(π_θ‖π_ref), "labels": (policy, ref), "rows": {(estimator, placement,
    aggregation, batch): (mean (P,), own (P,), bound)}}: mean = Σ_y π(y)·c(y)·∇S(y), own = ∇θ E_π[c·Σ_t d_t]
    (c fixed), bound = the float64 rounding bound of mean's norm. ``batches``: token-mean batch sizes
    (None: B → ∞); the other aggregations are taken for one sequence (their weights do not depend on B).
    """
    job = check_gradient_request(policy, ref, estimators, placements, mode="exact")
    problem = job.problem.in_float64()
    if not hasattr(problem.policy.build(torch.float64), "mask"):
        raise KLGradError(f"length weights need a variable-length family (markov-eos), got {problem.policy.fam.name}")
    nodes, probs = problem.policy.fam.nodes(problem.policy, 0)
    x = nodes[:, 0]  # (N, LMAX)
    mask = problem.policy.build(torch.float64).mask(x)
    grads = {k: g.double().numpy() for k, g in row_gradients(problem, nodes, job.cases).items()}  # (N, P)
    plan = [(a, 1) for a in WEIGHTED[:3]] + [("token-mean", b) for b in batches]
    weights = {(a, b): sequence_weights(mask, probs, a, b) for a, b in plan}
    own = {key: _own_objective(problem, x, c) for key, c in weights.items()}
    rows = {}
    for case in job.cases:
        for (agg, b), c in weights.items():
            terms = (probs * c)[:, None] * grads[case.key]
            bound = 16 * len(probs) * EPS * float(np.linalg.norm(np.abs(terms).sum(0)))
            rows[(case.estimator.name, case.placement.name, agg, b)] = (terms.sum(0), own[(agg, b)], bound)
    return {"truth": problem.true_gradients()[POLICY_REF], "labels": (problem.policy.label, problem.ref.label),
            "rows": rows}


def weighted_table(policy, ref, estimators, placements, batches: list[int | None]) -> pd.DataFrame:
    """One row per (estimator, placement, aggregation[, batch]) on-policy, exact; columns ``COLUMNS``
    (``aggregated_gradients`` reduced to norms: relative bias, cosine, norm ratio ‖E[g]‖/‖∇KL‖)."""
    out = aggregated_gradients(policy, ref, estimators, placements, batches)
    truth, (plabel, rlabel) = out["truth"], out["labels"]
    rows = []
    for (est, place, agg, b), (mean, own, bound) in out["rows"].items():
        zero = float(np.linalg.norm(mean)) <= bound  # E[g] = 0 to rounding: no direction
        cos = math.nan if zero else float(mean @ truth / (np.linalg.norm(mean) * np.linalg.norm(truth)))
        rows.append({"estimator": est, "placement": place, "aggregation": agg, "batch": _batch_label(agg, b),
                     "rel_bias_norm": _rel(mean, truth, bound), "cosine": cos,
                     "norm_ratio": 0.0 if zero else float(np.linalg.norm(mean) / np.linalg.norm(truth)),
                     "rel_bias_norm_vs_own": _rel(mean, own, bound),
                     "warning": "E[g] = 0 to rounding: no direction, cosine refused" if zero else "",
                     "policy": plabel, "ref": rlabel})
    return pd.DataFrame(rows, columns=COLUMNS)


def _batch_label(aggregation: str, batch: int | None) -> str:
    if aggregation == "token-mean":
        return "∞" if batch is None else str(batch)
    return "1" if aggregation == "seq-mean-token-sum-norm" else "any"


@dataclass(frozen=True)
class LengthWeightsExperiment:
    """Exact expected gradients of sequence placements under each token aggregation, variable length."""

    kind: ClassVar[str] = "length_weights"

    title: str
    policy: str  # a markov-eos spec
    ref: str
    estimators: list[str]
    placements: list[str]
    batches: list[int] = field(default_factory=lambda: [1, 4, 0])  # token-mean batch sizes; 0: B → ∞
    notes: str = ""


def _batches(exp: LengthWeightsExperiment) -> list[int | None]:
    if any(not isinstance(b, int) or b < 0 for b in exp.batches):
        raise KLGradError(f"length_weights: batches are positive integers or 0 (B → ∞), got {exp.batches}")
    return [None if b == 0 else b for b in exp.batches]


def check(exp: LengthWeightsExperiment) -> None:
    _batches(exp)
    job = check_gradient_request(exp.policy, exp.ref, exp.estimators, exp.placements, mode="exact")
    if not hasattr(job.problem.policy.build(), "mask"):
        raise KLGradError(f"length_weights needs a variable-length policy (markov-eos:…), got {exp.policy!r}")


def run(exp: LengthWeightsExperiment, progress=None, figures: bool = True):
    check(exp)
    return weighted_table(exp.policy, exp.ref, exp.estimators, exp.placements, _batches(exp)), {}


def describe(exp: LengthWeightsExperiment) -> str:
    return (f"policy `{exp.policy}`, ref `{exp.ref}`, on-policy; exact; token-mean batch sizes "
            f"{[b or '∞' for b in exp.batches]}.")


KIND = Kind(LengthWeightsExperiment, check, run, describe, views(lambda t: github(t, floatfmt=".6g")))
