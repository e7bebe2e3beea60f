"""The Markov-chain (bigram) token family: sequences of L tokens from V, the simplest autoregressive policy.

Spec ``markov:L:INIT:TRANS``: INIT the V logits of the first token (comma-separated), TRANS the V×V
transition logits, rows separated by ``/`` (row i: logits of the next token after token i), e.g.
``markov:4:0,0.5,-1:0,1,0/0.2,0,0/1,0,-1``. The same softmax rows are shared across positions:

    π(y) = softmax(init)[y_0] · Π_{t≥1} softmax(trans[y_{t−1}])[y_t]

Parameters (all trainable): ``init[i]`` and ``trans[i][j]``, in that order (``DistSpec.values`` holds
them flat, ``DistSpec.structure`` holds (L,)). ``log_prob`` gives *per-token* log-probs (…, L), the
quantity trainers hold; sequence placements (``kl_grad/sequences.py``) turn them into surrogates.
Enumerable: ``nodes`` lists all V^L sequences with their probabilities (exact mode).

The truth is the gradient of the sequence-level KL, by a forward recursion over positions with the
state marginals μ_t (O(L·V²), no enumeration): with Q_i = softmax(trans[i]), P_i the reference's,

    KL(π_θ‖π_ref) = KL(q_0‖p_0) + Σ_{t=1}^{L−1} Σ_i μ_{t−1}(i) KL(Q_i‖P_i),   μ_0 = q_0, μ_t = μ_{t−1}Q
    KL(π_ref‖π_θ) = KL(p_0‖q_0) + Σ_{t=1}^{L−1} Σ_i ν_{t−1}(i) KL(P_i‖Q_i),   ν under the reference

(the chain rule of KL, Cover & Thomas, Elements of Information Theory, Thm 2.5.3), its gradient written out
from logit differences in ``chain_kl.py`` (float64).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.distributions import Categorical as TorchCategorical

from ...directions import POLICY_REF
from ...errors import KLGradError
from .base import Family
from .chain_kl import chain_kl_gradients
from .softmax import log_softmax

MAX_LENGTH = 64


def vocab_of(k: int) -> int:
    """V with V + V² = k, or 0 when k is no such count."""
    v = (math.isqrt(1 + 4 * k) - 1) // 2
    return v if v >= 2 and v + v * v == k else 0


class MarkovChain:
    """π over sequences, batched over parameter copies: ``init`` (…, V), ``trans`` (…, V, V) logits, ``length`` L.

    ``log_prob(y)``: y (…, L) integer tokens → (…, L) per-token log π(y_t | y_{t−1}); the batch shapes of
    the logits broadcast against y's leading dims. ``sample(shape)``: shape + (L,) tokens (unbatched only).
    """

    def __init__(self, init: torch.Tensor, trans: torch.Tensor, length: int):
        self.init, self.trans, self.length = init, trans, length
        self.log_init = log_softmax(init)  # softmax.py: keeps the digits of rows near p = 1
        self.log_trans = log_softmax(trans)

    def log_prob(self, y: torch.Tensor) -> torch.Tensor:
        y = y.long()
        v = self.init.shape[-1]
        lead = y.shape[:-1]
        first = self.log_init.expand(*lead, v).gather(-1, y[..., :1])  # (…, 1)
        if y.shape[-1] == 1:
            return first
        flat = self.log_trans.reshape(*self.log_trans.shape[:-2], v * v)
        rest = flat.expand(*lead, v * v).gather(-1, y[..., :-1] * v + y[..., 1:])  # (…, L − 1)
        return torch.cat([first, rest], dim=-1)

    def step_log_probs(self, y: torch.Tensor) -> torch.Tensor:
        """Every position's whole next-token distribution given the prefix, y (…, L) → (…, L, V) log-probs."""
        y = y.long()
        v = self.init.shape[-1]
        lead = y.shape[:-1]
        first = self.log_init.expand(*lead, v).unsqueeze(-2)  # (…, 1, V)
        if y.shape[-1] == 1:
            return first
        rows = self.log_trans.expand(*lead, v, v)
        rest = torch.gather(rows, -2, y[..., :-1, None].expand(*lead, y.shape[-1] - 1, v))  # (…, L − 1, V)
        return torch.cat([first, rest], dim=-2)

    def sample(self, shape=()) -> torch.Tensor:
        shape = torch.Size(shape)
        tokens = [TorchCategorical(logits=self.init, validate_args=False).sample(shape)]
        for _ in range(1, self.length):
            tokens.append(TorchCategorical(logits=self.trans[tokens[-1]], validate_args=False).sample())
        return torch.stack(tokens, dim=-1)


def _split(values, v: int) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(values, dtype=float)
    return a[:v], a[v:].reshape(v, v)


class Markov(Family):
    name = "markov"
    arity = "markov:L:INIT:TRANS (L tokens; V ≥ 2 first-token logits; V rows of V transition logits, rows split by /)"
    example = "markov:4:0,0.5,-1:0,1,0/0.2,0,0/1,0,-1"
    enumerable = True
    sequential = True

    def param_names(self, k: int) -> tuple[str, ...]:
        v = vocab_of(k)
        return tuple(f"init[{i}]" for i in range(v)) + tuple(f"trans[{i}][{j}]" for i in range(v) for j in range(v))

    def logit_groups(self, values) -> list[np.ndarray]:
        init, trans = _split(values, vocab_of(len(values)))
        return [init, *trans]

    def probabilities(self, values) -> dict[str, list]:
        """``init_probs`` (V,) and ``trans_probs`` (V lists of V): the softmax of init and of each row of trans."""
        init, trans = _split(values, vocab_of(len(values)))
        return dict(init_probs=[float(x) for x in torch.softmax(torch.tensor(init, dtype=torch.float64), 0)],
                    trans_probs=torch.softmax(torch.tensor(trans, dtype=torch.float64), 1).tolist())

    def valid_count(self, k: int) -> bool:
        return vocab_of(k) > 0

    def check_structure(self, structure: tuple) -> None:
        if len(structure) != 1 or not isinstance(structure[0], int) or not 1 <= structure[0] <= MAX_LENGTH:
            got = ", ".join(str(x) for x in structure) or "none"
            raise KLGradError(f"markov needs a sequence length L from 1 to {MAX_LENGTH}, got {got}")

    def label(self, spec) -> str:
        v = vocab_of(len(spec.values))
        init, trans = _split(spec.values, v)
        row = lambda r: ",".join(f"{x:g}" for x in r)  # noqa: E731
        return f"markov:{spec.structure[0]}:{row(init)}:" + "/".join(row(r) for r in trans)

    def parse(self, rest: str, text: str, what: str):
        """``L:INIT:TRANS`` → DistSpec (values init then trans row-major, structure (L,))."""
        from .base import make_spec

        parts = rest.split(":")
        if len(parts) != 3:
            raise KLGradError(f"malformed {what} {text!r}; expected {self.arity}, e.g. {self.example}")
        try:
            length = int(parts[0])
        except ValueError:
            raise KLGradError(f"malformed {what} {text!r}: length L {parts[0].strip()!r} is not an integer") from None
        init = [p.strip() for p in parts[1].split(",")]
        rows = [[p.strip() for p in r.split(",")] for r in parts[2].split("/")]
        v = len(init)
        if v < 2:
            raise KLGradError(f"malformed {what} {text!r}: a chain needs V ≥ 2 tokens, so INIT needs at least 2 "
                              f"logits (got {v}) and TRANS V rows of V, e.g. {self.example}")
        if len(rows) != v or any(len(r) != v for r in rows):
            got = f"{len(rows)} row{'s' if len(rows) != 1 else ''} of {', '.join(str(len(r)) for r in rows)} logits"
            raise KLGradError(f"malformed {what} {text!r}: INIT has {v} logits, so TRANS must be {v} rows of {v} "
                              f"logits each, separated by / (got {got}), e.g. {self.example}")
        names, values = self.param_names(v + v * v), []
        for name, part in zip(names, init + [x for r in rows for x in r]):
            try:
                values.append(float(part))
            except ValueError:
                raise KLGradError(f"malformed {what} {text!r}: {name} {part!r} is not a number") from None
        return make_spec(self.name, values, f"{what} {text!r}", structure=(length,))

    def make(self, spec, params: list[torch.Tensor]) -> MarkovChain:
        v = vocab_of(len(params))
        stacked = torch.stack(params, dim=-1)  # (…, V + V²)
        trans = stacked[..., v:].reshape(*stacked.shape[:-1], v, v)
        return MarkovChain(spec.logits(stacked[..., :v]), spec.logits(trans), spec.structure[0])  # per row

    def support_size(self, spec) -> int:
        return vocab_of(len(spec.values)) ** spec.structure[0]

    def point_size(self, spec) -> int:
        return spec.structure[0]

    def nodes(self, spec, n: int, span=None) -> tuple[torch.Tensor, np.ndarray]:
        """All V^L sequences (N, 1, L) in lexicographic order and their probabilities (N,) in float64."""
        v, length = vocab_of(len(spec.values)), spec.structure[0]
        index = torch.arange(v ** length)
        powers = v ** torch.arange(length - 1, -1, -1)
        seqs = (index[:, None] // powers) % v  # (N, L): base-V digits, first token most significant
        with torch.no_grad():
            logp = spec.build(torch.float64).log_prob(seqs).sum(-1)
        kept = torch.isfinite(logp)  # a sampler's top-k/top-p never draws the others
        return seqs[kept].reshape(-1, 1, length), torch.exp(logp[kept]).numpy()

    def _kl(self, direction: str, policy, ref, leaves: list[torch.Tensor]) -> torch.Tensor:
        v, length = vocab_of(len(policy.values)), policy.structure[0]
        z = torch.stack(leaves)
        y = torch.tensor(ref.values, dtype=torch.float64)
        lq0, lp0 = log_softmax(z[:v]), log_softmax(y[:v])
        lq, lp = log_softmax(z[v:].reshape(v, v)), log_softmax(y[v:].reshape(v, v))
        la0, lb0, la, lb = (lq0, lp0, lq, lp) if direction == POLICY_REF else (lp0, lq0, lp, lq)
        total = (la0.exp() * (la0 - lb0)).sum()
        rows = (la.exp() * (la - lb)).sum(1)  # (V,) per-row KL of the next-token distributions
        mu, step = la0.exp(), la.exp()  # marginal of the previous token under the first argument of KL
        for _ in range(1, length):
            mu = self._running(mu)
            total = total + mu @ rows
            mu = mu @ step
        return total

    def _running(self, mu: torch.Tensor) -> torch.Tensor:
        """The part of the previous token's marginal that goes on to a next token (markov: all of it)."""
        return mu

    def eos(self, v: int) -> int | None:
        """The token that ends a sequence (None: sequences run to L)."""
        return None

    def kl_gradients(self, policy, ref) -> dict[str, np.ndarray]:
        """∇θ KL in both directions from logit differences (chain_kl.py): autograd of the recursion above
        forms 1 − p and q − p, which lose the digits of rows near p = 1."""
        v, length = vocab_of(len(policy.values)), policy.structure[0]
        (z0, z), (y0, y) = _split(policy.values, v), _split(ref.values, v)
        return chain_kl_gradients(z0, z, y0, y, length, self.eos(v))

    def kl_value(self, direction, policy, ref) -> float:
        leaves = [torch.tensor(x, dtype=torch.float64) for x in policy.values]
        return float(self._kl(direction, policy, ref, leaves))
