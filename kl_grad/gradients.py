"""The instrument: autograd gradients of mean surrogates, one per row of points.

A row is one Monte-Carlo trial (its n samples) or one quadrature node (a single
point); every row gets its own gradient of its row-mean surrogate, with no
Python loop per row. Two ways to get it, both from ``torch.autograd``:

Split (score function, normal family). A surrogate depends on θ
only through the policy log-probs ℓ_i = log π_θ(x_i), so its gradient is
∇θ L = Σ_i (∂L/∂ℓ_i) ∇θ ℓ_i (chain rule). That is also where a trainer's
backward crosses from the KL term into the model: the estimator decides
∂L/∂ℓ_i, the model supplies ∇θ ℓ_i. Autograd computes both factors: ∂L/∂ℓ per
case, through the surrogate's own graph (every detach, weight, clamp and
straight-through), and ∇θ ℓ_i once per batch of points, through
``torch.distributions``' log_prob with one copy of θ per point; a row-wise
sum contracts them. Backpropagating through log_prob once per batch instead of
once per case takes 10–18% off a seed-003 run; the saving is per case.

The single graph (one graph from θ to each loss, what ``loss.backward()``
builds) serves the rest: pathwise (``rsample``) runs, where the points depend on
θ and the chain rule above does not hold, and categorical policies, where one
copy of K logits per point costs K times the memory and time (measured: 25%
slower at K = 4, 4.7× slower and 5× the memory at K = 256). tests/test_gradients.py
checks that the two agree for every estimator and placement, for both families.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import KLGradError
from .estimators import Estimator
from .families import DistSpec
from .surrogates import Placement, surrogate


@dataclass(frozen=True)
class Case:
    """One gradient experiment: an estimator in a placement."""

    estimator: Estimator
    placement: Placement

    @property
    def key(self) -> tuple[str, str]:
        return (self.estimator.name, self.placement.name)


def check_pathwise(policy: DistSpec, sampler: DistSpec | None) -> None:
    if policy.family != "normal":
        raise KLGradError(f"pathwise (rsample) gradients need a continuous reparameterisable policy (normal); "
                          f"{policy.family} samples are discrete tokens, which cannot be reparameterised")
    if sampler is not None:
        raise KLGradError("pathwise (rsample) gradients are on-policy only: drop the sampler")


def row_gradients(
    policy: DistSpec,
    ref: DistSpec,
    points: torch.Tensor,
    cases: list[Case],
    sampler: DistSpec | None = None,
    dtype: torch.dtype | None = None,
    pathwise: bool = False,
    form: str | None = None,
) -> dict[tuple[str, str], torch.Tensor]:
    """Per-row autograd gradient of the row-mean surrogate for each case.

    Args:
        policy: π_θ at θ0; its parameters are the differentiated leaves.
        ref: π_ref, fixed.
        points: (rows, cols) detached sample points (integers for discrete families).
        cases: estimator × placement pairs sharing these points.
        sampler: the off-policy sampling distribution m, or None for m = π_θ.
        dtype: precision of parameters and log-probs; default: the points' float dtype.
        pathwise: reparameterised sampling, the contrast to everything else here: the
            points become x(θ) = loc + scale·ε (what ``Normal.rsample`` computes, with
            the ε that drew them), so autograd also differentiates through the sample
            and through log π_ref(x). On-policy Normal only.
        form: "split" or "single" (see the module doc); default: "single" for pathwise
            runs and discrete families, "split" otherwise. The tests set it to compare both.

    Returns:
        {case.key: (rows, n_params) gradients}, columns in ``policy`` parameter order.
    """
    dtype = dtype or points.dtype
    form = form or ("single" if pathwise or policy.fam.discrete else "split")
    if pathwise:
        check_pathwise(policy, sampler)
        if form != "single":
            raise ValueError("pathwise gradients need the single graph: the points depend on θ")
    with torch.no_grad():
        sampler_logp = None if sampler is None else sampler.build(dtype).log_prob(points)
    build = {"split": _split_at_log_prob, "single": _single_graph}[form]
    logp, ref_logp, wrt, finish = build(policy, ref, points, dtype, pathwise)
    log_ratio = logp - ref_logp  # d, shared by every case's graph
    cols = points.shape[1]
    out = {}
    for i, case in enumerate(cases):
        per_sample = surrogate(case.estimator, case.placement, logp, ref_logp, sampler_logp, log_ratio)
        # Sum over rows of each row's mean; sum/cols equals mean() in value, with a cheaper backward.
        loss = per_sample.sum() / cols
        out[case.key] = finish(torch.autograd.grad(loss, wrt, retain_graph=i + 1 < len(cases)))  # (rows, P)
    return out


def _split_at_log_prob(policy, ref, points, dtype, pathwise):
    """Graph roots at ℓ = log π_θ(x); ∇θ ℓ per point from one backward; finish contracts them."""
    rows, cols = points.shape
    with torch.no_grad():
        ref_logp = ref.build(dtype).log_prob(points)  # (rows, cols)
    leaves = policy.leaves((rows, cols), dtype)  # one copy of θ per point
    logp = policy.build_from(leaves).log_prob(points)  # (rows, cols)
    # Backward from Σ ℓ: each point's copy of θ gets its own ∇θ ℓ_i. (Passing grad_outputs=ones instead
    # makes torch import sympy on the first call: 0.3 s of a fresh process's first exact table.)
    scores = torch.autograd.grad(logp.sum(), list(leaves.values()))
    scores = torch.stack(scores, dim=1)  # (rows, P, cols): ∇θ log π_θ(x) per point
    logp = logp.detach().requires_grad_()  # ℓ: where each case's graph starts

    # Σ_i ∂L/∂ℓ_i · ∇θ ℓ_i per row; sum() is pairwise (bmm's float32 dot: 100× less accurate)
    def finish(grads):
        return (scores * grads[0].unsqueeze(1)).sum(dim=-1)

    return logp, ref_logp, [logp], finish


def _single_graph(policy, ref, points, dtype, pathwise):
    """One graph from θ to each loss, as ``loss.backward()`` runs it: leaves (rows, 1), one copy per row."""
    leaves = policy.leaves((points.shape[0], 1), dtype)
    if pathwise:
        loc0, scale0 = policy.values
        eps = (points - loc0) / scale0  # the standard-normal draws behind the points
        points = leaves["loc"] + leaves["scale"] * eps  # x(θ), as Normal.rsample: loc + eps * scale
    # Constant, except pathwise, where it depends on θ through x(θ): autograd handles both.
    ref_logp = ref.build(dtype).log_prob(points)  # (rows, cols)
    logp = policy.build_from(leaves).log_prob(points)  # (rows, cols), carries grad
    return logp, ref_logp, list(leaves.values()), lambda grads: torch.cat(grads, dim=1)
