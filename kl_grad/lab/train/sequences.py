"""Training a Markov-chain policy (``markov:L:INIT:TRANS``, or ``markov-eos:LMAX:…``, which stops at its first
EOS = token V−1) with a sequence reward: rewards, optima, checks.

Rewards on sequences y = (y_0, …, y_{T−1}) of a V-token chain (T = L for ``markov``; for a stopped chain the
real tokens, the EOS included), spec text:

    sum:r_0,…,r_{V−1}    R(y) = Σ_{t<T} r[y_t]   a per-token reward collected at every real position
    last:r_0,…,r_{V−1}   R(y) = r[y_{T−1}]       a terminal reward on the last real token

E[R] = Σ_t μ_t·r (``sum``) or μ_{L−1}·r (``last``) with the state marginals μ_0 = softmax(init),
μ_t = μ_{t−1}·Q (Q the softmax rows of ``trans``; a stopped chain carries only the mass still running, its
EOS entry zeroed before each step), and ∇θ E[R] by autograd of that recursion, float64.

The optimum. The best distribution over sequences is π* ∝ π_ref·exp(R/β) (as for one token), but the family
shares one transition matrix across positions, and π* in general does not: with an additive reward, π* is the
non-homogeneous chain π*(y_t = j | y_{t−1} = i) = P_ij e^{r_j/β} h_t(j)/h_{t−1}(i), h_{L−1} ≡ 1,
h_{t−1}(i) = Σ_j P_ij e^{r_j/β} h_t(j) (backward messages), whose rows change with t unless
Σ_j P_ij e^{r_j/β} is the same for every row i (e.g. a reference with identical rows, i.i.d. tokens, or a
constant reward); a terminal reward tilts the last transition only, in the family only for L ≤ 2. So the
reference end point here is the *family's* optimum: ``family_optimum`` runs gradient ascent on the exact
sequence objective J(θ) = E[R] − β·KL(π_θ‖π_ref), written out by enumerating the V^L sequences with fresh
torch ops (no surrogate, no lab family code), from the training's start, then Newton steps (pseudo-inverse
of the autograd Hessian: each softmax group's shift is a null direction) until ‖∇J‖ < ``OPT_TOL``. The same
with KL(π_ref‖π_θ) gives the end point of the other objective. Distances are total variation between the
two sequence distributions, ½Σ_y |π_θ(y) − π(y)|; the gap between the family optimum and π* is reported.

``independent_sequence_kl_gradient`` is the training runner's exactness check for sequences: a plain loop
over the enumerated sequences (a stopped chain's: EOS-padded, log-probs 0 after the stop, as trainers mask
them), autograd of ``sequences.sequence_surrogate`` at each, weighted by the
sampler's sequence probability (``math.fsum``).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch

from ...directions import POLICY_REF
from ...errors import KLGradError
from ...sequences import sequence_surrogate
from ..families import DistSpec
from ..families.markov import vocab_of
from .rewards import Reward

SEQUENCE_REWARD_FORMS = "sum:r_0,…,r_{V−1} (R = Σ_t r[y_t]) or last:r_0,…,r_{V−1} (R = r[y_{L−1}]) for markov"
OPT_TOL = 1e-12  # ‖∇J‖ of the reference optimum (a TV of ~1e-12/curvature from the stationary point)
OPT_MAX_STEPS = 20000
MAX_SEQUENCES = 1 << 14  # the optimum search and the exactness check (a plain loop) enumerate all V^L sequences


def _sizes(spec: DistSpec) -> tuple[int, int, int | None]:
    """(V, L, the EOS token id or None): a padded family (``markov-eos``) stops at its last token id."""
    v = vocab_of(len(spec.values))
    return v, spec.structure[0], v - 1 if getattr(spec.fam, "padded", False) else None


def _real(seqs: torch.Tensor, eos: int | None) -> torch.Tensor:
    """(N, L) bool: the real tokens, every one before the first EOS and the EOS itself (all of them if None)."""
    if eos is None:
        return torch.ones(seqs.shape, dtype=torch.bool)
    stops = (seqs == eos).long()
    return torch.cumsum(stops, dim=1) - stops == 0


def _groups(theta: torch.Tensor, v: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(log softmax(init) (V,), log softmax(trans rows) (V, V)) from the flat parameters."""
    return torch.log_softmax(theta[:v], 0), torch.log_softmax(theta[v:].reshape(v, v), 1)


@dataclass(frozen=True)
class SequenceReward(Reward):
    """R(y) = Σ_t values[y_t] (``where`` = "sum") or values[y_{L−1}] (``where`` = "last") for a Markov policy."""

    values: tuple[float, ...]
    where: str

    @property
    def label(self) -> str:
        return f"{self.where}:" + ",".join(f"{v:g}" for v in self.values)

    def check(self, policy):
        if not policy.fam.sequential or vocab_of(len(policy.values)) != len(self.values):
            raise KLGradError(f"reward {self.label} gives {len(self.values)} token rewards for sequences; it needs a "
                              f"markov or markov-eos policy with {len(self.values)} tokens, got {policy.label}")
        v, length, _ = _sizes(policy)
        if v**length > MAX_SEQUENCES:
            raise KLGradError(f"training a markov policy enumerates all V^L sequences, at most {MAX_SEQUENCES}; "
                              f"V = {v}, L = {length} gives {v**length} (shorten L)")

    def _expected(self, theta: torch.Tensor, v: int, length: int, eos: int | None) -> torch.Tensor:
        log_init, log_trans = _groups(theta, v)
        r = torch.tensor(self.values, dtype=torch.float64)
        running = torch.ones(v, dtype=torch.float64)  # which states go on: all but EOS for a stopped chain
        if eos is not None:
            running[eos] = 0.0
        mu, step, total = log_init.exp(), log_trans.exp(), torch.zeros((), dtype=torch.float64)
        for t in range(length):  # mu: the probability that token t is real and equals j
            if self.where == "sum" or t == length - 1:
                total = total + mu @ r
            elif eos is not None:  # "last": a chain that stops at t ends on its EOS
                total = total + mu[eos] * r[eos]
            mu = (mu * running) @ step
        return total

    def expected(self, policy):
        return float(self._expected(torch.tensor(policy.values, dtype=torch.float64), *_sizes(policy)))

    def gradient(self, policy):
        theta = torch.tensor(policy.values, dtype=torch.float64, requires_grad=True)
        (grad,) = torch.autograd.grad(self._expected(theta, *_sizes(policy)), theta)
        return grad.numpy()

    def of_sequences(self, seqs: np.ndarray, eos: int | None = None) -> np.ndarray:
        """R(y) for (N, L) integer sequences (padded with EOS after a stop), (N,) float64."""
        r = np.asarray(self.values, dtype=float)
        real = _real(torch.from_numpy(seqs), eos).numpy()
        if self.where == "sum":
            return (r[seqs] * real).sum(axis=1)
        last = real.sum(axis=1) - 1  # the index of the last real token
        return r[seqs[np.arange(len(seqs)), last]]


def parse_sequence_reward(kind: str, values: list[float], text: str) -> SequenceReward:
    if len(values) < 2:
        raise KLGradError(f"reward {text!r} gives one token reward; a markov policy has two or more tokens")
    return SequenceReward(tuple(values), kind)


def enumerate_sequences(v: int, length: int, eos: int | None = None) -> np.ndarray:
    """All V^L sequences (N, L), lexicographic, by ``itertools.product``; with ``eos``, only the distinct ones of
    a stopped chain (EOS at every position after the first EOS)."""
    seqs = np.array(list(itertools.product(range(v), repeat=length)), dtype=np.int64).reshape(-1, length)
    if eos is None:
        return seqs
    real = _real(torch.from_numpy(seqs), eos).numpy()
    return seqs[np.all(real | (seqs == eos), axis=1)]


def _token_logp(theta: torch.Tensor, v: int, seqs: torch.Tensor, eos: int | None = None) -> torch.Tensor:
    """Per-token log π(y_t | y_{t−1}) (N, L) for flat parameters ``theta``; 0 after a stop."""
    log_init, log_trans = _groups(theta, v)
    logp = torch.cat([log_init[seqs[:, :1]], log_trans[seqs[:, :-1], seqs[:, 1:]]], dim=1)
    return torch.where(_real(seqs, eos), logp, torch.zeros((), dtype=logp.dtype))


def sequence_probs(spec: DistSpec) -> np.ndarray:
    """π(y) for every enumerated sequence (N,), float64."""
    v, length, eos = _sizes(spec)
    seqs = torch.from_numpy(enumerate_sequences(v, length, eos))
    with torch.no_grad():
        return _token_logp(torch.tensor(spec.values, dtype=torch.float64), v, seqs, eos).sum(1).exp().numpy()


def gibbs_sequence_probs(ref: DistSpec, reward: SequenceReward, beta: float) -> np.ndarray:
    """π*(y) ∝ π_ref(y)·exp(R(y)/β) over all sequences (not in the family in general; module doc)."""
    v, length, eos = _sizes(ref)
    logw = np.log(sequence_probs(ref)) + reward.of_sequences(enumerate_sequences(v, length, eos), eos) / beta
    w = np.exp(logw - logw.max())
    return w / w.sum()


def _objective(start: DistSpec, ref: DistSpec, reward: SequenceReward, beta: float, direction: str):
    v, length, eos = _sizes(start)
    seqs_np = enumerate_sequences(v, length, eos)
    seqs = torch.from_numpy(seqs_np)
    r = torch.from_numpy(reward.of_sequences(seqs_np, eos))
    with torch.no_grad():
        ref_logp = _token_logp(torch.tensor(ref.values, dtype=torch.float64), v, seqs, eos).sum(1)

    def objective(theta: torch.Tensor) -> torch.Tensor:
        logp = _token_logp(theta, v, seqs, eos).sum(1)
        p = logp.exp()
        kl = (p * (logp - ref_logp)).sum() if direction == POLICY_REF else (ref_logp.exp() * (ref_logp - logp)).sum()
        return (p * r).sum() - beta * kl

    return objective


def family_optimum(start: DistSpec, ref: DistSpec, reward: SequenceReward, beta: float, direction: str,
                   lr: float = 1.0) -> tuple[np.ndarray, float]:
    """(parameters (P,), ‖∇J‖ there) of the local maximum of E[R] − β·KL in ``direction`` over the family,
    reached by gradient ascent from ``start`` (step ``lr``, halved while it fails to increase J) and polished
    by Newton steps; ‖∇J‖ ≥ ``OPT_TOL`` at the end means none was found (the caller refuses it)."""
    objective = _objective(start, ref, reward, beta, direction)

    def value_grad(x: np.ndarray) -> tuple[float, np.ndarray]:
        theta = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        value = objective(theta)
        (grad,) = torch.autograd.grad(value, theta)
        return float(value.detach()), grad.numpy()

    x = np.asarray(start.values, dtype=float)
    value, grad = value_grad(x)
    for _ in range(OPT_MAX_STEPS):
        norm = float(np.linalg.norm(grad))
        if norm < OPT_TOL:
            break
        step = None
        if norm < 1e-4:  # near the maximum: Newton on the non-gauge directions where the Hessian is negative
            hess = torch.autograd.functional.hessian(objective, torch.tensor(x, dtype=torch.float64)).numpy()
            hess = 0.5 * (hess + hess.T)
            eig, vec = np.linalg.eigh(hess)
            keep = eig < -1e-10 * max(1.0, float(np.abs(eig).max()))
            if np.all(eig[~keep] <= 1e-8):  # no direction of ascent curvature: a maximum, up to the gauge
                step = -(vec[:, keep] / eig[keep]) @ (vec[:, keep].T @ grad)
        if step is None:
            step = lr * grad
        while True:
            new_value, new_grad = value_grad(x + step)
            if new_value >= value - 1e-15 * max(1.0, abs(value)) or float(np.linalg.norm(step)) < 1e-16:
                break
            step = 0.5 * step
        x, value, grad = x + step, new_value, new_grad
    return x, float(np.linalg.norm(grad))


def _sequence_point_gradient(case, theta0: np.ndarray, v: int, eos: int | None, seq: torch.Tensor, ref_values,
                             sampler_values):
    theta = torch.tensor(theta0, dtype=torch.float64, requires_grad=True)
    logp = _token_logp(theta, v, seq, eos)
    ref_logp = _token_logp(torch.tensor(ref_values, dtype=torch.float64), v, seq, eos)
    smp = (None if sampler_values is None else
           _token_logp(torch.tensor(sampler_values, dtype=torch.float64), v, seq, eos))
    (grad,) = torch.autograd.grad(sequence_surrogate(case.estimator, case.placement.name, logp, ref_logp,
                                                     smp).sum(), theta)
    return grad.numpy()


def independent_sequence_kl_gradient(case, policy: DistSpec, ref: DistSpec,
                                     sampler: DistSpec | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(E_m[∇θ surrogate] (P,), its rounding bound (P,)): a plain loop over the V^L sequences (module doc)."""
    v, length, eos = _sizes(policy)
    seqs = enumerate_sequences(v, length, eos)
    m = sequence_probs(sampler or policy)
    grads = np.array([_sequence_point_gradient(case, policy.values, v, eos, torch.from_numpy(s[None]), ref.values,
                                               None if sampler is None else sampler.values) for s in seqs])
    mean = np.array([math.fsum(m * grads[:, j]) for j in range(grads.shape[1])])
    return mean, 1e-13 * (np.abs(m[:, None] * grads).sum(axis=0) + 1e-300)


def markov_point_text(values) -> str:
    """init (q_0, …); trans (row 0)/(row 1)/… as probabilities, 6 significant digits."""
    v = vocab_of(len(values))
    log_init, log_trans = _groups(torch.tensor(values, dtype=torch.float64), v)
    row = lambda p: "(" + ", ".join(f"{x:.6g}" for x in p) + ")"  # noqa: E731
    return f"init {row(log_init.exp().numpy())}; trans " + "/".join(row(r) for r in log_trans.exp().numpy())


def sequence_optima(policy: DistSpec, ref: DistSpec, reward: Reward, beta: float, lr: float):
    """(π_θ-optimum sequence probs (V^L,), the other objective's (V^L,), their texts) for the runner; a
    search that does not reach ‖∇J‖ < OPT_TOL gives NaN probabilities and says so."""
    from ...directions import REF_POLICY
    from ..families import make_spec

    if not isinstance(reward, SequenceReward):
        raise KLGradError(f"a {policy.family} policy takes a sequence reward, {SEQUENCE_REWARD_FORMS}; got "
                          f"{reward.label}")
    gibbs = gibbs_sequence_probs(ref, reward, beta)
    out = []
    for direction in (POLICY_REF, REF_POLICY):
        x, norm = family_optimum(policy, ref, reward, beta, direction, lr)
        if not norm < OPT_TOL:
            out += [np.full(len(gibbs), math.nan), f"none found (gradient ascent stopped at ‖∇J‖ = {norm:.1e})"]
            continue
        probs = sequence_probs(make_spec(policy.family, x, "optimum", structure=policy.structure))
        gap = 0.5 * math.fsum(np.abs(probs - gibbs))
        note = (f"; TV {gap:.3g} from π* ∝ π_ref·exp(R/β), which the family does not hold" if gap > 1e-9 else
                "; = π* ∝ π_ref·exp(R/β) (in the family here)") if direction == POLICY_REF else ""
        out += [probs, f"family optimum {markov_point_text(x)}{note}"]
    return tuple(out)
