"""kl_grad.lab.families: parsing and parameter rules, capabilities, distributions and leaves, quadrature
nodes and enumeration, reparameterisation; against closed forms in tests/oracles.py."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from kl_grad.errors import KLGradError
from kl_grad.lab.families import FAMILIES, DistSpec, as_spec, make_spec, parse_spec
from tests import oracles
from tests.problems import PROBLEMS, TAILS

SPECS = sorted({s for p in PROBLEMS + TAILS for s in p.args if s})
NORMAL_SPECS = [s for s in SPECS if s.startswith("normal")]
CATEGORICAL_SPECS = [s for s in SPECS if s.startswith("categorical")]


# --- parsing and parameter rules ---------------------------------------------------------------

@pytest.mark.parametrize("text", SPECS)
def test_parse_reads_the_numbers_and_the_label_round_trips(text):
    spec = parse_spec(text)
    family, values = oracles.parse(text)
    assert spec.family == family and spec.values == values
    assert all(type(v) is float for v in spec.values)
    assert parse_spec(spec.label) == spec
    assert as_spec(text) == spec and as_spec(spec) is spec


def test_parse_ignores_spaces_and_family_case():
    assert parse_spec(" Normal : 0 , 1 ") == DistSpec("normal", (0.0, 1.0))


@pytest.mark.parametrize("text, message", [
    # the rule broken is named, with the value
    ("normal:0,0", "invalid distribution 'normal:0,0': scale must be > 0 and finite, got 0"),
    ("normal:0,-1", "scale must be > 0 and finite, got -1"),
    ("normal:0,inf", "scale must be > 0 and finite, got inf"),
    ("normal:nan,1", "loc must be finite, got nan"),
    ("categorical:0,inf", "logits[1] must be finite, got inf"),
    # malformed text names the expected form
    ("normal:0", "malformed distribution 'normal:0'; expected normal:LOC,SCALE such as normal:0,1"),
    ("categorical:1", "expected categorical:L0,L1,... (two or more logits)"),
    ("normal0,1", "expected FAMILY:PARAMS such as normal:0,1"),
    ("normal:1,abc", "scale 'abc' is not a number"),
    ("categorical:0,x", "logits[1] 'x' is not a number"),
    ("gauss:0,1", "unknown family 'gauss'; expected one of normal, categorical"),
])
def test_bad_specs_name_the_rule(text, message):
    with pytest.raises(KLGradError, match=re.escape(message)):
        parse_spec(text)


def test_parse_names_what_the_spec_is_for():
    with pytest.raises(KLGradError, match=re.escape("invalid ref 'normal:0,-1': scale must be > 0")):
        parse_spec("normal:0,-1", "ref")


@pytest.mark.parametrize("family, values, message", [
    ("normal", (0, -1), "invalid normal distribution: scale must be > 0 and finite, got -1"),
    ("normal", (0,), "normal takes normal:LOC,SCALE, got 1 values"),
    ("categorical", (1,), "categorical takes categorical:L0,L1,... (two or more logits), got 1 values"),
    ("beta", (1, 1), "unknown family 'beta'; expected one of normal, categorical"),
])
def test_distspec_validates_on_construction(family, values, message):
    with pytest.raises(KLGradError, match=re.escape(message)):
        DistSpec(family, values)


def test_make_spec_names_what_it_builds():
    assert make_spec("normal", [0, 2]) == DistSpec("normal", (0.0, 2.0))
    with pytest.raises(KLGradError, match=re.escape("invalid sweep point scale=-1: scale must be > 0 and finite")):
        make_spec("normal", [0, -1], "sweep point scale=-1")


# --- capabilities and parameters ---------------------------------------------------------------

def test_capability_flags():
    assert set(FAMILIES) == {"normal", "categorical", "markov", "markov-eos"}
    assert (FAMILIES["markov-eos"].enumerable, FAMILIES["markov-eos"].sequential) == (True, True)
    assert (FAMILIES["markov"].enumerable, FAMILIES["markov"].reparameterisable) == (True, False)
    assert (FAMILIES["normal"].enumerable, FAMILIES["normal"].reparameterisable) == (False, True)
    assert (FAMILIES["categorical"].enumerable, FAMILIES["categorical"].reparameterisable) == (True, False)


def test_parameter_names_in_torchs_vocabulary():
    normal, tokens = parse_spec("normal:0.5,2"), parse_spec("categorical:0,1,2")
    assert normal.param_names == ("loc", "scale")
    assert tokens.param_names == ("logits[0]", "logits[1]", "logits[2]")
    assert normal.as_dict() == {"loc": 0.5, "scale": 2.0}
    assert normal.label == "normal:0.5,2" and tokens.label == "categorical:0,1,2"


def test_only_continuous_families_have_tails_and_reparameterisation():
    tokens = parse_spec("categorical:0,1")
    with pytest.raises(NotImplementedError, match="categorical has no tails to analyse"):
        tokens.fam.tail_grid(tokens, np.zeros(3))
    with pytest.raises(NotImplementedError, match="categorical cannot be reparameterised"):
        tokens.fam.reparameterise(tokens, tokens.leaves((1,), torch.float64), torch.zeros(1, 1, dtype=torch.long))


# --- distributions and leaves ------------------------------------------------------------------

@pytest.mark.parametrize("text", SPECS)
def test_built_log_probs_match_the_oracle(text):
    spec = parse_spec(text)
    if spec.fam.enumerable:
        x = np.arange(len(spec.values))
    else:
        loc, scale = spec.values
        x = loc + scale * np.linspace(-5, 5, 11)
    want = oracles.log_density(text, x)
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):  # float32: a few ulps of values up to ~15
        got = spec.build(dtype).log_prob(torch.tensor(x) if spec.fam.enumerable else torch.tensor(x, dtype=dtype))
        assert got.dtype == dtype
        np.testing.assert_allclose(got.double().numpy(), want, rtol=tol, atol=tol)


@pytest.mark.parametrize("text", [NORMAL_SPECS[0], CATEGORICAL_SPECS[0]])
def test_leaves_give_each_row_its_own_score(text):
    # One copy of θ0 per row: the gradient of Σ log π_θ(x) reaches each row's copy with that row's score sum.
    spec = parse_spec(text)
    leaves = spec.leaves((4, 1), torch.float64)
    assert list(leaves) == list(spec.param_names)
    for leaf, value in zip(leaves.values(), spec.values):
        assert leaf.shape == (4, 1) and leaf.requires_grad and (leaf == value).all()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        x = spec.build(torch.float64).sample((4, 6))  # (rows, cols)
    grads = torch.autograd.grad(spec.build_from(leaves).log_prob(x).sum(), list(leaves.values()))
    want = oracles.score(text, x.numpy()).sum(axis=1)  # (rows, P)
    np.testing.assert_allclose(torch.cat(grads, dim=1).numpy(), want, rtol=1e-12, atol=1e-12)


# --- nodes --------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", NORMAL_SPECS)
def test_normal_nodes_integrate_polynomials_exactly(text):
    # An n-node Gauss–Hermite rule is exact for polynomials of degree ≤ 2n − 1; degrees 0..12 here,
    # against the closed-form moments E[X^k] of N(m, s). 1e-11 relative: the rule's weights and nodes
    # carry float64 rounding, amplified by up to ~|x|^12 terms.
    spec = parse_spec(text)
    loc, scale = spec.values
    for n in (32, 64):
        x, w = spec.fam.nodes(spec, n)[:2]
        assert x.shape == (n, 1) and x.dtype == torch.float64 and w.shape == (n,)
        assert w.sum() == pytest.approx(1.0, abs=1e-14) and (w > 0).all()
        for k in range(13):
            want = oracles.normal_moment(k, loc, scale)
            got = float(w @ x[:, 0].numpy() ** k)
            assert got == pytest.approx(want, rel=1e-11, abs=1e-11 * scale**k), (n, k)


@pytest.mark.parametrize("text", CATEGORICAL_SPECS)
def test_categorical_nodes_enumerate_the_support(text):
    spec = parse_spec(text)
    x, w = spec.fam.nodes(spec, 32)[:2]
    k = len(spec.values)
    assert torch.equal(x, torch.arange(k).reshape(-1, 1))
    np.testing.assert_allclose(w, oracles.softmax(spec.values), rtol=1e-14)
    assert w.sum() == pytest.approx(1.0, abs=1e-15)
    x2, w2 = spec.fam.nodes(spec, 256)[:2]  # exact: the node count is ignored
    assert torch.equal(x, x2) and np.array_equal(w, w2)


def test_normal_tail_grid_is_loc_plus_scale_z():
    spec = parse_spec("normal:0.5,2")
    z = np.array([-40.0, 0.0, 1.5, 40.0])
    grid = spec.fam.tail_grid(spec, z)
    assert grid.shape == (4, 1) and grid.dtype == torch.float64
    np.testing.assert_array_equal(grid[:, 0].numpy(), 0.5 + 2 * z)


# --- reparameterisation -------------------------------------------------------------------------

def test_reparameterise_is_loc_plus_scale_eps():
    spec = parse_spec("normal:0.3,1.2")
    eps = torch.tensor([[-2.0, -0.5, 0.0, 1.0, 3.0]], dtype=torch.float64)
    points = 0.3 + 1.2 * eps  # drawn from spec at θ0
    leaves = {"loc": torch.tensor([[0.7]], dtype=torch.float64, requires_grad=True),
              "scale": torch.tensor([[2.0]], dtype=torch.float64, requires_grad=True)}
    x = spec.fam.reparameterise(spec, leaves, points)
    torch.testing.assert_close(x, 0.7 + 2.0 * eps, rtol=1e-15, atol=1e-15)  # the same ε at the new θ
    d_loc, d_scale = torch.autograd.grad(x.sum(), [leaves["loc"], leaves["scale"]])
    assert d_loc.item() == 5.0  # ∂x/∂loc = 1 per point
    assert d_scale.item() == pytest.approx(eps.sum().item(), abs=1e-14)  # ∂x/∂scale = ε
    at_theta0 = spec.fam.reparameterise(spec, spec.leaves((1, 1), torch.float64), points)
    torch.testing.assert_close(at_theta0, points, rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize("text, match", [
    ("markov:4:0:0", "a chain needs V ≥ 2 tokens, so INIT needs at least 2 logits (got 1)"),
    ("markov:4:0,1:0,0/0", "got 2 rows of 2, 1 logits"),
    ("markov:4:0,1,2:0,0/0,0", "TRANS must be 3 rows of 3 logits each, separated by / (got 2 rows of 2, 2 logits)"),
    ("markov:0:0,1:0,0/0,0", "sequence length L from 1 to 64, got 0"),
])
def test_markov_errors_state_the_rule_in_plain_numbers(text, match):
    with pytest.raises(KLGradError) as info:
        parse_spec(text, "policy")
    message = str(info.value)
    assert match in message and "(0,)" not in message and "[" not in message.split("e.g.")[0]


def test_structure_mismatch_prints_the_sequence_length_as_a_number():
    from kl_grad.lab.problem import Problem

    with pytest.raises(KLGradError, match=r"and sequence length 4$"):
        Problem(policy="markov:4:0,1:0,0/0,0", ref="markov:3:0,1:0,0/0,0")
    with pytest.raises(KLGradError, match=r"categorical takes no structure, got 3$"):
        FAMILIES["categorical"].check_structure((3,))
