"""Benchmark: the README's commands as a user waits for them — start-up, and the thread policy under load.

Usage, from the repository root (``make bench`` runs it)::

    python -m benchmarks.bench_cli [--repeat 5] [--repeat-threads 3]

1. **Start-up**: wall time of ``kl-grad --help``, ``kl-grad estimators``, an exact ``kl-grad table``,
   ``kl-grad audit --help`` and a whole ``kl-grad audit`` run, each right after ``python -c "import torch"``
   (fresh processes, ``--repeat`` such pairs), and each one's excess over torch's import, the median of the
   paired differences, so that load drifting over the minute falls on both sides (goal: within 0.5 s). The
   audit's own work (its battery, ~0.3 s) is then timed in this process (``bench_audit``, caches
   cleared, median of ``--repeat``) and the whole run less that work is printed as the audit's start-up.
2. **Threads**: each command under three settings — ``--threads 1``, the policy (no flag) and torch's default
   (``--threads`` = the CPU count) — idle and while a competing process keeps one core busy (a spin loop in
   a child process, killed afterwards), the three settings interleaved. Ratios are against one thread, from one
   run: > 1 is slower.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples", "trainer_kl_terms.py")
SEED003 = ["--policy", "normal:0,1", "--ref", "normal:1,1.1"]
STARTUP = {
    "kl-grad --help": ["--help"],
    "kl-grad estimators": ["estimators"],
    "kl-grad table --mode exact": ["table", *SEED003, "--mode", "exact"],
    "kl-grad audit --help": ["audit", "--help"],
    "kl-grad audit k2_loss (whole run)": ["audit", f"{EXAMPLES}:k2_loss", "-q"],
}
AUDITED, WHOLE_AUDIT = "k2_loss", "kl-grad audit k2_loss (whole run)"
WORK = {
    "table MC (200 × 50 000)": ["table", *SEED003, "--trials", "200", "--samples", "50000", "-q"],
    "table exact": ["table", *SEED003, "--mode", "exact", "--placements", "loss,loss-w,reward"],
    "train tokens": ["train", "--policy", "categorical:0,0,0,0", "--ref", "categorical:0.5,-0.5,0.2,0", "--reward",
                     "1,0,0.5,-0.5", "--placements", "loss,loss-w,reward", "-q"],
    "audit k3_weighted": ["audit", f"{EXAMPLES}:k3_weighted", "-q"],
    "coefficients": ["coefficients"],
}


def _wall(argv: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {done.stderr[-500:]}")
    return time.perf_counter() - start


def _kl_grad(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "kl_grad", *args]


TORCH = [sys.executable, "-c", "import torch"]


def startup(repeat: int) -> None:
    """Each command alternated with torch's import, ``repeat`` pairs: the excess is the median of the paired
    differences, so a neighbour's load that drifts over the minute falls on both sides of each pair."""
    print(f"start-up (median of {repeat} pairs, each command run right after python -c 'import torch')")
    excess, torch_walls = {}, []
    for name, args in STARTUP.items():
        pairs = [(_wall(TORCH), _wall(_kl_grad(args))) for _ in range(repeat)]
        torch_walls += [t for t, _ in pairs]
        excess[name], wall = statistics.median(c - t for t, c in pairs), statistics.median(c for _, c in pairs)
        print(f"  {name:<34} {wall:5.2f} s   {excess[name]:+.2f} s over torch's import")
    from benchmarks.bench_audit import audit_seconds  # imports kl_grad here, after the fresh processes

    work = statistics.median(audit_seconds(AUDITED)[0] for _ in range(repeat))
    print(f"  {'kl-grad audit, less its work':<34} {'':7}   {excess[WHOLE_AUDIT] - work:+.2f} s over torch's import "
          f"(the whole run's excess less {work:.2f} s of audit, timed in-process)")
    print(f"  (python -c 'import torch' itself: median {statistics.median(torch_walls):.2f} s, "
          f"{min(torch_walls):.2f}–{max(torch_walls):.2f} s over its {len(torch_walls)} runs)")


def _threads(load: bool, repeat: int) -> None:
    """Each command under the three settings, interleaved (one run of each, ``repeat`` times), medians."""
    cpus = os.cpu_count() or 1
    settings = (("1 thread", ["--threads", "1"]), ("policy", []), (f"{cpus} threads", ["--threads", str(cpus)]))
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if load else None
    try:
        time.sleep(1.0 if load else 0.0)  # let the spinner be running when the policy looks
        print(f"threads, {'one core busy with a competing process' if load else 'idle'} "
              f"(median of {repeat}, settings interleaved; ratio to --threads 1)")
        for name, args in WORK.items():
            runs: dict[str, list[float]] = {label: [] for label, _ in settings}
            for _ in range(repeat):
                for label, flag in settings:
                    runs[label].append(_wall(_kl_grad(args + flag)))
            times = {label: statistics.median(ts) for label, ts in runs.items()}
            one = times["1 thread"]
            print(f"  {name:<26} " + "   ".join(f"{label} {t:5.2f} s ({t / one:.2f}×)" for label, t in times.items()))
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5, help="start-up pairs (torch's import, command) per command")
    ap.add_argument("--repeat-threads", type=int, default=3, help="runs per command and thread setting")
    args = ap.parse_args(argv)
    print(f"load average at start: {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs")
    startup(args.repeat)
    _threads(False, args.repeat_threads)
    _threads(True, args.repeat_threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
