"""Benchmark: the README's commands as a user waits for them — start-up, and the thread policy under load.

Usage, from the repository root (``make bench`` runs it)::

    python -m benchmarks.bench_cli [--repeat 3]

1. **Start-up**: wall time of ``kl-grad --help``, ``kl-grad estimators``, an exact ``kl-grad table``,
   ``kl-grad audit --help`` and a whole ``kl-grad audit`` run against ``python -c "import torch"`` in the same
   run (fresh processes; the median of ``--repeat``), and each one's excess over torch's import (goal: within
   0.5 s). The audit's own work (its battery, ~0.3 s) is then timed in this process (``bench_audit``, caches
   cleared, median of ``--repeat``) and the whole run less that work is printed as the audit's start-up.
2. **Threads**: each command under three settings — ``--threads 1``, the policy (no flag) and torch's default
   (``--threads`` = the CPU count) — idle and while a competing process keeps one core busy (a spin loop in
   a child process, killed afterwards). Ratios are against one thread, from one run: > 1 is slower.
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


def startup(repeat: int) -> None:
    torch_s = statistics.median(_wall([sys.executable, "-c", "import torch"]) for _ in range(repeat))
    print(f"start-up (median of {repeat}; python -c 'import torch': {torch_s:.2f} s)")
    walls = {}
    for name, args in STARTUP.items():
        walls[name] = t = statistics.median(_wall(_kl_grad(args)) for _ in range(repeat))
        print(f"  {name:<34} {t:5.2f} s   {t - torch_s:+.2f} s over torch's import")
    from benchmarks.bench_audit import audit_seconds  # imports kl_grad here, after the fresh processes

    work = statistics.median(audit_seconds(AUDITED)[0] for _ in range(repeat))
    rest = walls[WHOLE_AUDIT] - work
    print(f"  {'kl-grad audit, less its work':<34} {rest:5.2f} s   {rest - torch_s:+.2f} s over torch's import "
          f"(the whole run less {work:.2f} s of audit, timed in-process)")


def _threads(load: bool, repeat: int) -> None:
    cpus = os.cpu_count() or 1
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if load else None
    try:
        time.sleep(1.0 if load else 0.0)  # let the spinner be running when the policy looks
        print(f"threads, {'one core busy with a competing process' if load else 'idle'} "
              f"(median of {repeat}; ratio to --threads 1)")
        for name, args in WORK.items():
            times = {label: statistics.median(_wall(_kl_grad(args + flag)) for _ in range(repeat))
                     for label, flag in (("1 thread", ["--threads", "1"]), ("policy", []),
                                         (f"{cpus} threads", ["--threads", str(cpus)]))}
            one = times["1 thread"]
            print(f"  {name:<26} " + "   ".join(f"{label} {t:5.2f} s ({t / one:.2f}×)" for label, t in times.items()))
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="start-up runs per command (median)")
    ap.add_argument("--repeat-threads", type=int, default=3, help="runs per command and thread setting")
    args = ap.parse_args(argv)
    print(f"load average at start: {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs")
    startup(args.repeat)
    _threads(False, args.repeat_threads)
    _threads(True, args.repeat_threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
