"""kl_grad.errors: the one exception type, the one lookup that names what is allowed, and name lists."""

from __future__ import annotations

import pytest

from kl_grad.errors import KLGradError, choose, split_names

REGISTRY = {"alpha": 1, "beta": 2}


def test_klgraderror_is_a_value_error():
    assert issubclass(KLGradError, ValueError)


def test_choose_finds_names_and_aliases():
    assert choose("thing", "alpha", REGISTRY) == 1
    assert choose("thing", "a", REGISTRY, {"a": "alpha", "b": "beta"}) == 1
    assert choose("thing", "beta", REGISTRY, {"a": "alpha"}) == 2


@pytest.mark.parametrize("name", ["gamma", None, ["alpha"]],
                         ids=["unknown", "None", "unhashable"])
def test_choose_lists_the_allowed_names_then_the_aliases(name):
    with pytest.raises(KLGradError) as info:
        choose("thing", name, REGISTRY, {"a": "alpha"})
    assert str(info.value) == f"unknown thing {name!r}; expected one of alpha, beta, a"
    assert info.value.__cause__ is None and info.value.__suppress_context__  # one line, no chained KeyError


@pytest.mark.parametrize("names, expected", [
    ("k1, k2,,  k3 ", ["k1", "k2", "k3"]),
    (["k1", " ", " k2"], ["k1", "k2"]),
    ("", []),
    (",", []),
])
def test_split_names(names, expected):
    assert split_names(names) == expected
