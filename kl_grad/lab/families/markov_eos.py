"""The variable-length Markov family: a bigram chain that stops at an end-of-sequence token.

Spec ``markov-eos:LMAX:INIT:TRANS``, the ``markov`` spec form (families/markov.py) where the last token id
V−1 is EOS: a sequence ends at its first EOS (which is a real token, counted in its length T) or after
LMAX tokens, e.g. ``markov-eos:5:0,0.5,-1:0,1,0/0.2,0,0/1,0,-1`` (tokens 0, 1 and EOS = 2). With
Q_i = softmax(trans[i]) and T = min(first EOS position + 1, LMAX),

    π(y) = softmax(init)[y_0] · Π_{1≤t<T} Q_{y_{t−1}}[y_t]

Points are padded to LMAX tokens (EOS after the end); ``log_prob`` gives per-token log-probs (…, LMAX)
that are 0 beyond the end (``torch.where``: no gradient from padding), so every sequence placement's
d_t, k_t (k(0) = 0) and w_t (value 1, gradient 0) vanish there and its per-sequence sum runs over
t < T only. ``mask(y)`` is the (…, LMAX) real-token mask that trainers hold. The row trans[EOS] is
never used (its parameters have gradient 0; they are kept so the spec is markov's).

Exact mode enumerates the Σ_{l=1}^{LMAX} (V−1)^{l−1} + (V−1)^{LMAX} distinct sequences. The truth is
∇θ of the sequence-level KL(π_θ‖π_ref) = E[Σ_{t<T} d_t] by markov's forward recursion with EOS made
absorbing: the state marginal μ_t only carries the mass still running (its EOS entry is zeroed), the
chain rule of KL (Cover & Thomas, Thm 2.5.3) on the stopped process.
"""

from __future__ import annotations

import torch

from .markov import Markov, MarkovChain, vocab_of


class StoppedMarkovChain(MarkovChain):
    """A ``MarkovChain`` whose sequences end at their first EOS (token V − 1); same constructor."""

    def mask(self, y: torch.Tensor) -> torch.Tensor:
        """(…, L) True at the real tokens: t = 0 and every t after a prefix without EOS."""
        return real_tokens(y, self.init.shape[-1] - 1)

    def log_prob(self, y: torch.Tensor) -> torch.Tensor:
        logp = super().log_prob(y)
        return torch.where(self.mask(y), logp, torch.zeros((), dtype=logp.dtype))

    def sample(self, shape=()) -> torch.Tensor:
        y = super().sample(shape)
        return torch.where(self.mask(y), y, torch.full((), self.init.shape[-1] - 1))


def real_tokens(y: torch.Tensor, eos: int) -> torch.Tensor:
    """(…, L) bool: token t is real when no EOS occurs before it (the EOS itself is real)."""
    before = torch.cumsum((y == eos).long(), dim=-1) - (y == eos).long()
    return before == 0


class MarkovEOS(Markov):
    name = "markov-eos"
    arity = ("markov-eos:LMAX:INIT:TRANS (at most LMAX tokens, the last token id is EOS; V ≥ 2 first-token "
             "logits; V rows of V transition logits, rows split by /)")
    example = "markov-eos:5:0,0.5,-1:0,1,0/0.2,0,0/1,0,-1"
    refused_placements = {"trl-seq": "its mean of log w_t runs over all LMAX columns, not the T real tokens"}
    padded = True  # per-token log-probs are 0 beyond the end (d = 0): neutral only for estimators with k(0) = 0

    def label(self, spec) -> str:
        return self.name + super().label(spec)[len(Markov.name):]

    def make(self, spec, params: list[torch.Tensor]) -> StoppedMarkovChain:
        chain = super().make(spec, params)
        return StoppedMarkovChain(chain.init, chain.trans, chain.length)

    def support_size(self, spec) -> int:
        v, length = vocab_of(len(spec.values)), spec.structure[0]
        return sum((v - 1) ** (n - 1) for n in range(1, length + 1)) + (v - 1) ** length

    def nodes(self, spec, n: int, span=None):
        """All distinct sequences (N, 1, LMAX), padded with EOS, and their probabilities (N,) in float64:
        by length T = 1..LMAX, T − 1 non-EOS tokens (base-(V−1) digits) then EOS, and the (V−1)^LMAX
        sequences that never stop."""
        v, length = vocab_of(len(spec.values)), spec.structure[0]
        blocks = []
        for t in range(1, length + 1):
            for stop in ((True, False) if t == length else (True,)):
                body = t if not stop else t - 1
                index = torch.arange((v - 1) ** body)
                digits = (index[:, None] // (v - 1) ** torch.arange(body - 1, -1, -1)) % (v - 1)
                pad = torch.full((index.shape[0], length - body), v - 1)
                blocks.append(torch.cat([digits, pad], dim=1))
        seqs = torch.cat(blocks)
        with torch.no_grad():
            logp = spec.build(torch.float64).log_prob(seqs).sum(-1)
        kept = torch.isfinite(logp)  # a sampler's top-k/top-p never draws the others
        return seqs[kept].reshape(-1, 1, length), torch.exp(logp[kept]).numpy()

    def eos(self, v: int) -> int:
        return v - 1

    def _running(self, mu: torch.Tensor) -> torch.Tensor:
        return torch.cat([mu[:-1], torch.zeros_like(mu[-1:])])  # EOS ends the sequence: no next token
