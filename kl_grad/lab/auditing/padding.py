"""Does a function that takes a mask respect it? One cheap rerun of a sequence problem with padding.

The battery's sequences have no padding, so a mask parameter receives ones there. Trainers pad: a batch's
shorter responses end in positions with mask 0 whose log-probs are garbage (a pad token's). This check
enumerates the first on-policy sequence problem's support (``markov-3x4``: 81 sequences of L = 4 tokens),
appends ``PAD`` trailing positions with mask 0 and finite garbage log-probs (logp = −20, ref_logp = 3,
old_logp = −7: |d| = 23 makes an unmasked exp overflow-prone term visible, without NaN in the inputs), and
compares with the unpadded run:

    the per-sequence surrogate (or the scalar)       relative difference ≤ ``TOLERANCE``
    ∂L/∂ℓ_t on the real tokens                        relative difference ≤ ``TOLERANCE``
    ∂L/∂ℓ_t on the padded positions                   exactly 0 (the gradient a pad token would receive)

A function that respects its mask passes exactly (its masked terms are 0 or multiplied by 0, sums over
extra zeros are unchanged); ``TOLERANCE`` only allows for a reduction's summation order.
"""

from __future__ import annotations

import numpy as np
import torch

from ...errors import KLGradError
from .battery import AuditProblem
from .probe import log_probs_at, probe_points
from .user_term import UserTerm

PAD = 2
GARBAGE = {"logp": -20.0, "ref": 3.0, "old": -7.0}
TOLERANCE = 1e-6


def _totals(term: UserTerm, logp, ref, old, mask):
    leaf = logp.detach().requires_grad_()
    total = term.per_sample(leaf, ref, old, mask=mask)
    (c,) = torch.autograd.grad(total.sum(), leaf, allow_unused=True)
    c = torch.zeros_like(leaf) if c is None else c
    return total.detach().double().numpy(), c.double().numpy()


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    scale = max(float(np.max(np.abs(a))) if a.size else 0.0, 1e-300)
    with np.errstate(invalid="ignore"):
        diff = np.abs(a - b)
    return float(np.max(diff)) / scale if np.isfinite(diff).all() else float("inf")


def _common_ratio(plain, padded, length: int) -> float | None:
    """The one factor by which padding rescaled loss and real-token gradient alike, if there is one (a
    normaliser that counts padded positions), else None."""
    (v0, c0), (v1, c1) = plain, (padded[0], padded[1][..., :length])
    if not (np.isfinite(v1).all() and np.isfinite(c1).all()) or not np.abs(v0).max() > 0:
        return None
    ratio = float(np.sum(v1 * v0) / np.sum(v0 * v0))  # least squares: v1 ≈ ratio·v0
    if ratio == 1 or _relative(ratio * v0, v1) > TOLERANCE or _relative(ratio * c0, c1) > TOLERANCE:
        return None
    return ratio


def mask_check(term: UserTerm, ap: AuditProblem) -> str | None:
    """None when ``term`` respects its mask on ``ap`` (a sequence problem), else the warning line."""
    x, _ = probe_points(ap, 0, 0)
    logp, ref, old = log_probs_at(ap, x, torch.float64)
    logp, ref = logp.detach(), ref.detach()
    old = logp.clone() if old is None else old
    plain = _totals(term, logp, ref, old, torch.ones_like(logp))

    def pad(t, key):
        return torch.cat([t, torch.full((*t.shape[:-1], PAD), GARBAGE[key], dtype=t.dtype)], dim=-1)

    mask = pad(torch.ones_like(logp), "logp").clone()
    mask[..., -PAD:] = 0
    try:
        padded = _totals(term, pad(logp, "logp"), pad(ref, "ref"), pad(old, "old"), mask)
    except KLGradError as exc:  # e.g. a function that insists on the unpadded length
        return f"mask: {term.name} could not be rerun with {PAD} trailing padded positions on {ap.name}: {exc}"
    length = logp.shape[-1]
    value_diff = _relative(plain[0], padded[0])
    grad_diff = _relative(plain[1], padded[1][..., :length])
    leak = float(np.max(np.abs(padded[1][..., length:]))) if np.isfinite(padded[1]).all() else float("inf")
    if value_diff <= TOLERANCE and grad_diff <= TOLERANCE and leak == 0:
        return None
    scale = _common_ratio(plain, padded, length)
    if scale is not None and leak == 0:  # the padding's values stay out; only a normaliser counts the padding
        count = abs(scale - length / (length + PAD)) <= TOLERANCE
        why = (f" (= {length}/{length + PAD}: a division by the number of positions, mask 0 included)" if count
               else " (one common factor: a normaliser that counts padded positions)")
        return (f"mask: {term.name} normalises by the padded length: with {PAD} trailing padded positions on "
                f"{ap.name} its loss and gradient scale by {scale:.4g}{why}, the padding's values stay masked out; "
                "the KL's weight then depends on how long the batch's longest response is (verl's "
                "seq-mean-token-sum-norm divides by a fixed horizon instead)")
    what = [f"its loss changes by up to {value_diff:.2g} (relative)" if value_diff > TOLERANCE else "",
            f"its gradient on the real tokens by {grad_diff:.2g}" if grad_diff > TOLERANCE else "",
            f"padded positions receive gradient up to {leak:.2g}" if leak else ""]
    return (f"mask: {term.name} does not respect its mask: with {PAD} trailing padded positions (mask 0, logp = "
            f"{GARBAGE['logp']:g}, ref_logp = {GARBAGE['ref']:g}, old_logp = {GARBAGE['old']:g} there) on {ap.name}, "
            + ", ".join(w for w in what if w) + "; trainers pad shorter responses, so padding leaks into the loss")
