"""MC verdicts keep their stated false-alarm rate on discrete, few-sample problems (issue 23).

k3 loss-w (an unbiased construction) on categorical:1.5,-1,0,-2.5 vs categorical:-1,0.5,0,1 puts a
token of probability 1.3% in trials of 8 samples: most trials never see it, the trial means are far from
normal, and the Student-t rule alone said "biased" on 7% of verdicts at T = 10 (and on every parameter
when all T = 3 trials were identical, se = 0). The rule now also requires Bernstein's bound from the exact
variance and range (statistics.bernstein_tolerance), valid for any bounded draws.

The simulation draws tokens with numpy and forms the per-sample gradients from the hand-derived formula
(tests/oracle_formulas.py); the verdict is the package's rule (statistics.tolerance). Over 1 200 seeds ×
4 parameters per (T, samples), a rate ≤ FALSE_ALARM (6.3e-5) expects 0.3 false alarms; ≤ 2 is asserted
(P(≥ 3) = 0.4% at the stated rate; 3× the rate would give ≥ 3 with probability 17%).
"""

from __future__ import annotations

import numpy as np
import pytest

from kl_grad.lab.gradient_table import run_gradients
from kl_grad.lab.statistics import bernstein_tolerance, tolerance
from tests.oracles import per_sample_gradient, softmax

POLICY, REF = "categorical:1.5,-1,0,-2.5", "categorical:-1,0.5,0,1"
LOGITS = [1.5, -1, 0, -2.5]


def _false_alarms(trials: int, samples: int, seeds: int = 1200) -> tuple[int, int]:
    """(false alarms of the package's rule, of the Student-t rule alone) over seeds × parameters."""
    q = softmax(LOGITS)
    g = per_sample_gradient("k3", "loss-w", np.arange(4), POLICY, REF)  # (token, P)
    mean = q @ g
    var = q @ (g - mean) ** 2
    spread = np.abs(g - mean).max(axis=0)
    rng = np.random.default_rng(2023)
    ours = t_only = 0
    for _ in range(seeds):
        tokens = rng.choice(4, size=(trials, samples), p=q)
        per_trial = g[tokens].mean(axis=1)  # (T, P)
        m = per_trial.mean(0)
        se = per_trial.std(0, ddof=1) / np.sqrt(trials)
        for j in range(4):
            floor = bernstein_tolerance(var[j], spread[j], samples * trials)
            dev = abs(m[j] - mean[j])
            ours += dev > tolerance(mean[j], se[j], trials, floor=floor)
            t_only += dev > tolerance(mean[j], se[j], trials)
    return ours, t_only


@pytest.mark.parametrize("trials, samples", [(2, 8), (3, 8), (10, 8), (30, 8), (10, 2), (10, 64)])
def test_false_alarm_rate_holds_on_a_rare_token(trials, samples):
    ours, t_only = _false_alarms(trials, samples)
    assert ours <= 2, (ours, t_only)


def test_the_t_rule_alone_fails_there_so_the_simulation_can_tell():
    ours, t_only = _false_alarms(10, 8)
    assert t_only > 100 and ours <= 2


def test_the_table_says_why_where_the_t_rule_alone_would_have_said_biased():
    notes = biased = 0
    for seed in range(20):
        table = run_gradients(POLICY, REF, ["k3"], ["loss-w"], samples=8, trials=2, seed=seed).table
        biased += (table.verdict == "biased").sum()
        notes += table.warning.str.contains("Bernstein").sum()
    assert biased == 0 and notes > 0


def test_bernstein_is_the_normal_bound_for_many_draws_and_covers_a_single_jump():
    # many draws: t ≈ √(2·log(2/α))·σ/√n; one draw: at least the range term 2b·log(2/α)/3 ≥ b
    n, sigma = 10**8, 1.0
    assert bernstein_tolerance(sigma**2, 1.0, n) == pytest.approx(np.sqrt(2 * np.log(2 / 6.334e-5) / n), rel=1e-3)
    assert bernstein_tolerance(0.0, 1.0, 1) >= 1.0
    assert bernstein_tolerance(1.0, None, 10) == 0.0


def test_the_rule_still_finds_a_real_bias():
    # power: k3 as a plain loss follows ∇KL(π_ref‖π_θ), 0.36 relative off ∇KL(π_θ‖π_ref) here (README table);
    # (relative bias 0.11 to 5.7 per parameter); 20 000 samples × 20 trials resolve each, the bound included
    table = run_gradients(POLICY, REF, ["k3"], ["loss"], samples=20000, trials=20, seed=5,
                          direction="policy||ref").table
    assert (table.verdict == "biased").all(), table[["param", "bias_rel", "verdict"]]
