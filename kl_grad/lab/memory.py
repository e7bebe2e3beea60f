"""Memory: refuse a run that would not fit before anything is allocated, and keep freed memory for reuse.

**What fits.** Peak memory is estimated from measured costs per point (``make bench`` style
measurements with ``ru_maxrss``, five estimators × two placements, rounded up):

    Monte Carlo, continuous family   ~130 B per float32 point, ~260 B per float64 point, per chunk
    Monte Carlo, categorical         ~14 B per point per logit (log-probs broadcast over the logits)
    exact, categorical               per (category, logit) pair, K nodes × K parameters: ~64 B plus
                                     16 B per case (measured 116 B with 6 cases at K = 2000, 16 s)

A chunk holds max(samples, ``CHUNK_ELEMENTS``) points. The budget is half of the
physical memory, so the rest of the machine keeps working.

**Freed memory** (``keep_freed_memory``). A Monte-Carlo run allocates and frees MiB-sized tensors tens of
thousands of times. Under glibc's default, dynamic thresholds the top of the heap is trimmed between
chunks, so the kernel has to fault in (and zero) fresh pages for the next chunk's
tensors. ``keep_freed_memory`` fixes the thresholds with ``mallopt`` so that freed
memory is reused, at the same peak memory (``make bench`` measures the saving; the README's
Performance section has the figures). The setting is process-wide, so
importing kl_grad never applies it: the ``kl-grad`` command does, and a script
or notebook may call it. The process keeps its peak memory until it exits.
"""

from __future__ import annotations

import ctypes
import math
import os
import platform
import resource

import torch

from ..errors import KLGradError
from .montecarlo import CHUNK_ELEMENTS
from .problem import Problem

# mallopt parameters from glibc's <malloc.h>
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
SETTINGS = {
    _M_MMAP_THRESHOLD: 32 << 20,  # glibc's maximum: tensors below 32 MiB come from the reusable heap
    _M_TRIM_THRESHOLD: 1 << 30,  # never trim less than 1 GiB of free heap top
    _M_TOP_PAD: 64 << 20,  # grow the heap 64 MiB at a time
}


def keep_freed_memory() -> bool:
    """Apply every one of ``SETTINGS`` with glibc's ``mallopt``; True if all were accepted.

    On other C libraries nothing is changed and the result is False. Calling it again is harmless.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the running process's C library
    except (OSError, AttributeError):
        return False
    accepted = [mallopt(param, value) == 1 for param, value in SETTINGS.items()]  # all applied, then checked
    return all(accepted)


MC_BYTES = 32  # per point per byte of dtype (float32: 128 B, float64: 256 B)
MC_BYTES_PER_LOGIT = 14
EXACT_BYTES_PER_PAIR = 64  # plus EXACT_BYTES_PER_CASE for each estimator × placement
EXACT_BYTES_PER_CASE = 16
SEQUENCE_BYTES_PER_TOKEN = 32  # exact, sequence families: int64 tokens (N, L) and the temporaries forming them


def memory_budget() -> int:
    """Half of this machine's physical memory or of the process's address-space limit (``ulimit -v``),
    whichever is smaller, in bytes (8 GiB where neither can be read)."""
    try:
        budget = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        budget = 8 << 30
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    return budget if limit in (resource.RLIM_INFINITY, -1) else min(budget, limit // 2)


def _gib(n: float) -> str:
    return f"{n / (1 << 30):.3g} GiB"


def check_mc_memory(problem: Problem, samples: int) -> None:
    """Refuse ``samples`` per trial when one chunk of draws would not fit; say how many do."""
    per_point = MC_BYTES * torch.finfo(problem.dtype).bits // 8
    if problem.policy.fam.enumerable:
        per_point = max(per_point, MC_BYTES_PER_LOGIT * len(problem.param_names))
    per_point *= problem.policy.fam.point_size(problem.policy)  # sequences: per token
    budget = memory_budget()
    need = max(samples, CHUNK_ELEMENTS) * per_point
    if need > budget:
        fits = budget // per_point
        raise KLGradError(f"samples {samples} per trial needs about {_gib(need)} ({per_point} bytes a point in "
                          f"{str(problem.dtype).removeprefix('torch.')}); at most {fits} fit in this machine's "
                          f"budget of {_gib(budget)}")


def check_trials_memory(trials: int, cases: int, params: int) -> None:
    """Refuse ``trials`` whose per-trial gradients ((trials, params) float64 per case, kept for the statistics)
    would not fit; say how many do."""
    per_trial = 8 * cases * params
    budget = memory_budget()
    if trials * per_trial > budget:
        raise KLGradError(f"trials {trials} keeps {_gib(trials * per_trial)} of per-trial gradients ({cases} "
                          f"estimator × placement cases × {params} parameters × 8 bytes); at most "
                          f"{budget // per_trial} trials fit in this machine's budget of {_gib(budget)}")


def exact_too_big(problem: Problem, cases: int = 1) -> str:
    """Why enumerating the support would not fit (nodes × parameters), naming the largest that does; "" if it fits."""
    if not problem.sampling.fam.enumerable:
        return ""  # quadrature: at most 256 nodes (plus a 1601-point tail grid)
    k = problem.sampling.fam.support_size(problem.sampling)  # categories, or V^L sequences
    budget, per_pair = memory_budget(), EXACT_BYTES_PER_PAIR + EXACT_BYTES_PER_CASE * cases
    need = k * len(problem.param_names) * per_pair
    tokens = problem.sampling.fam.point_size(problem.sampling)
    if problem.sampling.fam.sequential:  # the enumerated sequences: int64 tokens and their digit arithmetic
        need += k * tokens * SEQUENCE_BYTES_PER_TOKEN
    if need <= budget:
        return ""
    if problem.sampling.fam.sequential:
        per_seq = per_pair * len(problem.param_names) + tokens * SEQUENCE_BYTES_PER_TOKEN
        return (f"exact mode enumerates {k} sequences × {len(problem.param_names)} parameters, about {_gib(need)}; "
                f"at most {budget // per_seq} sequences fit in this machine's budget "
                f"of {_gib(budget)}")
    most = math.isqrt(budget // per_pair)
    return (f"exact mode enumerates {k} categories × {len(problem.param_names)} parameters, about {_gib(need)}; "
            f"at most {most} logits fit in this machine's budget of {_gib(budget)}")
