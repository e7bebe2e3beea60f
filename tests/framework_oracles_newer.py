"""Hand-written per-token formulas of the catalogue terms added after the first eight frameworks (plain numpy).

Same contract as ``framework_oracles.TERM``: (lp, ref, old) float64 arrays, ``old`` None on-policy, → (value,
∂value/∂lp) differentiated by hand (reward terms: the surrogate's w·value and its gradient w·value). Notation:
d = lp − ref, w = e^(lp − old) (∂w/∂lp = w; on-policy w = 1, ∂w/∂lp = 1), k3 = e^(−d) − 1 + d, k3' = 1 − e^(−d).
Reward penalties that the framework takes at the sampler's log-probs use d_old = old − ref when old is given.
"""

from __future__ import annotations

import numpy as np

from tests.framework_oracles import _dk3, _k3, _w


def _k3_input_clamped(bound):
    def f(lp, ref, old):
        d = lp - ref
        c = np.clip(d, -bound, bound)
        return _k3(c), np.where(np.abs(d) < bound, _dk3(d), 0.0)  # clamp(log r) active: constant
    return f


def _weighted(value, slope):
    """w·f(d) with w differentiable: (w f, w f + w f') — the product rule."""
    def f(lp, ref, old):
        d, w = lp - ref, _w(lp, old)
        return w * value(d), w * (value(d) + slope(d))
    return f


def _trinity(lp, ref, old):
    d, w = lp - ref, _w(lp, old)
    cw = np.clip(w, 0.0, 2.0)
    dw = np.where(w < 2.0, w, 0.0)  # ∂clamp(w)/∂lp = w inside (0, 2), 0 above 2 (w > 0 always)
    return cw * _k3(d), dw * _k3(d) + cw * _dk3(d)


def _cosmos_unbiased(lp, ref, old):
    d, w = lp - ref, _w(lp, old)
    c = np.clip(d, -20, 20)
    kl = _k3(c)
    dkl = np.where(np.abs(d) < 20, _dk3(d), 0.0)
    v = w * kl
    g = w * kl + w * dkl  # w keeps its gradient where the input clamp fires
    return np.clip(v, -10, 10), np.where(np.abs(v) < 10, g, 0.0)


def _low_var_kl(lp, ref, old):
    d = lp - ref
    c = np.clip(d, -20, 20)
    v = _k3(c)
    return np.clip(v, -10, 10), np.where((np.abs(d) < 20) & (v < 10), _dk3(d), 0.0)


def _swift_rollout_is(lp, ref, old):
    """c·low_var_kl with the constant c = min(e^clip(lp − old, ±20), 2) (1 on-policy): c scales value and slope."""
    c = 1.0 if old is None else np.minimum(np.exp(np.clip(lp - old, -20, 20)), 2.0)
    v, g = _low_var_kl(lp, ref, old)
    return c * v, c * g


def _reward_at_sampler(value):
    """−β·value(old − ref) in the reward: the surrogate w·value(d_old), gradient w·value(d_old)."""
    def f(lp, ref, old):
        w = _w(lp, old)
        v = value((lp if old is None else old) - ref)
        return w * v, w * v
    return f


_K1 = lambda lp, ref, old: (lp - ref, np.ones_like(lp))  # noqa: E731
_K2 = lambda lp, ref, old: (0.5 * (lp - ref) ** 2, lp - ref)  # noqa: E731
_K3 = lambda lp, ref, old: (_k3(lp - ref), _dk3(lp - ref))  # noqa: E731

TERM = {
    "slime:k1-is": _weighted(lambda d: d, np.ones_like),
    "slime:k2-is": _weighted(lambda d: 0.5 * d * d, lambda d: d),
    "slime:k3-is": _weighted(_k3, _dk3),
    "tunix:kl": _K1, "tunix-0.1.6:k3": _K3, "unsloth:k3": _K3, "torchforge:k3": _K3, "trinity:k2": _K2,
    "compose-rl:reward:k1": _reward_at_sampler(lambda d: np.clip(d, -40, 40)),
    "compose-rl:reward:k3_offpolicy": _reward_at_sampler(lambda d: 1 - np.exp(np.clip(-d, -40, 40))),
    "trinity:corrected_k3": _trinity,
    "pipelinerl:k3": _k3_input_clamped(10.0),
    "areal:reward:k1": _reward_at_sampler(lambda d: np.clip(d, -10, 10)),
    "cosmos-rl:k3": _low_var_kl,
    "cosmos-rl:k3-unbiased": _cosmos_unbiased,
    "oat:k3": _k3_input_clamped(40.0),
    "oat:reward:k1": _reward_at_sampler(lambda d: d),
    "trl:rloo-reward:k1": _reward_at_sampler(lambda d: d),
    "trl:ppo-reward:k1": _reward_at_sampler(lambda d: d),
    "trl:ppo-reward:k3": _reward_at_sampler(_k3),
    # entries/more.py
    "ms-swift:k3": _low_var_kl,
    "ms-swift:k3-rollout-is": _swift_rollout_is,
    "ms-swift:reward:k1": _reward_at_sampler(lambda d: d),
    "marin:k1": _K1, "marin:k2": _K2, "marin:k3": _K3, "liger:k3": _K3,
    "trl-7188:k3-bias-corrected": _weighted(_k3, _dk3),
    # the bound acts only where k3 ≥ 10: clamp(k3, ±10) and its gradient, zero where the cap saturates
    "openrlhf-1335:k3": lambda lp, ref, old: (np.minimum(_k3(lp - ref), 10.0),
                                               np.where(_k3(lp - ref) < 10.0, _dk3(lp - ref), 0.0)),
}
