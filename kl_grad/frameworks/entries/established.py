"""Catalogue entries of verl, OpenRLHF, TRL, NeMo-RL, slime, Open-Instruct, ROLL and SkyRL (``TERMS``).

Read through this project's search corpus in December 2026; each entry's ``source`` names the repository, file
and version. No framework code is copied: the formulas are written from the semantics read.
"""

from __future__ import annotations

from ..terms import (
    FrameworkTerm,
    absolute,
    at_sampler,
    clamp_value,
    elementwise,
    k1,
    k2,
    k3,
    low_var_kl,
    ratio,
    sequence_ratio,
    straight_through,
)

VERL = "volcengine/verl, verl/trainer/ppo/core_algos.py (kl_penalty / kl_penalty_forward), 2025 versions with k1+/k3+"
VERL_OLD = "volcengine/verl, verl/trainer/ppo/core_algos.py kl_penalty, v0.2–v0.3 (no input clamp)"
OPENRLHF = "OpenRLHF/OpenRLHF, openrlhf/models/utils.py compute_approx_kl (commit 10c7336 and later)"
OPENRLHF_UNBIASED = ("OpenRLHF/OpenRLHF PR #1309 (merged 2026-08-14), --algo.kl.unbiased_gradient: forward value kept, "
                     "gradient w·k1·∇log π with w clamped and detached (cap 10 as the issue reports)")
TRL = ("huggingface/trl, trl/trainer/grpo_trainer.py _compute_loss and grpo_config.py (2025-2026; "
       "use_bias_correction_kl added in PR #4638, default False; default True since PR #6503, merged 2026-07-29)")
NEMO = ("NVIDIA-NeMo/RL, nemo_rl/algorithms/loss_functions.py ClippedPGLossFn + algorithms/utils.py calculate_kl "
        "(kl_input_clamp_value 20, kl_output_clamp_value 10; 2026 main)")
NEMO_OLD = ("NVIDIA-NeMo/RL, nemo_rl/algorithms/loss_functions.py + utils.py calculate_kl_penalty_joschu2020, v0.4.0 "
            "(the ±20 input clamp arrived in v0.4.0; v0.2–v0.3.1 had none)")
SLIME = ("THUDM/slime, slime/utils/ppo_utils.py compute_approx_kl + backends/megatron_utils/loss.py (--kl-loss-type "
         "k1/k2/k3/low_var_kl, default k1; --use-unbiased-kl; commit 624b824, 2026-08-21)")
OPEN_INSTRUCT = "allenai/open-instruct, open_instruct/grpo_fast.py (kl_estimator kl1..kl4, diff clamped ±40; 2025)"
SKYRL = ("NovaSky-AI/SkyRL, skyrl_train/utils/ppo_utils.py compute_approx_kl (kl_estimator_type k1/abs/k2/k3; "
         "2026 main)")
ROLL = ("alibaba/ROLL, roll/utils/functionals.py compute_approx_kl (kl_penalty kl/abs/mse/k3/full; "
        "commit 4142237)")

ON = "π_θ/π_old, differentiable (on-policy exp(logp − sg logp))"
_SLIME_AGG = "seq-mean-token-mean"  # sum_of_sample_mean (backends/megatron_utils/cp_utils.py): per-sample token means
_SLIME_IS = ("--use-unbiased-kl (DeepSeek-V3.2's importance-weighted KL, arXiv 2512.02556; commit cfad76e, "
             "2025-12-02): w = exp(logp − old_logp), old_logp = logp.detach() on-policy")


def _verl_plus(value_of):
    return lambda lp, ref, old=None, mask=None: straight_through(value_of(lp, ref), lp, ref)


def _openrlhf(base):
    return lambda lp, ref, old=None, mask=None: clamp_value(base(lp, ref), 10.0)


def _openrlhf_unbiased_gradient(lp, ref, old=None, mask=None):
    """Value clamp(k3, ±10); gradient sg(min(w, 10))·d through a straight-through term (value 0)."""
    value = clamp_value(k3(lp, ref), 10.0).detach()
    slope = (ratio(lp, old).clamp(max=10.0) * (lp - ref)).detach()
    return value + slope * (lp - lp.detach())


def _trl_k3(lp, ref, old=None, mask=None):
    return k3(lp, ref)


def _trl_bias_corrected(lp, ref, old=None, mask=None):
    return k3(lp, ref) * ratio(lp, old)


def _trl_bias_corrected_seq(lp, ref, old=None, mask=None):
    return k3(lp, ref) * sequence_ratio(lp, old, mask)


def _nemo(kind: str):
    """Current NeMo-RL: w·kl(clamp(log r, ±20)) then clamp(·, ±10); w detached where the input clamp fires."""
    def fn(lp, ref, old=None, mask=None):
        log_r = ref - lp
        inside = log_r.clamp(-20.0, 20.0)
        w = ratio(lp, old)
        w = w.where(log_r == inside, w.detach())
        kl = {"k1": -inside, "k2": 0.5 * inside ** 2, "k3": inside.exp() - 1 - inside}[kind]
        return clamp_value(w * kl, 10.0)
    return fn


def _nemo_legacy(lp, ref, old=None, mask=None):
    w = 1.0 if old is None else ratio(lp, old).detach()
    return w * k3(lp, ref, input_clamp=20.0)


def _slime(base, weighted: bool, clamped: bool):
    """slime's compute_approx_kl: kl (k1, k2 or k3), times w when --use-unbiased-kl, then (low_var_kl only) ±10."""
    def fn(lp, ref, old=None, mask=None):
        kl = base(lp, ref)
        if weighted:
            kl = ratio(lp, old) * kl
        return clamp_value(kl, 10.0) if clamped else kl
    return fn


def _oi_diff(lp, ref):
    return (lp - ref).clamp(-40.0, 40.0)


def _oi(kind: str):
    def fn(lp, ref, old=None, mask=None):
        d = _oi_diff(lp, ref)
        return {"kl1": d, "kl2": 0.5 * d ** 2, "kl3": (-d).exp() - 1 + d, "kl4": ratio(lp, old) * d}[kind]
    return fn


def _roll_low_var_kl(lp, ref, old=None, mask=None):
    return clamp_value(k3(lp, ref), 10.0)


_T = FrameworkTerm
_CLAMP_VERL = "log r clamped to ±20, then the value to ±10 (gradient 0 beyond either)"
TERMS = [
    # verl: actor.use_kl_loss with actor.kl_loss_type (loss), or algorithm.kl_penalty in the reward
    _T("verl:kl", "d", elementwise(k1), "loss", "token-mean", VERL, estimator="k1"),
    _T("verl:abs", "|d|", elementwise(absolute), "loss", "token-mean", VERL, kinked=True, estimator="verl:abs",
       notes="kink at d = 0"),
    _T("verl:mse", "½d²", elementwise(k2), "loss", "token-mean", VERL, estimator="k2"),
    _T("verl:low_var_kl", "clamp(r − 1 − log r, ±10), log r = clamp(−d, ±20)", elementwise(low_var_kl),
       "loss", "token-mean", VERL, clamp=_CLAMP_VERL, kinked=True, estimator="verl:low_var_kl",
       notes="the default actor.kl_loss_type; alias k3"),
    _T("verl:k1+", "value d, gradient of ½d² (straight-through)", _verl_plus(k1), "loss", "token-mean", VERL,
       estimator="k1+"),
    _T("verl:k3+", "value verl:low_var_kl, gradient of ½d² (straight-through)", _verl_plus(low_var_kl),
       "loss", "token-mean", VERL, clamp="value only (the k2 gradient is not clamped)", estimator="verl:k3+",
       notes="also spelled low_var_kl+"),
    _T("verl:reward:kl", "d as a per-token reward penalty", at_sampler(k1), "reward", "token-mean", VERL,
       notes="algorithm.use_kl_in_reward with the default algorithm.kl_penalty = kl"),
    _T("verl:reward:low_var_kl", "verl:low_var_kl as a per-token reward penalty", at_sampler(low_var_kl),
       "reward", "token-mean", VERL, clamp=_CLAMP_VERL, kinked=True),
    # OpenRLHF: compute_approx_kl clamps every estimator's output to ±10
    _T("openrlhf:k1", "clamp(d, ±10)", _openrlhf(k1), "loss", "token-mean", OPENRLHF, clamp="value to ±10",
       kinked=True, estimator="openrlhf:k1", notes="use_kl_loss with kl_estimator k1"),
    _T("openrlhf:k2", "clamp(½d², ±10)", _openrlhf(k2), "loss", "token-mean", OPENRLHF, clamp="value to ±10",
       kinked=True, estimator="openrlhf:k2"),
    _T("openrlhf:k3", "clamp(r − 1 − log r, ±10)", _openrlhf(k3), "loss", "token-mean", OPENRLHF,
       clamp="value to ±10", kinked=True, estimator="openrlhf:k3", notes="GRPO recipes: use_kl_loss, kl_estimator k3"),
    _T("openrlhf:reward:k1", "clamp(d, ±10) as a per-token reward penalty", at_sampler(_openrlhf(k1)), "reward",
       "token-mean", OPENRLHF, clamp="value to ±10", kinked=True,
       notes="PPO default: init_kl_coef in the reward, estimator k1"),
    _T("openrlhf:k3-unbiased-gradient", "value clamp(r − 1 − log r, ±10); gradient sg(min(w, 10))·d (straight-through)",
       _openrlhf_unbiased_gradient, "loss", "token-mean", OPENRLHF_UNBIASED, clamp="value to ±10; weight capped at 10",
       weight="π_θ/π_old, detached, capped at 10", kinked=True, uses_old=True,
       notes="opt-in --algo.kl.unbiased_gradient with kl_estimator k3"),
    # TRL GRPO: per-token k3 (no clamp), beta; optional bias correction by the PPO ratio
    _T("trl:k3", "r − 1 − log r", _trl_k3, "loss", "token-mean", TRL, estimator="k3",
       notes="use_bias_correction_kl=False (the default until PR #6503); loss_type dapo/bnpo = token-mean, grpo = "
             "seq-mean-token-mean, dr_grpo = dr-grpo"),
    _T("trl:k3-bias-corrected", "w · (r − 1 − log r), w token-level", _trl_bias_corrected, "loss", "token-mean", TRL,
       weight=ON, uses_old=True, notes="use_bias_correction_kl=True (the default since PR #6503), "
       "importance_sampling_level=token"),
    _T("trl:k3-bias-corrected-seq", "w_seq · (r − 1 − log r), w_seq = exp(token-mean of log w) per sequence",
       _trl_bias_corrected_seq, "loss", "token-mean", TRL, weight="sequence-level π_θ/π_old broadcast per token, "
       "differentiable", uses_old=True, notes="use_bias_correction_kl=True, importance_sampling_level=sequence"),
    # NeMo-RL: the KL loss times a differentiable weight, detached where the input clamp fires
    _T("nemo-rl:k1", "clamp(w · (−log r), ±10), log r = clamp(−d, ±20)", _nemo("k1"), "loss", "token-mean", NEMO,
       clamp="log r to ±20 (weight detached there), then w·kl to ±10", weight=ON + ", detached where log r is clamped",
       kinked=True, uses_old=True),
    _T("nemo-rl:k2", "clamp(w · ½(log r)², ±10), log r = clamp(−d, ±20)", _nemo("k2"), "loss", "token-mean", NEMO,
       clamp="log r to ±20 (weight detached there), then w·kl to ±10", weight=ON + ", detached where log r is clamped",
       kinked=True, uses_old=True),
    _T("nemo-rl:k3", "clamp(w · (r − 1 − log r), ±10), log r = clamp(−d, ±20)", _nemo("k3"), "loss", "token-mean",
       NEMO, clamp="log r to ±20 (weight detached there), then w·kl to ±10",
       weight=ON + ", detached where log r is clamped", kinked=True, uses_old=True,
       notes="the default reference_policy_kl_type"),
    _T("nemo-rl:k3-legacy", "sg(w) · (r − 1 − log r), log r = clamp(−d, ±20)", _nemo_legacy, "loss", "token-mean",
       NEMO_OLD, clamp="log r to ±20", weight="sg(π_θ/π_gen) with use_on_policy_kl_approximation, else 1",
       kinked=True, uses_old=True),
    # slime: low_var_kl clamps after multiplying by the importance ratio
    _T("slime:k1", "d", elementwise(k1), "loss", _SLIME_AGG, SLIME, estimator="k1", notes="the default --kl-loss-type"),
    _T("slime:k2", "½d²", elementwise(k2), "loss", _SLIME_AGG, SLIME, estimator="k2"),
    _T("slime:k3", "r − 1 − log r", elementwise(k3), "loss", _SLIME_AGG, SLIME, estimator="k3"),
    _T("slime:low_var_kl", "clamp(r − 1 − log r, ±10)", _slime(k3, False, True), "loss", _SLIME_AGG, SLIME,
       clamp="value to ±10", kinked=True, estimator="openrlhf:k3"),
    # --use-unbiased-kl: every estimator times the differentiable w (DeepSeek-V3.2's importance-weighted KL)
    _T("slime:k1-is", "w · d", _slime(k1, True, False), "loss", _SLIME_AGG, SLIME, weight=ON, uses_old=True,
       notes=_SLIME_IS),
    _T("slime:k2-is", "w · ½d²", _slime(k2, True, False), "loss", _SLIME_AGG, SLIME, weight=ON, uses_old=True,
       notes=_SLIME_IS),
    _T("slime:k3-is", "w · (r − 1 − log r)", _slime(k3, True, False), "loss", _SLIME_AGG, SLIME, weight=ON,
       uses_old=True, notes=_SLIME_IS),
    _T("slime:low_var_kl-is", "clamp(w · (r − 1 − log r), ±10)", _slime(k3, True, True), "loss", _SLIME_AGG, SLIME,
       clamp="w·kl to ±10 (after the weight)", weight=ON, kinked=True, uses_old=True, notes=_SLIME_IS),
    # Open-Instruct: d clamped to ±40 first
    _T("open-instruct:kl1", "clamp(d, ±40)", _oi("kl1"), "loss", "token-mean", OPEN_INSTRUCT, clamp="d to ±40",
       kinked=True),
    _T("open-instruct:kl2", "½clamp(d, ±40)²", _oi("kl2"), "loss", "token-mean", OPEN_INSTRUCT, clamp="d to ±40",
       kinked=True),
    _T("open-instruct:kl3", "e^(−c) − 1 + c, c = clamp(d, ±40)", _oi("kl3"), "loss", "token-mean", OPEN_INSTRUCT,
       clamp="d to ±40", kinked=True, notes="the default kl_estimator"),
    _T("open-instruct:kl4", "w · clamp(d, ±40)", _oi("kl4"), "loss", "token-mean", OPEN_INSTRUCT, clamp="d to ±40",
       weight="π_θ/π_old (the PPO ratio), differentiable", kinked=True, uses_old=True),
    # ROLL: verl-derived penalties
    _T("roll:kl", "d", elementwise(k1), "loss", "token-mean", ROLL, estimator="k1"),
    _T("roll:mse", "½d²", elementwise(k2), "loss", "token-mean", ROLL, estimator="k2"),
    _T("roll:k3", "clamp(r − 1 − log r, ±10)", _roll_low_var_kl, "loss", "token-mean", ROLL,
       clamp="value to ±10 (no input clamp)", kinked=True, estimator="openrlhf:k3",
       notes="as verl's low_var_kl before its input clamp"),
    # SkyRL: verl's clamps under Schulman's names
    _T("skyrl:k2", "½d²", elementwise(k2), "loss", "token-mean", SKYRL, estimator="k2"),
    _T("skyrl:k3", "clamp(r − 1 − log r, ±10), log r = clamp(−d, ±20)", elementwise(low_var_kl), "loss",
       "token-mean", SKYRL, clamp=_CLAMP_VERL, kinked=True, estimator="verl:low_var_kl",
       notes="use_kl_loss with kl_estimator_type k3"),
    _T("verl-0.3:low_var_kl", "clamp(r − 1 − log r, ±10)", _roll_low_var_kl, "loss", "token-mean", VERL_OLD,
       clamp="value to ±10 (no input clamp)", kinked=True, estimator="openrlhf:k3"),
]
