"""Catalogue entries of ms-swift, marin, Liger-Kernel, TRL's open PR #7188 and OpenRLHF PR #1335 (after ``newer``).

Read through this project's search corpus in December 2026 (ms-swift's snapshot read with ``git show``; marin,
Liger-Kernel and the TRL pull request file by file or from the pull request's text); each ``source`` names the
repository, file and commit or pull request. No framework code is copied: the formulas are written from the
semantics read. Notation as in ``terms``: d = logp − ref_logp, r = e^(−d), w = π_θ/π_old.
"""

from __future__ import annotations

import torch

from ..terms import FrameworkTerm, at_sampler, elementwise, k1, k2, k3, low_var_kl, ratio

SWIFT = ("modelscope/ms-swift, swift/rlhf_trainers/grpo_trainer.py GRPOTrainer._compute_loss_and_metrics "
         "(per_token_kl = clamp(k3 of clamp(ref − logp, ±20), ±10), per_token_loss + beta·per_token_kl when "
         "kl_in_reward is False; beta 0.04, loss_type grpo in swift/arguments/rlhf_args.py); commit 3602360 "
         "(2026-08-22)")
SWIFT_IS = ("modelscope/ms-swift, swift/rlhf_trainers/grpo_trainer.py _get_rollout_is_correction / "
            "_apply_rollout_importance_sampling (weights exp(clamp(old_per_token_logps − rollout_per_token_logps, "
            "±20)), both constants; token_truncate: min(·, rollout_importance_sampling_threshold 2.0 in "
            "swift/rlhf_trainers/args_mixin.py); they multiply the whole per-token loss, KL included); commit 3602360")
SWIFT_REWARD = ("modelscope/ms-swift, swift/rlhf_trainers/grpo_trainer.py (kl_in_reward: rewards − "
                "beta·Σ_t (old_per_token_logps − ref_per_token_logps) before the group advantage normalisation; "
                "kl_in_reward default False for grpo, True for rloo and reinforce_plus_plus in "
                "swift/rlhf_trainers/args_mixin.py); commit 3602360 (2026-08-22)")
MARIN = ("marin-community/marin, lib/marin/src/marin/rl/kl_regularization.py (KLMode k1_loss / k2_loss / k3_loss "
         "of log_ratio = current − reference logprobs, k3 = expm1(−d) + d, no clamp; KLConfig default mode none, "
         "beta 0; commit 24f888b) + lib/marin/src/marin/rl/rl_losses.py (loss = reinforce_loss + "
         "beta·masked_response_mean(penalty)); KLConfig since PR #4620 (merged 2026-04)")
LIGER = ("linkedin/Liger-Kernel, src/liger_kernel/chunked_loss/grpo_loss.py k3_loss_fn(ref, logp) = exp(ref − logp) − "
         "(ref − logp) − 1, added as beta·kl to the per-token loss in LigerFusedLinearGRPOFunction.ppo_loss_fn "
         "(beta 0.04, loss_type dapo: token sum / the batch's tokens; no clamp, no ratio on the KL); commit 00027d8")
TRL_7188 = ("huggingface/trl PR #7188 (open, 2026-09-11, fixes issue #6586): with use_bias_correction_kl the KL k3 of "
            "trl/trainer/grpo_trainer.py _compute_loss is multiplied by the per-token ratio π_θ/π_old whatever "
            "importance_sampling_level is (read from the pull request's text and PR #6594's GRPOConfig docstring; "
            "not merged)")

OPENRLHF_1335 = ("OpenRLHF/OpenRLHF PR #1335 (opened 2026-09-11, merged), openrlhf/models/utils.py "
                 "compute_approx_kl k3: a copy of the log-ratio bounded before exp, only where the existing ±10 "
                 "output cap already saturates (from the pull request's text; its merged constant was not readable "
                 "here, so the bound is ±20, inside that region: any bound there gives these values and gradients)")

ON = "π_θ/π_old, differentiable (on-policy exp(logp − sg logp))"


def _swift_rollout_is(lp, ref, old=None, mask=None):
    """sg(min(exp(clamp(sg(logp) − old, ±20)), 2))·low_var_kl: the trainer's old log-probs are the current policy's
    (one update per generation), the rollout's are ``old``; on-policy the weight is 1."""
    if old is None:
        return low_var_kl(lp, ref)
    weight = torch.exp((lp.detach() - old.detach()).clamp(-20.0, 20.0)).clamp(max=2.0)
    return weight * low_var_kl(lp, ref)


def _openrlhf_1335(lp, ref, old=None, mask=None):
    """clamp(r − 1 − log r, ±10) with log r bounded to ±20 first: k3 ≥ 10 wherever the bound acts (k3(−20) = 19),
    so value and gradient equal ``openrlhf:k3``'s, while exp stays finite in float32 (no 0·inf in backward)."""
    log_r = (ref - lp).clamp(-20.0, 20.0)
    return (torch.exp(log_r) - 1.0 - log_r).clamp(-10.0, 10.0)


def _per_token_bias_corrected(lp, ref, old=None, mask=None):
    return ratio(lp, old) * k3(lp, ref)


_T = FrameworkTerm
_SMTM = "seq-mean-token-mean"
TERMS = [
    # ms-swift (GRPO: verl-style clamps; optional rollout IS weights; kl_in_reward for RLOO / REINFORCE++)
    _T("ms-swift:k3", "clamp(r − 1 − log r, ±10), log r = clamp(−d, ±20)", elementwise(low_var_kl), "loss", _SMTM,
       SWIFT, clamp="log r to ±20, then the value to ±10", kinked=True, estimator="verl:low_var_kl",
       notes="the GRPO default (beta 0.04, kl_in_reward False)"),
    _T("ms-swift:k3-rollout-is", "sg(min(π_θ/π_rollout, 2)) · clamp(r − 1 − log r, ±10), log r = clamp(−d, ±20)",
       _swift_rollout_is, "loss", _SMTM, SWIFT_IS, clamp="log r to ±20, the value to ±10; the weight's log ratio "
       "to ±20, the weight to at most 2", weight="π_θ/π_rollout, detached, truncated at 2", kinked=True,
       uses_old=True, notes="rollout_importance_sampling_mode token_truncate; the trainer's old log-probs taken as "
       "the current policy's (one update per generation), the sampler's as the rollout's"),
    _T("ms-swift:reward:k1", "Σ_t d_t subtracted from the sequence's reward", at_sampler(k1), "reward-seq",
       "token-mean", SWIFT_REWARD, notes="kl_in_reward (default for rloo, reinforce_plus_plus); value from the "
       "sampler's log-probs; the group normalisation of the advantage not modelled"),
    # marin (JAX; the KL is off by default)
    _T("marin:k1", "d", elementwise(k1), "loss", _SMTM, MARIN, estimator="k1", notes="KLMode k1_loss"),
    _T("marin:k2", "½d²", elementwise(k2), "loss", _SMTM, MARIN, estimator="k2", notes="KLMode k2_loss"),
    _T("marin:k3", "r − 1 − log r", elementwise(k3), "loss", _SMTM, MARIN, estimator="k3",
       notes="KLMode k3_loss (the mode before PR #4620 added k2)"),
    # Liger-Kernel's fused GRPO loss
    _T("liger:k3", "r − 1 − log r", elementwise(k3), "loss", "token-mean", LIGER, estimator="k3",
       notes="chunked fused GRPO loss (TRL's use_liger_kernel path); beta 0.04"),
    # TRL PR #7188 (open): the bias-corrected KL always with the per-token ratio
    _T("trl-7188:k3-bias-corrected", "w · (r − 1 − log r), w token-level also with sequence-level sampling",
       _per_token_bias_corrected, "loss", "token-mean", TRL_7188, weight=ON, uses_old=True,
       notes="use_bias_correction_kl with importance_sampling_level sequence; as trl:k3-bias-corrected"),
    # OpenRLHF after PR #1335: the same clamped k3, without the NaN gradient of an overflowing exp
    _T("openrlhf-1335:k3", "clamp(r − 1 − log r, ±10), log r bounded before exp where the cap saturates",
       _openrlhf_1335, "loss", "token-mean", OPENRLHF_1335, clamp="log r inside the saturated region, the value to "
       "±10", kinked=True, estimator="openrlhf:k3", notes="the version row after openrlhf:k3: same expected gradient; "
       "`kl-grad audit --dtype` shows the float32 NaN at d = −100 gone"),
]
