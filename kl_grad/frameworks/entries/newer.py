"""Catalogue entries of tunix, unsloth, torchforge, compose-rl, Trinity-RFT, PipelineRL, AReaL, cosmos-rl, oat and
TRL's RLOO and PPO trainers (their reward penalties; TRL's GRPO loss terms are in ``established``).

Read through this project's search corpus in December 2026 (repository snapshots read with ``git show``;
Trinity-RFT, too large to fetch, file by file); each ``source`` names the repository, file and commit or tag.
No framework code is copied: the formulas are written from the semantics read. Reward penalties that a
framework computes from the sampler's log-probs (``old_logp``: compose-rl's ``action_log_probs``, AReaL's and
oat's rollout ``logps``) take their value there when ``old_logp`` is given; on-policy that is logp's value.
"""

from __future__ import annotations

from ..terms import FrameworkTerm, clamp_value, elementwise, k1, k2, k3, ratio

TUNIX = ("google/tunix, tunix/rl/grpo/grpo_learner.py GRPOConfig (kl_loss_mode, beta 0.04, loss_agg_mode "
         "sequence-mean-token-mean) + tunix/rl/common.py compute_kl_divergence + algo_core.py; commit c7d8950 "
         "(2026-08-21); kl_loss_mode default 'kl' since commit 6d75558 (2026-05-11, first released in v0.1.7)")
TUNIX_016 = ("google/tunix v0.1.6 (2026-03-11), tunix/rl/grpo/grpo_learner.py grpo_loss_fn: "
             "compute_kl_divergence with its default method low_var_kl, beta 0.04, no clamp")
UNSLOTH = ("unslothai/unsloth-zoo, unsloth_zoo/rl_replacements.py grpo_compute_loss (commit ce232d6, 2026-08-20): "
           "kl_i from ref and new only; no use_bias_correction_kl read from the kwargs")
TORCHFORGE = ("meta-pytorch/torchforge, src/forge/losses/grpo_loss.py SimpleGRPOLoss and apps/grpo/main.py "
              "simple_grpo_loss (beta 0.1; commit 6e77f0b, 2025-11-15)")
COMPOSE = ("databricks/compose-rl, compose_rl/utils/utils.py approx_kl (log ratio clamped to kl_clip_range 40) + "
           "algorithms/online/reward_manager.py (rewards −kl_ctl·kl.detach(), kl from ref and the rollout's "
           "action_log_probs; kl_estimator default k1 in callback.py); commit ae56991 (2025-07-30)")
TRINITY = ("modelscope/Trinity-RFT, trinity/algorithm/kl_fn/kl_fn.py (commit 4560efa) CorrectedK3Fn / K2Fn; "
           "algorithm.py GRPO default kl_loss_fn k2 (commit 00539bd); common/verl_config.py loss_agg_mode token-mean")
PIPELINERL = ("ServiceNow/PipelineRL, pipelinerl/finetune/rl/__init__.py rl_step (clamp_log_ratio_ref_new_value 10, "
              "kl_coef 0.1, token weights 1/batch_size); commit 58d3934 (2026-06-19)")
AREAL = ("inclusionAI/AReaL, areal/utils/data.py KLEstimator (apply_clamp ±10) + areal/trainer/ppo/actor.py "
         "(rewards −kl_ctl·kl(old_logp, ref_logp), kl_ctl 0.1, kl_estimator k1, then GAE); commit 4aef98d (2026-05-21)")
COSMOS = ("nvidia-cosmos/cosmos-rl, cosmos_rl/policy/trainer/llm_trainer/grpo_trainer.py compute_loss (kl_beta, "
          "default 0.0; unbiased_kl_estimate default False; loss_type default token-mean); commit 89f2e5b (2026-07-31)")
OAT = ("sail-sg/oat, oat/algorithms/ppo.py (beta 0.1 in oat/args.py: k3 reg_loss with log r clamped ±40, "
       "masked_mean per sequence; kl_penalty_coef default 0: −coef·(logps − ref_logps) in the rewards); "
       "commit c1a074c (2025-10-31)")

TRL_RLOO = ("huggingface/trl, trl/trainer/rloo_trainer.py (rewards − beta·Σ_t (old_per_token_logps − ref), "
            "beta 0.05 in rloo_config.py); commit f2cd577 (2026-07-24)")
TRL_PPO = ("huggingface/trl, trl/experimental/ppo/ppo_trainer.py (non_score_reward −kl_coef·kl per token, kl_estimator "
           "k1 default or k3, from the rollout logprobs; kl_coef 0.05, GAE γ 1, λ 0.95 in ppo_config.py); commit "
           "f2cd577 (2026-07-24)")

ON = "π_θ/π_old, differentiable (on-policy exp(logp − sg logp))"


def _k3_input_clamp(bound: float):
    """r − 1 − log r with log r = clamp(ref − logp, ±bound): zero gradient where |d| > bound."""
    return lambda lp, ref, old=None, mask=None: k3(lp, ref, input_clamp=bound)


def low_var_kl(lp, ref, old=None, mask=None):
    return clamp_value(k3(lp, ref, input_clamp=20.0), 10.0)


def _trinity_corrected_k3(lp, ref, old=None, mask=None):
    """clamp(w, 0, 2)·k3: the clamp is a torch.clamp of the differentiable ratio (no gradient through w above 2)."""
    return ratio(lp, old).clamp(0.0, 2.0) * k3(lp, ref)


def _cosmos_unbiased(lp, ref, old=None, mask=None):
    """clamp(w·k3(clamp(log r, ±20)), ±10) with w differentiable everywhere (also where the input clamp fires)."""
    return clamp_value(ratio(lp, old) * k3(lp, ref, input_clamp=20.0), 10.0)


def at_sampler(value_of):
    """A reward penalty computed from the sampler's log-probs (old_logp) where given, else from logp."""
    return lambda lp, ref, old=None, mask=None: value_of(lp if old is None else old, ref)


def _compose_k1(lp, ref):
    return (lp - ref).clamp(-40.0, 40.0)


def _compose_k3_offpolicy(lp, ref):
    """1 − r, log r = clamp(ref − lp, ±40): expectation 0 under π_θ; as a reward its score term gives ∇KL(ref‖π_θ)."""
    return 1.0 - (ref - lp).clamp(-40.0, 40.0).exp()


def _areal_k1(lp, ref):
    return clamp_value(k1(lp, ref), 10.0)


_T = FrameworkTerm
_SMTM = "seq-mean-token-mean"
TERMS = [
    # tunix (JAX; GRPO adds beta·kl per token before its loss aggregation)
    _T("tunix:kl", "d", elementwise(k1), "loss", _SMTM, TUNIX, estimator="k1",
       notes="the default kl_loss_mode since v0.1.7 (β 0.04); kl_clamp_value None (no clamp) by default"),
    _T("tunix-0.1.6:k3", "r − 1 − log r", elementwise(k3), "loss", _SMTM, TUNIX_016, estimator="k3",
       notes="the GRPO default up to v0.1.6 (method low_var_kl, unclamped)"),
    # unsloth (patches TRL's GRPO loss)
    _T("unsloth:k3", "r − 1 − log r", elementwise(k3), "loss", _SMTM, UNSLOTH, estimator="k3",
       notes="plain k3 even when TRL's use_bias_correction_kl is set (loss_type grpo default: seq-mean-token-mean)"),
    _T("torchforge:k3", "r − 1 − log r", elementwise(k3), "loss", _SMTM, TORCHFORGE, estimator="k3"),
    # compose-rl: the KL as a per-token reward penalty
    _T("compose-rl:reward:k1", "clamp(d, ±40) as a per-token reward penalty", at_sampler(_compose_k1), "reward",
       "token-mean", COMPOSE, clamp="log ratio to ±40", kinked=True,
       notes="the default kl_estimator; value from the sampler's log-probs"),
    _T("compose-rl:reward:k3_offpolicy", "1 − r, log r = clamp(−d, ±40), as a per-token reward penalty",
       at_sampler(_compose_k3_offpolicy), "reward", "token-mean", COMPOSE, clamp="log ratio to ±40", kinked=True,
       notes="kl_estimator k3_offpolicy; E_π[1 − r] = 0, value from the sampler's log-probs"),
    # Trinity-RFT
    _T("trinity:k2", "½d²", elementwise(k2), "loss", "token-mean", TRINITY, estimator="k2",
       notes="the default kl_loss_fn of its GRPO, PPO and OPMD algorithms (kl_coef 0.001)"),
    _T("trinity:corrected_k3", "clamp(w, 0, 2) · (r − 1 − log r)", _trinity_corrected_k3, "loss", "token-mean",
       TRINITY, clamp="w to [0, 2] (no gradient through w above 2)", weight=ON + ", clamped to [0, 2]",
       kinked=True, uses_old=True, notes="kl_loss_fn corrected_k3; plain k3 when no old_logprob is passed"),
    # PipelineRL
    _T("pipelinerl:k3", "r − 1 − log r, log r = clamp(−d, ±10)", _k3_input_clamp(10.0), "loss",
       "seq-mean-token-sum", PIPELINERL, clamp="log r to ±10 (gradient 0 beyond)", kinked=True,
       notes="kl_coef 0.1, token sums / batch_size (or / group tokens with group_normalization)"),
    # AReaL
    _T("areal:reward:k1", "clamp(d, ±10) as a per-token reward penalty", at_sampler(_areal_k1), "reward",
       "token-mean", AREAL, clamp="value to ±10", kinked=True,
       notes="the default (kl_ctl 0.1, kl_estimator k1); value from the sampler's log-probs; GAE advantages"),
    # cosmos-rl (KL off by default: kl_beta 0)
    _T("cosmos-rl:k3", "clamp(r − 1 − log r, ±10), log r = clamp(−d, ±20)", low_var_kl, "loss", "token-mean",
       COSMOS, clamp="log r to ±20, then the value to ±10", kinked=True, estimator="verl:low_var_kl",
       notes="kl_beta > 0 with unbiased_kl_estimate False"),
    _T("cosmos-rl:k3-unbiased", "clamp(w · (r − 1 − log r), ±10), log r = clamp(−d, ±20)", _cosmos_unbiased, "loss",
       "token-mean", COSMOS, clamp="log r to ±20 (w keeps its gradient there), then w·kl to ±10",
       weight=ON + ", not detached at the input clamp", kinked=True, uses_old=True,
       notes="unbiased_kl_estimate True (DeepSeek-V3.2)"),
    # oat
    _T("oat:k3", "e^c − 1 − c, c = clamp(−d, ±40)", _k3_input_clamp(40.0), "loss", _SMTM, OAT,
       clamp="log r to ±40", kinked=True, notes="beta 0.1 (KL-regularised PPO/GRPO loss); dr-grpo: masked sum"),
    _T("oat:reward:k1", "d as a per-token reward penalty", at_sampler(k1), "reward", "token-mean", OAT,
       notes="kl_penalty_coef > 0 (default 0); value from the rollout's log-probs"),
    # TRL's RLOO (sequence penalty) and experimental PPO (per-token penalty, then GAE with λ 0.95, not modelled)
    _T("trl:rloo-reward:k1", "Σ_t d_t subtracted from the sequence's reward", at_sampler(k1), "reward-seq",
       "token-mean", TRL_RLOO, notes="beta 0.05; value from the sampler's log-probs; RLOO's leave-one-out baseline "
       "not modelled"),
    _T("trl:ppo-reward:k1", "d as a per-token reward penalty", at_sampler(k1), "reward", "token-mean", TRL_PPO,
       notes="the default kl_estimator; value from the rollout's log-probs"),
    _T("trl:ppo-reward:k3", "r − 1 − log r as a per-token reward penalty", at_sampler(k3), "reward", "token-mean",
       TRL_PPO, notes="kl_estimator k3; value from the rollout's log-probs"),
]
