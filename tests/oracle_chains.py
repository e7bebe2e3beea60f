"""A 50-digit oracle for bigram chains: every sequence enumerated in mpmath, each placement's per-sequence
gradient written from its formula (kl_grad/sequences.py) by the chain rule, with hand-derived scores
∂ log softmax(z)_y / ∂z_j = δ_yj − softmax(z)_j; the truth is ∇ of the enumerated sequence KL, from the same
scores (∇KL(π‖ρ) = E_π[s·(log π/ρ + 1)], ∇KL(ρ‖π) = −E_ρ[s]). Independent of the package: no torch.

Near-deterministic rows (logit gaps of 20 and more) need it: float64 loses 1 − p there, and the lab's own
float64 numbers must be within their stated error of these.
"""

from __future__ import annotations

import itertools

import mpmath as mp
import numpy as np

mp.mp.dps = 50
K = {"k1": (lambda d: d, lambda d: mp.mpf(1)), "k2": (lambda d: d * d / 2, lambda d: d),
     "k3": (lambda d: mp.expm1(-d) + d, lambda d: -mp.expm1(-d))}


def _softmax(z):
    m = max(z)
    e = [mp.exp(x - m) for x in z]
    total = mp.fsum(e)
    return [x / total for x in e]


class ChainOracle:
    """Flat logits (init V, then trans V×V row-major) of policy, reference and optional sampler; length L;
    ``eos``: the token that ends a sequence (markov-eos: V − 1), None for fixed-length chains."""

    def __init__(self, length, v, policy, ref, sampler=None, eos=None):
        self.L, self.v, self.eos = length, v, eos
        self.theta, self.ref = [mp.mpf(float(x)) for x in policy], [mp.mpf(float(x)) for x in ref]
        self.sampler = None if sampler is None else [mp.mpf(float(x)) for x in sampler]
        self.seqs = [y for y in itertools.product(range(v), repeat=length) if self._canonical(y)]

    def _canonical(self, y):  # markov-eos: after the first EOS, only EOS (the padding)
        if self.eos is None or self.eos not in y:
            return True
        first = y.index(self.eos)
        return all(t == self.eos for t in y[first:])

    def _real(self, y):  # number of real tokens T
        return self.L if self.eos is None or self.eos not in y else y.index(self.eos) + 1

    def _rows(self, values):
        v = self.v
        return _softmax(values[:v]), [_softmax(values[v + i * v:v + (i + 1) * v]) for i in range(v)]

    def token_probs(self, values, y):
        q0, q = self._rows(values)
        return [q0[y[0]]] + [q[y[t - 1]][y[t]] for t in range(1, self._real(y))]

    def scores(self, y):
        """(T, P) object array of per-token ∇θ log π_θ(y_t | y_{t−1})."""
        q0, q = self._rows(self.theta)
        v = self.v
        out = np.array([[mp.mpf(0)] * (v + v * v) for _ in range(self._real(y))], dtype=object)
        for j in range(v):
            out[0, j] = (1 if y[0] == j else 0) - q0[j]
        for t in range(1, self._real(y)):
            i = y[t - 1]
            for j in range(v):
                out[t, v + i * v + j] = (1 if y[t] == j else 0) - q[i][j]
        return out

    def prob(self, values, y):
        return mp.fprod(self.token_probs(values, y))

    def true_grad(self, direction):
        total = np.array([mp.mpf(0)] * len(self.theta), dtype=object)
        for y in self.seqs:
            s = self.scores(y).sum(0)
            a, b = self.prob(self.theta, y), self.prob(self.ref, y)
            total = total + (a * s * (mp.log(a / b) + 1) if direction == "policy||ref" else -b * s)
        return total

    def placement_grad(self, est, placement, y):
        k, dk = K[est]
        s = self.scores(y)
        n = s.shape[0]
        p, r = self.token_probs(self.theta, y), self.token_probs(self.ref, y)
        m = p if self.sampler is None else self.token_probs(self.sampler, y)
        d = [mp.log(p[t] / r[t]) for t in range(n)]
        kt, dkt = [k(x) for x in d], [dk(x) for x in d]
        w = [p[t] / m[t] for t in range(n)]
        big_w = [mp.fprod(w[:t + 1]) for t in range(n)]
        prefix = [s[:t + 1].sum(0) for t in range(n)]
        to_go = [mp.fsum(kt[t:]) for t in range(n)]
        g = np.array([mp.mpf(0)] * s.shape[1], dtype=object)
        if placement in ("loss", "both"):
            g = g + sum(dkt[t] * s[t] for t in range(n))
        if placement == "loss-sgw":
            g = g + sum(w[t] * dkt[t] * s[t] for t in range(n))
        if placement == "loss-w":
            g = g + sum(w[t] * (kt[t] + dkt[t]) * s[t] for t in range(n))
        if placement == "loss-prefix-w":
            g = g + sum(big_w[t] * (kt[t] * prefix[t] + dkt[t] * s[t]) for t in range(n))
        if placement in ("reward", "both"):
            g = g + sum(w[t] * s[t] * to_go[t] for t in range(n))
        if placement == "reward-prefix-w":
            g = g + sum(big_w[t] * kt[t] * prefix[t] for t in range(n))
        if placement == "reward-seq":
            g = g + big_w[-1] * s.sum(0) * mp.fsum(kt)
        return g

    def expected(self, est, placement):
        """{placement: E_sampler[g]} as a (P,) object array."""
        sampling = self.theta if self.sampler is None else self.sampler
        total = np.array([mp.mpf(0)] * len(self.theta), dtype=object)
        for y in self.seqs:
            total = total + self.prob(sampling, y) * self.placement_grad(est, placement, y)
        return total
