"""Live specs of the established catalogue's entries (``entries/established.py``): verl, OpenRLHF, NeMo-RL, slime,
Open-Instruct, ROLL and SkyRL. Each adapter calls the framework's function per token as its trainer does; where
the trainer builds an argument in its loss code (NeMo-RL's and slime's importance weights, Open-Instruct's ±40
clamp of d), the adapter builds it as that file does and says where. Sources read December 2026 through this
project's search corpus and the PyPI wheels named; no framework code is copied.
"""

from __future__ import annotations

import torch

from .spec import Adapter, sampler_logp, sampler_ratio, spec

# --- verl: kl_penalty(logprob, ref_logprob, kl_penalty) -----------------------------------------------------
VERL_SRC = ("verl 0.9.1 (PyPI wheel), verl/trainer/ppo/core_algos.py kl_penalty(logprob, ref_logprob, kl_penalty) "
            "→ kl_penalty_forward; '+' suffix = straight-through k2 gradient; same signature in v0.2–v0.3")


def _verl(mode: str) -> Adapter:
    return lambda f, lp, ref, old, mask: f(lp, ref, mode)


def _verl_reward(mode: str) -> Adapter:
    """ray_trainer.apply_kl_penalty: kl_penalty(old_log_probs, ref_log_prob, mode), the rollout's log-probs."""
    return lambda f, lp, ref, old, mask: f(sampler_logp(lp, old), ref, mode)


# --- OpenRLHF: compute_approx_kl(log_probs, log_probs_base, log_probs_old=None, kl_estimator, unbiased_gradient) -
OPENRLHF_SRC = ("openrlhf 0.11.2 (PyPI wheel), openrlhf/models/utils.py compute_approx_kl(log_probs, log_probs_base, "
                "log_probs_old=None, kl_estimator='k1', unbiased_gradient=False); casts to float32")


def _openrlhf(estimator: str, unbiased: bool = False) -> Adapter:
    def call(f, lp, ref, old, mask):
        if unbiased:
            return f(lp, ref, log_probs_old=old, kl_estimator=estimator, unbiased_gradient=True)
        return f(lp, ref, kl_estimator=estimator)
    return call


def _openrlhf_reward(f, lp, ref, old, mask):
    """The experience maker's compute_approx_kl(action_log_probs, base_action_log_probs): the rollout's log-probs."""
    return f(sampler_logp(lp, old), ref, kl_estimator="k1")


# --- NeMo-RL: calculate_kl(logprobs, logprobs_reference, kl_type, input_clamp_value, output_clamp_value,
#     importance_sampling_weights) --------------------------------------------------------------------------
NEMO_SRC = ("NVIDIA-NeMo/RL v0.7.0 / main 7ea279a (2026-08-22), nemo_rl/algorithms/utils.py calculate_kl(logprobs, "
            "logprobs_reference, kl_type, input_clamp_value=20, output_clamp_value=10, importance_sampling_weights); "
            "weight as nemo_rl/algorithms/loss/loss_functions.py ClippedPGLossFn forms it: exp(logp − generation "
            "logprobs) with use_on_policy_kl_approximation, else exp(logp − sg(logp)), nan_to_num(·, 0)")
NEMO_OLD_SRC = ("NVIDIA-NeMo/RL v0.4.0, nemo_rl/algorithms/utils.py calculate_kl_penalty_joschu2020(logprobs_policy, "
                "logprobs_reference, clamp_value=20) (v0.2–v0.3.1: no clamp_value); loss_functions.py multiplies by "
                "sg(exp(logp − generation logprobs)) with use_on_policy_kl_approximation, else 1")


def _nemo(kind: str) -> Adapter:
    def call(f, lp, ref, old, mask):
        w = torch.nan_to_num(sampler_ratio(lp, old), nan=0.0, posinf=0.0, neginf=0.0)
        return f(logprobs=lp, logprobs_reference=ref, kl_type=kind, input_clamp_value=20.0, output_clamp_value=10.0,
                 importance_sampling_weights=w)
    return call


def _nemo_legacy(f, lp, ref, old, mask):
    kl = f(logprobs_policy=lp, logprobs_reference=ref)
    if old is None:
        return kl
    return torch.nan_to_num(sampler_ratio(lp, old).detach(), nan=0.0, posinf=0.0, neginf=0.0) * kl


# --- slime: compute_approx_kl(log_probs, log_probs_base, kl_loss_type, importance_ratio=None) -------------------
SLIME_SRC = ("THUDM/slime v0.3.1 / main 624b824 (2026-08-21), slime/utils/ppo_utils.py compute_approx_kl(log_probs, "
             "log_probs_base, kl_loss_type, importance_ratio=None) (torch.compile'd; casts to float32); "
             "importance_ratio = exp(log_probs − old_log_probs) as slime/backends/megatron_utils/loss.py forms it "
             "with use_unbiased_kl")


def _slime(kind: str, weighted: bool = False) -> Adapter:
    def call(f, lp, ref, old, mask):
        return f(lp, ref, kl_loss_type=kind, importance_ratio=sampler_ratio(lp, old) if weighted else None)
    return call


# --- Open-Instruct: estimate_kl(ref_logprobs_diff, ratio) -> the four estimators stacked --------------------------
OI_SRC = ("allenai/open-instruct main e6c3044 (2026-08-20), open_instruct/model_utils.py estimate_kl("
          "ref_logprobs_diff, ratio) → stack of 4 (kl_estimator 0..3 = catalogue kl1..kl4); "
          "open_instruct/grpo_utils.py passes ref_logprobs_diff = clamp(logp − ref_logp, ±40) and "
          "ratio = exp(logp − old_logp)")


def _open_instruct(index: int) -> Adapter:
    def call(f, lp, ref, old, mask):
        return f((lp - ref).clamp(-40.0, 40.0), sampler_ratio(lp, old))[index]
    return call


# --- ROLL: compute_approx_kl(log_probs, log_probs_base, action_mask=None, kl_penalty='kl') ----------------------
ROLL_SRC = ("alibaba/ROLL main 8eb27cc (2026-08-19), roll/utils/functionals.py compute_approx_kl(log_probs, "
            "log_probs_base, action_mask=None, kl_penalty='kl') (the PyPI name 'roll' is another project)")


def _roll(mode: str) -> Adapter:
    return lambda f, lp, ref, old, mask: f(lp, ref, kl_penalty=mode)


# --- SkyRL: compute_approx_kl(log_probs, log_probs_base, loss_mask=None, kl_estimator_type='k3') ----------------
SKYRL_SRC = ("NovaSky-AI/SkyRL main a956457 (2026-08-21) skyrl/backends/skyrl_train/utils/ppo_utils.py and "
             "skyrl_train v0.3.0 skyrl-train/skyrl_train/utils/ppo_utils.py: compute_approx_kl(log_probs, "
             "log_probs_base, loss_mask=None, kl_estimator_type='k3')")
SKYRL_TARGETS = ("skyrl.backends.skyrl_train.utils.ppo_utils:compute_approx_kl",
                 "skyrl_train.utils.ppo_utils:compute_approx_kl")


def _skyrl(kind: str) -> Adapter:
    return lambda f, lp, ref, old, mask: f(lp, ref, kl_estimator_type=kind)


VERL_FN = "verl.trainer.ppo.core_algos:kl_penalty"
OPENRLHF_FN = "openrlhf.models.utils:compute_approx_kl"
NEMO_FN = "nemo_rl.algorithms.utils:calculate_kl"
SLIME_FN = "slime.utils.ppo_utils:compute_approx_kl"
OI_FN = "open_instruct.model_utils:estimate_kl"
ROLL_FN = "roll.utils.functionals:compute_approx_kl"


SPECS = [
    *(spec(f"verl:{m}", VERL_FN, _verl(m), VERL_SRC) for m in ("kl", "abs", "mse", "low_var_kl", "k1+", "k3+")),
    spec("verl:reward:kl", VERL_FN, _verl_reward("kl"), VERL_SRC),
    spec("verl:reward:low_var_kl", VERL_FN, _verl_reward("low_var_kl"), VERL_SRC),
    *(spec(f"openrlhf:{k}", OPENRLHF_FN, _openrlhf(k), OPENRLHF_SRC, True) for k in ("k1", "k2", "k3")),
    spec("openrlhf:reward:k1", OPENRLHF_FN, _openrlhf_reward, OPENRLHF_SRC, True),
    spec("openrlhf:k3-unbiased-gradient", OPENRLHF_FN, _openrlhf("k3", unbiased=True), OPENRLHF_SRC, True),
    *(spec(f"nemo-rl:{k}", NEMO_FN, _nemo(k), NEMO_SRC) for k in ("k1", "k2", "k3")),
    spec("nemo-rl:k3-legacy", "nemo_rl.algorithms.utils:calculate_kl_penalty_joschu2020", _nemo_legacy, NEMO_OLD_SRC),
    *(spec(f"slime:{k}", SLIME_FN, _slime(k), SLIME_SRC, True) for k in ("k1", "k2", "k3", "low_var_kl")),
    *(spec(f"slime:{k}-is", SLIME_FN, _slime(k, weighted=True), SLIME_SRC, True)
      for k in ("k1", "k2", "k3", "low_var_kl")),
    *(spec(f"open-instruct:kl{i + 1}", OI_FN, _open_instruct(i), OI_SRC) for i in range(4)),
    *(spec(f"roll:{m}", ROLL_FN, _roll(m), ROLL_SRC) for m in ("kl", "mse", "k3")),
    *(spec(f"skyrl:{k}", SKYRL_TARGETS, _skyrl(k), SKYRL_SRC) for k in ("k2", "k3")),
]

