"""Benchmark: ``full_kl_loss`` (the full-vocabulary KL, rb) against ``kl_loss`` and a plain full-KL expression.

Usage, from the repository root (``make bench`` runs it)::

    python -m benchmarks.bench_full_kl [--shape 8x512x32000] [--repeat 3]

Each variant runs forward + backward from (batch, tokens, vocab) float32 logits, in its own process so that
its peak memory is its own: the growth of the process's maximum RSS (Linux ``ru_maxrss``) over the step,
beyond the inputs. Variants:

    kl_loss     log_softmax + gather of the sampled tokens, then kl_loss(k3, loss-w): what trainers do now
    plain       log_softmax of both logits, Σ_v p·(log p − log r) per position, autograd (2-3 (N, V) temporaries)
    full_kl     kl_grad.full_kl_loss(placement="rb"): row chunks in float32, recomputed in backward

On a GPU the same code runs per chunk on device; its cost is two log-softmax passes over the logits (one in
forward, one in backward) instead of one, so expect about twice the time of the log-softmax a trainer already
pays, and no (N, V) temporary beyond the logits' gradient.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import time

import torch

VARIANTS = ("kl_loss", "plain", "full_kl")


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _step(variant: str, logits, ref, tokens, mask):
    from kl_grad import full_kl_loss, kl_loss

    if variant == "full_kl":
        return full_kl_loss(logits, ref, tokens, mask=mask, placement="rb")
    lp = torch.log_softmax(logits, -1)
    if variant == "kl_loss":
        logp = lp.gather(-1, tokens[..., None])[..., 0]
        ref_logp = torch.log_softmax(ref, -1).gather(-1, tokens[..., None])[..., 0]
        return kl_loss(logp, ref_logp, mask=mask, estimator="k3", placement="loss-w")
    lr = torch.log_softmax(ref, -1)
    kl = (lp.exp() * (lp - lr)).sum(-1)
    return (kl * mask).sum() / mask.sum()


def _run(variant: str, shape: tuple[int, int, int], repeat: int, out) -> None:
    torch.manual_seed(0)
    b, t, v = shape
    logits = torch.randn(b, t, v, requires_grad=True)
    ref = torch.randn(b, t, v)
    tokens = torch.randint(0, v, (b, t))
    mask = torch.ones(b, t)
    before = _rss_mib()
    times = []
    for _ in range(repeat):
        logits.grad = None
        start = time.perf_counter()
        _step(variant, logits, ref, tokens, mask).backward()
        times.append(time.perf_counter() - start)
    out.put((variant, min(times), _rss_mib() - before))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="8x512x32000", help="BATCHxTOKENSxVOCAB")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    shape = tuple(int(x) for x in args.shape.split("x"))
    ctx = mp.get_context("spawn")
    results = {}
    for variant in VARIANTS:
        queue = ctx.Queue()
        proc = ctx.Process(target=_run, args=(variant, shape, args.repeat, queue))
        proc.start()
        name, seconds, mib = queue.get()
        proc.join()
        results[name] = (seconds, mib)
    logits_mib = shape[0] * shape[1] * shape[2] * 4 / 2**20
    print(f"full_kl_loss benchmark, logits {args.shape} float32 ({logits_mib:.0f} MiB each), best of {args.repeat}, "
          f"{torch.get_num_threads()} threads")
    print("| variant | forward+backward (s) | × kl_loss | peak memory growth (MiB) | × logits |")
    print("|---|---|---|---|---|")
    base = results["kl_loss"][0]
    for name, (seconds, mib) in results.items():
        print(f"| {name} | {seconds:.3f} | {seconds / base:.2f} | {mib:.0f} | {mib / logits_mib:.2f} |")


if __name__ == "__main__":
    main()
