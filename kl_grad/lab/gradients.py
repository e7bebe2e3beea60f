"""The instrument: autograd gradients of mean surrogates, one per row of points.

A row is one Monte-Carlo trial (its n samples) or one quadrature node (a single
point); every row gets its own gradient of its row-mean surrogate, with no
Python loop per row. Two ways to get it, both from ``torch.autograd``:

Split (score function, continuous families). A surrogate depends on θ
only through the policy log-probs ℓ_i = log π_θ(x_i), so its gradient is
∇θ L = Σ_i (∂L/∂ℓ_i) ∇θ ℓ_i (chain rule). That is also where a trainer's
backward crosses from the KL term into the model: the estimator decides
∂L/∂ℓ_i, the model supplies ∇θ ℓ_i. Autograd computes both factors: ∂L/∂ℓ per
case, through the surrogate's own graph (every detach, weight, clamp and
straight-through), and ∇θ ℓ_i once per batch of points, through
``torch.distributions``' log_prob with one copy of θ per point; a row-wise
sum contracts them. Backpropagating through log_prob once per batch instead of
once per case saves one such backward per case (README, Performance).

The single graph (one graph from θ to each loss, what ``loss.backward()``
builds) serves the rest: pathwise (``rsample``) runs, where the points depend on
θ and the chain rule above does not hold, and enumerable (categorical) policies, where one
copy of K logits per point would cost K times the memory and time. tests/lab/test_gradients.py
checks that the two agree for every estimator and placement, for both families.
"""

from __future__ import annotations

import torch

from .problem import Problem
from .terms import Case


def row_gradients(problem: Problem, points: torch.Tensor, cases: list[Case],
                  form: str | None = None) -> dict[tuple[str, str], torch.Tensor]:
    """Per-row autograd gradient of the row-mean surrogate for each case.

    Args:
        problem: policy (its parameters are the differentiated leaves), reference, sampler m
            (None: m = π_θ), dtype of parameters and log-probs, and pathwise. Pathwise is the
            contrast to everything else here: the points become x(θ) (the family's
            reparameterisation, e.g. loc + scale·ε with the ε that drew them), so autograd also
            differentiates through the sample and through log π_ref(x).
        points: (rows, cols) detached sample points (integers for enumerable families); (rows, cols, L)
            token sequences for sequence families, whose cases use ``kl_grad.sequences`` placements.
        cases: estimator × placement pairs sharing these points.
        form: "split" or "single" (see the module doc); default: "single" for pathwise runs and
            enumerable families, "split" otherwise. The tests set it to compare both.

    Returns:
        {case.key: (rows, n_params) gradients}, columns in ``problem.param_names`` order.
    """
    form = form or ("single" if problem.pathwise or problem.policy.fam.enumerable else "split")
    if problem.pathwise and form != "single":
        raise ValueError("pathwise gradients need the single graph: the points depend on θ")
    with torch.no_grad():
        base = problem.weight_base
        sampler_logp = None if base is None else base.build(problem.dtype).log_prob(points)
    build = {"split": _split_at_log_prob, "single": _single_graph}[form]
    logp, ref_logp, wrt, finish, dists = build(problem, points)
    log_ratio = logp - ref_logp  # d, shared by every case's graph
    cols = points.shape[1]
    out = {}
    for i, case in enumerate(cases):
        if getattr(case, "full", False):  # the full-vocabulary KL reads every position's whole distribution
            per_sample = case.per_sample_full(*dists, logp, sampler_logp)
        else:
            per_sample = case.per_sample(logp, ref_logp, sampler_logp, log_ratio)  # Case (token/sequence), UserTerm
        # Sum over rows of each row's mean; sum/cols equals mean() in value, with a cheaper backward.
        loss = per_sample.sum() / cols
        out[case.key] = finish(torch.autograd.grad(loss, wrt, retain_graph=i + 1 < len(cases)))  # (rows, P)
    return out


def _split_at_log_prob(problem: Problem, points: torch.Tensor):
    """Graph roots at ℓ = log π_θ(x); ∇θ ℓ per point from one backward; finish contracts them."""
    rows, cols = points.shape
    with torch.no_grad():
        ref_logp = problem.ref.build(problem.dtype).log_prob(points)  # (rows, cols)
    leaves = problem.policy.leaves((rows, cols), problem.dtype)  # one copy of θ per point
    logp = problem.policy.build_from(leaves).log_prob(points)  # (rows, cols)
    # Backward from Σ ℓ: each point's copy of θ gets its own ∇θ ℓ_i. (Passing grad_outputs=ones instead
    # makes torch import sympy on the first call: 0.3 s of a fresh process's first exact table.)
    scores = torch.autograd.grad(logp.sum(), list(leaves.values()))
    scores = torch.stack(scores, dim=1)  # (rows, P, cols): ∇θ log π_θ(x) per point
    logp = logp.detach().requires_grad_()  # ℓ: where each case's graph starts

    # Σ_i ∂L/∂ℓ_i · ∇θ ℓ_i per row; sum() is pairwise (bmm's float32 dot: 100× less accurate)
    def finish(grads):
        return (scores * grads[0].unsqueeze(1)).sum(dim=-1)

    return logp, ref_logp, [logp], finish, None


def _single_graph(problem: Problem, points: torch.Tensor):
    """One graph from θ to each loss, as ``loss.backward()`` runs it: leaves (rows, 1), one copy per row."""
    leaves = problem.policy.leaves((points.shape[0], 1), problem.dtype)
    if problem.pathwise:
        points = problem.policy.fam.reparameterise(problem.policy, leaves, points)  # x(θ)
    # Constant, except pathwise, where it depends on θ through x(θ): autograd handles both.
    ref = problem.ref.build(problem.dtype)
    ref_logp = ref.log_prob(points)  # (rows, cols)
    policy = problem.policy.build_from(leaves)
    logp = policy.log_prob(points)  # (rows, cols), carries grad
    return logp, ref_logp, list(leaves.values()), lambda grads: torch.cat(grads, dim=1), (policy, ref, points)
