"""Benchmark: wall time of the README's training-dynamics examples (``kl-grad train`` defaults).

Usage, from the repository root (``make bench`` runs it after bench_runner)::

    python -m benchmarks.bench_train [--repeat 3]

Times ``run_training`` on the 4-token example (9 cases, exact steps), on the Gaussian linear-reward example
(9 cases, exact quadrature steps) and on the 3-token Markov chain of L = 4 with R = Σ_t r[y_t] (9 cases on the
81 enumerated sequences, the sequence placements of the same names, plus the family-optimum search),
``--repeat`` times each, and prints the median, the range, the steps taken and the time per exact step (a
shared machine varies: read the range).
"""

from __future__ import annotations

import argparse
import statistics
import time

from kl_grad.lab.train.dynamics import run_training

EXAMPLES = {
    "tokens": dict(policy="categorical:0,0,0,0", ref="categorical:0.5,-0.5,0.2,0", reward="1,0,0.5,-0.5", beta=1.0),
    "gaussian_linear": dict(policy="normal:-0.5,0.8", ref="normal:0.5,1.2", reward="linear:1", beta=3.0),
    "markov": dict(policy="markov:4:0,0,0:0,0,0/0,0,0/0,0,0", ref="markov:4:0,0.5,-1:0,1,0/0.2,0,0/1,0,-1",
                   reward="sum:1,0,0.5", beta=1.0),
}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    for name, example in EXAMPLES.items():
        times, steps = [], 0
        for _ in range(args.repeat):
            start = time.perf_counter()
            run = run_training(**example, estimators="k1,k2,k3", placements="loss,loss-w,reward")
            times.append(time.perf_counter() - start)
            steps = int(run.table["steps"].sum())
        med = statistics.median(times)
        print(f"{name}: median {med:.2f} s (range {min(times):.2f}–{max(times):.2f} s over {args.repeat} runs), "
              f"{steps} steps over 9 cases, {1e3 * med / max(steps, 1):.1f} ms per step")


if __name__ == "__main__":
    main()
