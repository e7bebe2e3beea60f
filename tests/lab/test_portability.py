"""results/ checks clean on another machine: emulated here twice, on one experiment of every kind.

1. Inputs moved by a few ulps: every distribution made during a run (policy, reference, sampler, and every
   training step's parameters) has each value moved by ±4 ulps, signs fixed by a seeded generator. That is the
   size of what another CPU's rounding does to a number, fed in at every stage.
2. Other SIMD paths: the check runs in a fresh process with torch's scalar kernels (``ATEN_CPU_CAPABILITY=
   default``) and numpy's dispatched CPU features switched off (``NPY_DISABLE_CPU_FEATURES``): other
   summation orders and other libm paths, as on a CPU without AVX2/AVX-512.

Either way the check must pass: every number within its tolerance (``kl_grad/lab/tolerances.py``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kl_grad.lab.families import DistSpec
from kl_grad.lab.results.check import check

ROOT = Path(__file__).resolve().parents[2]
# One experiment of every kind (tests/lab/test_portability checks the list covers every kind), the cheap one
# where a kind has several; together ≈ 20 s.
REPRESENTATIVE = ["seed003_exact", "seed001_onpolicy_mc", "tokens_placements_mc", "schulman_close_mc",
                  "sweep_loc_values", "coefficients", "seq_length_sweep", "seq_eos_aggregations_exact",
                  "train_tokens", "train_tokens_mc", "frameworks_catalogue", "audit_trainer_terms",
                  "group_reward_exact"]
ULPS = 4


def test_the_representative_set_has_every_kind():
    from kl_grad.lab.experiments import KINDS, load_experiment

    kinds = {load_experiment(ROOT / "experiments" / f"{name}.toml").kind for name in REPRESENTATIVE}
    assert kinds == set(KINDS)


def _report(names):
    lines = []
    for name in names:
        report = check(ROOT / "experiments" / f"{name}.toml", ROOT / "results", progress=False)
        lines += report.lines() if report.failed else []
    return lines


def test_inputs_moved_by_a_few_ulps_check_clean(monkeypatch):
    original = DistSpec.__post_init__
    rng = np.random.default_rng(2026)

    def nudged(self):
        original(self)
        v = np.asarray(self.values, dtype=float)
        step = ULPS * np.spacing(np.abs(v)) * (v != 0)  # an input 0 is read exactly everywhere
        moved = v + rng.choice([-1.0, 1.0], size=v.shape) * step
        object.__setattr__(self, "values", tuple(float(x) for x in moved))

    monkeypatch.setattr(DistSpec, "__post_init__", nudged)
    assert DistSpec("normal", (1.0, 1.1)).values != (1.0, 1.1)  # the nudge reaches every distribution
    failed = _report(REPRESENTATIVE)
    assert not failed, "\n".join(failed)


def _dispatched_numpy_features() -> str:
    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

    return " ".join(f for f in __cpu_dispatch__ if __cpu_features__.get(f))


def test_other_simd_paths_check_clean():
    env = dict(os.environ, ATEN_CPU_CAPABILITY="default", NPY_DISABLE_CPU_FEATURES=_dispatched_numpy_features(),
               OMP_NUM_THREADS="1")
    code = ("import sys, torch; torch.set_num_threads(1)\n"
            "assert torch.backends.cpu.get_cpu_capability() == 'DEFAULT', torch.backends.cpu.get_cpu_capability()\n"
            "from tests.lab.test_portability import REPRESENTATIVE, _report\n"
            "failed = _report(REPRESENTATIVE)\n"
            "print('\\n'.join(failed)); sys.exit(1 if failed else 0)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]


@pytest.mark.parametrize("name", ["train_tokens"])
def test_the_nudge_moves_the_numbers(name, monkeypatch):
    """The emulation is not a no-op: with 1e6 ulps instead of 4, the training end points move beyond their
    tolerance and the check fails."""
    original = DistSpec.__post_init__
    rng = np.random.default_rng(1)

    def shoved(self):
        original(self)
        v = np.asarray(self.values, dtype=float)
        moved = v + rng.choice([-1.0, 1.0], size=v.shape) * 1e6 * np.spacing(np.maximum(np.abs(v), 1.0))
        object.__setattr__(self, "values", tuple(float(x) for x in moved))

    monkeypatch.setattr(DistSpec, "__post_init__", shoved)
    assert _report([name])
