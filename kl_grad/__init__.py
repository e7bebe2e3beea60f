"""kl_grad: is the autograd gradient of your KL loss an unbiased estimate of the KL gradient you meant?

Import the estimators into training code::

    from kl_grad import k3
    per_token_kl = k3(logp, ref_logp)     # any shape; differentiable in logp

and measure them with :func:`run_gradients` or the ``kl-grad`` command.
"""

from .allocator import keep_freed_memory
from .analysis import GradientRun, run_gradients, true_gradients
from .directions import POLICY_REF, REF_POLICY, resolve_direction
from .errors import KLGradError
from .estimators import ESTIMATORS, Estimator, get_estimator, k1, k2, k3, reverse_k1, reverse_k2
from .families import DistSpec, parse_spec
from .surrogates import PLACEMENTS, get_placement, surrogate
from .training import AGGREGATIONS, kl_loss

__all__ = [
    "AGGREGATIONS", "ESTIMATORS", "PLACEMENTS", "POLICY_REF", "REF_POLICY", "DistSpec", "Estimator",
    "GradientRun", "KLGradError", "get_estimator", "get_placement", "keep_freed_memory", "k1", "k2", "k3",
    "kl_loss", "parse_spec", "resolve_direction", "reverse_k1", "reverse_k2", "run_gradients", "surrogate",
    "true_gradients",
]
