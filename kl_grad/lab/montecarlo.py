"""Monte-Carlo expectations: trials of samples, seeded and chunked.

Each trial's samples come from their own ``Distribution.sample((n,))`` call, in
trial order, from a generator seeded once with ``seed``. This consumes the
random stream exactly as a per-trial reference loop does (for any n: one big
draw would differ whenever n % 16 != 0, because torch's CPU normal sampler
fills blocks of 16), and it is faster than one big draw (cache-sized
buffers; README, Performance). Trials are grouped into chunks of about
``CHUNK_ELEMENTS`` points so peak memory does not grow with the trial count.
The caller's global RNG state is left as it was.
"""

from __future__ import annotations

from typing import Iterator

import torch

from ..errors import KLGradError
from .expectation import Points
from .families import DistSpec

SEED_RANGE = (-(1 << 63), (1 << 64) - 1)  # what torch.manual_seed accepts
CHUNK_ELEMENTS = 1 << 19  # points per chunk, 2 MiB per float32 tensor (the chunk size is benchmarked in the README)


def check_seed(seed: int) -> None:
    """The seed must be an integer torch.manual_seed accepts."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
        raise KLGradError(f"seed must be an integer from {SEED_RANGE[0]} to {SEED_RANGE[1]} (64 bits), got {seed}")


def trials_per_chunk(samples: int, chunk_elements: int = CHUNK_ELEMENTS) -> int:
    return max(1, chunk_elements // samples)


def mc_points(sampler: DistSpec, trials: int, samples: int, seed: int, dtype: torch.dtype = torch.float32,
              chunk_elements: int = CHUNK_ELEMENTS) -> Iterator[Points]:
    """Yield equal-weight ``Points`` of (rows, samples) detached draws, rows summing to ``trials``."""
    dist = sampler.build(dtype)
    per_chunk = trials_per_chunk(samples, chunk_elements)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for start in range(0, trials, per_chunk):
            rows = min(per_chunk, trials - start)
            yield Points(torch.stack([dist.sample((samples,)) for _ in range(rows)]))  # (rows, samples)


def mc_samples(sampler: DistSpec, samples: int, seed: int, dtype: torch.dtype = torch.float64) -> Points:
    """One trial of ``samples`` draws as ``samples`` equal-weight single-point rows, (samples, 1).

    The same random stream as trial 0 of ``mc_points``; the value tables use it, one row per sample.
    """
    (first,) = mc_points(sampler, 1, samples, seed, dtype, chunk_elements=samples)
    return Points(first.x.reshape(-1, 1))
