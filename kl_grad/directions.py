"""The two KL directions, named so that nobody has to guess.

``policy||ref`` is KL(π_θ ‖ π_ref) = E_{π_θ}[log π_θ − log π_ref], the term RLHF
trainers regularise. ``ref||policy`` is KL(π_ref ‖ π_θ).

The words "forward" and "reverse" are ambiguous across our own sources: seed 003
calls KL(π_θ‖π_ref) "KL" and KL(π_ref‖π_θ) "reverse KL", while seeds 001/004 and
most RLHF and variational-inference papers call KL(π_θ‖π_ref) the *reverse* KL
(the model's distribution comes first). We accept the words only as aliases,
with the papers' convention:

    reverse -> policy||ref        forward -> ref||policy
"""

from __future__ import annotations

from .errors import KLGradError

POLICY_REF = "policy||ref"
REF_POLICY = "ref||policy"
DIRECTIONS = (POLICY_REF, REF_POLICY)
DIRECTION_ALIASES = {"reverse": POLICY_REF, "forward": REF_POLICY}


def resolve_direction(name: str) -> str:
    """Return the canonical direction for ``name`` (a canonical name or an alias)."""
    key = name.strip()
    if key in DIRECTIONS:
        return key
    if key.lower() in DIRECTION_ALIASES:
        return DIRECTION_ALIASES[key.lower()]
    allowed = ", ".join(DIRECTIONS + tuple(DIRECTION_ALIASES))
    raise KLGradError(f"unknown direction {name!r}; expected one of {allowed}")


def other(direction: str) -> str:
    """The opposite direction."""
    return REF_POLICY if direction == POLICY_REF else POLICY_REF
