"""Benchmark: exact enumeration of all 2^16 binary sequences (L = 16) for k1/k2/k3 × every sequence placement.

Usage, from the repository root (``make bench`` runs it)::

    python -m benchmarks.bench_sequences [--length 16 --repeat 3]

Each repeat runs ``run_gradients(mode="exact")`` on a binary Markov chain (6 parameters, 27 cases) in a
fresh subprocess and reports its wall time and the process's peak resident set (VmHWM, minus the
baseline after imports). Issue 12's target: a few seconds, memory bounded (the enumeration is evaluated
in chunks of ``gradient_table.EXACT_CHUNK_TOKENS`` tokens).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

CHILD = """
import json, time
from kl_grad.lab import run_gradients
from kl_grad.sequences import SEQUENCE_PLACEMENTS

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
base = hwm()
L = {length}
start = time.perf_counter()
run = run_gradients(f"markov:{{L}}:0.4,-0.4:0.8,-0.8/-0.5,0.5", f"markov:{{L}}:0,0:0.3,-0.3/0,0.2",
                    ["k1", "k2", "k3"], list(SEQUENCE_PLACEMENTS), mode="exact", samples=64)
secs = time.perf_counter() - start
print(json.dumps({{"seconds": secs, "peak_mib": hwm(), "base_mib": base, "rows": len(run.table)}}))
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--length", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    runs = []
    for _ in range(args.repeat):
        out = subprocess.run([sys.executable, "-c", CHILD.format(length=args.length)], check=True,
                             capture_output=True, text=True).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
    secs = [r["seconds"] for r in runs]
    print(f"exact enumeration, binary Markov chain, L = {args.length} ({2 ** args.length} sequences), "
          f"k1/k2/k3 × {runs[0]['rows'] // 18} placements ({runs[0]['rows']} table rows)")
    print(f"  time: median {statistics.median(secs):.2f} s (runs: {', '.join(f'{s:.2f}' for s in secs)})")
    print(f"  peak RSS: {max(r['peak_mib'] for r in runs):.0f} MiB "
          f"(after imports {min(r['base_mib'] for r in runs):.0f} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
