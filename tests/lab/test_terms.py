"""kl_grad.lab.terms: estimator × placement cases from names, and the value estimators."""

from __future__ import annotations

import re

import pytest

from kl_grad.errors import KLGradError
from kl_grad.estimators import ESTIMATORS
from kl_grad.lab.terms import Case, make_cases, value_estimators
from kl_grad.placements import PLACEMENTS


def test_cases_are_the_product_in_order():
    cases = make_cases("k1, k3", ["loss", "reward"])
    assert [c.key for c in cases] == [("k1", "loss"), ("k1", "reward"), ("k3", "loss"), ("k3", "reward")]
    assert cases[2] == Case(ESTIMATORS["k3"], PLACEMENTS["loss"])


@pytest.mark.parametrize("estimators, placements, message", [
    ("k1,k1", "loss", "k1 is given twice"),
    ("k3_clamped,verl:low_var_kl", "loss",
     "k3_clamped is given twice (k3_clamped and verl:low_var_kl are the same estimator)"),
    ("k1,kl", "loss,reward", "k1 in placement loss is given twice (k1 and kl are the same estimator)"),
    ("", "loss", "no estimators given; pass at least one, e.g. k1,k2,k3"),
    ("k1", " , ", "no placements given; pass at least one, e.g. loss"),
    ("k4", "loss", "unknown estimator 'k4'"),
    ("k1", "penalty", "unknown placement 'penalty'"),
])
def test_bad_names_are_refused_with_what_is_allowed(estimators, placements, message):
    with pytest.raises(KLGradError, match=re.escape(message)):
        make_cases(estimators, placements)


def test_value_estimators_refuse_gradient_surrogates():
    assert [e.name for e in value_estimators("k1,k3+")] == ["k1", "k3+"]
    allowed = ", ".join(n for n, e in ESTIMATORS.items() if not e.gradient_only)
    with pytest.raises(KLGradError, match=re.escape(f"reverse_k2 (r) is a gradient surrogate, not a KL value "
                                                    f"estimator; value estimators: {allowed}")):
        value_estimators(["k1", "reverse_k2"])
