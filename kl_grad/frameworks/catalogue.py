"""``FRAMEWORK_TERMS``: the KL terms of production RL trainers, written from their documented semantics.

A closed registry: ``get_term(name)`` looks a namespaced name up ("verl:low_var_kl"), unknown names list
the allowed ones. The entries live in ``entries/`` by group; each entry's ``source`` names the repository, the
file and the version or date read (public code read through this project's search corpus, December 2026); no
framework code is copied. Where a framework formula is elementwise in d = logp − ref_logp, the same function is
also a registered estimator (``estimator`` field; ``kl_grad.estimators``), so ``kl_loss``, ``kl-grad table`` and
exact mode can use it. Not included: verl's ``full`` (needs the whole vocabulary's log-probs, not one token's).
A name ``framework-<version>:…`` is an earlier release's default kept beside the current one.
"""

from __future__ import annotations

from ..errors import choose
from .entries import established, more, newer
from .terms import FrameworkTerm

FRAMEWORK_TERMS: dict[str, FrameworkTerm] = {}
for _term in established.TERMS + newer.TERMS + more.TERMS:
    if _term.name in FRAMEWORK_TERMS:
        raise ValueError(f"framework term {_term.name!r} registered twice")
    FRAMEWORK_TERMS[_term.name] = _term


def get_term(name: str) -> FrameworkTerm:
    """A catalogue entry by its namespaced name; unknown names list the allowed ones."""
    return choose("framework KL term", name.strip() if isinstance(name, str) else name,
                  FRAMEWORK_TERMS)  # type: ignore[return-value]
