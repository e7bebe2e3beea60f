"""Live specs of the newer catalogue's entries (``entries/newer.py``) whose framework has a KL callable of its
own: compose-rl, Trinity-RFT, AReaL and torchforge; ``NO_CALLABLE`` says, per framework, why the others have
none. Sources read December 2026 through this project's search corpus (repository snapshots read with
``git show``; Trinity-RFT file by file); no framework code is copied.

A class target (Trinity-RFT's ``KLFn`` subclasses, AReaL's ``KLEstimator``, torchforge's ``SimpleGRPOLoss``) is
instantiated by the adapter with the trainer's defaults and called per token. Reward penalties are computed by
the trainer from the sampler's log-probs (``sampler_logp``: old_logp where given, on-policy logp itself).
"""

from __future__ import annotations

import torch

from .spec import Adapter, sampler_logp, spec

# --- compose-rl: approx_kl(log_p, log_q, kl_clip_range=40.0) -> {'k1', 'k2', 'k3', 'k3_offpolicy'} ------------
COMPOSE_SRC = ("databricks/compose-rl main ae56991 (2025-07-30), compose_rl/utils/utils.py approx_kl(log_p, log_q, "
               "kl_clip_range=40.0) → dict 'k1', 'k2', 'k3', 'k3_offpolicy' of clamp(log_p − log_q, ±kl_clip_range); "
               "compose_rl/algorithms/online/reward_manager.py passes log_p = the reference's log-probs, log_q = the "
               "rollout's action_log_probs, kl_clip_range 40 (callback.py default)")


def _compose(key: str) -> Adapter:
    return lambda f, lp, ref, old, mask: f(log_p=ref, log_q=sampler_logp(lp, old), kl_clip_range=40.0)[key]


# --- Trinity-RFT: KLFn subclasses, calculate_kl(logprob, ref_logprob, old_logprob=None) ---------------------------
TRINITY_SRC = ("modelscope/Trinity-RFT 4560efa, trinity/algorithm/kl_fn/kl_fn.py K2Fn / CorrectedK3Fn (KLFn "
               "subclasses registered in KL_FN as 'k2' / 'corrected_k3'; default args adaptive False, kl_coef 0.001): "
               "calculate_kl(logprob, ref_logprob, old_logprob=None) per token; the trainer passes the rollout's "
               "old_logprob (trinity/trainer/tinker_trainer.py calculate_kl_loss(..., old_logprob=...))")


def _trinity(cls, lp, ref, old, mask):
    return cls().calculate_kl(lp, ref, old_logprob=lp.detach() if old is None else old)


# --- AReaL: KLEstimator(kl_estimator='k1', apply_clamp=True)(log_probs, log_probs_base) ---------------------------
AREAL_SRC = ("inclusionAI/AReaL main 4aef98d (2026-05-21), areal/utils/data.py KLEstimator(kl_estimator='k1', "
             "apply_clamp=True).__call__(log_probs, log_probs_base) (casts to float32, value clamped to ±10); "
             "areal/trainer/ppo/actor.py forms the reward −kl_ctl·kl_estimator(old_logp, ref_logp)")


def _areal(cls, lp, ref, old, mask):
    return cls("k1")(sampler_logp(lp, old), ref)


# --- torchforge: SimpleGRPOLoss(beta=0.1).forward(logprobs, ref_logprobs, advantages, padding_mask) ---------------
TORCHFORGE_SRC = ("meta-pytorch/torchforge main 6e77f0b (2025-11-15), src/forge/losses/grpo_loss.py "
                  "SimpleGRPOLoss(beta=0.1).forward(logprobs, ref_logprobs, advantages, padding_mask) → scalar loss "
                  "−(exp(lp − sg lp)·A − beta·k3) masked-mean per sequence, mean over sequences; the adapter calls "
                  "it on one token at a time with A = 0 and mask 1 (loss = beta·k3 of that token) and divides by beta")


def _torchforge(cls, lp, ref, old, mask):
    loss = cls()
    flat_lp, flat_ref = lp.reshape(-1), ref.reshape(-1)
    zero, one = torch.zeros_like(lp.detach()[..., :1]), torch.ones_like(lp.detach()[..., :1])
    per_token = [loss(flat_lp[i].view(1, 1), flat_ref[i].view(1, 1), zero.view(1, 1), one.view(1, 1)) / loss.beta
                 for i in range(flat_lp.numel())]
    return torch.stack(per_token).reshape(lp.shape)


COMPOSE_FN = "compose_rl.utils.utils:approx_kl"
TRINITY_MOD = "trinity.algorithm.kl_fn.kl_fn"

SPECS = [
    spec("compose-rl:reward:k1", COMPOSE_FN, _compose("k1"), COMPOSE_SRC),
    spec("compose-rl:reward:k3_offpolicy", COMPOSE_FN, _compose("k3_offpolicy"), COMPOSE_SRC),
    spec("trinity:k2", f"{TRINITY_MOD}:K2Fn", _trinity, TRINITY_SRC),
    spec("trinity:corrected_k3", f"{TRINITY_MOD}:CorrectedK3Fn", _trinity, TRINITY_SRC),
    spec("areal:reward:k1", "areal.utils.data:KLEstimator", _areal, AREAL_SRC, True),
    spec("torchforge:k3", "forge.losses.grpo_loss:SimpleGRPOLoss", _torchforge, TORCHFORGE_SRC),
]

# Frameworks whose KL term is no function of its own (nothing to import and call), per framework.
_TUNIX = ("JAX, not torch: tunix/rl/common.py compute_kl_divergence(per_token_logps, ref_per_token_logps, method, "
          "clamp_value) takes and returns jax arrays (casts to jnp.float32), so torch autograd cannot differentiate "
          "it (google/tunix c7d8950)")
NO_CALLABLE = {
    "verl-0.3": "a version row: verl v0.2–v0.3's kl_penalty has the same name and signature as today's, so the "
                "installed verl is checked against the current verl rows (on this grid low_var_kl's ±10 value clamp "
                "would hide the missing ±20 input clamp anyway)",
    "openrlhf-1335": "a version row: after PR #1335 compute_approx_kl keeps its name and signature, and the row equals "
                     "openrlhf:k3 in value and gradient wherever exp is finite, so the installed OpenRLHF is checked "
                     "against the openrlhf rows; which side of the PR it is on shows in float32 at d = −100 (NaN "
                     "gradient before): kl-grad audit --dtype float32",
    "tunix": _TUNIX,
    "tunix-0.1.6": _TUNIX,
    "unsloth": "computed inline (kl_i = exp(ref − new) − (ref − new) − 1) in unsloth_zoo/rl_replacements.py "
               "grpo_compute_loss, a compiled loss that returns the aggregated loss and mean KL, not per-token values "
               "(unslothai/unsloth-zoo ce232d6)",
    "pipelinerl": "computed inline in pipelinerl/finetune/rl/__init__.py rl_step(model, batch, ...), which runs the "
                  "model on a batch; no function of log-probs to call (ServiceNow/PipelineRL 58d3934)",
    "cosmos-rl": "computed inline in cosmos_rl/policy/trainer/llm_trainer/grpo_trainer.py compute_loss, which reads "
                 "its switches from the full trainer config and returns the aggregated loss "
                 "(nvidia-cosmos/cosmos-rl 89f2e5b)",
    "oat": "computed inline in oat/algorithms/ppo.py PPOLearner.learning_step (the k3 reg_loss) and the rollout "
           "rewards (−kl_penalty_coef·(logps − ref_logps)); no function to call (sail-sg/oat c1a074c)",
    "trl": "computed inline: GRPOTrainer._compute_loss (trl 1.16.0, trl/trainer/grpo_trainer.py), RLOOTrainer."
           "_generate_and_score_completions (trl/trainer/rloo_trainer.py) and the experimental PPOTrainer.train loop "
           "(trl/experimental/ppo/ppo_trainer.py; huggingface/trl f2cd577); no function to call",
}
