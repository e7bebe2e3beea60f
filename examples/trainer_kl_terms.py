"""KL terms written the way RL trainers write them (plain torch, not kl_grad's estimators), to audit.

Each takes per-token log-probs ``logp`` (carries grad) and ``ref_logp``, and, where the trainer uses the
behaviour policy, ``old_logp``; each returns per-token values (the trainer averages them) of the same shape.
Names and formulas follow the documented semantics of the frameworks (no code copied):

- ``k1_loss``, ``k2_loss``, ``k3_loss``: Schulman 2020's k1 = log r⁻¹, k2 = ½(log r)², k3 = r − 1 − log r
  (r = π_ref/π_θ) used directly as the KL loss, as GRPO-style trainers (verl ``use_kl_loss``) do;
- ``k3_weighted``: k3 times the differentiable ratio π_θ/π_old (the importance-weighted k3 of TRL's
  bias-corrected KL, and NeMo-RL's weighted KL loss, where the weight carries gradient);
- ``k1_reward``: k1 of the rollout policy as a REINFORCE reward penalty (verl ``use_kl_in_reward``, OpenRLHF's
  reward shaping): loss = −ratio·reward with reward = −(old_logp − ref_logp), a constant;
- ``k3_plus``: straight-through k3+ (verl ``low_var_kl+``): value k3, gradient of k2;
- ``verl_low_var_kl``: verl's ``low_var_kl`` as documented (verl/trainer/ppo/core_algos.py ``kl_penalty``,
  2025): clamp log(π_ref/π_θ) to ±20, k3 of it, clamp the result to [−10, 10];
- ``k2_detached``: k2 of a detached logp (a bug: no gradient reaches the policy);
- ``k3_float32``: k3 computed in float32, as mixed-precision trainers do; written exp(δ) − δ − 1 with
  δ = log(π_ref/π_θ), the form unsloth-zoo PR #1240 found negative in float32 (−5.96e-8 at δ = 1e-6);
- ``openrlhf_k3_clamped``: OpenRLHF's ``compute_approx_kl`` k3 before PR #1335 (openrlhf/models/utils.py):
  float32 log-ratio, exp(δ) − 1 − δ, then clamp to [−10, 10]; beyond δ ≈ 88.7 the exp overflows, the
  clamped value stays finite, and backward multiplies the clamp's zero by inf: NaN (``--dtype`` shows it);
- ``k3_prefix_weighted``: per-token k3 times the prefix weight W_t = Π_{τ≤t} π_θ/π_old (tokens are the last
  axis), the sequence-level form of ``k3_weighted``;
- ``k1_sequence_reward``: k1 of the whole sequence as a REINFORCE reward: the sequence's ratio
  Π_t π_θ/π_old times the constant Σ_t (log π_old − log π_ref) (on-policy Σ_t d_t); one value per sequence;
- ``kl_penalty``: a framework-style dispatcher on a keyword (verl's ``kl_penalty(logprob, ref_logprob,
  kl_penalty)`` names: ``kl`` → k1, ``mse`` → k2, ``low_var_kl`` → ``verl_low_var_kl``), for ``--kwarg``.

On the audit's sequence problems (Markov chains, tokens last) the per-token terms above that follow
KL(π_θ‖π_ref) for one token give only the token-level partial gradient; the last two follow the
sequence-level KL.
"""

from __future__ import annotations

import torch


def k1_loss(logp, ref_logp):
    return logp - ref_logp


def k2_loss(logp, ref_logp):
    return 0.5 * (logp - ref_logp) ** 2


def k3_loss(logp, ref_logp):
    log_ratio = ref_logp - logp  # log(π_ref/π_θ)
    return torch.exp(log_ratio) - log_ratio - 1


def k3_weighted(logp, ref_logp, old_logp):
    weight = torch.exp(logp - old_logp)  # π_θ/π_old, differentiable
    return weight * k3_loss(logp, ref_logp)


def k1_reward(logp, ref_logp, old_logp):
    reward = -(old_logp - ref_logp)  # the KL penalty of the rollout, a constant
    ratio = torch.exp(logp - old_logp)
    return -(ratio * reward)


def k3_plus(logp, ref_logp):
    k3 = k3_loss(logp, ref_logp)
    k2 = k2_loss(logp, ref_logp)
    return k3.detach() + (k2 - k2.detach())  # value k3, gradient k2


def verl_low_var_kl(logp, ref_logp):
    kl = torch.clamp(ref_logp - logp, min=-20, max=20)
    return torch.clamp(torch.exp(kl) - kl - 1, min=-10, max=10)


def k2_detached(logp, ref_logp):
    return 0.5 * (logp.detach() - ref_logp) ** 2


def k3_float32(logp, ref_logp):
    log_ratio = (ref_logp - logp).float()
    return torch.exp(log_ratio) - log_ratio - 1


def openrlhf_k3_clamped(logp, ref_logp):
    log_ratio = -(logp.float() - ref_logp.float())  # δ = log(π_ref/π_θ), float32
    k3 = log_ratio.exp() - 1 - log_ratio
    return k3.clamp(min=-10, max=10)


def k3_prefix_weighted(logp, ref_logp, old_logp):
    prefix_weight = torch.exp(torch.cumsum(logp - old_logp, dim=-1))  # W_t, differentiable
    return prefix_weight * k3_loss(logp, ref_logp)


def k1_sequence_reward(logp, ref_logp, old_logp):
    reward = -(old_logp - ref_logp).sum(dim=-1)  # the sequence's KL penalty of the rollout, a constant
    ratio = torch.exp((logp - old_logp).sum(dim=-1))  # the whole sequence's ratio
    return -(ratio * reward)


def kl_penalty(logp, ref_logp, kl_penalty="kl"):
    terms = {"kl": k1_loss, "mse": k2_loss, "low_var_kl": verl_low_var_kl}
    if kl_penalty not in terms:
        raise ValueError(f"kl_penalty must be one of {', '.join(terms)}, got {kl_penalty!r}")
    return terms[kl_penalty](logp, ref_logp)
