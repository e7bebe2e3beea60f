"""Test-session set-up: one torch thread.

The suite's tensors are small, where a second thread only adds contention: on a loaded 2-core machine the
suite ran 3× slower with torch's default two threads (654 s against 194 s for one thread, 2026-12-02). The
committed results do not depend on it (benchmarks/mutation_check.py: the same numbers with 1 and 2 threads).
"""

import torch

torch.set_num_threads(1)
