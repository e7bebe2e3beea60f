"""The two KL directions, named so that nobody has to guess.

``policy||ref`` is KL(π_θ ‖ π_ref) = E_{π_θ}[log π_θ − log π_ref], the term RLHF
trainers regularise. ``ref||policy`` is KL(π_ref ‖ π_θ).

The words "forward" and "reverse" are ambiguous across the literature: some
posts call KL(π_θ‖π_ref) "KL" and KL(π_ref‖π_θ) "reverse KL", while most RLHF
and variational-inference papers call KL(π_θ‖π_ref) the *reverse* KL (the
model's distribution comes first). We accept the words only as aliases, with
the papers' convention:

    reverse -> policy||ref        forward -> ref||policy
"""

from __future__ import annotations

from .errors import choose

POLICY_REF = "policy||ref"
REF_POLICY = "ref||policy"
DIRECTIONS = (POLICY_REF, REF_POLICY)
# What an expected gradient "follows", one vocabulary for every table, summary and audit: a direction (or both,
# joined by " and "), ZERO (the expected gradient is 0), or NONE (no KL's gradient).
ZERO = "zero"
NONE = "none"
FOLLOWS = (*DIRECTIONS, ZERO, NONE)
DIRECTION_ALIASES = {"reverse": POLICY_REF, "forward": REF_POLICY}


def resolve_direction(name: str) -> str:
    """Return the canonical direction for ``name`` (a canonical name or an alias, any case for aliases)."""
    key = name.strip()
    key = key.lower() if key.lower() in DIRECTION_ALIASES else key
    return choose("direction", key, {d: d for d in DIRECTIONS}, DIRECTION_ALIASES)  # type: ignore[return-value]


def other(direction: str) -> str:
    """The opposite direction."""
    return REF_POLICY if direction == POLICY_REF else POLICY_REF


def kl(direction: str, policy, ref):
    """KL(policy‖ref) or KL(ref‖policy) of two ``torch.distributions`` objects, by torch's closed form.

    The one place where a direction decides the argument order of ``kl_divergence``.
    """
    from torch.distributions import kl_divergence

    return kl_divergence(policy, ref) if direction == POLICY_REF else kl_divergence(ref, policy)
