"""Benchmark: does ``kl-grad reproduce --check`` catch a 0.1% change in any estimator, and not rounding noise?

Usage, from the repository root::

    python -m benchmarks.mutation_check [--experiments experiments] [--results results]
                                        [--skip-noise | --skip-mutations]

(a) Mutations. For every registered estimator, three edits of its formula by 0.1%, each installed in
``kl_grad.ESTIMATORS`` (every run looks estimators up there) and checked in-process with
``check(..., fail_fast=True)`` against the committed results:

- ``k×1.001``: value and gradient scaled (k → 1.001·k, and the closed forms k' and k + k' with it);
- ``k'×1.001``: the gradient alone (value kept; dk/dd scaled by an identity-valued autograd node);
- ``value×1.001``: the value alone (gradient kept: k + 0.001·sg(k)), seen only through placements that use
  the value itself (reward) or value tables.

A mutation is caught when the check fails; the first difference line of one mutation is printed, then
"N/N mutations caught".

(b) Rounding noise. The Monte-Carlo experiments are rerun with another thread count (1 vs 2), another
chunking of the trials (2^19 vs 2^16 points per chunk: other tensor shapes) and each trial's samples in
reverse order (the same draws, float32 sums in another order; gradient tables), and each is compared with
the committed results; printed: the largest |difference| / tolerance over
all numbers (a check passes when it is ≤ 1) and the number of cells that differ in their printed digits.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
import time
from pathlib import Path

import torch

import kl_grad.lab.gradient_table as gradient_table
from kl_grad.estimators import ESTIMATORS, Estimator
from kl_grad.lab.experiments import KINDS
from kl_grad.lab.report import render
from kl_grad.lab.results.check import check
from kl_grad.lab.results.compare import read_table, tolerance
from kl_grad.lab.results.reproduce import load_experiments

FACTOR = 1.001


class _ScaleGrad(torch.autograd.Function):
    """Identity value, gradient × FACTOR: k(_ScaleGrad(d)) has the value of k and the derivative FACTOR·k'."""

    @staticmethod
    def forward(ctx, d):
        return d.view_as(d)

    @staticmethod
    def backward(ctx, grad):
        return grad * FACTOR


def _scaled(f, by=FACTOR):
    return None if f is None else (lambda d: by * f(d))


def mutate(est: Estimator, how: str) -> Estimator:
    """The estimator with its formula changed by 0.1% (``how``: "k", "k'" or "value")."""
    k, dk, c = est.of_log_ratio, est.derivative, est.score_coefficient
    if how == "k":
        return dataclasses.replace(est, of_log_ratio=_scaled(k), derivative=_scaled(dk), score_coefficient=_scaled(c))
    if how == "k'":
        return dataclasses.replace(est, of_log_ratio=lambda d: k(_ScaleGrad.apply(d)), derivative=_scaled(dk),
                                   score_coefficient=None if c is None else (lambda d: c(d) + (FACTOR - 1) * dk(d)))
    if how == "value":
        return dataclasses.replace(est, of_log_ratio=lambda d: k(d) + (FACTOR - 1) * k(d).detach(),
                                   score_coefficient=None if c is None else (lambda d: c(d) + (FACTOR - 1) * k(d)))
    raise ValueError(how)


MUTATIONS = {"k": "k×1.001", "k'": "k'×1.001", "value": "value×1.001"}


def run_mutations(exp_dir: Path, out_dir: Path) -> tuple[int, int]:
    caught, total, shown = 0, 0, False
    for name in list(ESTIMATORS):
        original = ESTIMATORS[name]
        for how, label in MUTATIONS.items():
            ESTIMATORS[name] = mutate(original, how)
            start = time.perf_counter()
            try:
                report = check(exp_dir, out_dir, fail_fast=True, progress=False)
            finally:
                ESTIMATORS[name] = original
            total += 1
            caught += report.failed
            first = report.lines()[0] if report.failed else "NOT CAUGHT"
            print(f"  {name:>14} {label:<12} {'caught' if report.failed else 'MISSED'} "
                  f"({time.perf_counter() - start:.1f} s)", file=sys.stderr)
            if report.failed and not shown:
                print(f"first message, {name} {label}:\n  {first}")
                shown = True
            elif not report.failed:
                print(f"{name} {label}: {first}")
    print(f"{caught}/{total} mutations caught")
    return caught, total


def _noise(exp_dir: Path, out_dir: Path, label: str) -> None:
    """Largest |recomputed − committed| / tolerance over every number of the MC experiments, as they run now."""
    worst, where, moved, numbers = 0.0, "", 0, 0
    for path, exp in load_experiments(exp_dir):
        if getattr(exp, "mode", "exact") != "mc":
            continue
        old = read_table(out_dir / path.stem / "table.csv")
        new = read_table(render(KINDS[exp.kind].run(exp)[0], "csv", exp.kind))
        for i, (o, n) in enumerate(zip(old.to_dict(orient="records"), new.to_dict(orient="records"))):
            for col, b in n.items():
                a = o[col]
                if not isinstance(b, float) or not isinstance(a, float) or a != a or abs(a) == float("inf"):
                    continue
                numbers += 1
                moved += a != b
                tol = tolerance(col, o, n)
                ratio = abs(a - b) / tol if tol > 0 else (0.0 if a == b else float("inf"))
                if ratio > worst:
                    worst, where = ratio, f"{path.stem} line {i + 2} {col}: {a!r} vs {b!r}, tolerance {tol:.3g}"
    print(f"noise, {label}: {moved} of {numbers} MC numbers differ in their printed digits; largest "
          f"|difference|/tolerance {worst:.2e}" + (f" ({where})" if where else ""))


def run_noise(exp_dir: Path, out_dir: Path) -> None:
    threads = torch.get_num_threads()
    original = gradient_table.mc_points

    def reversed_samples(*args, **kwargs):  # each trial's samples in reverse order: same draws, other float32 sums
        for points in original(*args, **kwargs):
            yield dataclasses.replace(points, x=points.x.flip(1).contiguous())  # (rows, samples)

    try:
        torch.set_num_threads(1)
        _noise(exp_dir, out_dir, "1 thread, chunks of 2^19 points")
        gradient_table.mc_points = reversed_samples
        _noise(exp_dir, out_dir, "1 thread, each trial's samples summed in reverse order")
        gradient_table.mc_points = original
        torch.set_num_threads(2)
        _noise(exp_dir, out_dir, "2 threads, chunks of 2^19 points")
        gradient_table.mc_points = functools.partial(original, chunk_elements=1 << 16)
        _noise(exp_dir, out_dir, "2 threads, chunks of 2^16 points (slow: 10× the chunks)")
    finally:
        gradient_table.mc_points = original
        torch.set_num_threads(threads)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--experiments", type=Path, default=Path("experiments"))
    p.add_argument("--results", type=Path, default=Path("results"))
    p.add_argument("--skip-noise", action="store_true", help="only the mutations")
    p.add_argument("--skip-mutations", action="store_true", help="only the rounding noise")
    args = p.parse_args(argv)
    start = time.perf_counter()
    caught, total = (0, 0) if args.skip_mutations else run_mutations(args.experiments, args.results)
    if not args.skip_noise:
        run_noise(args.experiments, args.results)
    print(f"({time.perf_counter() - start:.0f} s)")
    return 0 if caught == total else 1


if __name__ == "__main__":
    sys.exit(main())
