"""Benchmark: ``kl_loss`` in a training step against the plain torch expression a trainer writes.

Usage, from the repository root (``make bench`` runs it)::

    python -m benchmarks.bench_kl_loss [--repeat 5] [--shapes 16x2048,64x8192] [--dtypes float32,bfloat16]
                                       [--threads N]

For every registered estimator × per-token placement, at each shape and dtype: the forward + backward time of
``kl_loss(logp, ref_logp, old_logp=..., mask=..., estimator=e, placement=p)`` (token-mean), and of the plain
expression — ``(w·k).sum()/mask.sum()`` written with torch ops in the input dtype, k as the estimator's
textbook formula — and the ratio (goal: within 1.3×). The two are timed alternately, so that a neighbour's load
falls on both; each figure is the median of ``--repeat`` runs. Memory: the bytes each keeps for its backward
(``saved_tensors_hooks``), the part of a training step's peak that a loss adds; and the process's peak RSS.
Placement "reward" here is the per-token w·sg(k), which kl_loss calls "reward-local".
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch

from kl_grad import kl_loss
from kl_grad.estimators import ESTIMATORS

PLAIN = {  # the textbook per-token formula a trainer writes, d = logp − ref
    "k1": lambda d: d, "k2": lambda d: 0.5 * d * d, "k3": lambda d: torch.exp(-d) - 1 + d,
    "reverse_k1": lambda d: torch.exp(-d) * -d, "reverse_k2": lambda d: torch.exp(-d),
    "reverse_k1_cv": lambda d: torch.exp(-d) * -d - (torch.exp(-d) - 1),
}
PLACEMENTS = ("loss", "loss-sgw", "loss-w", "reward")
KL_LOSS_NAME = {"reward": "reward-local"}  # kl_loss's "reward" is REINFORCE with reward-to-go along the tokens


def _plain(name: str, placement: str, logp, ref, old, mask):
    d = logp - ref
    k = PLAIN[name](d)
    w = torch.exp(logp - old)
    surrogate = {"loss": k, "loss-sgw": w.detach() * k, "loss-w": w * k, "reward": w * k.detach()}[placement]
    return (surrogate * mask).sum() / mask.sum()


def _time(fns, repeat: int) -> list[float]:
    """Median forward + backward time of each of ``fns``, run alternately."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for fn, ts in zip(fns, times):
            start = time.perf_counter()
            fn().backward()
            ts.append(time.perf_counter() - start)
    return [statistics.median(ts) for ts in times]


def _saved_bytes(fn, inputs) -> int:
    """Bytes of the tensors autograd keeps from fn's forward for its backward (each storage once), leaving out
    the inputs' own storages, which exist anyway."""
    seen: dict[int, int] = {}
    given = {t.untyped_storage().data_ptr() for t in inputs}

    def pack(t):
        if t.untyped_storage().data_ptr() not in given:
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = fn()
    loss.backward()
    return sum(seen.values())


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--shapes", default="16x2048,64x8192")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch intra-op threads (default: torch's); 1 on a shared, loaded machine")
    args = ap.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"kl_loss against the plain expression, forward + backward, median of {args.repeat}, "
          f"{torch.get_num_threads()} threads (ratio > 1: kl_loss slower)")
    ratios, memory = [], []
    for shape in args.shapes.split(","):
        b, t = (int(x) for x in shape.split("x"))
        for dtype in args.dtypes.split(","):
            dt = getattr(torch, dtype)
            base = torch.randn(b, t, dtype=torch.float32) - 3.0
            ref, old = (base + 0.3 * torch.randn(b, t)).to(dt), (base + 0.1 * torch.randn(b, t)).to(dt)
            mask = (torch.rand(b, t) < 0.9).to(dt)
            print(f"({b}, {t}) {dtype}:")
            for name in [n for n in ESTIMATORS if n in PLAIN]:
                cells = []
                for placement in PLACEMENTS:
                    logp = base.to(dt).requires_grad_()

                    def ours():
                        return kl_loss(logp, ref, old_logp=old, mask=mask, estimator=name,
                                       placement=KL_LOSS_NAME.get(placement, placement))

                    def theirs():
                        return _plain(name, placement, logp, ref, old, mask)

                    ours(), theirs()  # warm up
                    t_ours, t_plain = _time((ours, theirs), args.repeat)
                    ratios.append(t_ours / t_plain)
                    inputs = (logp, ref, old, mask)
                    memory.append(_saved_bytes(ours, inputs) / _saved_bytes(theirs, inputs))
                    cells.append(f"{placement} {t_ours * 1e3:5.2f}/{t_plain * 1e3:5.2f} ms {t_ours / t_plain:4.2f}×"
                                 f" (mem {memory[-1]:.2f}×)")
                print(f"  {name:<14} " + "  ".join(cells))
    print(f"ratio over all cases: median {statistics.median(ratios):.2f}×, range {min(ratios):.2f}–{max(ratios):.2f}×;"
          f" memory kept for backward: median {statistics.median(memory):.2f}×, range {min(memory):.2f}–"
          f"{max(memory):.2f}×; peak RSS {_rss_mib():.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
