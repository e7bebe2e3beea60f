"""Stand-in framework modules for the ``kl-grad frameworks --live`` tests, written here from each framework's
documented semantics (the signatures and formulas the sources in kl_grad/frameworks/live/ describe), each in
its own words, independent of the catalogue's ``fn`` and of the framework code: the check must find that they
agree with the catalogue, or name where a deliberately changed one drifts.

``install(tmp_path, files)`` writes {relative path: source} as importable packages on sys.path and returns the
top-level names it created, so the fixture can forget them afterwards.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

# verl kl_penalty: "kl"/"k1" d, "abs" |d|, "mse"/"k2" d²/2, "low_var_kl"/"k3" e^x − x − 1 with x = −d held in
# [−20, 20] and the result in [−CLAMP, CLAMP]; a trailing "+" keeps the value and takes the gradient of d²/2.
VERL = '''
import torch

__all__ = ["kl_penalty"]


def kl_penalty(logprob, ref_logprob, kl_penalty):
    mode, plus = kl_penalty.rstrip("+"), kl_penalty.endswith("+")
    d = logprob - ref_logprob
    if mode in ("kl", "k1"):
        out = d
    elif mode == "abs":
        out = torch.abs(d)
    elif mode in ("mse", "k2"):
        out = d * d / 2
    elif mode in ("low_var_kl", "k3"):
        x = torch.clamp(-d, min=-20.0, max=20.0)
        out = torch.clamp(torch.exp(x) - x - 1.0, min=-CLAMP, max=CLAMP)
    else:
        raise NotImplementedError(kl_penalty)
    if not plus:
        return out
    half_square = d * d / 2
    return out.detach() + half_square - half_square.detach()
'''


def verl(clamp: float = 10.0) -> dict[str, str]:
    return {"verl/__init__.py": "__version__ = '0.0-standin'\n", "verl/trainer/__init__.py": "",
            "verl/trainer/ppo/__init__.py": "",
            "verl/trainer/ppo/core_algos.py": f"CLAMP = {clamp!r}\n" + VERL}


# OpenRLHF compute_approx_kl: float32 arithmetic; every estimator's value in [−10, 10]; unbiased_gradient keeps
# that value and gives the gradient w·d (w = π_θ/π_old at most CAP, a constant; 1 without old log-probs).
OPENRLHF = '''
import torch


def compute_approx_kl(log_probs, log_probs_base, log_probs_old=None, kl_estimator="k1", unbiased_gradient=False):
    lp = log_probs.float()
    d = lp - log_probs_base.float()
    value = {"k1": lambda: d, "k2": lambda: d.pow(2) / 2, "k3": lambda: torch.expm1(-d) + d}[kl_estimator]()
    value = value.clamp(-10.0, 10.0)
    if not unbiased_gradient:
        return value
    w = torch.ones_like(d) if log_probs_old is None else torch.exp(lp - log_probs_old.float()).clamp(max=CAP)
    return value.detach() + (w * d).detach() * (lp - lp.detach())
'''


def openrlhf(cap: float = 10.0) -> dict[str, str]:
    return {"openrlhf/__init__.py": "", "openrlhf/models/__init__.py": "",
            "openrlhf/models/utils.py": f"CAP = {cap!r}\n" + OPENRLHF}


# NeMo-RL calculate_kl: log r = ref − logp held in [−20, 20]; the weight is a constant where that clamp is active;
# k1 −log r, k2 (log r)²/2, k3 e^(log r) − 1 − log r; times the weight, then into [−10, 10].
# calculate_kl_penalty_joschu2020 (v0.4): k3 of the clamped log r, no weight, no output clamp.
NEMO = '''
import torch


def calculate_kl(logprobs, logprobs_reference, kl_type="k3", input_clamp_value=20.0, output_clamp_value=10.0,
                 importance_sampling_weights=None):
    log_r = logprobs_reference - logprobs
    w = importance_sampling_weights
    if input_clamp_value is not None:
        inside = log_r.abs() <= input_clamp_value
        log_r = torch.clamp(log_r, -input_clamp_value, input_clamp_value)
        if w is not None:
            w = torch.where(inside, w, w.detach())
    kl = {"k1": -log_r, "k2": log_r ** 2 / 2, "k3": torch.exp(log_r) - 1 - log_r}[kl_type]
    if w is not None:
        kl = kl * w
    if output_clamp_value is not None:
        kl = torch.clamp(kl, -output_clamp_value, output_clamp_value)
    return kl


def calculate_kl_penalty_joschu2020(logprobs_policy, logprobs_reference, clamp_value=20.0):
    log_r = torch.clamp(logprobs_reference - logprobs_policy, -clamp_value, clamp_value)
    return torch.exp(log_r) - log_r - 1
'''

# slime compute_approx_kl: float32; k1 d, k2 d²/2, k3 and low_var_kl e^(−d) − 1 + d; times importance_ratio when
# given; only low_var_kl then clamped to [−10, 10].
SLIME = '''
import torch


def compute_approx_kl(log_probs, log_probs_base, kl_loss_type, importance_ratio=None):
    d = log_probs.float() - log_probs_base.float()
    if kl_loss_type == "k1":
        kl = d
    elif kl_loss_type == "k2":
        kl = 0.5 * d * d
    else:
        kl = torch.exp(-d) - 1 + d
    if importance_ratio is not None:
        kl = importance_ratio * kl
    return torch.clamp(kl, -10, 10) if kl_loss_type == "low_var_kl" else kl
'''

# Open-Instruct estimate_kl: the four estimators of the (already clamped) d, stacked on a new first axis.
OPEN_INSTRUCT = '''
import torch


def estimate_kl(ref_logprobs_diff, ratio):
    d = ref_logprobs_diff
    return torch.stack([d, d.square() / 2, torch.exp(-d) - 1 + d, d * ratio])
'''

# ROLL compute_approx_kl: kl d, abs |d|, mse d²/2, k3 e^(−d) − 1 + d into [−10, 10] (no input clamp).
ROLL = '''
import torch


def compute_approx_kl(log_probs, log_probs_base, action_mask=None, kl_penalty="kl"):
    d = log_probs - log_probs_base
    out = {"kl": lambda: d, "abs": lambda: d.abs(), "mse": lambda: d * d * 0.5,
           "k3": lambda: (torch.exp(-d) - 1 + d).clamp(-10, 10)}[kl_penalty]()
    return out if action_mask is None else out * action_mask
'''

# SkyRL (skyrl_train <= 0.3 layout) compute_approx_kl: k1, abs, k2 as verl; k3 with verl's two clamps.
SKYRL = '''
import torch


def compute_approx_kl(log_probs, log_probs_base, loss_mask=None, kl_estimator_type="k3"):
    d = log_probs - log_probs_base
    if kl_estimator_type == "k2":
        return d.square() / 2
    x = (-d).clamp(-20, 20)
    return (x.exp() - 1 - x).clamp(-10, 10)
'''

# compose-rl approx_kl: x = log_p − log_q held in [−CLIP, CLIP]; k1 −x, k2 x²/2, k3 e^x − 1 − x, k3_offpolicy 1 − e^x.
COMPOSE = """
import torch


def approx_kl(log_p, log_q, kl_clip_range=40.0):
    x = log_p - log_q
    if kl_clip_range is not None:
        x = x.clamp(-kl_clip_range, kl_clip_range)
    return {"k1": -x, "k2": x.square() / 2, "k3": torch.exp(x) - 1 - x, "k3_offpolicy": 1 - torch.exp(x)}
"""

# Trinity-RFT kl_fn: classes with calculate_kl(logprob, ref_logprob, old_logprob=None); K2Fn d²/2; CorrectedK3Fn
# k3 of log r = ref − logp, times π_θ/π_old held in [0, CAP] when old log-probs come (plain k3 otherwise).
TRINITY = """
import torch


class KLFn:
    def __init__(self, adaptive=False, kl_coef=0.001, target_kl=None, horizon=None):
        self.kl_coef = kl_coef


class K2Fn(KLFn):
    def calculate_kl(self, logprob, ref_logprob, old_logprob=None):
        return 0.5 * (ref_logprob - logprob) ** 2


class CorrectedK3Fn(KLFn):
    def calculate_kl(self, logprob, ref_logprob, old_logprob=None):
        log_r = ref_logprob - logprob
        k3 = torch.exp(log_r) - 1 - log_r
        if old_logprob is None:
            return k3
        return torch.exp(logprob - old_logprob).clamp(0.0, CAP) * k3
"""

# AReaL KLEstimator: float32; k1 d, k2 d²/2, k3 e^(−d) − 1 + d; the value held in [−10, 10] with apply_clamp.
AREAL = """
import torch


class KLEstimator:
    def __init__(self, kl_estimator="k1", apply_clamp=True):
        self.kind, self.apply_clamp = kl_estimator, apply_clamp

    def __call__(self, log_probs, log_probs_base):
        d = log_probs.float() - log_probs_base.float()
        kl = {"k1": d, "k2": d * d / 2, "k3": torch.expm1(-d) + d}[self.kind]
        return kl.clamp(-10, 10) if self.apply_clamp else kl
"""

# torchforge SimpleGRPOLoss: per token beta·k3 − exp(logp − sg logp)·A, masked mean per sequence, mean over them.
TORCHFORGE = """
import torch


class SimpleGRPOLoss(torch.nn.Module):
    def __init__(self, beta=0.1):
        super().__init__()
        self.beta = beta

    def forward(self, logprobs, ref_logprobs, advantages, padding_mask):
        log_r = ref_logprobs - logprobs
        per_token = self.beta * (log_r.exp() - log_r - 1) - torch.exp(logprobs - logprobs.detach()) * advantages
        per_seq = (per_token * padding_mask).sum(1) / padding_mask.sum(1).clamp(min=1.0)
        return per_seq.mean()
"""

# Liger-Kernel's GRPO loss function: per token beta·(e^(ref − lp) − (ref − lp) − 1) − min(w·A, clip(w)·A), the
# "bnpo" reduction a masked token sum over the batch's tokens; returns (loss, metrics).
LIGER = """
import torch


class LigerFusedLinearGRPOFunction:
    @staticmethod
    def ppo_loss_fn(log_probs, selected_token_ids, attention_mask, advantages, full_attention_mask,
                    ref_per_token_logps=None, old_per_token_logps=None, ref_log_probs=None, epsilon_low=0.2,
                    epsilon_high=0.2, beta=0.04, loss_type="dapo", **kwargs):
        lp = log_probs.gather(-1, selected_token_ids.unsqueeze(-1)).squeeze(-1)
        old = lp.detach() if old_per_token_logps is None else old_per_token_logps
        w = torch.exp(lp - old)
        a = advantages.unsqueeze(1)
        per_token = -torch.min(w * a, w.clamp(1 - epsilon_low, 1 + epsilon_high) * a)
        x = ref_per_token_logps - lp
        per_token = per_token + beta * (torch.exp(x) - x - 1)
        return (per_token * attention_mask).sum() / full_attention_mask.sum().clamp(min=1.0), []
"""


def trinity(cap: float = 2.0) -> dict[str, str]:
    return {"trinity/__init__.py": "", "trinity/algorithm/__init__.py": "",
            "trinity/algorithm/kl_fn/__init__.py": "", "trinity/algorithm/kl_fn/kl_fn.py": f"CAP = {cap!r}\n" + TRINITY}


OTHERS = {
    "nemo-rl": {"nemo_rl/__init__.py": "", "nemo_rl/algorithms/__init__.py": "",
                "nemo_rl/algorithms/utils.py": NEMO},
    "slime": {"slime/__init__.py": "", "slime/utils/__init__.py": "", "slime/utils/ppo_utils.py": SLIME},
    "open-instruct": {"open_instruct/__init__.py": "", "open_instruct/model_utils.py": OPEN_INSTRUCT},
    "roll": {"roll/__init__.py": "", "roll/utils/__init__.py": "", "roll/utils/functionals.py": ROLL},
    "skyrl": {"skyrl_train/__init__.py": "", "skyrl_train/utils/__init__.py": "",
              "skyrl_train/utils/ppo_utils.py": SKYRL},
    "compose-rl": {"compose_rl/__init__.py": "", "compose_rl/utils/__init__.py": "",
                   "compose_rl/utils/utils.py": COMPOSE},
    "trinity": trinity(),
    "areal": {"areal/__init__.py": "", "areal/utils/__init__.py": "", "areal/utils/data.py": AREAL},
    "torchforge": {"forge/__init__.py": "", "forge/losses/__init__.py": "", "forge/losses/grpo_loss.py": TORCHFORGE},
    "liger": {"liger_kernel/__init__.py": "", "liger_kernel/chunked_loss/__init__.py": "",
              "liger_kernel/chunked_loss/grpo_loss.py": LIGER},
}


def install(root: Path, files: dict[str, str]) -> set[str]:
    """Write ``files`` under ``root`` (which the caller puts on sys.path); the top-level package names."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    importlib.invalidate_caches()
    return {rel.split("/")[0] for rel in files}


def forget(names: set[str]) -> None:
    """Drop the stand-ins (and their submodules) from sys.modules."""
    for mod in [m for m in sys.modules if m.split(".")[0] in names]:
        del sys.modules[mod]
