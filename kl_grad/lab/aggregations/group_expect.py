"""Expected KL part of a group-normalised policy gradient (``kl_grad/groups.py``), exact or Monte Carlo, on-policy.

Groups are G i.i.d. sequences of the policy π_θ (a ``markov`` chain, or one categorical token: L = 1). The
trainer's objective is J(β) = (1/G) Σ_i sg(A_i(β))·Σ_t w_t(y_i), and its KL part is E[∇J(β)] − E[∇J(0)] = −β·E[∇kl] with
kl = (1/G) Σ_i sg(c_i)·Σ_t w_t the surrogate ``kl_loss(placement="group-reward")`` returns
(c_i = (A_i(T) − A_i(T − βK))/β). Since c is detached, autograd's gradient of a group's surrogate is
(1/G) Σ_i c_i·g(y_i), g(y) = ∇θ Σ_t w_t(y) (the score on-policy), and the groups are exchangeable, so

    E[∇kl] = Σ_y π(y)·g(y)·E[c_1 | y_1 = y],   E[c_1 | y_1 = y] = Σ_M P(M)·c_1(y, M)

over the multisets M of the other G − 1 sequences, with multinomial probabilities
P(M) = (G − 1)!/Π_j m_j! · Π_j π(j)^{m_j} (c_1 depends on the others only through their multiset: every
normalisation is symmetric in the group). That is C(N + G − 2, G − 1) multisets instead of N^(G − 1) ordered
tuples; ``MAX_MULTISETS`` bounds them. g(y) is the autograd gradient of Σ_t w_t at each enumerated sequence,
c comes from ``groups.kl_coefficients`` (the function ``kl_loss`` uses). Monte Carlo draws ``groups`` groups per
trial and differentiates ``groups.group_reward_terms`` itself, one parameter copy per trial.
"""

from __future__ import annotations

import itertools
import math
from typing import Callable

import numpy as np
import torch

from ...directions import POLICY_REF
from ...errors import KLGradError
from ...estimators import get_estimator
from ...groups import GroupReward, group_reward_terms, kl_coefficients, token_weights
from ..problem import Problem

MAX_MULTISETS = 1 << 20
EPS = np.finfo(np.float64).eps


def multisets(n: int, size: int, log_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every multiset of ``size`` draws from n outcomes as sorted index rows (M, size), and its log-probability
    (M,) under i.i.d. draws with ``log_probs`` (n,); refused beyond ``MAX_MULTISETS``."""
    count = math.comb(n + size - 1, size)
    if count > MAX_MULTISETS:
        raise KLGradError(f"exact groups enumerate the multisets of the other G − 1 sequences: {count} for "
                          f"{n} sequences and G = {size + 1}, more than {MAX_MULTISETS}; use mode mc")
    rows = np.array(list(itertools.combinations_with_replacement(range(n), size)), dtype=np.int64).reshape(-1, size)
    counts = np.zeros((len(rows), n))
    np.add.at(counts, (np.arange(len(rows))[:, None], rows), 1.0)
    lgamma = np.array([math.lgamma(c + 1) for c in range(size + 1)])  # log c!
    log_coef = lgamma[size] - lgamma[counts.astype(np.int64)].sum(1)  # log (size! / Π_j m_j!)
    with np.errstate(invalid="ignore"):  # 0·log 0 = 0 (a sampler's pruned outcome never appears)
        log_p = np.where(counts > 0, counts * log_probs, 0.0).sum(1)
    return rows, log_coef + log_p


def enumerated(problem: Problem, reward) -> dict:
    """The policy's support and what the expectation needs, float64: ``x`` (N, L), ``probs`` (N,),
    ``scores`` (N, P) = autograd ∇θ Σ_t w_t(y), ``logp``/``ref`` (N, L) detached log-probs, ``task`` (N,).
    A one-token enumerable policy (categorical) is a sequence of L = 1 (its x, logp and ref get a token axis)."""
    if not problem.policy.fam.enumerable:
        raise KLGradError(f"group rewards need an enumerable policy (markov, categorical), got {problem.policy.family}")
    nodes, probs = problem.policy.fam.nodes(problem.policy, 0)[:2]
    x = nodes[:, 0]  # (N, L), or (N,) one token
    leaves = problem.policy.leaves((len(x), 1), torch.float64)  # one parameter copy per sequence
    logp = problem.policy.build_from(leaves).log_prob(x[:, None])[:, 0]  # (N, L), or (N,)
    names = problem.param_names
    grads = torch.autograd.grad(token_weights(logp).sum(), [leaves[n] for n in names])
    scores = torch.stack([g.reshape(-1) for g in grads], dim=1).numpy()  # (N, P)
    with torch.no_grad():
        ref = problem.ref.build(torch.float64).log_prob(x)
    if not problem.policy.fam.sequential:
        x, logp, ref = x[:, None], logp[:, None], ref[:, None]
    task = np.zeros(len(x)) if reward is None else reward.of_sequences(x.numpy())
    return dict(x=x, probs=np.asarray(probs), scores=scores, logp=logp.detach(), ref=ref, task=task)


def sequence_kl(support: dict, estimator: str | Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> np.ndarray:
    """K(y) = Σ_t k_t (N,) at every enumerated sequence, float64. ``estimator``: a registered name (k_t its value
    at d_t = logp_t − ref_t), or a function (logp (N, L), ref (N, L)) → per-token k (N, L) or per-sequence K (N,),
    called on detached float64 log-probs (the audit's user term, ``auditing/group_audit.py``)."""
    logp, ref = support["logp"], support["ref"]
    if isinstance(estimator, str):
        return get_estimator(estimator).of_log_ratio(logp - ref).sum(-1).numpy()
    k = estimator(logp, ref)
    return (k.sum(-1) if k.dim() == logp.dim() else k).detach().to(torch.float64).numpy()


def exact_kl_gradient(support: dict, kl: np.ndarray, size: int, beta: float, normalisation: str,
                      eps: float) -> tuple[np.ndarray, float]:
    """(E[∇kl] (P,), its float64 rounding bound) for groups of ``size`` (module docstring)."""
    probs, task = support["probs"], support["task"]
    with np.errstate(divide="ignore"):
        log_probs = np.log(probs)
    rows, log_w = multisets(len(probs), size - 1, log_probs)
    w = torch.from_numpy(np.exp(log_w))  # (M,)
    others_t, others_k = torch.from_numpy(task[rows]), torch.from_numpy(kl[rows])  # (M, G − 1)
    cond, cabs = np.empty(len(probs)), np.empty(len(probs))
    for y in range(len(probs)):  # E[c_1 | y_1 = y], one (M, G) batch of groups at a time
        t = torch.cat([torch.full((len(rows), 1), float(task[y]), dtype=torch.float64), others_t], 1)
        k = torch.cat([torch.full((len(rows), 1), float(kl[y]), dtype=torch.float64), others_k], 1)
        c = kl_coefficients(t, k, beta, normalisation, eps)[:, 0]
        cond[y], cabs[y] = float((w * c).sum()), float((w * c.abs()).sum())
    scores = support["scores"]
    terms = (probs * cond)[:, None] * scores  # (N, P)
    # rounding of the sums (N·M terms), and of c itself where it is linear in K (4G·ε·max|K| per c)
    spread = np.abs(scores * probs[:, None]).sum(0)
    bound = 16 * (len(probs) + len(rows) + size) * EPS * float(np.linalg.norm((probs * cabs) @ np.abs(scores)))
    bound += 4 * size * EPS * float(np.abs(kl).max()) * float(np.linalg.norm(spread))
    return terms.sum(0), bound


def reward_seq_gradient(support: dict, kl: np.ndarray) -> np.ndarray:
    """E[g(y)·K(y)] (P,): the expected gradient of ``reward-seq`` on-policy (the normalisation "none")."""
    return (support["probs"] * kl) @ support["scores"]


def mc_kl_gradients(problem: Problem, reward, estimator: str, size: int, beta: float, normalisation: str,
                    eps: float, trials: int, groups: int, seed: int) -> np.ndarray:
    """Per-trial ∇kl (trials, P): each trial's mean over ``groups`` groups of ``size`` sampled sequences, by
    autograd of ``group_reward_terms`` with one parameter copy per trial (float64, seeded)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        x = problem.policy.build(torch.float64).sample((trials, groups * size))  # (trials, B, L)
        ref = problem.ref.build(torch.float64).log_prob(x)
    task = None if reward is None else torch.from_numpy(
        reward.of_sequences(x.reshape(-1, x.shape[-1]).numpy()).reshape(trials, groups * size))
    leaves = problem.policy.leaves((trials, 1), torch.float64)
    logp = problem.policy.build_from(leaves).log_prob(x)  # (trials, B, L)
    terms = group_reward_terms(get_estimator(estimator), logp, ref, None, None,
                               GroupReward(size, task, beta, normalisation, eps))
    names = problem.param_names
    grads = torch.autograd.grad(terms.sum() / (groups * size), [leaves[n] for n in names])
    return torch.stack([g.reshape(-1) for g in grads], dim=1).numpy()


def truth(problem: Problem) -> np.ndarray:
    """∇θ KL(π_θ‖π_ref) of the sequence (P,), the family's closed form."""
    return problem.true_gradients()[POLICY_REF]
