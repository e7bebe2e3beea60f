"""kl_grad.lab.coefficients.table: autograd c(d) against hand-derived closed forms (mpmath, 50 digits), the
expected-gradient labels against exact enumeration on a categorical policy, the grid parser and the views
(users' own functions: test_coefficients_user.py)."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from kl_grad.errors import KLGradError
from kl_grad.estimators import ESTIMATORS
from kl_grad.lab.coefficients.table import coefficient_table, parse_grid, wide
from kl_grad.placements import PLACEMENTS
from tests import oracles

mpmath.mp.dps = 50
E = mpmath.e

# Hand-derived (k(d), k'(d)) with r = e^{−d}; verl's clamps: |d| ≤ 20 before exp, value ≤ 10 after.
def _k3(d):
    return E ** (-d) - 1 + d


def _k3_clamped(d):
    inside = abs(d) < 20 and _k3(d) < 10
    return (_k3(d) if inside else mpmath.mpf(10)), (1 - E ** (-d) if inside else mpmath.mpf(0))


CLOSED_FORMS = {
    "k1": lambda d: (d, mpmath.mpf(1)),
    "k2": lambda d: (d * d / 2, d),
    "k3": lambda d: (_k3(d), 1 - E ** (-d)),
    "reverse_k1": lambda d: (-d * E ** (-d), (d - 1) * E ** (-d)),
    "reverse_k2": lambda d: (E ** (-d), -E ** (-d)),
    "reverse_k1_cv": lambda d: (-d * E ** (-d) - (E ** (-d) - 1), d * E ** (-d)),
    "k1+": lambda d: (d, d),  # value k1, gradient of k2
    "k3+": lambda d: (_k3(d), d),
    "k3_clamped": _k3_clamped,
}
# On-policy c for a placement from (k, k'): w = 1 with gradient s, d has gradient s.
PLACEMENT_C = {"loss": lambda k, dk: dk, "loss-sgw": lambda k, dk: dk, "loss-w": lambda k, dk: k + dk,
               "reward": lambda k, dk: k}

# Tiny, moderate and large |d|, avoiding the clamps' edges (k3 = 10 at d ≈ −2.611 and 10.99998).
GRID = np.array([-30, -7.5, -3, -1.3, -0.3, -1e-3, -1e-6, -1e-9, 0, 1e-9, 1e-6, 1e-3, 0.3, 1.7, 5, 12.5, 30.0])


def test_the_mpmath_oracles_name_registered_terms():
    assert set(CLOSED_FORMS) <= set(ESTIMATORS) and set(PLACEMENT_C) <= set(PLACEMENTS)


@pytest.fixture(scope="module")
def table():
    return coefficient_table(GRID, list(CLOSED_FORMS), list(PLACEMENT_C))


@pytest.mark.parametrize("estimator", list(CLOSED_FORMS))
def test_autograd_c_equals_the_closed_form_for_every_placement(table, estimator):
    for placement, c_of in PLACEMENT_C.items():
        rows = table[(table["estimator"] == estimator) & (table["placement"] == placement)]
        want = np.array([float(c_of(*CLOSED_FORMS[estimator](mpmath.mpf(float(d))))) for d in GRID])
        np.testing.assert_array_equal(rows["d"].to_numpy(), GRID)
        np.testing.assert_allclose(rows["c"].to_numpy(), want, rtol=1e-12, atol=0, err_msg=placement)


def test_every_registered_term_matches_the_shared_oracles():
    """Every estimator × placement in the registries (new ones too) against tests/oracles.py's hand-derived k, k' and
    placement gradients with s = w = 1 (on-policy, ∂/∂log π_θ), to the rounding of the oracle's own sum k + k'."""
    t = coefficient_table(GRID)
    assert len(t) == len(GRID) * len(ESTIMATORS) * len(PLACEMENTS)
    for (estimator, placement), rows in t.groupby(["estimator", "placement"]):
        k, dk = oracles.VALUE[estimator](GRID), oracles.SLOPE[estimator](GRID)
        want = oracles.PLACEMENT_GRADIENT[placement](k, dk, 1.0, 1.0)
        np.testing.assert_array_less(np.abs(rows["c"].to_numpy() - want), 1e-12 * (np.abs(k) + np.abs(dk)) + 1e-300,
                                     err_msg=f"{estimator} {placement}")


def test_reference_columns_are_the_two_kl_gradients_coefficients(table):
    first = table[(table["estimator"] == "k1") & (table["placement"] == "loss")]
    np.testing.assert_array_equal(first["c_policy_ref"].to_numpy(), GRID)
    want = [float(1 - E ** (-mpmath.mpf(float(d)))) for d in GRID]
    np.testing.assert_allclose(first["c_ref_policy"].to_numpy(), want, rtol=1e-14, atol=0)


# (α, β) with c = α·d + β·(1 − e^{−d}) + γ, derived by hand from CLOSED_FORMS and PLACEMENT_C; None: no such form.
HAND_FIT = {
    ("k1", "loss"): (0, 0), ("k1", "loss-w"): (1, 0), ("k1", "reward"): (1, 0),
    ("k2", "loss"): (1, 0), ("k2", "loss-w"): None, ("k2", "reward"): None,
    ("k3", "loss"): (0, 1), ("k3", "loss-w"): (1, 0), ("k3", "reward"): (1, -1),
    ("reverse_k1", "loss"): None, ("reverse_k1", "loss-w"): (0, 1),
    ("reverse_k2", "loss"): (0, 1), ("reverse_k2", "loss-w"): (0, 0), ("reverse_k2", "reward"): (0, -1),
    ("reverse_k1_cv", "loss-w"): (0, 1), ("k1+", "loss-w"): (2, 0), ("k3+", "loss-w"): (2, -1),
    ("k3_clamped", "loss"): None,
}
LABELS = {(0, 0): ("0", "zero"), (1, 0): ("∇KL(policy‖ref)", "policy||ref"), (0, 1): ("∇KL(ref‖policy)", "ref||policy"),
          (1, -1): ("∇KL(policy‖ref) − ∇KL(ref‖policy)", "none"), (0, -1): ("−∇KL(ref‖policy)", "none"),
          (2, 0): ("2·∇KL(policy‖ref)", "none"), (2, -1): ("2·∇KL(policy‖ref) − ∇KL(ref‖policy)", "none"),
          None: ("problem-dependent", "none")}


@pytest.mark.parametrize("term", list(HAND_FIT), ids=lambda t: f"{t[0]}-{t[1]}")
def test_expected_gradient_label_matches_the_hand_fit(table, term):
    rows = table[(table["estimator"] == term[0]) & (table["placement"] == term[1])]
    assert (rows["expected_gradient"].iloc[0], rows["follows"].iloc[0]) == LABELS[HAND_FIT[term]]
    assert rows["expected_gradient"].nunique() == 1


def _categorical_kl_grads(logits: np.ndarray, ref_logp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """∇_logits KL(π‖ref) and KL(ref‖π) by central finite differences of the plain-loop KLs."""
    def kls(z):
        logp = z - math.log(sum(math.exp(v) for v in z))
        fwd = sum(math.exp(lp) * (lp - lr) for lp, lr in zip(logp, ref_logp))
        rev = sum(math.exp(lr) * (lr - lp) for lp, lr in zip(logp, ref_logp))
        return np.array([fwd, rev])

    h, grads = 1e-6, np.zeros((2, len(logits)))
    for j in range(len(logits)):
        e = np.zeros(len(logits))
        e[j] = h
        grads[:, j] = (kls(logits + e) - kls(logits - e)) / (2 * h)
    return grads[0], grads[1]


@pytest.mark.parametrize("term", [t for t, fit in HAND_FIT.items() if fit is not None], ids=lambda t: f"{t[0]}-{t[1]}")
def test_expected_gradient_on_a_categorical_policy_is_the_labelled_combination(term):
    """Enumeration over 4 outcomes: Σ_j π_j·c(d_j)·(e_j − π) = α·∇KL(π‖ref) + β·∇KL(ref‖π) (finite differences)."""
    logits = np.array([0.3, -0.8, 1.1, 0.0])
    logp = logits - np.log(np.exp(logits).sum())
    ref_logp = np.log(np.array([0.1, 0.4, 0.2, 0.3]))
    d = logp - ref_logp
    c = coefficient_table(d, [term[0]], [term[1]])["c"].to_numpy()
    pi = np.exp(logp)
    expected = sum(pi[j] * c[j] * (np.eye(4)[j] - pi) for j in range(4))
    fwd, rev = _categorical_kl_grads(logits, ref_logp)
    alpha, beta = HAND_FIT[term]
    np.testing.assert_allclose(expected, alpha * fwd + beta * rev, atol=1e-8)


def test_a_problem_dependent_term_is_biased_on_some_categorical_policy():
    """k2 as loss-w (c = d + d²/2): on two outcomes the bias is π_1·π_2·(a²/2 − b²/2) ≠ 0 (module docstring)."""
    logits, ref_logp = np.array([0.5, -0.5]), np.log(np.array([0.8, 0.2]))
    logp = logits - np.log(np.exp(logits).sum())
    d = logp - ref_logp
    grid = np.concatenate([d, [-3.0, 3.0]])
    c = coefficient_table(grid, ["k2"], ["loss-w"])["c"].to_numpy()[:2]
    pi = np.exp(logp)
    expected = sum(pi[j] * c[j] * (np.eye(2)[j] - pi) for j in range(2))
    fwd, rev = _categorical_kl_grads(logits, ref_logp)
    assert abs(expected[0] - fwd[0]) > 1e-3 and abs(expected[0] - rev[0]) > 1e-3


# --- grid and views ---------------------------------------------------------------------------------

def test_parse_grid_includes_both_ends_and_rounds_to_the_step():
    np.testing.assert_array_equal(parse_grid("-4:4:0.25"), np.arange(-16, 17) / 4)
    g = parse_grid("-1:1:0.1")
    assert len(g) == 21 and 0.3 in g and g[-1] == 1.0
    assert len(parse_grid("0:1:0.3")) == 4  # 0, 0.3, 0.6, 0.9: HI not on the grid


@pytest.mark.parametrize("text", ["-4:4", "a:b:c", "4:-4:0.5", "-4:4:0", "-4:4:-1", "0:1:0.5", "0:inf:1",
                                  "0:1:1e-9"])
def test_a_bad_grid_names_the_form(text):
    with pytest.raises(KLGradError, match="grid"):
        parse_grid(text)


def test_the_wide_view_shows_nine_points_with_the_references_first():
    t = coefficient_table("-4:4:0.25", ["k3"], ["loss", "loss-w"])
    w = wide(t)
    assert [c for c in w.columns if c.startswith("d=")] == [f"d={x:g}" for x in range(-4, 5)]
    assert w["estimator"].tolist() == ["c = d", "c = 1 − e^{−d}", "k3", "k3"]
    assert w.loc[2, "d=2"] == pytest.approx(1 - math.exp(-2), rel=1e-14) and w.loc[3, "d=-3"] == -3


@pytest.mark.parametrize("data, message", [
    ({"grid": "4:-4:1"}, "needs LO < HI"),
    ({"estimators": ["k9"]}, "unknown estimator 'k9'"),
    ({"placements": ["nowhere"]}, "unknown placement 'nowhere'"),
    ({"grid": 3}, "grid must be a str"),
])
def test_the_experiment_kind_checks_every_name_before_running(data, message):
    from kl_grad.lab.experiments import KINDS, parse_experiment

    with pytest.raises(KLGradError, match=message):
        KINDS["coefficients"].check(parse_experiment({"kind": "coefficients", "title": "t", **data}, "x.toml"))


def test_the_experiment_kind_runs_without_a_figure_when_asked():
    from kl_grad.lab.experiments import KINDS, parse_experiment

    exp = parse_experiment({"kind": "coefficients", "title": "t", "grid": "-1:1:0.5", "estimators": ["k2"],
                            "placements": ["loss"], "plot": False}, "x.toml")
    table, figures = KINDS["coefficients"].run(exp)
    assert figures == {} and table["c"].tolist() == [-1, -0.5, 0, 0.5, 1]


@pytest.mark.parametrize("grid", ["-4:4:0.25", "-1:1:0.5", "-8:8:0.5"])
def test_kinked_estimators_are_labelled_by_the_wide_probe_whatever_the_grid(grid):
    # hand-derived: the clamps/|·| of openrlhf:k2, verl:abs, openrlhf:k3 change c's form somewhere in ±60 in
    # every placement; verl:k3+'s straight-through gradient is d exactly in loss and loss-sgw (c = d: policy‖ref)
    t = coefficient_table(grid, estimators="openrlhf:k2,verl:abs,openrlhf:k3", placements="loss,reward")
    assert (t["expected_gradient"] == "problem-dependent").all() and (t["follows"] == "none").all()
    st = coefficient_table(grid, estimators="verl:k3+", placements="loss,loss-sgw")
    np.testing.assert_array_equal(st["c"].to_numpy(), st["d"].to_numpy())
    assert (st["expected_gradient"] == "∇KL(policy‖ref)").all() and not st["warning"].str.contains("kink").any()
    smooth = coefficient_table(grid, estimators="k2", placements="loss")
    assert (smooth["expected_gradient"] == "∇KL(policy‖ref)").all() and not smooth["warning"].str.contains("kink").any()


def test_openrlhf_k2_loss_clamp_is_real_beyond_the_default_grid():
    # hand oracle: ∂/∂logp of clamp(½d², ±10) is d where ½d² < 10, else 0 (d = logp − ref_logp)
    d = np.arange(-8.0, 8.25, 0.5)
    t = coefficient_table(d, estimators="openrlhf:k2", placements="loss")
    np.testing.assert_allclose(t["c"].to_numpy(), np.where(0.5 * d**2 < 10, d, 0.0), rtol=0, atol=1e-12)
    assert not t["warning"].iloc[0]  # the grid itself sees the clamp: no disagreement to warn about
    inner = coefficient_table("-4:4:0.25", estimators="openrlhf:k2", placements="loss")
    assert (inner["expected_gradient"] == "problem-dependent").all()
    assert "this grid's alone says ∇KL(policy‖ref)" in inner["warning"].iloc[0]
