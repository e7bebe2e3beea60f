"""Per-sample KL estimators as differentiable functions of log-probabilities.

Every estimator is elementwise in the log-ratio ``d = logp - ref_logp``
(``logp`` = log π_θ(x), with grad; ``ref_logp`` = log π_ref(x)), so it works on any
tensor shape: a (batch, tokens) tensor of token log-probs as well as the
(trials, samples) tensors of the trial runner. With r = π_ref/π_θ = e^(−d):

    k1 = d                    Schulman (2020); E_{π_θ}[k1] = KL(policy‖ref)
    k2 = d²/2                 Schulman (2020); biased value, unbiased gradient
    k3 = (r − 1) − log r      Schulman (2020); unbiased, low-variance value
    reverse_k1 = r log r      importance sampling: E_{π_θ}[r log r] = E_{π_ref}[log r] = KL(ref‖policy)
    reverse_k2 = r            not a KL value (E[r] = 1), but its autograd gradient
                              E_{π_θ}[∇r] = −E_{π_ref}[∇log π_θ] = ∇KL(ref‖policy)

Usage in training code (one line)::

    from kl_grad import k3
    kl = k3(logp, ref_logp)        # same shape as logp, differentiable

Numerics: k3 = e^(−d) − 1 + d loses every digit to cancellation when |d| is
small (k3 ≈ d²/2). Such expressions are evaluated through ``expm1`` in float64
(rounded back to the input dtype), with a Taylor series for |d| < 1e-2 when the
input is already float64, so float32 values and autograd gradients stay within
a few ulps of a float64 reference for 1e-8 ≤ |d| ≤ 20, and are finite for
|d| ≤ 80 (e^80 ≈ 5.5e34 < float32 max). ``kl_loss``'s float32 fast path has its own
float32 forms of the six Schulman estimators (``float32.py``: no float64 detour, same tolerance).
"""

from .frameworks import openrlhf_k1, openrlhf_k2, openrlhf_k3, verl_abs, verl_k3_st
from .registry import (
    ESTIMATORS,
    RETIRED,
    Estimator,
    get_estimator,
    register,
    straight_through,
)
from .schulman import (
    LOG_RATIO_CLAMP,
    VALUE_CLAMP,
    k1,
    k1_st,
    k2,
    k3,
    k3_clamped,
    k3_st,
    reverse_k1,
    reverse_k1_cv,
    reverse_k2,
)

__all__ = ["ESTIMATORS", "LOG_RATIO_CLAMP", "RETIRED", "VALUE_CLAMP", "Estimator", "get_estimator", "k1", "k1_st", "k2",
           "k3", "k3_clamped", "k3_st", "openrlhf_k1", "openrlhf_k2", "openrlhf_k3", "register", "reverse_k1",
           "reverse_k1_cv", "reverse_k2", "straight_through", "verl_abs", "verl_k3_st"]
