"""kl_grad: is the autograd gradient of your KL loss an unbiased estimate of the KL gradient you meant?

The top level is what training code imports, and it loads torch only::

    from kl_grad import k3, kl_loss
    per_token_kl = k3(logp, ref_logp)     # any shape; differentiable in logp
    loss = kl_loss(logp, ref_logp, mask=mask, estimator="k3", placement="loss-w")
    loss = full_kl_loss(logits, ref_logits, tokens, mask=mask, placement="rb")   # the whole vocabulary

The measurement lab (``kl_grad.lab``: problems, Monte-Carlo and exact
expectations, gradient and value tables, reports, the ``kl-grad`` command) needs
pandas and friends; its main names are reachable from here too
(``kl_grad.run_gradients``, ``kl_grad.audit``), loaded on first use. ``kl_grad.testing`` has pytest-ready
assertions on a KL term's gradient (``assert_unbiased_kl_gradient``).
"""

from .aggregations import AGGREGATIONS
from .directions import POLICY_REF, REF_POLICY, kl, resolve_direction
from .errors import KLGradError
from .estimators import (
    ESTIMATORS,
    Estimator,
    get_estimator,
    k1,
    k2,
    k3,
    reverse_k1,
    reverse_k2,
)
from .full import full_kl_loss
from .groups import GroupReward
from .loss import kl_loss
from .placements import PLACEMENTS, Placement, get_placement, surrogate

# The lab's two documented entry points, imported on first access (the rest: ``kl_grad.lab``).
_LAB = {"run_gradients", "audit"}


def __getattr__(name: str):
    if name in _LAB:
        from . import lab

        return getattr(lab, name)
    raise AttributeError(f"module 'kl_grad' has no attribute {name!r}")


__all__ = [
    "AGGREGATIONS", "ESTIMATORS", "PLACEMENTS", "POLICY_REF", "REF_POLICY", "Estimator", "KLGradError",
    "GroupReward", "Placement", "full_kl_loss", "get_estimator", "get_placement", "k1", "k2", "k3", "kl", "kl_loss",
    "resolve_direction",
    "reverse_k1", "reverse_k2", "surrogate", *sorted(_LAB),
]
