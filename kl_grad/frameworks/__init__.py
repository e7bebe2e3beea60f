"""What each production trainer's KL term computes (torch only): ``FRAMEWORK_TERMS``, ``get_term``.

    from kl_grad.frameworks import get_term
    term = get_term("verl:low_var_kl")
    per_token = term.fn(logp, ref_logp)            # what verl computes, same shape
    loss_term = term.surrogate(logp, ref_logp)     # what verl backpropagates (reward terms: w·sg(value))
"""

from .catalogue import FRAMEWORK_TERMS, get_term
from .terms import FrameworkTerm

__all__ = ["FRAMEWORK_TERMS", "FrameworkTerm", "get_term"]
