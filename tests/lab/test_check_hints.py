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


def test_summary_counts_are_pluralised():
    from kl_grad.lab.results.check import CheckReport
    from kl_grad.lab.results.compare import Difference

    one = Difference(None, "", "folder", "missing", "rerun")
    report = CheckReport(Path("results"), experiments=1, rows=1, numbers=1, differences={"a": [one]})
    assert report.lines()[-1] == "check failed: 1 difference in 1 experiment; checked 1 experiment, 1 row, 1 number"
    report = CheckReport(Path("results"), experiments=2, rows=3, numbers=0, differences={"a": [one] * 23, "b": [one]})
    lines = report.lines(listed=20)
    assert lines[20].endswith("… and 3 more differences")
    assert lines[-1] == "check failed: 24 differences in 2 experiments; checked 2 experiments, 3 rows, 0 numbers"
    passed = CheckReport(Path("results"), experiments=1, rows=2, numbers=1).lines()[-1]
    assert passed.endswith("; checked 1 experiment, 2 rows, 1 number")
