"""kl_grad.lab.figures: PNG bytes, identical on a rerun (no timestamps or version metadata), and a clear
error without matplotlib."""

from __future__ import annotations

import sys
import zlib

import pytest

from kl_grad.errors import KLGradError
from kl_grad.lab import Problem, run_gradients, sweep
from kl_grad.lab.figures import sweep_png, violin_png
from tests.problems import SEED003

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _text_chunks(png: bytes) -> list[bytes]:
    """The keywords of a PNG's tEXt/zTXt/iTXt chunks (metadata such as Software or a date)."""
    out, i = [], len(PNG_MAGIC)
    while i < len(png):
        length = int.from_bytes(png[i:i + 4], "big")
        kind, data = png[i + 4:i + 8], png[i + 8:i + 8 + length]
        assert zlib.crc32(kind + data) == int.from_bytes(png[i + 8 + length:i + 12 + length], "big")  # intact
        if kind in (b"tEXt", b"zTXt", b"iTXt"):
            out.append(data.split(b"\0", 1)[0])
        i += 12 + length
    return out


@pytest.fixture(scope="module")
def mpl():
    return pytest.importorskip("matplotlib")


def test_violin_png_is_a_png_and_identical_on_a_rerun(mpl):
    run = run_gradients(SEED003.policy, SEED003.ref, ["k2", "k3"], samples=50, trials=20, seed=3)
    truths = Problem(SEED003.policy, SEED003.ref).true_gradients()
    pngs = [violin_png(run.per_trial, run.table, run.params, "violins", truths) for _ in range(2)]
    assert pngs[0].startswith(PNG_MAGIC) and len(pngs[0]) > 1000
    assert pngs[0] == pngs[1]
    assert b"Software" not in _text_chunks(pngs[0])


@pytest.mark.parametrize("quantity", ["gradients", "values"])
def test_sweep_png_is_a_png_and_identical_on_a_rerun(mpl, quantity):
    # The reference's scale crosses √2 σ_θ: the gradient sweep has infinite stdev_rel rows (drawn as ×).
    table = sweep(SEED003.policy, "normal:0.5,1", "scale", [0.9, 1.2, 1.5], ["k2", "k3"], quantity=quantity)
    pngs = [sweep_png(table, f"{quantity} sweep", "reference scale") for _ in range(2)]
    assert pngs[0].startswith(PNG_MAGIC) and pngs[0] == pngs[1]
    assert b"Software" not in _text_chunks(pngs[0])


def test_figures_without_matplotlib_say_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    table = sweep(SEED003.policy, SEED003.ref, "loc", [1.0], ["k2"])
    with pytest.raises(KLGradError, match=r"figures need matplotlib: pip install 'kl_grad\[plot\]'"):
        sweep_png(table, "t", "x")
