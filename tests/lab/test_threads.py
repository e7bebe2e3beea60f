"""kl_grad.lab.threads: the thread policy (one thread for small work, one per idle core for large chunks), the
--threads override, and the caller's setting restored."""

from __future__ import annotations

import pytest
import torch

from kl_grad.errors import KLGradError
from kl_grad.lab import threads
from kl_grad.lab.cli import main
from kl_grad.lab.gradient_table import run_gradients


def test_small_work_runs_on_one_thread_and_large_work_on_the_idle_cores(monkeypatch):
    assert threads.threads_for(0) == 1 and threads.threads_for(threads.LARGE - 1) == 1
    monkeypatch.setattr(threads, "_DEFAULT", 8)
    for idle, want in [(0.0, 1), (0.7, 1), (1.0, 1), (2.0, 2), (5.5, 5), (64.0, 8)]:
        monkeypatch.setattr(threads, "idle_cores", lambda idle=idle: idle)
        assert threads.threads_for(threads.LARGE) == want, idle


def test_idle_cores_never_exceeds_the_cpus():
    import os

    assert threads.idle_cores() <= (os.cpu_count() or 1)


def test_an_override_wins_and_is_checked(monkeypatch):
    with threads.use_threads(3):
        assert threads.threads_for(0) == 3 and threads.threads_for(1 << 30) == 3
    assert threads.threads_for(0) == 1
    for bad in (0, -1, 1.5, True):
        with pytest.raises(KLGradError, match="threads must be a positive integer"):
            with threads.use_threads(bad):
                pass


def test_a_run_restores_the_callers_thread_count(monkeypatch):
    seen = []
    real = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (seen.append(n), real(n)))
    before = torch.get_num_threads()
    run_gradients("normal:0,1", "normal:1,1.1", ["k2"], mode="exact")
    assert seen == [1, before] and torch.get_num_threads() == before


def test_the_cli_takes_threads(capsys):
    args = ["table", "--policy", "normal:0,1", "--ref", "normal:1,1.1", "--mode", "exact", "--threads", "1"]
    assert main(args) == 0
    with pytest.raises(SystemExit) as exc:
        main(args[:-1] + ["many"])
    assert exc.value.code == 2 and "not a whole number" in capsys.readouterr().err
