"""kl_grad.lab.coefficients.table on users' own KL functions, called as written: plain, already reduced, clamped,
with old_logp, detached, float32, and the one-line refusals."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
import torch

from kl_grad.errors import KLGradError
from kl_grad.lab.coefficients.table import coefficient_table

mpmath.mp.dps = 50
E = mpmath.e

USER_GRID = np.array([-6.0, -3.0, -2.0, -0.7, -0.1, 0.0, 0.2, 1.0, 4.0, 15.0, 25.0])


def _k3_by_hand(logp, ref_logp):
    log_ratio = ref_logp - logp  # log r
    return torch.exp(log_ratio) - log_ratio - 1


def _k3_clamped_by_hand(logp, ref_logp):  # the way verl writes low_var_kl
    log_ratio = torch.clamp(ref_logp - logp, min=-20, max=20)
    return torch.clamp(torch.exp(log_ratio) - log_ratio - 1, min=-10, max=10)


def _c_k3(d):
    return np.array([float(1 - E ** (-mpmath.mpf(float(x)))) for x in d])


def test_a_hand_written_k3_loss_gives_the_k3_coefficient():
    t = coefficient_table(USER_GRID, fn=_k3_by_hand)
    assert set(t["placement"]) == {"as written"} and set(t["estimator"]) == {"_k3_by_hand"}
    np.testing.assert_allclose(t["c"].to_numpy(), _c_k3(USER_GRID), rtol=1e-12, atol=1e-15)
    assert t["follows"].iloc[0] == "ref||policy" and (t["warning"] == "").all()


@pytest.mark.parametrize("reduce", [torch.mean, torch.sum])
def test_an_already_reduced_loss_is_read_one_sample_at_a_time(reduce):
    t = coefficient_table(USER_GRID, fn=lambda logp, ref: reduce(_k3_by_hand(logp, ref)), name="reduced k3")
    np.testing.assert_allclose(t["c"].to_numpy(), _c_k3(USER_GRID), rtol=1e-12, atol=1e-15)


def test_a_clamped_k3_has_zero_coefficient_where_the_clamp_fires():
    t = coefficient_table(USER_GRID, fn=_k3_clamped_by_hand)
    k3 = np.exp(-USER_GRID) - 1 + USER_GRID
    clamped = (np.abs(USER_GRID) > 20) | (k3 > 10)
    assert clamped.tolist() == [True, True, False, False, False, False, False, False, False, True, True]
    c = t["c"].to_numpy()
    assert (c[clamped] == 0).all()
    np.testing.assert_allclose(c[~clamped], _c_k3(USER_GRID[~clamped]), rtol=1e-12, atol=1e-15)
    assert t["expected_gradient"].iloc[0] == "problem-dependent" and t["follows"].iloc[0] == "none"


def test_a_third_positional_parameter_receives_the_detached_logp():
    def weighted_k3(logp, ref_logp, old_logp):
        return torch.exp(logp - old_logp) * _k3_by_hand(logp, ref_logp)

    t = coefficient_table(USER_GRID, fn=weighted_k3)
    np.testing.assert_allclose(t["c"].to_numpy(), USER_GRID, rtol=1e-12, atol=1e-14)  # k3 + k3' = d
    assert t["follows"].iloc[0] == "policy||ref"


def test_a_keyword_with_a_default_is_not_taken_for_old_logp():
    def framework_style(logprob, ref_logprob, kl_penalty="k2"):
        assert kl_penalty == "k2"
        return 0.5 * (logprob - ref_logprob) ** 2

    t = coefficient_table(USER_GRID, fn=framework_style)
    np.testing.assert_allclose(t["c"].to_numpy(), USER_GRID, rtol=1e-12, atol=1e-15)


def test_a_function_that_uses_logp_beyond_d_is_flagged():
    t = coefficient_table(USER_GRID, fn=lambda logp, ref: torch.exp(logp) * (logp - ref), name="p·d")
    assert t["warning"].str.contains("uses log π_θ beyond d").all()


def test_a_float32_function_gets_a_dtype_note_and_float32_accurate_c():
    t = coefficient_table(USER_GRID, fn=lambda logp, ref: _k3_by_hand(logp.float(), ref.float()))
    assert t["warning"].str.contains("computes in float32").all()
    np.testing.assert_allclose(t["c"].to_numpy(), _c_k3(USER_GRID), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fn, message", [
    (lambda logp, ref: _k3_by_hand(logp.detach(), ref), "carries no gradient"),
    (lambda logp, ref: (logp - ref)[:2], "returned shape"),
    (lambda logp, ref: 3.0, "returned float"),
    ("k3", "must be callable"),
])
def test_bad_user_functions_get_one_line(fn, message):
    with pytest.raises(KLGradError, match=message):
        coefficient_table(USER_GRID, fn=fn)


def test_fn_and_builtins_are_exclusive():
    with pytest.raises(KLGradError, match="not both"):
        coefficient_table(USER_GRID, ["k3"], fn=_k3_by_hand)


def test_a_scaled_combination_is_named_with_its_weights():
    t = coefficient_table(USER_GRID, fn=lambda logp, ref: -0.5 * (logp - ref) ** 2 / 2 + 3 * _k3_by_hand(logp, ref))
    assert t["expected_gradient"].iloc[0] == "−0.5·∇KL(policy‖ref) + 3·∇KL(ref‖policy)"
    assert t["follows"].iloc[0] == "none"


def test_the_figure_is_a_png_identical_on_a_rerun_for_builtins_and_a_user_function():
    pytest.importorskip("matplotlib")
    from kl_grad.lab.coefficients.plot import coefficients_png
    from tests.lab.test_figures import PNG_MAGIC, _text_chunks

    for t in (coefficient_table("-3:3:0.5", ["k1", "k3"], ["loss", "loss-w", "reward"]),
              coefficient_table("-3:3:0.5", fn=_k3_clamped_by_hand)):
        pngs = [coefficients_png(t, "c(d)") for _ in range(2)]
        assert pngs[0] == pngs[1] and pngs[0].startswith(PNG_MAGIC) and b"Software" not in _text_chunks(pngs[0])


def test_outputs_that_depend_on_the_other_samples_are_flagged():
    # k2 normalised by the batch's (detached) total: per-sample shape, but each value depends on the whole batch
    def normalised(logp, ref):
        k2 = 0.5 * (logp - ref) ** 2
        return k2 / k2.detach().sum()

    t = coefficient_table(USER_GRID, fn=normalised)
    assert t["warning"].str.contains("depends on the other samples").all()
    assert (coefficient_table(USER_GRID, fn=_k3_by_hand)["warning"] == "").all()


def test_a_gradient_that_is_not_finite_is_marked_on_its_row_and_refuses_the_label():
    t = coefficient_table(USER_GRID, fn=lambda logp, ref: torch.sqrt(logp - ref), name="sqrt")
    bad = ~np.isfinite(t["c"].to_numpy())
    assert bad.any() and t.loc[bad, "warning"].str.contains("gradient not finite here").all()
    assert not t.loc[~bad, "warning"].str.contains("not finite").any()
    assert t["expected_gradient"].iloc[0].startswith("unavailable") and t["follows"].iloc[0] == "none"
