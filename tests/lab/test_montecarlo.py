"""kl_grad.lab.montecarlo: seeded, chunked trials that repeat the seed-003 loop's draws exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kl_grad.lab.families import parse_spec
from kl_grad.lab.montecarlo import (
    CHUNK_ELEMENTS,
    mc_points,
    mc_samples,
    trials_per_chunk,
)
from tests import oracles
from tests.problems import SEED003, TOKENS

POLICY = parse_spec(SEED003.policy)


@pytest.mark.parametrize("samples", [64, 48, 50])  # 50 % 16 != 0: torch's normal sampler fills blocks of 16
def test_draws_are_bitwise_those_of_the_seed_style_loop(samples):
    trials, seed = 7, 3
    _, drawn = oracles.seed_style_loop(SEED003.policy, SEED003.ref, ["k1"], samples, trials, seed, return_samples=True)
    batches = list(mc_points(POLICY, trials, samples, seed, torch.float32))
    points = torch.cat([b.x for b in batches])
    assert points.shape == (trials, samples) and points.dtype == torch.float32
    assert torch.equal(points, torch.stack(drawn))  # bitwise the same draws
    assert all(b.weights is None for b in batches)  # equal weights


def test_chunks_keep_trial_order():
    # Force several chunks (2 trials each, last one partial): the concatenation is the one-chunk stream.
    samples, trials, seed = 50, 7, 11
    chunks = list(mc_points(POLICY, trials, samples, seed, chunk_elements=100))
    assert [b.rows for b in chunks] == [2, 2, 2, 1]
    (whole,) = mc_points(POLICY, trials, samples, seed, chunk_elements=trials * samples)
    assert torch.equal(torch.cat([b.x for b in chunks]), whole.x)


@pytest.mark.parametrize("samples, chunk, per_chunk", [(50, 100, 2), (50_000, CHUNK_ELEMENTS, 10),
                                                       (CHUNK_ELEMENTS * 2, CHUNK_ELEMENTS, 1)])
def test_trials_per_chunk(samples, chunk, per_chunk):
    assert trials_per_chunk(samples, chunk) == per_chunk


def test_global_rng_is_left_untouched():
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    list(mc_points(POLICY, 5, 50, 3))
    mc_samples(POLICY, 50, 3)
    assert torch.equal(torch.get_rng_state(), before)


def test_a_seed_fixes_the_draws():
    a, b, c = (torch.cat([p.x for p in mc_points(POLICY, 6, 40, seed)]) for seed in (9, 9, 10))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_dtype_is_honoured():
    for dtype in (torch.float32, torch.float64):
        (p,) = mc_points(POLICY, 2, 10, 0, dtype)
        assert p.x.dtype == dtype


def test_mc_samples_is_the_first_trial_one_point_per_row():
    (first,) = mc_points(POLICY, 1, 300, 5, torch.float64)
    single = mc_samples(POLICY, 300, 5)
    assert single.x.shape == (300, 1) and single.x.dtype == torch.float64 and single.weights is None
    assert torch.equal(single.x[:, 0], first.x[0])


def test_categorical_draws_are_tokens_with_the_policys_frequencies():
    spec = parse_spec(TOKENS.policy)
    n = 20_000
    (p,) = mc_points(spec, 1, n, seed=8)
    x = p.x[0].numpy()
    assert np.issubdtype(x.dtype, np.integer) and set(np.unique(x)) <= set(range(4))
    probs = oracles.softmax(spec.values)
    counts = np.bincount(x, minlength=4)
    z = (counts - n * probs) / np.sqrt(n * probs * (1 - probs))
    # 4 counts at 4 binomial SEs: false alarm < 3e-4 per seed, and the seed is fixed.
    assert np.all(np.abs(z) < 4), z
    assert math.isclose(counts.sum(), n)
