"""Reward specs for the training-dynamics runner: E_{π_θ}[R] and its exact gradient ∇_θ E_{π_θ}[R].

    categorical   ``1,0,0.5,-0.5``   one reward per token, R(x) = R_x; exact enumeration:
                                     E[R] = Σ_x q_x R_x, ∂E[R]/∂z_j = q_j (R_j − E[R]) (q = softmax(z))
    normal        ``linear:A``       R(x) = A·x: E[R] = A·μ, ∇ = (A, 0) w.r.t. (loc, scale)
    normal        ``quadratic:C,B``  R(x) = −C·(x − B)², C > 0: E[R] = −C((μ − B)² + σ²),
                                     ∇ = (−2C(μ − B), −2Cσ)
    markov        ``sum:1,0,0.5``    R(y) = Σ_t r[y_t]; ``last:1,0,0.5``: R(y) = r[y_{L−1}]
                                     (``train_sequences.SequenceReward``: a forward recursion, autograd)

The reward term is not what this lab measures, so its gradient is the closed form above (the KL term is the
one followed through autograd, ``kl_step.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...errors import KLGradError
from ..families import DistSpec


class Reward:
    """A reward on the policy's sample space; ``label`` is its spec text."""

    label: str

    def check(self, policy: DistSpec) -> None:
        """Refuse a reward that does not fit the policy's family or size."""
        raise NotImplementedError

    def expected(self, policy: DistSpec) -> float:
        """E_{π_θ}[R] at the spec's parameters."""
        raise NotImplementedError

    def gradient(self, policy: DistSpec) -> np.ndarray:
        """∇_θ E_{π_θ}[R], (P,) in ``policy.param_names`` order."""
        raise NotImplementedError


def _softmax(z) -> np.ndarray:
    z = np.asarray(z, dtype=float)
    e = np.exp(z - z.max())
    return e / e.sum()


@dataclass(frozen=True)
class TokenReward(Reward):
    """R(x) = values[x] for token x of a categorical policy."""

    values: tuple[float, ...]

    @property
    def label(self) -> str:
        return ",".join(f"{v:g}" for v in self.values)

    def check(self, policy):
        if policy.fam.sequential:
            raise KLGradError(f"reward {self.label} is a per-token reward of one token; a {policy.family} policy takes "
                              f"sum:{self.label} (R = Σ_t r[y_t]) or last:{self.label} (R = r[y_(L−1)])")
        if not policy.fam.enumerable or len(policy.values) != len(self.values):
            raise KLGradError(f"reward {self.label} gives {len(self.values)} token rewards; it needs a categorical "
                              f"policy with {len(self.values)} logits, got {policy.label}")

    def expected(self, policy):
        return math.fsum(_softmax(policy.values) * np.asarray(self.values))

    def gradient(self, policy):
        q, r = _softmax(policy.values), np.asarray(self.values)
        return q * (r - math.fsum(q * r))


@dataclass(frozen=True)
class LinearReward(Reward):
    """R(x) = A·x for a Normal policy."""

    a: float

    @property
    def label(self) -> str:
        return f"linear:{self.a:g}"

    def check(self, policy):
        _need_normal(self, policy)

    def expected(self, policy):
        return self.a * policy.values[0]

    def gradient(self, policy):
        return np.array([self.a, 0.0])


@dataclass(frozen=True)
class QuadraticReward(Reward):
    """R(x) = −C·(x − B)² for a Normal policy (C > 0: a bounded reward with its peak at B)."""

    c: float
    b: float

    @property
    def label(self) -> str:
        return f"quadratic:{self.c:g},{self.b:g}"

    def check(self, policy):
        _need_normal(self, policy)

    def expected(self, policy):
        mu, sigma = policy.values
        return -self.c * ((mu - self.b) ** 2 + sigma**2)

    def gradient(self, policy):
        mu, sigma = policy.values
        return np.array([-2 * self.c * (mu - self.b), -2 * self.c * sigma])


def _need_normal(reward: Reward, policy: DistSpec) -> None:
    if policy.param_names != ("loc", "scale"):  # the closed forms of E[x] and E[x²] are in loc and scale
        raise KLGradError(f"reward {reward.label} is a reward on the real line; it needs a normal policy, "
                          f"got {policy.label} (categorical policies take one reward per token, e.g. 1,0,0.5)")


REWARD_FORMS = ("one number per token (categorical, e.g. 1,0,0.5), linear:A or quadratic:C,B (normal), "
                "sum:1,0,0.5 or last:1,0,0.5 (markov)")


def _numbers(text: str, parts: list[str]) -> list[float]:
    values = []
    for p in parts:
        try:
            v = float(p)
        except ValueError:
            raise KLGradError(f"malformed reward {text!r}: {p.strip()!r} is not a number; expected {REWARD_FORMS}") \
                from None
        if not math.isfinite(v):
            raise KLGradError(f"malformed reward {text!r}: rewards must be finite, got {p.strip()}")
        values.append(v)
    return values


def parse_reward(text: str | Reward) -> Reward:
    """A ``Reward`` from its spec text (see the module doc); bad text names the allowed forms."""
    if isinstance(text, Reward):
        return text
    if not isinstance(text, str) or not text.strip():
        raise KLGradError(f"reward must be {REWARD_FORMS}, got {text!r}")
    kind, sep, rest = text.strip().partition(":")
    if not sep:
        values = _numbers(text, text.split(","))
        if len(values) < 2:
            raise KLGradError(f"reward {text!r} gives one token reward; a categorical policy has two or more tokens")
        return TokenReward(tuple(values))
    kind = kind.strip().lower()
    args = _numbers(text, rest.split(","))
    if kind in ("sum", "last"):
        from .sequences import parse_sequence_reward

        return parse_sequence_reward(kind, args, text)
    if kind == "linear" and len(args) == 1:
        return LinearReward(args[0])
    if kind == "quadratic" and len(args) == 2:
        if args[0] <= 0:
            raise KLGradError(f"reward {text!r}: C must be > 0 (R = −C·(x − B)² peaks at B)")
        return QuadraticReward(*args)
    raise KLGradError(f"malformed reward {text!r}; expected {REWARD_FORMS}")
