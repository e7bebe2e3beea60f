"""Benchmark: how long ``kl-grad audit`` takes on typical KL terms (issue 11's target: under 3 s).

Usage, from the repository root (``make bench`` runs it after the runner benchmark)::

    python -m benchmarks.bench_audit [--repeat 3] [--functions k2_loss,k3_weighted,verl_low_var_kl]

Each repeat audits each function of ``examples/trainer_kl_terms.py``, then the README's ``--dtype
float32,bfloat16`` audit of ``openrlhf_k3_clamped``, with every cache cleared first (the
built-in comparison tables, ``auditor._builtin_summary``, and scipy's t quantiles), so every timing includes
the whole battery: probes, exact or Monte-Carlo gradients, and the built-ins' exact tables. The first
repeat also pays one-time imports (scipy.special); the median over repeats is the figure to quote. A shared
machine's load moves single timings, so all of them are printed. ``kl_grad.audit`` runs on one torch thread
(and restores the caller's count): the audit's tensors are small, and on a loaded 2-core machine torch's
default two threads made it 7-14× slower (k2 3.65 s, weighted k3 8.54 s, clamped k3 7.80 s against 0.47,
0.66 and 0.43 s; one run of this benchmark before the switch).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from kl_grad.lab.auditing import auditor
from kl_grad.lab.statistics import t_critical
from kl_grad.lab.target import load_target

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples", "trainer_kl_terms.py")
TARGET_S = 3.0
DTYPE_CASE = ("openrlhf_k3_clamped", "float32,bfloat16")  # the README's --dtype audit, timed after the others


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--functions", default="k2_loss,k3_weighted,verl_low_var_kl")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.functions.split(",") if n.strip()]
    print(f"kl-grad audit benchmark: {', '.join(names)} from examples/trainer_kl_terms.py; "
          f"{args.repeat} repeats, caches cleared before each audit")
    print(f"python {platform.python_version()}, torch {torch.__version__}, {os.cpu_count()} CPUs")
    _time(names, args.repeat)
    return 0


def audit_seconds(name: str, dtypes: str | None = None) -> tuple[float, auditor.AuditResult]:
    """Wall time of one audit of ``name`` (a function of examples/trainer_kl_terms.py; ``dtypes`` as
    ``--dtype`` takes them), every cache cleared."""
    fn = load_target(f"{EXAMPLES}:{name}")
    auditor._builtin_summary.cache_clear()
    t_critical.cache_clear()
    start = time.perf_counter()
    result = auditor.audit(fn, name=name, dtypes=dtypes)
    return time.perf_counter() - start, result


def _time(names: list[str], repeat: int) -> None:
    for name, dtypes in [(n, None) for n in names] + [DTYPE_CASE]:
        runs = [audit_seconds(name, dtypes) for _ in range(repeat)]
        times, result = [t for t, _ in runs], runs[-1][1]
        modes = ",".join(sorted({p["mode"] for p in result.problems}))
        verdict = "under" if np.median(times) < TARGET_S else "OVER"
        name = name if dtypes is None else f"{name} --dtype {dtypes}"
        print(f"  {name:<16} follows {result.follows:<12} modes {modes:<9} "
              f"runs {' '.join(f'{t:5.2f}' for t in times)} s; median {np.median(times):5.2f} s "
              f"({verdict} the {TARGET_S:g} s target)")


if __name__ == "__main__":
    raise SystemExit(main())
