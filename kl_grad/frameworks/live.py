"""``LIVE_SPECS``: for each catalogue entry, the framework's real callable and how to call it per token.

``kl-grad frameworks --live`` (``live_check.py``) imports these callables when the framework is installed and
compares them with the catalogue's ``fn``. A ``LiveSpec`` names the callable as "module:function" (several
targets when a framework moved the file: the first that imports is used), the adapter that calls it with
per-token (logp, ref_logp, old_logp, mask) tensors of one shape and returns the per-token value the trainer
forms, and the file and version read. Where the trainer builds an argument in its loss code (NeMo-RL's and
slime's importance weights, Open-Instruct's ±40 clamp of d), the adapter builds it as that file does and says
where; everything else is the framework's own function. ``old_logp`` None means on-policy: the trainer's
ratio is then exp(logp − sg(logp)) (value 1, gradient the score), as in ``terms.ratio``.

Only entries whose real function was read have a spec (sources read December 2026 through this project's
search corpus and the PyPI wheels named; no framework code is copied). ``NO_CALLABLE`` says, per framework,
why its entries have none. To extend: write an adapter, add ``_spec(...)`` lines to ``_SPECS``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

Tensor = torch.Tensor
# (framework function, logp, ref_logp, old_logp or None, mask or None) -> per-token tensor, logp's shape
Adapter = Callable[[Callable, Tensor, Tensor, "Tensor | None", "Tensor | None"], Tensor]


@dataclass(frozen=True)
class LiveSpec:
    """How to reach one catalogue entry's real code.

    ``targets``: "module:function" names, tried in order (the first whose module imports is the one checked);
    ``call``: the adapter; ``source``: repository, file and version read; ``float32``: the function casts its
    inputs to float32 (``.float()``), so it is compared at float32 precision.
    """

    term: str
    targets: tuple[str, ...]
    call: Adapter
    source: str
    float32: bool = False

    @property
    def live(self) -> str:
        return self.targets[0]


def _sampler_ratio(lp: Tensor, old: Tensor | None) -> Tensor:
    """exp(logp − old), differentiable in logp; on-policy old = sg(logp) (value 1)."""
    return torch.exp(lp - (lp.detach() if old is None else old.detach()))


# --- verl: kl_penalty(logprob, ref_logprob, kl_penalty) -----------------------------------------------------
VERL_SRC = ("verl 0.9.1 (PyPI wheel), verl/trainer/ppo/core_algos.py kl_penalty(logprob, ref_logprob, kl_penalty) "
            "→ kl_penalty_forward; '+' suffix = straight-through k2 gradient; same signature in v0.2–v0.3")


def _verl(mode: str) -> Adapter:
    return lambda f, lp, ref, old, mask: f(lp, ref, mode)


# --- OpenRLHF: compute_approx_kl(log_probs, log_probs_base, log_probs_old=None, kl_estimator, unbiased_gradient) -
OPENRLHF_SRC = ("openrlhf 0.11.2 (PyPI wheel), openrlhf/models/utils.py compute_approx_kl(log_probs, log_probs_base, "
                "log_probs_old=None, kl_estimator='k1', unbiased_gradient=False); casts to float32")


def _openrlhf(estimator: str, unbiased: bool = False) -> Adapter:
    def call(f, lp, ref, old, mask):
        if unbiased:
            return f(lp, ref, log_probs_old=old, kl_estimator=estimator, unbiased_gradient=True)
        return f(lp, ref, kl_estimator=estimator)
    return call


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
        w = torch.nan_to_num(_sampler_ratio(lp, old), nan=0.0, posinf=0.0, neginf=0.0)
        return f(logprobs=lp, logprobs_reference=ref, kl_type=kind, input_clamp_value=20.0, output_clamp_value=10.0,
                 importance_sampling_weights=w)
    return call


def _nemo_legacy(f, lp, ref, old, mask):
    kl = f(logprobs_policy=lp, logprobs_reference=ref)
    if old is None:
        return kl
    return torch.nan_to_num(_sampler_ratio(lp, old).detach(), nan=0.0, posinf=0.0, neginf=0.0) * kl


# --- slime: compute_approx_kl(log_probs, log_probs_base, kl_loss_type, importance_ratio=None) -------------------
SLIME_SRC = ("THUDM/slime v0.3.1 / main 624b824 (2026-08-21), slime/utils/ppo_utils.py compute_approx_kl(log_probs, "
             "log_probs_base, kl_loss_type, importance_ratio=None) (torch.compile'd; casts to float32); "
             "importance_ratio = exp(log_probs − old_log_probs) as slime/backends/megatron_utils/loss.py forms it "
             "with use_unbiased_kl")


def _slime(kind: str, weighted: bool = False) -> Adapter:
    def call(f, lp, ref, old, mask):
        return f(lp, ref, kl_loss_type=kind, importance_ratio=_sampler_ratio(lp, old) if weighted else None)
    return call


# --- Open-Instruct: estimate_kl(ref_logprobs_diff, ratio) -> the four estimators stacked --------------------------
OI_SRC = ("allenai/open-instruct main e6c3044 (2026-08-20), open_instruct/model_utils.py estimate_kl("
          "ref_logprobs_diff, ratio) → stack of 4 (kl_estimator 0..3 = catalogue kl1..kl4); "
          "open_instruct/grpo_utils.py passes ref_logprobs_diff = clamp(logp − ref_logp, ±40) and "
          "ratio = exp(logp − old_logp)")


def _open_instruct(index: int) -> Adapter:
    def call(f, lp, ref, old, mask):
        return f((lp - ref).clamp(-40.0, 40.0), _sampler_ratio(lp, old))[index]
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


def _spec(term, targets, call, source, float32=False) -> LiveSpec:
    return LiveSpec(term, (targets,) if isinstance(targets, str) else tuple(targets), call, source, float32)


_SPECS = [
    *(_spec(f"verl:{m}", VERL_FN, _verl(m), VERL_SRC) for m in ("kl", "abs", "mse", "low_var_kl", "k1+", "k3+")),
    _spec("verl:reward:kl", VERL_FN, _verl("kl"), VERL_SRC),
    _spec("verl:reward:low_var_kl", VERL_FN, _verl("low_var_kl"), VERL_SRC),
    _spec("verl-0.3:low_var_kl", VERL_FN, _verl("low_var_kl"), VERL_SRC),
    *(_spec(f"openrlhf:{k}", OPENRLHF_FN, _openrlhf(k), OPENRLHF_SRC, True) for k in ("k1", "k2", "k3")),
    _spec("openrlhf:reward:k1", OPENRLHF_FN, _openrlhf("k1"), OPENRLHF_SRC, True),
    _spec("openrlhf:k3-unbiased-gradient", OPENRLHF_FN, _openrlhf("k3", unbiased=True), OPENRLHF_SRC, True),
    *(_spec(f"nemo-rl:{k}", NEMO_FN, _nemo(k), NEMO_SRC) for k in ("k1", "k2", "k3")),
    _spec("nemo-rl:k3-legacy", "nemo_rl.algorithms.utils:calculate_kl_penalty_joschu2020", _nemo_legacy, NEMO_OLD_SRC),
    *(_spec(f"slime:{k}", SLIME_FN, _slime(k), SLIME_SRC, True) for k in ("k1", "k2", "k3", "low_var_kl")),
    _spec("slime:low_var_kl-is", SLIME_FN, _slime("low_var_kl", weighted=True), SLIME_SRC, True),
    *(_spec(f"open-instruct:kl{i + 1}", OI_FN, _open_instruct(i), OI_SRC) for i in range(4)),
    *(_spec(f"roll:{m}", ROLL_FN, _roll(m), ROLL_SRC) for m in ("kl", "mse", "k3")),
    *(_spec(f"skyrl:{k}", SKYRL_TARGETS, _skyrl(k), SKYRL_SRC) for k in ("k2", "k3")),
]

LIVE_SPECS: dict[str, LiveSpec] = {}
for _s in _SPECS:
    if _s.term in LIVE_SPECS:
        raise ValueError(f"live spec for {_s.term!r} written twice")
    LIVE_SPECS[_s.term] = _s

# Frameworks whose KL term is no function of its own (nothing to import and call), per framework.
NO_CALLABLE = {
    "trl": "computed inline in GRPOTrainer._compute_loss (trl 1.16.0, trl/trainer/grpo_trainer.py); "
           "no function to call",
}
