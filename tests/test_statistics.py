"""The statistics behind the tables' verdicts and warnings, each against an independent oracle."""

import math

import numpy as np
import pytest

from kl_grad.lab import run_gradients
from kl_grad.lab.families import parse_spec
from kl_grad.lab.statistics import BIAS_SE, matches, stdev_se


def test_stdev_se_matches_a_simulation():
    # T = 200 means of n = 2 Exp(1) draws (per-sample variance 1, 4th central moment 9: at n = 2 the
    # kurtosis term is 60% of the answer), replicated 20 000 times; the spread of the replicas' stdev
    # (ddof = 0, as the tables) is what stdev_se predicts. Simulation SE 0.5%; the delta method's own
    # bias measured 0.6-0.7% over three seeds, so 3% is ~4 simulation SEs beyond that bias.
    n, trials, reps = 2, 200, 20_000
    sd = np.random.default_rng(0).exponential(size=(reps, trials, n)).mean(-1).std(axis=1)
    assert stdev_se(1.0, 9.0, n, trials) == pytest.approx(sd.std(), rel=0.03)


@pytest.mark.parametrize("z, same", [(3.9, True), (4.1, False), (-4.1, False)])
def test_mc_mean_is_called_biased_beyond_four_standard_errors(z, same):
    assert BIAS_SE == 4.0  # the documented rule (README, --help): biased when |bias| > 4 SE
    assert matches(1.0 + z * 0.01, 1.0, 0.01, exact=False) is same


def test_a_true_gradient_of_zero_leaves_the_relative_columns_undefined():
    # Equal locs: ∇_loc KL = 0 in both directions (closed form), so |bias| / |true| has no meaning.
    table = run_gradients(parse_spec("normal:0,1"), parse_spec("normal:0,1.1"), ["k2"], mode="exact").table
    loc, scale = table.iloc[0], table.iloc[1]
    assert loc["true_grad"] == 0 and math.isnan(loc["bias_rel"]) and math.isnan(loc["stdev_rel"])
    assert "true value is 0" in loc["warning"]
    assert np.isfinite(scale["bias_rel"]) and "true value is 0" not in scale["warning"]


def test_z_vs_exact_is_signed_mc_minus_exact_over_se():
    table = run_gradients(parse_spec("normal:0,1"), parse_spec("normal:1,1.1"), ["k1", "k2"],
                          samples=500, trials=20, seed=3).table
    expected = (table["mean_grad"] - table["exact_grad"]) / table["se"]
    np.testing.assert_allclose(table["z_vs_exact"], expected, rtol=1e-12)
    assert (np.sign(table["z_vs_exact"]) == np.sign(table["mean_grad"] - table["exact_grad"])).all()
