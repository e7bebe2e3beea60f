"""Hand-written per-token formulas of every framework catalogue term (plain numpy, no kl_grad).

Each entry of ``TERM`` maps (lp, ref, old) — float64 arrays of one shape, ``old`` None for on-policy — to
(value, grad): the per-token value the framework computes and ∂value/∂lp per token, both differentiated
by hand. With d = lp − ref, w = e^(lp − old) (∂w/∂lp = w; on-policy w = 1 with ∂w/∂lp = 1), k3 = e^(−d) − 1 + d,
k3' = 1 − e^(−d) (so k3 + k3' = d exactly). A clamp's derivative is 0 where it is active. Reward terms give
the surrogate's gradient w·value (REINFORCE with the detached penalty). Sequence-level ratios, which couple
the tokens of a sequence, are in ``trl_seq``.
"""

from __future__ import annotations

import numpy as np


def _w(lp, old):
    return np.ones_like(lp) if old is None else np.exp(lp - old)


def _k3(d):
    return np.exp(-d) - 1 + d


def _k3_careful(d):
    """k3 without cancellation: the series Σ_{k≥2} (−d)^k/k! for |d| < 0.5 (float64 digits kept at tiny d)."""
    d = np.asarray(d, dtype=np.float64)
    series, term = np.zeros_like(d), -d
    for k in range(2, 30):
        term = term * (-d) / k
        series = series + term
    with np.errstate(over="ignore"):
        return np.where(np.abs(d) < 0.5, series, np.exp(-d) - 1 + d)


def _dk3(d):
    return -np.expm1(-d)  # 1 − e^(−d) without cancellation


def _clip_value(v, dv, bound):
    inside = np.abs(v) < bound
    return np.clip(v, -bound, bound), np.where(inside, dv, 0.0)


def _plain(value, slope):
    def f(lp, ref, old):
        d = lp - ref
        return value(d), slope(d)
    return f


def _verl_low_var_kl(d):
    c = np.clip(d, -20, 20)
    v = _k3_careful(c)
    return np.clip(v, -10, 10), np.where((np.abs(d) < 20) & (v < 10), _dk3(d), 0.0)


def _st(value_fn):
    def f(lp, ref, old):
        d = lp - ref
        return value_fn(d), d  # straight-through: value of the base, gradient of ½d²
    return f


def _reward(value_fn):
    """A reward penalty as computed at rollout: its value from the sampler's log-probs (old) where given."""
    def f(lp, ref, old):
        v = value_fn((lp if old is None else old) - ref)
        w = _w(lp, old)
        return w * v, w * v
    return f


def _openrlhf(value, slope):
    def f(lp, ref, old):
        d = lp - ref
        return _clip_value(value(d), slope(d), 10.0)
    return f


def _openrlhf_unbiased_gradient(lp, ref, old):
    d, w = lp - ref, _w(lp, old)
    return np.clip(_k3_careful(d), -10, 10), np.minimum(w, 10.0) * d  # value kept; gradient sg(min(w, 10))·d


def _trl_bias(lp, ref, old):
    d, w = lp - ref, _w(lp, old)
    return w * _k3(d), w * d  # k3 + k3' = (e^−d − 1 + d) + (1 − e^−d) = d exactly


def _nemo(kind):
    def f(lp, ref, old):
        d, w = lp - ref, _w(lp, old)
        c = np.clip(d, -20, 20)
        kl, dkl = {"k1": (c, np.ones_like(d)), "k2": (0.5 * c * c, d), "k3": (_k3(c), _dk3(d))}[kind]
        inside = np.abs(d) < 20
        v = w * kl
        total = d if kind == "k3" else kl + dkl  # k3 + k3' = d exactly
        g = np.where(inside, w * total, 0.0)  # beyond the input clamp: w detached, kl constant
        return _clip_value(v, g, 10.0)
    return f


def _nemo_legacy(lp, ref, old):
    d = lp - ref
    w = np.ones_like(d) if old is None else np.exp(lp - old)  # detached: no score term
    return w * _k3(np.clip(d, -20, 20)), np.where(np.abs(d) < 20, w * _dk3(d), 0.0)


def _slime_is(lp, ref, old):
    d, w = lp - ref, _w(lp, old)
    return _clip_value(w * _k3(d), w * d, 10.0)


def _oi(kind):
    def f(lp, ref, old):
        d, w = lp - ref, _w(lp, old)
        c = np.clip(d, -40, 40)
        live = np.abs(d) < 40
        return {"kl1": (c, np.where(live, 1.0, 0.0)), "kl2": (0.5 * c * c, np.where(live, c, 0.0)),
                "kl3": (_k3(c), np.where(live, _dk3(c), 0.0)),
                "kl4": (w * c, w * c + np.where(live, w, 0.0))}[kind]
    return f


_K1 = _plain(lambda d: d, np.ones_like)
_K2 = _plain(lambda d: 0.5 * d * d, lambda d: d)
_K3 = _plain(_k3, _dk3)
_LVK = _openrlhf(_k3, _dk3)

TERM = {
    "verl:kl": _K1, "verl:abs": _plain(np.abs, np.sign), "verl:mse": _K2,
    "verl:low_var_kl": lambda lp, ref, old: _verl_low_var_kl(lp - ref),
    "verl:k1+": _st(lambda d: d), "verl:k3+": _st(lambda d: _verl_low_var_kl(d)[0]),
    "verl:reward:kl": _reward(lambda d: d), "verl:reward:low_var_kl": _reward(lambda d: _verl_low_var_kl(d)[0]),
    "openrlhf:k1": _openrlhf(lambda d: d, np.ones_like), "openrlhf:k2": _openrlhf(lambda d: 0.5 * d * d, lambda d: d),
    "openrlhf:k3": _LVK, "openrlhf:reward:k1": _reward(lambda d: np.clip(d, -10, 10)),
    "openrlhf:k3-unbiased-gradient": _openrlhf_unbiased_gradient,
    "trl:k3": _K3, "trl:k3-bias-corrected": _trl_bias,
    "nemo-rl:k1": _nemo("k1"), "nemo-rl:k2": _nemo("k2"), "nemo-rl:k3": _nemo("k3"), "nemo-rl:k3-legacy": _nemo_legacy,
    "slime:k1": _K1, "slime:k2": _K2, "slime:k3": _K3, "slime:low_var_kl": _LVK, "slime:low_var_kl-is": _slime_is,
    "open-instruct:kl1": _oi("kl1"), "open-instruct:kl2": _oi("kl2"), "open-instruct:kl3": _oi("kl3"),
    "open-instruct:kl4": _oi("kl4"),
    "skyrl:k2": _K2, "skyrl:k3": lambda lp, ref, old: _verl_low_var_kl(lp - ref),
    "roll:kl": _K1, "roll:mse": _K2, "roll:k3": _LVK, "verl-0.3:low_var_kl": _LVK,
}


def trl_seq(lp, ref, old, mask):
    """TRL's sequence-level bias-corrected k3 on (batch, tokens): w_s = exp(Σ_t m_t (lp_t − old_t) / n_s), value
    w_s·k3_t; returns (value, ∂(Σ_t m_t value_t)/∂lp_j) = (m_j w_s k3'_j + w_s (m_j/n_s) Σ_t m_t k3_t)."""
    d = lp - ref
    base = lp if old is None else old
    n = np.maximum(mask.sum(-1, keepdims=True), 1)
    ws = np.exp((mask * (lp - base)).sum(-1, keepdims=True) / n)
    k = _k3(d)
    value = ws * k
    grad = mask * ws * _dk3(d) + ws * (mask / n) * (mask * k).sum(-1, keepdims=True)
    return value, grad


# The estimators registered under framework names, as d -> (value, slope) (tests/oracles.py VALUE/SLOPE style)
ESTIMATOR_VALUE = {
    "verl:abs": np.abs,
    "verl:k3+": lambda d: _verl_low_var_kl(np.asarray(d, dtype=np.float64))[0],
    "openrlhf:k1": lambda d: np.clip(np.asarray(d, dtype=np.float64), -10, 10),
    "openrlhf:k2": lambda d: np.clip(0.5 * np.asarray(d, dtype=np.float64) ** 2, -10, 10),
    "openrlhf:k3": lambda d: np.clip(_k3_careful(d), -10, 10),
}
ESTIMATOR_SLOPE = {
    "verl:abs": lambda d: np.sign(np.asarray(d, dtype=np.float64)),
    "verl:k3+": lambda d: np.asarray(d, dtype=np.float64),
    "openrlhf:k1": lambda d: np.where(np.abs(d) < 10, 1.0, 0.0),
    "openrlhf:k2": lambda d: np.where(0.5 * np.asarray(d, dtype=np.float64) ** 2 < 10, d, 0.0),
    "openrlhf:k3": lambda d: np.where(_k3(np.asarray(d, dtype=np.float64)) < 10, _dk3(np.asarray(d, dtype=np.float64)),
                                      0.0),
}
