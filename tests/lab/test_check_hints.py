"""``kl-grad reproduce --check``: the command a hint gives reruns into the checked folder (``--out`` when not the
default ./results)."""

from __future__ import annotations

import shutil
from pathlib import Path

from kl_grad.lab.cli import main

EXPERIMENT = Path(__file__).resolve().parents[2] / "experiments" / "coefficients.toml"


def _check_lines(capsys, *args) -> list[str]:
    assert main(["reproduce", "--check", *args]) == 1
    return capsys.readouterr().out.splitlines()


def test_missing_folder_hint_names_a_non_default_out(tmp_path, capsys):
    exp = tmp_path / "exp" / "tiny.toml"
    exp.parent.mkdir()
    shutil.copy(EXPERIMENT, exp)
    out = tmp_path / "elsewhere"
    out.mkdir()
    (line, _) = _check_lines(capsys, str(exp), "--out", str(out))
    assert f"run `kl-grad reproduce {exp} --out {out}` and commit {out / 'tiny'}/" in line


def test_missing_folder_hint_omits_the_default_out(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("exp").mkdir()
    Path("results").mkdir()
    shutil.copy(EXPERIMENT, "exp/tiny.toml")
    for out in ([], ["--out", "results"], ["--out", "./results"]):
        (line, _) = _check_lines(capsys, "exp/tiny.toml", *out)
        assert "run `kl-grad reproduce exp/tiny.toml` and commit results/tiny/" in line, out
