"""How many torch intra-op threads a lab run uses: chosen by the size of the work, never more than the idle
cores, the caller's setting restored afterwards.

Measured on this project's 2-core machine (``make bench``, ``benchmarks/bench_cli.py``; the figures are in
docs/performance.md): the lab's exact enumerations, training steps, audits and c(d) grids work on tensors of a
few thousand numbers, where a second thread gains nothing idle and costs time when another process keeps a
core busy (torch's default of one thread per core); a Monte-Carlo chunk (2¹⁹ points) can gain from a second
*idle* core. So:

- work below ``LARGE`` points: one thread;
- larger work: one thread per idle core (``idle_cores``: the CPUs less the other runnable tasks, read from
  ``/proc/loadavg`` at the start of the run), at most torch's own default;
- ``use_threads(n)`` (``kl-grad ... --threads N``) overrides the policy for everything inside it.
"""

from __future__ import annotations

import contextlib
import contextvars
import os

import torch

LARGE = 1 << 18  # points per chunk from which a second idle core pays (an MC chunk holds ~2¹⁹)
_REQUESTED: contextvars.ContextVar[int | None] = contextvars.ContextVar("kl_grad_threads", default=None)
_DEFAULT = torch.get_num_threads()  # torch's own choice at import: one per core


def idle_cores() -> float:
    """CPUs not busy with other runnable tasks right now (Linux: /proc/loadavg's running count, less this
    process); elsewhere the CPUs less the 1-minute load average."""
    cpus = os.cpu_count() or 1
    try:
        with open("/proc/loadavg") as fh:
            running = int(fh.read().split()[3].split("/")[0])
        return cpus - max(running - 1, 0)
    except (OSError, ValueError, IndexError):
        return cpus - os.getloadavg()[0] if hasattr(os, "getloadavg") else 1.0


def threads_for(points: int) -> int:
    """The thread count for work of ``points`` numbers per chunk (see the module docstring)."""
    requested = _REQUESTED.get()
    if requested is not None:
        return requested
    if points < LARGE:
        return 1
    return max(1, min(_DEFAULT, int(idle_cores())))


@contextlib.contextmanager
def work_threads(points: int):
    """Run the block on ``threads_for(points)`` torch threads, then restore the caller's count."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads_for(points))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def use_threads(n: int | None):
    """Every lab run inside the block uses ``n`` threads (None: the policy)."""
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        from ..errors import KLGradError

        raise KLGradError(f"threads must be a positive integer, got {n!r}")
    token = _REQUESTED.set(n)
    try:
        yield
    finally:
        _REQUESTED.reset(token)


def by_work(points_of):
    """Decorate a runner so that it runs on ``threads_for(points_of(*args, **kwargs))`` threads (the caller's
    count restored): ``points_of`` says how many numbers one chunk of its work holds."""
    def decorate(run):
        def wrapped(*args, **kwargs):
            with work_threads(points_of(*args, **kwargs)):
                return run(*args, **kwargs)
        wrapped.__name__, wrapped.__qualname__, wrapped.__doc__ = run.__name__, run.__qualname__, run.__doc__
        wrapped.__wrapped__ = run
        return wrapped
    return decorate


SMALL = by_work(lambda *args, **kwargs: 0)  # runners whose tensors are always small: one thread
