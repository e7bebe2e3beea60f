"""kl_grad.lab.statistics: the numbers behind every table's verdicts and warnings, each against an
independent oracle (a simulation, a closed form, or a loop)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from kl_grad.lab import run_gradients
from kl_grad.lab.statistics import (
    FALSE_ALARM,
    mark_higher_variance,
    matches,
    mc_summary,
    relative,
    stdev_check,
    stdev_se,
    t_critical,
    tolerance,
    weighted_moments,
)
from tests.problems import ZERO_LOC_GRADIENT


def test_stdev_se_matches_a_simulation():
    # T = 200 means of n = 2 Exp(1) draws (per-sample variance 1, 4th central moment 9: at n = 2 the
    # kurtosis term is 60% of the answer), replicated 20 000 times; the spread of the replicas' stdev
    # (ddof = 0, as the tables) is what stdev_se predicts. Simulation SE 0.5%; the delta method's own
    # bias measured 0.6-0.7% over three seeds, so 3% is ~4 simulation SEs beyond that bias.
    n, trials, reps = 2, 200, 20_000
    sd = np.random.default_rng(0).exponential(size=(reps, trials, n)).mean(-1).std(axis=1)
    assert stdev_se(1.0, 9.0, n, trials) == pytest.approx(sd.std(), rel=0.03)


@pytest.mark.parametrize("var, m4", [(math.inf, 1.0), (1.0, math.inf), (0.0, 0.0), (math.nan, 1.0)])
def test_stdev_se_is_nan_without_finite_positive_moments(var, m4):
    assert math.isnan(stdev_se(var, m4, 10, 10))


@pytest.mark.parametrize("z, same", [(3.9, True), (4.1, False), (-4.1, False)])
def test_mc_mean_is_called_biased_beyond_four_standard_errors(z, same):
    # The documented rule (README, --help): biased when |bias| > 4 SE, i.e. a two-sided false-alarm rate of
    # 2Φ(−4) = 6.334e-5, which for many trials is 4 SE (Student-t quantile → normal quantile).
    draws = 10**9
    assert t_critical(draws) == pytest.approx(4.0, rel=1e-5)
    tol = tolerance(1.0, 0.01, draws)
    assert matches(1.0 + z * 0.01, 1.0, tol, exact=False) is same


def test_few_trials_widen_the_tolerance_to_the_student_t_quantile():
    # Closed forms of the two-sided t quantile: 1 degree of freedom (Cauchy) t = cot(πα/2); 2 degrees of
    # freedom P(|T| > t) = 1 − t/√(2 + t²), so t = √(2c²/(1 − c²)) with c = 1 − α.
    alpha = FALSE_ALARM
    assert t_critical(2) == pytest.approx(1 / math.tan(math.pi * alpha / 2), rel=1e-9)
    c = 1 - alpha
    assert t_critical(3) == pytest.approx(math.sqrt(2 * c * c / (1 - c * c)), rel=1e-9)
    assert tolerance(5.0, 0.5, 3) == pytest.approx(0.5 * t_critical(3), rel=1e-15)


def test_exact_rows_match_within_1e8_relative():
    assert matches(1.0 + 0.9e-8, 1.0, 0.0, exact=True) and not matches(1.0 + 1.1e-8, 1.0, 0.0, exact=True)
    assert matches(1.0 + 1e-6, 1.0, 2e-6, exact=True)  # or within the row's own numerical error, if larger


def test_weighted_moments_are_the_weighted_sums():
    g = np.array([[1.0, -2.0], [3.0, 0.5]])
    w = np.array([0.25, 0.75])
    mean, var, m4 = weighted_moments(g, w)[:3]
    m = [0.25 * 1 + 0.75 * 3, 0.25 * -2 + 0.75 * 0.5]
    np.testing.assert_allclose(mean, m, rtol=1e-15)
    np.testing.assert_allclose(var, [0.25 * (1 - m[0]) ** 2 + 0.75 * (3 - m[0]) ** 2,
                                     0.25 * (-2 - m[1]) ** 2 + 0.75 * (0.5 - m[1]) ** 2], rtol=1e-15)
    np.testing.assert_allclose(m4, [0.25 * (1 - m[0]) ** 4 + 0.75 * (3 - m[0]) ** 4,
                                    0.25 * (-2 - m[1]) ** 4 + 0.75 * (0.5 - m[1]) ** 4], rtol=1e-15)


def test_mc_summary_uses_ddof_0_for_the_stdev_and_ddof_1_for_the_se():
    g = np.array([1.0, 2.0, 4.0, 7.0])
    mean, stdev, se = mc_summary(g)
    assert mean == 3.5
    assert stdev == pytest.approx(math.sqrt(sum((v - 3.5) ** 2 for v in g) / 4), rel=1e-15)
    assert se == pytest.approx(math.sqrt(sum((v - 3.5) ** 2 for v in g) / 3) / 2, rel=1e-15)


def test_stdev_check_warns_only_for_heavy_tails():
    # Gaussian per-sample values (m4 = 3σ⁴): the MC stdev's relative SE is the Gaussian 1/√(2(T−1)), no warning.
    z, note = stdev_check(1.0 / math.sqrt(100), 1.0, 3.0, samples=100, trials=1000)
    assert z == pytest.approx(0.0, abs=1e-12) and note == ""
    # A per-sample kurtosis of 1e8 at n = 100: the stdev's relative SE is far above 25%.
    _, note = stdev_check(0.1, 1.0, 1e8, samples=100, trials=1000, scale=2.0)
    assert note.startswith("heavy tail: per-sample kurtosis ~1e+08") and "the exact stdev_rel is 0.05" in note


def test_a_true_gradient_of_zero_leaves_the_relative_columns_undefined():
    # Equal locs: ∇_loc KL = 0 in both directions (closed form), so |bias| / |true| has no meaning.
    table = run_gradients(ZERO_LOC_GRADIENT.policy, ZERO_LOC_GRADIENT.ref, ["k2"], mode="exact").table
    loc, scale = table.iloc[0], table.iloc[1]
    assert loc["true_grad"] == 0 and math.isnan(loc["bias_rel"]) and math.isnan(loc["stdev_rel"])
    assert "true value is 0" in loc["warning"]
    assert np.isfinite(scale["bias_rel"]) and "true value is 0" not in scale["warning"]


def test_relative_appends_its_note_to_an_existing_warning():
    row = {"warning": "earlier"}
    out = relative(1.0, 2.0, 0.0, row)
    assert math.isnan(out["bias_rel"]) and row["warning"] == "earlier; true value is 0: relative columns undefined"
    assert relative(1.5, 2.0, -2.0, {}) == {"bias_rel": 1.75, "stdev_rel": 1.0}


def test_higher_variance_marks_unbiased_rows_noisier_than_1_2x_the_best():
    table = pd.DataFrame({
        "direction": ["policy||ref"] * 4 + ["ref||policy"],
        "param": ["loc"] * 4 + ["loc"],
        "stdev_rel": [1.0, 1.19, 1.21, 5.0, 9.0],
        "verdict": ["unbiased", "unbiased", "unbiased", "biased", "unbiased"],
    })
    out = mark_higher_variance(table)["verdict"].tolist()
    # 1.19 is within 1.2× of the best (1.0); 1.21 is not; biased rows and other directions are untouched.
    assert out == ["unbiased", "unbiased", "unbiased, higher variance", "biased", "unbiased"]


# --------------------------------------------------------------------------- #
# The MC verdict keeps its stated false-alarm rate at any T ≥ 2
# --------------------------------------------------------------------------- #

def test_t_critical_matches_the_closed_forms_for_one_and_two_degrees_of_freedom():
    # Independent of scipy: P(|T_1| > t) = 1 − (2/π)·atan t (Cauchy), P(|T_2| > t) = 1 − t/√(t² + 2).
    a = FALSE_ALARM
    assert t_critical(2) == pytest.approx(math.tan(math.pi / 2 * (1 - a)), rel=1e-9)
    assert t_critical(3) == pytest.approx(math.sqrt(2 * (1 - a) ** 2 / (1 - (1 - a) ** 2)), rel=1e-9)
    # and a normal's 4 standard errors: 2·Φ(−4)
    assert FALSE_ALARM == pytest.approx(math.erfc(4 / math.sqrt(2)), rel=1e-3)


@pytest.mark.parametrize("trials", [2, 3, 5, 30])
def test_false_alarm_rate_of_an_unbiased_row_is_the_stated_one(trials):
    # 400 000 seeded replicates of an exactly unbiased MC row (per-trial gradients N(0, 1), the law a
    # mean of many samples follows). The number of "biased" calls is Binomial(n, FALSE_ALARM), mean
    # 25.3; it exceeds 50 with probability < 1e-5 (Poisson tail), so this test has that false-alarm rate.
    # The old rule (|bias| > 4 se with a normal's 4) called 17% of them biased at T = 2 and 1.1% at T = 5.
    n = 400_000
    g = np.random.default_rng(trials).standard_normal((n, trials))
    mean, se = g.mean(1), g.std(1, ddof=1) / math.sqrt(trials)
    calls = int((np.abs(mean) > tolerance(0.0, 1.0, trials) * se).sum())  # the package's own threshold
    assert calls <= 50, calls
    assert tolerance(0.0, 1.0, trials) == t_critical(trials)
    assert calls >= 8  # and not vacuous: P(Poisson(25.3) < 8) < 1e-4
