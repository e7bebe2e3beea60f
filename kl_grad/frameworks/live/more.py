"""Live specs of ``entries/more.py``: Liger-Kernel's GRPO loss function; ``NO_CALLABLE`` says, per framework, why
ms-swift, marin and TRL's PR #7188 have none. Sources read December 2026 through this project's search corpus;
no framework code is copied.
"""

from __future__ import annotations

import torch

from .spec import spec

# --- Liger-Kernel: LigerFusedLinearGRPOFunction.ppo_loss_fn(log_probs, selected_token_ids, attention_mask, ...) ---
LIGER_SRC = ("linkedin/Liger-Kernel 00027d8, src/liger_kernel/chunked_loss/grpo_loss.py "
             "LigerFusedLinearGRPOFunction.ppo_loss_fn(log_probs (B, T, V), selected_token_ids, attention_mask, "
             "advantages, full_attention_mask, ref_per_token_logps=None, old_per_token_logps=None, ..., beta=0.04, "
             "loss_type='dapo') → (loss, metrics); the adapter calls it on one token at a time as a vocabulary of "
             "one (V = 1), A = 0, mask 1, beta 1 and loss_type 'bnpo' (loss = that token's k3)")


def _liger(cls, lp, ref, old, mask):
    flat_lp, flat_ref = lp.reshape(-1), ref.reshape(-1)
    one = torch.ones(1, 1, dtype=lp.dtype)
    ids = torch.zeros(1, 1, dtype=torch.long)
    per_token = [cls.ppo_loss_fn(flat_lp[i].view(1, 1, 1), ids, one, torch.zeros(1, dtype=lp.dtype), one,
                                 ref_per_token_logps=flat_ref[i].view(1, 1), beta=1.0, loss_type="bnpo")[0]
                 for i in range(flat_lp.numel())]
    return torch.stack(per_token).reshape(lp.shape)


SPECS = [
    spec("liger:k3", "liger_kernel.chunked_loss.grpo_loss:LigerFusedLinearGRPOFunction", _liger, LIGER_SRC),
]

# Frameworks whose KL term is no function of its own (nothing to import and call), per framework.
NO_CALLABLE = {
    "ms-swift": "computed inline in swift/rlhf_trainers/grpo_trainer.py GRPOTrainer._compute_loss_and_metrics (the "
                "k3 loss, its rollout IS weights) and the reward computation (kl_in_reward), methods of the trainer "
                "that read its state; no function of log-probs to call (modelscope/ms-swift 3602360)",
    "marin": "JAX, not torch: lib/marin/src/marin/rl/kl_regularization.py kl_penalty_from_log_ratio(log_ratio, mode) "
             "takes and returns jax arrays, so torch autograd cannot differentiate it (marin-community/marin 24f888b)",
    "trl-7188": "an open pull request (huggingface/trl #7188), computed inline in GRPOTrainer._compute_loss like the "
                "released trl rows; no function to call",
}
