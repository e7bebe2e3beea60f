"""Every estimator × placement gives the mathematically intended per-sample gradient, in float32 and float64,
for d = log π_θ − log π_ref from −80 to 80 (and tiny |d|), on- and off-policy, and with a reference
probability of 0 (ref_logp = −inf).

Oracle: the hand-derived per-sample derivative of each surrogate with respect to logp, evaluated in
mpmath at 50 digits (independent of the package). With w = π_θ/sg(m) (1 on-policy) and k' = dk/dd:

    loss: k'(d)    loss-sgw: w·k'(d)    loss-w: w·(k(d) + k'(d))    reward: w·k(d)

Tolerances (relative, where the true value is finite in the dtype) are 10× the measured worst case:
float64 2e-13 (measured 2.1e-14, reverse_k1_cv × reward at d = −0.01, its series branch), float32 1e-6
(measured 9.7e-8, reverse_k1 × reward at d = 18: r·log r rounded to float32 once or twice). Before the
closed-form gradients, k3 × loss-w in float32 was 6% off at d = −16 and 0 at d = −20.
"""

import math

import mpmath as mp
import numpy as np
import pytest
import torch

from kl_grad.estimators import ESTIMATORS
from kl_grad.placements import PLACEMENTS, surrogate

mp.mp.dps = 50
D = sorted({*np.linspace(-80, 80, 161).tolist(), -1e-8, 1e-8, -1e-4, 1e-4, -1e-2, 1e-2, 0.5, -0.5})


def _k(name: str, d):
    """(k(d), k'(d)) for each registered estimator, from its published formula (r = e^−d)."""
    r = mp.e ** (-d)
    table = {
        "k1": (d, 1), "k2": (d * d / 2, d), "k3": (r - 1 + d, 1 - r),
        "reverse_k1": (-d * r, (d - 1) * r), "reverse_k2": (r, -r),
        "reverse_k1_cv": (-d * r - r + 1, d * r),
        "k1+": (d, d), "k3+": (r - 1 + d, d),  # straight-through: value kX, gradient k2' = d
    }
    return table[name]


def _oracle(name: str, placement: str, d: float, w: float) -> float:
    k, dk = _k(name, mp.mpf(d))
    coef = {"loss": dk, "loss-sgw": w * dk, "loss-w": w * (k + dk), "reward": w * k}[placement]
    return float(coef)


# Clamped and kinked estimators have no smooth oracle here; framework-named ones (verl:k3+, openrlhf:k3, ...) are
# checked against tests/framework_oracles.py in tests/test_frameworks.py.
SMOOTH = [n for n in ESTIMATORS if n != "k3_clamped" and ":" not in n]


@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 2e-13), (torch.float32, 1e-6)])
@pytest.mark.parametrize("weight", [None, 0.5], ids=["on-policy", "off-policy"])
@pytest.mark.parametrize("placement", list(PLACEMENTS))
@pytest.mark.parametrize("name", SMOOTH)
def test_per_sample_gradient_matches_the_high_precision_oracle(name, placement, weight, dtype, rtol):
    d = torch.tensor(D, dtype=dtype)
    logp = torch.zeros_like(d, requires_grad=True)
    ref = -d  # d = logp − ref exactly
    sampler = None if weight is None else torch.full_like(d, -math.log(weight))  # w = e^(logp − log m) = 0.5
    surrogate(ESTIMATORS[name], PLACEMENTS[placement], logp, ref, sampler).sum().backward()
    got = logp.grad.double().numpy()
    w = 1.0 if weight is None else float(torch.exp(-sampler[0].double()))
    want = np.array([_oracle(name, placement, x, w) for x in d.double().tolist()])
    finite = np.abs(want) < torch.finfo(dtype).max / 4
    err = np.abs(got - want)[finite] / np.maximum(np.abs(want[finite]), torch.finfo(dtype).tiny)
    assert err.max() <= rtol, (name, placement, D[int(np.argmax(err))], err.max())


def test_k3_loss_w_float32_is_d_where_autograd_cancelled():
    # The example: autograd formed (r − 1 + d) + (1 − r) and gave exactly 0 at d = −20.
    from kl_grad import kl_loss

    for d in (-12.0, -16.0, -20.0, -24.6, -40.0, -80.0):
        logp = torch.tensor([d], requires_grad=True)
        kl_loss(logp, torch.tensor([0.0]), estimator="k3", placement="loss-w").backward()
        assert logp.grad.item() == pytest.approx(d, rel=1e-6)
    logp = torch.tensor([-1.0], requires_grad=True)
    kl_loss(logp, torch.tensor([19.0])).backward()  # was exactly 0
    assert logp.grad.item() == pytest.approx(-20.0, rel=1e-6)


@pytest.mark.parametrize("name, want", [("k3", 1.0), ("reverse_k1", 0.0), ("reverse_k1_cv", 0.0),
                                        ("reverse_k2", 0.0), ("k3+", math.inf)])
def test_reference_probability_zero_gives_the_finite_limit(name, want):
    # ref_logp = −inf (π_ref(x) = 0): d = +inf. The limits of k' are finite: k3' = 1 − e^−d → 1,
    # r·log r and its derivative → 0; the straight-through k3+ has gradient d = +inf (true).
    logp = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    ref = torch.tensor([-math.inf], dtype=torch.float64)
    surrogate(ESTIMATORS[name], PLACEMENTS["loss"], logp, ref).sum().backward()
    assert logp.grad.item() == want


@pytest.mark.parametrize("d", [37.0, 40.0, 60.0])
def test_reverse_k1_cv_gradient_is_not_off_by_one_over_d(d):
    # torch's expm1 backward multiplies by (result + 1), which is 0 in float64 once e^−d < 1e-16:
    # autograd gave (1 − d)·e^−d instead of d·e^−d. The closed form is exact to a few ulp.
    x = torch.tensor([d], dtype=torch.float64, requires_grad=True)
    ESTIMATORS["reverse_k1_cv"].of_log_ratio(x).sum().backward()
    want = float(mp.mpf(d) * mp.e ** (-mp.mpf(d)))
    assert x.grad.item() == pytest.approx(want, rel=1e-14)
