"""kl_loss's float32 fast path (kl_grad/fused.py, kl_grad/estimators/float32.py) against a 40-digit mpmath oracle.

Per token, for every estimator with a float32 form × per-token placement, on- and off-policy: the value
(placements' formula, w = π_θ/sg(m)) and the logp-gradient (loss k', loss-sgw w·k', loss-w w·(k + k'),
reward w·k), over d = log π_θ − log π_ref on a dense grid: 0, ±1e-30, ±1e-8 … ±1e-3, ±(0.49 … 0.51) around
the series/direct switch, ±1, ±20, ±80, 4 001 points in [−80, 80] and 2 001 in [−1, 1]. The oracle is the
published formula at 40 digits (independent of the package). Bound: RTOL = 4e-7 relative (3.4 float32 ulps;
measured worst 2.3e-7, reverse_k1_cv at d = 0.508) wherever the true value is a normal float32; where it is
exactly 0 the result must be exactly 0.
"""

import math

import mpmath as mp
import numpy as np
import pytest
import torch

from kl_grad import kl_loss
from kl_grad.estimators import ESTIMATORS
from kl_grad.estimators.float32 import FORMS
from kl_grad.fused import fused_surrogate, supports
from tests import oracles

mp.mp.dps = 40
RTOL = 4e-7
_SMALL = [10.0 ** e for e in range(-8, -2)] + [1e-30, 0.49, 0.4999999, 0.5, 0.5000001, 0.51, 1.0, 20.0, 80.0]
_GRID = [[0.0], _SMALL, np.negative(_SMALL), np.linspace(-80, 80, 4001), np.linspace(-1, 1, 2001)]
D = np.unique(np.float32(np.concatenate(_GRID)))


def _k(name, d):
    r = mp.e ** (-d)
    return {"k1": (d, 1), "k2": (d * d / 2, d), "k3": (r - 1 + d, 1 - r), "reverse_k1": (-d * r, (d - 1) * r),
            "reverse_k2": (r, -r), "reverse_k1_cv": (-d * r - r + 1, d * r)}[name]


def _oracle(name, placement, d, w):
    k, dk = _k(name, mp.mpf(d))
    value = k if placement == "loss" else w * k
    grad = {"loss": dk, "loss-sgw": w * dk, "loss-w": w * (k + dk), "reward": w * k}[placement]
    return float(value), float(grad)


def _check(got, want, what):
    tiny = torch.finfo(torch.float32).tiny
    normal = np.abs(want) >= tiny
    finite = np.abs(want) < torch.finfo(torch.float32).max / 4
    rel = np.abs(got - want)[normal & finite] / np.abs(want[normal & finite])
    assert rel.size == 0 or rel.max() <= RTOL, (what, D[normal & finite][np.argmax(rel)], rel.max())
    assert (got[want == 0] == 0).all(), what


@pytest.mark.parametrize("weight", [None, 0.5], ids=["on-policy", "off-policy"])
@pytest.mark.parametrize("placement", ["loss", "loss-sgw", "loss-w", "reward"])
@pytest.mark.parametrize("name", list(FORMS))
def test_float32_value_and_gradient_match_the_40_digit_oracle(name, placement, weight):
    d = torch.tensor(D)
    logp = torch.zeros_like(d, requires_grad=True)
    base = None if weight is None else torch.full_like(d, -math.log(weight))
    out, coef_sum = fused_surrogate(ESTIMATORS[name], placement, logp, -d, base)
    assert torch.isfinite(coef_sum)  # kl_loss keeps the fast path only then
    (grad,) = torch.autograd.grad(out.sum(), logp)
    w = 1.0 if base is None else float(torch.exp(-base[0]).double())  # the float32 weight kl_loss forms
    want = np.array([_oracle(name, placement, float(x), w) for x in D])
    _check(out.detach().double().numpy(), want[:, 0], "value")
    _check(grad.double().numpy(), want[:, 1], "gradient")


# --- through kl_loss: every registered estimator with closed forms, float32 in, against tests/oracles.py ---

def _batch(dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    logp = (-torch.rand(4, 64, generator=g) * 3).to(dtype).requires_grad_(True)
    ref = (-torch.rand(4, 64, generator=g) * 3).to(dtype)
    old = (logp.detach().float() + 0.1 * torch.randn(4, 64, generator=g)).to(dtype)
    mask = (torch.rand(4, 64, generator=g) < 0.8).to(dtype)
    return logp, ref, old, mask


FUSED = [n for n in ESTIMATORS if supports(ESTIMATORS[n], "loss-w")]


def _took_fused_path(out: torch.Tensor) -> bool:
    """Whether autograd's graph behind ``out`` holds the fused node (the fallback path has none)."""
    todo, seen = [out.grad_fn], set()
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if type(node).__name__ == "_FusedBackward":
            return True
        todo.extend(f for f, _ in node.next_functions)
    return False


def test_the_fused_path_covers_the_estimators_with_float32_forms():
    assert FUSED == list(FORMS) and {"k1", "k2", "k3", "reverse_k1", "reverse_k2", "reverse_k1_cv"} <= set(FORMS)


@pytest.mark.parametrize("off_policy", [False, True], ids=["on-policy", "off-policy"])
@pytest.mark.parametrize("placement", ["loss", "loss-sgw", "loss-w", "reward"])
def test_kl_loss_float32_per_token_values_and_gradients(placement, off_policy):
    # d = logp − ref_logp and logp − old_logp are rounded to float32 first, as any float32 code does (the plain
    # expression too): the oracle takes those rounded differences and checks everything after them.
    logp, ref, old, mask = _batch()
    lp, rf, od = (t.detach().numpy() for t in (logp, ref, old))
    d = (lp - rf).astype(np.float64)
    w = np.exp((lp - od).astype(np.float64)) if off_policy else np.ones_like(d)
    for name in FUSED:
        out = kl_loss(logp, ref, mask=mask, old_logp=old if off_policy else None, estimator=name,
                      placement="reward-local" if placement == "reward" else placement, aggregation="none")
        assert out.dtype == torch.float32 and _took_fused_path(out), name  # finite inputs: no fallback
        (grad,) = torch.autograd.grad(out.sum(), logp)
        k, dk = oracles.VALUE[name](d), oracles.SLOPE[name](d)
        rtol = RTOL * 2  # ×2: w = e^(logp − old) is itself rounded to float32
        m = mask.numpy()
        np.testing.assert_allclose(out.detach().numpy(), oracles.PLACEMENT_VALUE[placement](k, w) * m, rtol=rtol,
                                   atol=0, err_msg=name)
        np.testing.assert_allclose(grad.numpy(), oracles.PLACEMENT_GRADIENT[placement](k, dk, 1.0, w) * m,
                                   rtol=rtol, atol=0, err_msg=name)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", ["k3", "reverse_k1_cv"])
def test_half_inputs_are_the_float32_computation_then_one_rounding(dtype, name):
    # The contract for bf16/fp16 inputs: the value is the float32 computation on the (exactly) widened inputs,
    # the gradient is that float32 gradient rounded once to the input dtype.
    logp, ref, old, mask = _batch(dtype)
    wide = logp.detach().float().requires_grad_(True)
    for placement in ("loss", "loss-w", "reward-local"):
        got = kl_loss(logp, ref, mask=mask, old_logp=old, estimator=name, placement=placement)
        want = kl_loss(wide, ref.float(), mask=mask.float(), old_logp=old.float(), estimator=name,
                       placement=placement)
        assert got.dtype == torch.float32 and got.item() == want.item()
        (g,) = torch.autograd.grad(got, logp)
        (g32,) = torch.autograd.grad(want, wide)
        assert g.dtype == dtype and torch.equal(g, g32.to(dtype))


@pytest.mark.parametrize("garbage", [math.inf, -math.inf, math.nan])
def test_garbage_in_padding_changes_nothing(garbage):
    logp, ref, old, mask = _batch()
    clean = kl_loss(logp, ref, mask=mask, old_logp=old, estimator="k3", placement="loss-w")
    (g_clean,) = torch.autograd.grad(clean, logp)
    for which in range(3):
        tensors = [logp.detach().clone(), ref.clone(), old.clone()]
        tensors[which][mask == 0] = garbage
        lp = tensors[0].requires_grad_(True)
        got = kl_loss(lp, tensors[1], mask=mask, old_logp=tensors[2], estimator="k3", placement="loss-w")
        (g,) = torch.autograd.grad(got, lp)
        assert got.item() == pytest.approx(clean.item(), rel=1e-6)
        torch.testing.assert_close(g, g_clean, rtol=1e-6, atol=0)
        assert (g[mask == 0] == 0).all()


def test_reference_probability_zero_keeps_its_limits_in_float32():
    # ref_logp = −inf at a counted token: d = +inf. r·log r − (r − 1) → 1 with slope d·r → 0; k3' = 1 − r → 1.
    logp = torch.zeros(3, requires_grad=True)
    ref = torch.tensor([-math.inf, -1.0, -2.0])
    d = np.array([math.inf, 1.0, 2.0])
    for name, value, slope in (("reverse_k1_cv", 1.0, 0.0), ("k3", math.inf, 1.0), ("reverse_k1", 0.0, 0.0)):
        out = kl_loss(logp, ref, estimator=name, placement="loss", aggregation="none")
        (g,) = torch.autograd.grad(out.sum(), logp)
        assert out[0].item() == value and g[0].item() == slope, name
        np.testing.assert_allclose(out[1:].detach().numpy(), oracles.VALUE[name](d[1:]), rtol=RTOL)


def test_an_overflowed_coefficient_in_padding_gets_gradient_zero():
    # reverse_k1 at d = −84.283: the value −d·e^(−d) = 3.38e38 is finite in float32, the slope (d − 1)·e^(−d)
    # = 3.42e38 is not (float32 max 3.403e38). At padding the gradient is 0·coefficient: it must be 0, not NaN.
    d = -84.283
    assert abs(d) * math.exp(-d) < torch.finfo(torch.float32).max < (1 - d) * math.exp(-d)
    logp = torch.zeros(2, requires_grad=True)
    mask = torch.tensor([1.0, 0.0])
    loss = kl_loss(logp, torch.tensor([1.0, -d]), mask=mask, estimator="reverse_k1", placement="loss")
    assert not _took_fused_path(loss)  # the coefficients' sum is inf: the path that zeroes padding first
    (g,) = torch.autograd.grad(loss, logp)
    assert loss.item() == pytest.approx(float(oracles.VALUE["reverse_k1"](np.array([-1.0]))[0]), rel=RTOL)
    assert g[1].item() == 0.0 and g[0].item() == pytest.approx(float(oracles.SLOPE["reverse_k1"](np.array([-1.0]))[0]),
                                                                 rel=RTOL)


def test_a_second_derivative_is_refused_not_wrong():
    # The backward multiplies by a saved constant coefficient: differentiating it again would silently drop
    # k''(d). With create_graph the float32 path refuses; float64 inputs take the registry's path.
    logp, ref, _, mask = _batch()
    with pytest.raises(RuntimeError, match="no second derivative"):
        torch.autograd.grad(kl_loss(logp, ref, mask=mask, estimator="k2", placement="loss"), logp, create_graph=True)
    wide = logp.detach().double().requires_grad_(True)
    (g,) = torch.autograd.grad(kl_loss(wide, ref.double(), mask=mask.double(), estimator="k2", placement="loss"),
                               wide, create_graph=True)
    (h,) = torch.autograd.grad(g.sum(), wide)  # k2'' = 1: the Hessian's row sums are mask/Σmask
    torch.testing.assert_close(h, mask.double() / mask.sum(), rtol=1e-12, atol=0)
