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
|d| ≤ 80 (e^80 ≈ 5.5e34 < float32 max).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from .directions import POLICY_REF, REF_POLICY
from .errors import choose

Tensor = torch.Tensor

_SERIES_RADIUS = 1e-2  # float64 only: series below, expm1 beyond (both errors < 1e-13 relative)
_SERIES_TERMS = 5  # u^2 .. u^6; first omitted term is 4e-14 of the value at |u| = 1e-2


def _series(u: Tensor, coeffs: list[float]) -> Tensor:
    """Horner evaluation of sum_k coeffs[k-2] * u^k for k = 2, 3, ..."""
    acc = torch.full_like(u, coeffs[-1])
    for c in reversed(coeffs[:-1]):
        acc = acc * u + c
    return acc * u * u


def _cancelling(u: Tensor, coeffs: list[float], direct) -> Tensor:
    """A function that is O(u^2) but whose direct formula cancels, evaluated carefully.

    Inputs below float64 are evaluated by the direct formula in float64 and
    rounded back: its cancellation error, about 2e-16/|u| relative, is far
    below a float32 ulp for |u| >= 1e-8 (measured: <= 1 ulp over 1e-8..20).
    float64 inputs switch to the Taylor series for |u| < 1e-2. One ``where``
    is NaN-safe here because both branches are finite wherever float64 is.
    """
    if u.dtype == torch.float64:
        return torch.where(u.abs() < _SERIES_RADIUS, _series(u, coeffs), direct(u))
    return direct(u.to(torch.float64)).to(u.dtype)


# e^u − 1 − u = sum_{k>=2} u^k / k!
_EXPM1_MINUS_U = [1.0 / math.factorial(k) for k in range(2, 2 + _SERIES_TERMS)]


class _Smooth(torch.autograd.Function):
    """k(d) whose derivative is the stated closed form k'(d), evaluated in d's dtype.

    Autograd of a careful value formula is not always careful: torch's ``expm1`` backward
    multiplies by (result + 1), which is 0 in float64 once e^u < 1e-16, so the derivative of
    u·e^u − expm1(u) came out (1 + u)·e^u instead of u·e^u (off by 1/u for d ≳ 37). The
    derivative here is its own closed form, finite wherever its limit is (d = +inf: ref prob 0).
    """

    @staticmethod
    def forward(ctx, d, value, derivative):
        ctx.save_for_backward(d)
        ctx.derivative = derivative
        return value(d)  # the value functions are careful in any dtype (``_cancelling``)

    @staticmethod
    def backward(ctx, grad):
        (d,) = ctx.saved_tensors
        return grad * ctx.derivative(d), None, None  # closed forms: accurate in d's own dtype


def smooth(value: Callable[[Tensor], Tensor], derivative: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """The differentiable estimator d ↦ value(d) with gradient derivative(d), both in d's dtype."""
    return lambda d: _Smooth.apply(d, value, derivative)


def _r_log_r(u: Tensor) -> Tensor:
    """r·log r = u·e^u with r = e^u, and its limit 0 at r = 0 (u = −inf), where u·e^u is −inf·0 = NaN."""
    return torch.where(torch.isneginf(u), torch.zeros_like(u), u * torch.exp(u))


def _k1(d: Tensor) -> Tensor:
    return d


def _k2(d: Tensor) -> Tensor:
    return 0.5 * d * d


def _k3(d: Tensor) -> Tensor:
    # k3 = r − 1 − log r with log r = u = −d: e^u − 1 − u.
    return _cancelling(-d, _EXPM1_MINUS_U, lambda u: torch.expm1(u) - u)


def _reverse_k1(d: Tensor) -> Tensor:
    return _r_log_r(-d)  # r log r = u e^u with u = −d


def _reverse_k2(d: Tensor) -> Tensor:
    return torch.exp(-d)


def _zero_at_ref_zero(d: Tensor, value: Tensor) -> Tensor:
    """``value`` with its limit 0 where π_ref = 0 (d = +inf), where e^−d·(1 − d) is 0·(−inf) = NaN."""
    return torch.where(torch.isposinf(d), torch.zeros_like(value), value)


# k'(d) in closed form, and c(d) = k(d) + k'(d), the on-policy score coefficient of w·k (placement loss-w),
# in forms that do not cancel (k3: (e^{−d} − 1 + d) + (1 − e^{−d}) = d exactly).
_DERIVATIVES = {
    "k1": (torch.ones_like, lambda d: d + 1),
    "k2": (lambda d: d.clone(), lambda d: d * (0.5 * d + 1)),
    "k3": (lambda d: -torch.expm1(-d), lambda d: d.clone()),
    "reverse_k1": (lambda d: _zero_at_ref_zero(d, -torch.exp(-d) * (1 - d)), lambda d: -torch.exp(-d)),
    "reverse_k2": (lambda d: -torch.exp(-d), torch.zeros_like),
}


@dataclass(frozen=True)
class Estimator:
    """A registered estimator: a function of the log-ratio d plus what it is for.

    ``of_log_ratio(d)`` maps a tensor of d = log π_θ − log π_ref to per-sample
    values (same shape). ``direction`` is the KL direction whose value (or, for
    gradient surrogates, gradient) it targets. ``unbiased_value`` says whether
    E_{π_θ}[k] equals that KL exactly; ``gradient_only`` marks surrogates whose value
    is no KL estimate at all (r: E[r] = 1). ``clamp_active(d)``, for clamped variants,
    is True where a clamp zeroes the sample's gradient, so runs can report it.
    ``derivative`` k'(d) and ``score_coefficient`` k + k' are closed forms (see ``smooth``),
    given for every estimator except the clamped one; placement loss-w uses them (placements.py).
    """

    name: str
    formula: str
    direction: str
    unbiased_value: bool
    of_log_ratio: Callable[[Tensor], Tensor]
    source: str
    aliases: tuple[str, ...] = field(default=())
    clamp_active: Callable[[Tensor], Tensor] | None = None
    gradient_only: bool = False
    derivative: Callable[[Tensor], Tensor] | None = None  # k'(d), float64 in and out
    score_coefficient: Callable[[Tensor], Tensor] | None = None  # k(d) + k'(d), float64 in and out
    kinked: bool = False  # a clamp or |·| in k: exact mode on continuous families refuses it (lab/kinks.py)

    def __call__(self, logp: Tensor, ref_logp: Tensor) -> Tensor:
        """Per-sample estimate from policy and reference log-probs (broadcast)."""
        return self.of_log_ratio(logp - ref_logp)


ESTIMATORS: dict[str, Estimator] = {}
_ALIASES: dict[str, str] = {}
# Names that once meant something else here: a framework's name means what that framework computes.
RETIRED = {
    "low_var_kl": "it meant plain k3 here, while verl's low_var_kl clamps log r to ±20 and the value to ±10; "
                  "use 'k3' (plain) or 'verl:low_var_kl' (verl's clamped form)",
}


def register(est: Estimator) -> Estimator:
    """Add ``est`` to the registry (names and aliases must be new)."""
    for key in (est.name, *est.aliases):
        if key in ESTIMATORS or key in _ALIASES:
            raise ValueError(f"estimator name {key!r} registered twice")
    ESTIMATORS[est.name] = est
    _ALIASES.update({alias: est.name for alias in est.aliases})
    return est


def get_estimator(name: str) -> Estimator:
    """Look an estimator up by name or alias; unknown names list the allowed ones."""
    return choose("estimator", name.strip(), ESTIMATORS, _ALIASES, RETIRED)  # type: ignore[return-value]


def _smooth_kwargs(name: str, value: Callable[[Tensor], Tensor], autograd_exact: bool = False) -> dict:
    """Registry fields for an estimator with closed-form k' and k + k'. ``autograd_exact``: polynomials
    (k1, k2), whose autograd derivative is already exact, keep plain autograd (fewer passes per chunk)."""
    derivative, coefficient = _DERIVATIVES[name]
    return dict(of_log_ratio=value if autograd_exact else smooth(value, derivative), derivative=derivative,
                score_coefficient=coefficient)


k1 = register(Estimator("k1", "log(π_θ/π_ref)", POLICY_REF, True, source="Schulman 2020", aliases=("kl",),
                        **_smooth_kwargs("k1", _k1, autograd_exact=True)))
k2 = register(Estimator("k2", "½·log(π_θ/π_ref)²", POLICY_REF, False, source="Schulman 2020", aliases=("mse",),
                        **_smooth_kwargs("k2", _k2, autograd_exact=True)))
k3 = register(Estimator("k3", "r − 1 − log r", POLICY_REF, True, source="Schulman 2020",
                        **_smooth_kwargs("k3", _k3)))
reverse_k1 = register(Estimator("reverse_k1", "r·log r", REF_POLICY, True,
                                source="importance-sampled KL(ref‖policy) (Schulman 2020)",
                                **_smooth_kwargs("reverse_k1", _reverse_k1)))
reverse_k2 = register(Estimator("reverse_k2", "r", REF_POLICY, False,
                                source="∇E_q[r] = ∇KL(ref‖policy) (importance sampling)", gradient_only=True,
                                **_smooth_kwargs("reverse_k2", _reverse_k2)))


# --- Variants used by production trainers ------------------------------------------------------

# r·log r − (r − 1) = u e^u − (e^u − 1) with u = −d: the control-variate form of reverse_k1 (value ≥ 0).
_U_EXP_MINUS_EXPM1 = [(k - 1) / math.factorial(k) for k in range(2, 2 + _SERIES_TERMS)]


def _reverse_k1_cv(d: Tensor) -> Tensor:
    return _cancelling(-d, _U_EXP_MINUS_EXPM1, lambda u: _r_log_r(u) - torch.expm1(u))


_DERIVATIVES["reverse_k1_cv"] = (lambda d: -_r_log_r(-d), lambda d: -torch.expm1(-d))  # k' = −r log r; c = 1 − r


def straight_through(value_of: Callable[[Tensor], Tensor]) -> dict:
    """Value of ``value_of`` with the gradient of k2 (verl's ``kX+``: b − sg(b) + sg(f), b = k2): the
    derivative is d, and the loss-w coefficient is f(d) + d."""
    return dict(of_log_ratio=smooth(value_of, lambda d: d.clone()), derivative=lambda d: d.clone(),
                score_coefficient=lambda d: value_of(d) + d)


LOG_RATIO_CLAMP = 20.0  # |log r| clamp applied before exp, as verl's low_var_kl does
VALUE_CLAMP = 10.0  # k3 output clamp, as verl's low_var_kl does


def _k3_clamped(d: Tensor) -> Tensor:
    # clamp has zero gradient outside its range: samples beyond either clamp stop contributing a gradient.
    return _k3(d.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)).clamp(-VALUE_CLAMP, VALUE_CLAMP)


reverse_k1_cv = register(Estimator("reverse_k1_cv", "r·log r − (r − 1)", REF_POLICY, True,
                                   source="Schulman 2020 (r·log r with control variate r − 1)",
                                   **_smooth_kwargs("reverse_k1_cv", _reverse_k1_cv)))
k1_st = register(Estimator("k1+", "value k1, gradient k2 (straight-through)", POLICY_REF, True, source="verl 'k1+'",
                           **straight_through(_k1)))
k3_st = register(Estimator("k3+", "value k3, gradient k2 (straight-through)", POLICY_REF, True, source="verl 'k3+'",
                           **straight_through(_k3)))


def _k3_clamp_active(d: Tensor) -> Tensor:
    inside = d.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    return (d.abs() > LOG_RATIO_CLAMP) | (_k3(inside) > VALUE_CLAMP)


k3_clamped = register(Estimator("k3_clamped", "k3 of clamp(d, ±20), clamped to ±10", POLICY_REF, False,
                                of_log_ratio=_k3_clamped, source="verl low_var_kl's clamps",
                                clamp_active=_k3_clamp_active, aliases=("verl:low_var_kl",)))

# Elementwise framework formulas under their namespaced names (verl:abs, verl:k3+, openrlhf:k1, ...).
from .frameworks import estimators as _framework_estimators  # noqa: E402,F401  (registers on import)
