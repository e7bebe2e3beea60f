"""kl_grad/__init__.py: the core imports torch only; lab names load lazily; old import paths still work."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import pytest

import kl_grad

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_importing_the_core_loads_none_of_the_lab_dependencies():
    # A fresh interpreter: this process has long imported pandas and friends.
    code = ("import sys; from kl_grad import kl_loss, k3; "
            "print(sorted(m for m in ('pandas','tabulate','matplotlib','scipy') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.mark.parametrize("name", sorted(kl_grad._LAB))
def test_lab_names_are_reachable_from_the_top_level(name):
    from kl_grad import lab

    assert getattr(kl_grad, name) is getattr(lab, name)


def test_the_documented_lazy_names():
    from kl_grad.lab import audit, run_gradients

    assert kl_grad.run_gradients is run_gradients
    assert kl_grad.audit is audit


@pytest.mark.parametrize("name", ["DistSpec", "Problem", "sweep", "true_gradients"])
def test_undocumented_lab_names_are_not_at_the_top_level(name):
    with pytest.raises(AttributeError):
        getattr(kl_grad, name)


def test_unknown_attributes_raise_attribute_error():
    with pytest.raises(AttributeError, match="module 'kl_grad' has no attribute 'no_such_name'"):
        kl_grad.no_such_name  # noqa: B018


def test_everything_in_all_exists():
    for name in kl_grad.__all__:
        assert getattr(kl_grad, name) is not None, name


@pytest.mark.parametrize("old", ["kl_grad.surrogates", "kl_grad.training", "kl_grad.analysis", "kl_grad.families"])
def test_the_old_shim_modules_are_gone(old):
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(old)
