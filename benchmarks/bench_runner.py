"""Benchmark: the vectorised runner vs the seed-003 per-trial loop, and peak memory vs trials.

Usage, from the repository root (``make bench``)::

    python -m benchmarks.bench_runner [--trials 1000 --samples 50000 --seed 42 --repeat 3]
                                      [--mem-trials 1000,10000] [--mem-samples 50000]

(a) times ``run_gradients`` and (b) ``tests.oracles.seed_style_loop`` on the
seed-003 workload (normal:0,1 vs normal:1,1.1; k1, k2, k3, reverse_k1,
reverse_k2) in this process, ``--repeat`` times each, interleaved so both see
the same machine load, and prints every run's ratio, their median and range
(one run says little on a shared machine: single runs of (a) have varied by
1.9x). It does so twice: first under glibc's default allocator settings (what
a library import gets), then after ``keep_freed_memory()`` (what the
``kl-grad`` command runs under). The second timing runs in a process whose
heap has already grown, so the cleaner comparison of the two settings is the
memory table: for each trial count in ``--mem-trials`` it runs
``run_gradients`` in a fresh subprocess per setting and reports peak resident
set (and its growth, default setting) and run time.
It also checks that the two methods' mean gradients agree.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np
import torch

from kl_grad.lab import run_gradients
from kl_grad.lab.families import parse_spec
from kl_grad.lab.memory import keep_freed_memory
from tests.oracles import SEED003_ESTIMATORS, seed_style_loop
from tests.problems import SEED003

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POLICY, REF = SEED003.policy, SEED003.ref
NAMES = list(SEED003_ESTIMATORS)
AGREE_ATOL = 1e-5  # mean gradients of the two methods (float32, same samples)

# Run in a fresh interpreter: peak resident-set growth of one run_gradients call.
# On Linux a child's ru_maxrss starts at its parent's high-water mark (the mm it
# replaced at exec is folded into it), so it cannot see a peak below the
# parent's; VmHWM in /proc/self/status belongs to the new image alone and is
# what the table reports when it exists. ru_maxrss is printed alongside.
_MEM_CHILD = r"""
import json, resource, sys, time
import torch
from kl_grad.lab.memory import keep_freed_memory
from kl_grad.lab import run_gradients
from kl_grad.lab.families import parse_spec
if {keep}:
    keep_freed_memory()

def hwm_kb():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None

def maxrss_kb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux

policy, ref = parse_spec({policy!r}), parse_spec({ref!r})
run_gradients(policy, ref, {names!r}, samples=100, trials=2, seed=0)  # warm-up: lazy imports, allocator
base = {{"hwm": hwm_kb(), "maxrss": maxrss_kb()}}
t0 = time.perf_counter()
run_gradients(policy, ref, {names!r}, samples={samples}, trials={trials}, seed={seed})
secs = time.perf_counter() - t0
print(json.dumps({{"base": base, "peak": {{"hwm": hwm_kb(), "maxrss": maxrss_kb()}}, "seconds": secs}}))
"""

def _time(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _peak_memory(trials: int, samples: int, seed: int, keep: bool) -> dict:
    code = _MEM_CHILD.format(policy=POLICY, ref=REF, names=NAMES, samples=samples, trials=trials, seed=seed,
                             keep=keep)
    # From the repository root, where ``python -c`` finds the package as ``make bench`` does.
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    m = json.loads(proc.stdout.strip().splitlines()[-1])
    key = "hwm" if m["base"]["hwm"] is not None else "maxrss"
    return {"source": "VmHWM" if key == "hwm" else "ru_maxrss",
            "base_mib": m["base"][key] / 1024, "peak_mib": m["peak"][key] / 1024,
            "maxrss_base_mib": m["base"]["maxrss"] / 1024, "maxrss_peak_mib": m["peak"]["maxrss"] / 1024,
            "seconds": m["seconds"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=50_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--repeat", type=int, default=3, help="timed runs of each method per allocator setting")
    ap.add_argument("--mem-trials", default="1000,10000", help="comma-separated trial counts ('' to skip)")
    ap.add_argument("--mem-samples", type=int, default=50_000)
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")

    policy, ref = parse_spec(POLICY), parse_spec(REF)
    print(f"kl_grad runner benchmark: {POLICY} vs {REF}; estimators {','.join(NAMES)}; "
          f"{args.trials} trials x {args.samples} samples; seed {args.seed}")
    print(f"python {platform.python_version()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs, {platform.machine()}, "
          f"load average {os.getloadavg()[0]:.2f} (timings need an otherwise idle machine)")

    # Warm both paths once (lazy imports, allocator) so neither pays first-call costs.
    run_gradients(policy, ref, NAMES, samples=100, trials=2, seed=0)
    seed_style_loop(POLICY, REF, NAMES, 100, 2, 0)

    def time_both():
        """Time (a) and (b) ``--repeat`` times, interleaved, so both see the same machine load."""
        runs, loops = [], []
        for i in range(args.repeat):
            run, t_vec = _time(lambda: run_gradients(policy, ref, NAMES, samples=args.samples, trials=args.trials,
                                                     seed=args.seed))
            loop, t_loop = _time(lambda: seed_style_loop(POLICY, REF, NAMES, args.samples, args.trials, args.seed))
            runs.append(t_vec)
            loops.append(t_loop)
            print(f"  run {i + 1}: (a) run_gradients {t_vec:6.2f} s   (b) seed-style loop {t_loop:6.2f} s   "
                  f"ratio (b)/(a) {t_loop / t_vec:5.2f} x", flush=True)
        ratios = [b / a for a, b in zip(runs, loops)]
        print(f"  speed ratio (b)/(a): median {np.median(ratios):.2f} x, range {min(ratios):.2f}-{max(ratios):.2f} x; "
              f"fastest (b) / fastest (a) {min(loops) / min(runs):.2f} x")
        return run, loop

    print()
    print("glibc's default allocator settings (what `import kl_grad` gets):")
    run, loop = time_both()
    print()
    if keep_freed_memory():
        print("after keep_freed_memory() (what the kl-grad command runs under; both methods):")
        run, loop = time_both()
    else:
        print("keep_freed_memory() does not apply here (not glibc): the timings above are the only ones")
    print()
    print(f"mean gradient agreement (|mean_a - mean_b| <= {AGREE_ATOL:g}):")
    print(f"  {'estimator':<11} {'mean d/dloc':>13} {'mean d/dscale':>14} {'max |diff|':>11}  ok")
    all_ok = True
    for name in NAMES:
        a, b = run.per_trial[(name, "loss")].mean(axis=0), loop[name].mean(axis=0)
        diff = float(np.abs(a - b).max())
        ok = diff <= AGREE_ATOL
        all_ok &= ok
        print(f"  {name:<11} {a[0]:13.6f} {a[1]:14.6f} {diff:11.2e}  {'yes' if ok else 'NO'}")

    mem_trials = [int(t) for t in args.mem_trials.split(",") if t.strip()]
    if mem_trials:
        print()
        print(f"peak memory of run_gradients ({args.mem_samples} samples, 5 estimators, fresh process each):")
        print(f"  {'trials':>7} {'baseline MiB':>13} {'peak MiB':>9} {'growth MiB':>11} {'run s':>7}"
              f"  {'ru_maxrss base/peak MiB':>24}  {'with keep_freed_memory(): peak MiB, run s':>42}")
        sources = set()
        for trials in mem_trials:
            m = _peak_memory(trials, args.mem_samples, args.seed, keep=False)
            k = _peak_memory(trials, args.mem_samples, args.seed, keep=True)
            sources.add(m["source"])
            print(f"  {trials:7d} {m['base_mib']:13.1f} {m['peak_mib']:9.1f} {m['peak_mib'] - m['base_mib']:11.1f}"
                  f" {m['seconds']:7.2f}  {m['maxrss_base_mib']:11.1f}/{m['maxrss_peak_mib']:<12.1f}"
                  f"  {k['peak_mib']:33.1f} {k['seconds']:7.2f}")
        print(f"  (baseline/peak/growth from {', '.join(sorted(sources))})")

    print()
    print("agreement:", "OK" if all_ok else "FAILED")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
