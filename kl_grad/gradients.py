"""The instrument: autograd gradients of mean surrogates, one per row of points.

A row is one Monte-Carlo trial (its n samples) or one quadrature node (a single
point). The policy's parameters are leaves of shape (rows, 1), one copy per row,
all equal to θ0; the loss is the sum over rows of the row-mean surrogate, so one
``torch.autograd.grad`` call returns every row's own gradient of its mean
surrogate, exactly the number a trainer's ``loss.backward()`` would produce for
that batch. No Python loop runs per row.
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

    Returns:
        {case.key: (rows, n_params) gradients}, columns in ``policy`` parameter order.
    """
    rows, cols = points.shape
    dtype = dtype or points.dtype
    leaves = policy.leaves((rows, 1), dtype)  # each (rows, 1)
    with torch.no_grad():
        sampler_logp = None if sampler is None else sampler.build(dtype).log_prob(points)
    if pathwise:
        check_pathwise(policy, sampler)
        loc0, scale0 = policy.values
        eps = (points - loc0) / scale0  # the standard-normal draws behind the points
        points = leaves["loc"] + leaves["scale"] * eps  # x(θ), as Normal.rsample: loc + eps * scale
    # Constant, except pathwise, where it depends on θ through x(θ): autograd handles both.
    ref_logp = ref.build(dtype).log_prob(points)  # (rows, cols)
    logp = policy.build_from(leaves).log_prob(points)  # (rows, cols), carries grad
    log_ratio = logp - ref_logp  # d, shared by every case's graph
    out = {}
    params = list(leaves.values())
    for i, case in enumerate(cases):
        per_sample = surrogate(case.estimator, case.placement, logp, ref_logp, sampler_logp, log_ratio)
        # Sum over rows of each row's mean; sum/cols equals mean() in value, but its
        # backward is a free expand where mean's divides every element again.
        loss = per_sample.sum(dim=-1).sum() / cols
        grads = torch.autograd.grad(loss, params, retain_graph=i + 1 < len(cases), allow_unused=True)
        out[case.key] = torch.cat([_zeros_if_none(g, rows, dtype) for g in grads], dim=1)  # (rows, P)
    return out


def _zeros_if_none(grad: torch.Tensor | None, rows: int, dtype: torch.dtype) -> torch.Tensor:
    # A surrogate with no path to a parameter (e.g. a fully detached one) has gradient 0.
    return torch.zeros(rows, 1, dtype=dtype) if grad is None else grad
