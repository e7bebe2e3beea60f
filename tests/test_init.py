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
    from kl_grad.lab import DistSpec, keep_freed_memory, run_gradients

    assert kl_grad.run_gradients is run_gradients
    assert kl_grad.DistSpec is DistSpec
    assert kl_grad.keep_freed_memory is keep_freed_memory


def test_unknown_attributes_raise_attribute_error():
    with pytest.raises(AttributeError, match="module 'kl_grad' has no attribute 'no_such_name'"):
        kl_grad.no_such_name  # noqa: B018


def test_everything_in_all_exists():
    for name in kl_grad.__all__:
        assert getattr(kl_grad, name) is not None, name


@pytest.mark.parametrize("old, new, names", [
    ("kl_grad.surrogates", "kl_grad.placements", ["PLACEMENTS", "Placement", "get_placement", "surrogate",
                                                  "importance_weight"]),
    ("kl_grad.training", "kl_grad.loss", ["kl_loss"]),
    ("kl_grad.analysis", "kl_grad.lab.gradient_table", ["GradientRun", "run_gradients", "true_gradients"]),
    ("kl_grad.families", "kl_grad.lab.families", ["DistSpec", "as_spec", "make_spec", "parse_spec"]),
])
def test_old_import_paths_still_work(old, new, names):
    old_module, new_module = importlib.import_module(old), importlib.import_module(new)
    for name in names:
        assert getattr(old_module, name) is getattr(new_module, name), name
