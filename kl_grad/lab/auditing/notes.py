"""The audit's warnings, worded by what was found: one line per kind of hazard, each printed once.

``probe_notes`` reads the probes (``probe.py``): zero-gradient mass (called a clamp only where the value is
flat there too), NaN/inf, negative values (rounding-sized ones of a term that is otherwise ≥ 0 always; large
ones not for a REINFORCE reward surrogate, whose value is its reward, signed by design), float32
instability, and the precision the function computes in (named from its gradient's values, ``probe.inner``).
``sequence_notes`` says what the sequence problems add. ``dedupe`` keeps the first of lines that differ only
in a number inside parentheses (a runner warning repeated for each parameter: "(x = 12.9)", "(x = 13.28)").
"""

from __future__ import annotations

import math
import re

import torch

from ...directions import DIRECTIONS, POLICY_REF
from .battery import AuditProblem
from .probe import F32_UNSTABLE, FLAT_NUDGE, INTERNAL, NUDGE, Probe, pct

ROUNDING_ULPS = 64  # negative values no larger than this many unit roundoffs are the term's rounding


def _zero_note(zero: list[tuple[AuditProblem, Probe]]) -> str:
    each = ", ".join(f"{ap.name} {pct(pr.zero_mass)}" + (" (enumerated)" if pr.zero_se == 0 else
                                                        f" ± {pct(pr.zero_se)}") for ap, pr in zero)
    n = max(pr.points for _, pr in zero)
    head = (f"the per-sample gradient is exactly zero on part of the sampling mass: {each} (binomial se, {n} "
            "samples per problem)")
    tail = "; those samples contribute no gradient"
    low = sorted({d for d in (pr.inner or str(pr.out_dtype).replace("torch.", "") for _, pr in zero
                              if pr.low_precision) if torch.finfo(getattr(torch, d)).eps > FLAT_NUDGE / 8})
    if low:  # bfloat16/float16 rounding freezes the value under FLAT_NUDGE too, so flatness tells nothing
        return (f"zero gradient: {head}; the function computes in {', '.join(low)}, where a gradient rounds to "
                f"exactly 0 below its rounding (e.g. 1 − e^(−d) for small d), so this may be rounding, not a "
                f"clamp{tail}")
    if min(pr.zero_flat for _, pr in zero) == 1:
        return f"clamp: {head}, and the value is flat there too (a clamp's flat side){tail}"
    share = ", ".join(f"{ap.name} {pct(1 - pr.zero_flat)}" for ap, pr in zero)
    return (f"zero gradient: {head}, while the value still moves there (when logp moves by {FLAT_NUDGE:g} "
            f"relative) on {share} of it: a stop-gradient on part of the term, or a gradient that cancels to "
            f"exactly 0{tail}")


def _negative_note(probes, name: str, reward: bool) -> str | None:
    on = [(ap, pr) for ap, pr in probes if ap.on_policy and not math.isnan(pr.negative_mass)]
    neg = [(ap, pr) for ap, pr in on if pr.negative_mass > 0]
    if not neg:
        return None
    masses = [pr.negative_mass for _, pr in neg]
    span = pct(min(masses)) if min(masses) == max(masses) else f"{pct(min(masses))} to {pct(max(masses))}"
    u, low = max((torch.finfo(getattr(torch, d)).eps / 2, d)
                 for d in (pr.inner or str(pr.out_dtype).replace("torch.", "") for _, pr in neg))
    worst = max(pr.negative_max for _, pr in neg)
    if worst <= ROUNDING_ULPS * u:
        return (f"negative values (rounding): {name} dips below 0 by at most {worst:.2g} on {len(neg)} of {len(on)} "
                f"on-policy problems ({span} of the mass), within {ROUNDING_ULPS} unit roundoffs of {low}: a "
                "term that should be ≥ 0 losing its value to cancellation (e.g. float32 e^(−d) − 1 + d near d = 0, "
                "unsloth-zoo PR #1240; expm1(−d) + d keeps it ≥ 0)")
    single = [pr.reward_form for ap, pr in on if not ap.sequence]
    if reward or (single and all(single)):
        return None  # a REINFORCE surrogate's value is its reward: negative by design (k1 as a reward)
    return (f"negative values: {name} returns negative per-sample values on {len(neg)} of {len(on)} on-policy "
            f"problems ({span} of the mass); a per-sample KL estimate such as k2 or k3 never is (k1 is), "
            "so check what you log or penalise")


def probe_notes(probes: list[tuple[AuditProblem, Probe]], name: str, reward: bool = False) -> list[str]:
    """One line per kind of hazard over all problems (empty when nothing is worth saying); ``reward``: the
    term is wrapped as a reward placement (its values are rewards)."""
    out = []
    zero = [(ap, pr) for ap, pr in probes if pr.zero_mass > 0]
    if zero:
        out.append(_zero_note(zero))
    bad = [(ap, pr) for ap, pr in probes if pr.nonfinite_mass > 0]
    if bad:
        out.append(f"NaN/inf: {name} returns NaN or inf on " + ", ".join(f"{ap.name} {pct(pr.nonfinite_mass)}"
                                                                          for ap, pr in bad) + " of the mass")
    if any(pr.batch_sum for _, pr in probes):
        out.append(f"scalar: {name} returns a sum over the batch (its value doubles when every sample is given "
                   "twice), so its gradient is the batch size times a mean's and the bias and cosine columns here "
                   "are of that sum on the audit's batches; divide by the number of samples (or tokens), as "
                   "trainers' losses do, to audit the KL term itself")
    neg = _negative_note(probes, name, reward)
    if neg:
        out.append(neg)
    unstable = [(ap, pr) for ap, pr in probes if math.isfinite(pr.f32_error) and pr.f32_error > F32_UNSTABLE]
    if unstable:
        out.append("float32: numerically unstable gradient: with float32 inputs the per-sample gradient moves by "
                   + ", ".join(f"{ap.name} {pr.f32_error:.1e}" for ap, pr in unstable)
                   + f" (RMS, relative to float64; a stable one moves ~1e-7, the threshold is {F32_UNSTABLE:g})")
    return out


def dtype_notes(problems: list[dict], probes: list, label: str) -> list[str]:
    """What precision the function computes in, when below float64 (it downcasts, or casts back)."""
    notes = []
    dtypes = sorted({p["dtype"] for p in problems} - {"float64"})
    if dtypes:
        notes.append(f"dtype: {label} returns {', '.join(dtypes)} from float64 inputs (it downcasts); its "
                     "rounding is below the Monte-Carlo standard errors used for it instead of exact verdicts")
    inside = [(ap, pr) for ap, pr in probes if str(pr.out_dtype) == "torch.float64" and pr.frozen > INTERNAL]
    if inside:
        kinds = sorted({pr.inner for _, pr in inside})
        step = (f"its gradient takes only {kinds[0]} values: a {kinds[0]} step and a cast back"
                if len(kinds) == 1 and kinds[0] else "a lower-precision step and a cast back?")
        notes.append(f"dtype: {label} returns float64 but computes in lower precision inside: on "
                     f"{', '.join(ap.name for ap, _ in inside)} its value and gradient do not change when logp moves "
                     f"by {NUDGE:g} relative ({step}); measured by Monte Carlo")
    return notes


def sequence_notes(problems: list[dict], probes: list, label: str, follows: str, follows_sequence: str) -> list[str]:
    """What the sequence problems add: the single-token verdict that does not carry over to sequences (the
    finding of issue 12), and how a scalar output is read there."""
    seq = [p for p in problems if p["sequence"] and p["on_policy"]]
    notes = []
    if seq and follows in DIRECTIONS and follows_sequence != follows:
        bias = ", ".join(f"{p['problem']} {p[f'rel_bias_norm_vs_{follows}']:.3g}" for p in seq)
        why = ("the gradient of a sequence's KL(π_θ‖π_ref) has cross terms E[s_t·d_t'] for later tokens t' > t "
               "(their prefix distribution depends on θ), which a per-token term unbiased for one token misses, so "
               "it gives only the token-level partial gradient") if follows == POLICY_REF else (
               "per-token terms average each token's KL(π_ref‖π_θ) over the policy's prefixes, the sequence-level "
               "KL(π_ref‖π_θ) over the reference's, so the per-token sum is a different objective")
        notes.append(f"sequences: {label} follows {follows} for one token but not on the sequence problems "
                     f"(follows_sequence {follows_sequence}; relative bias against the sequence-level ∇KL({follows}): "
                     f"{bias}): {why} (issue 12; Tang & Munos, arXiv 2506.09477); unbiased for the sequence-level "
                     "KL(π_θ‖π_ref): the KL as a REINFORCE reward with reward-to-go, or per-token terms times the "
                     "prefix weight W_t (kl_grad.sequences)")
    if any(ap.sequence and pr.scalar for ap, pr in probes):
        notes.append(f"scalar: {label} returns a reduced scalar; on the sequence problems it is read as the mean "
                     "over sequences of each sequence's loss (seq-mean-token-sum: x.sum(-1).mean() of per-token x), "
                     "so a token mean x.mean() reads as 1/L of it")
    return notes


_NUMBER_IN_PARENS = re.compile(r"\(([^()]*?)-?\d[\d.e+-]*\)")


def dedupe(lines: list[str]) -> list[str]:
    """``lines`` without repeats: exact, or differing only in a number at the end of a parenthesis."""
    seen, out = set(), []
    for line in lines:
        key = _NUMBER_IN_PARENS.sub(r"(\1#)", line)
        if key not in seen:
            seen.add(key)
            out.append(line)
    return out
