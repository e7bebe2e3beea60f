"""The audit's problem battery: which policy/reference pairs a user's KL term is measured on.

Four Gaussian pairs (a reference near the policy, one far away, a narrower and a wider one) and two
categorical (token) policies, on-policy; when the term takes ``old_logp`` the near Gaussian and the first
categorical pair are also measured off-policy (samples from a fixed behaviour policy m ≠ π_θ). The far pair
is where clamps bite: there |log r| reaches 10–20 on a visible share of the policy's mass.

Sequence problems (``SEQUENCE``, ``families/markov.py``): two Markov chains whose transition rows differ
(so later tokens depend on earlier ones), V = 3 tokens × L = 4 and V = 2 × L = 6, exact by enumeration of
the 81 and 64 sequences, and the first one off-policy when the term takes ``old_logp``. Their truth is the
gradient of the sequence-level KL in both directions; a per-token loss that is unbiased for one token gives
only the token-level partial gradient there (issue 12; Tang & Munos, arXiv 2506.09477), so the auditor
reports them apart (``AuditResult.follows_sequence``).

Each problem is measured exactly where that converges (Gauss–Hermite quadrature or enumeration of the
support, ``quadrature.py``) and by Monte Carlo with standard errors where it cannot: the auditor decides
from the term's own gradients (``probe.py``), not from its name.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..families import DistSpec, parse_spec
from ..problem import Problem


@dataclass(frozen=True)
class AuditProblem:
    """One battery entry: ``name`` (as reports print it) and the ``problem`` (float64)."""

    name: str
    problem: Problem

    @property
    def on_policy(self) -> bool:
        return self.problem.sampler is None

    @property
    def continuous(self) -> bool:
        return not self.problem.policy.fam.enumerable

    @property
    def sequence(self) -> bool:
        """Points are token sequences (…, L) with per-token log-probs (a sequence family)."""
        return self.problem.policy.fam.sequential


def _spec(text: str) -> DistSpec:
    return parse_spec(text)


# name: (policy, ref, off-policy sampler or None)
ON_POLICY = {
    "gauss-near": ("normal:0,1", "normal:0.3,1.1"),
    "gauss-far": ("normal:0,1", "normal:3.5,1.2"),
    "gauss-narrow-ref": ("normal:0,1", "normal:0.5,0.6"),
    "gauss-wide-ref": ("normal:0,1", "normal:-0.5,2"),
    "tokens-3": ("categorical:0,0.5,-1", "categorical:0.3,-0.2,0.4"),
    "tokens-6": ("categorical:1,0,-1,0.5,-2,0.3", "categorical:0,0.4,-0.5,1,-1,0"),
}
OFF_POLICY = {  # name: (on-policy problem it shifts, sampler m)
    "gauss-near-offpolicy": ("gauss-near", "normal:0.2,1.05"),
    "tokens-3-offpolicy": ("tokens-3", "categorical:0.2,0.3,-0.8"),
}
SEQUENCE = {  # Markov chains: markov:L:INIT:TRANS (rows of TRANS split by /)
    "markov-3x4": ("markov:4:0,0.5,-1:1,0,-1/0,1,0.5/-1,0.5,1", "markov:4:0.3,0,-0.5:0,0.8,-0.6/0.5,0,0.2/0,-0.4,0.9"),
    "markov-2x6": ("markov:6:0.5,-0.5:1.5,-1/-1,1", "markov:6:0,0:0,0.5/0.5,0"),
}
SEQUENCE_OFF_POLICY = {
    "markov-3x4-offpolicy": ("markov-3x4", "markov:4:0.1,0.4,-0.8:0.9,0.1,-0.8/0.1,0.8,0.4/-0.8,0.4,0.9"),
}


def battery(off_policy: bool) -> list[AuditProblem]:
    """The problems: single-token on-policy, then off-policy (only when ``off_policy``: the term takes old_logp),
    then the sequence problems in the same order."""
    out = []
    for on, off in ((ON_POLICY, OFF_POLICY), (SEQUENCE, SEQUENCE_OFF_POLICY)):
        out += [AuditProblem(name, Problem(_spec(p), _spec(r), None, "float64")) for name, (p, r) in on.items()]
        if off_policy:
            for name, (base, sampler) in off.items():
                p, r = on[base]
                out.append(AuditProblem(name, Problem(_spec(p), _spec(r), _spec(sampler), "float64")))
    return out
