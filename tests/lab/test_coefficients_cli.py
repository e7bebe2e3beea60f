"""``kl-grad coefficients``: exit 0 with the table (every format), --plot writes a PNG, bad input is one line with
exit 2 and no file, and the TARGET hook hands a loaded callable to ``coefficient_table(fn=...)``."""

from __future__ import annotations

import argparse
import json
import math
from io import StringIO

import pandas as pd
import pytest
import torch

from kl_grad.lab.coefficients import cli as coefficients_cli
from tests.lab.test_cli import run_cli

SMALL = ["coefficients", "--estimators", "k2,k3", "--placements", "loss,reward", "--grid=-1:1:0.5"]


def test_markdown_by_default_with_both_reference_rows(capsys):
    result = run_cli(SMALL, capsys)
    assert result.returncode == 0 and result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0].startswith("c(d) at 5 of 5 grid points")
    assert sum(line.startswith("| c = d ") or line.startswith("| c = 1 − e^{−d}") for line in lines) == 2
    k3_loss = next(line for line in lines if line.startswith("| k3 ") and "| loss " in line)
    assert "∇KL(ref‖policy)" in k3_loss and f"{1 - math.exp(-1):.6g}" in k3_loss


def test_csv_file_and_plot(tmp_path, capsys):
    csv, png = tmp_path / "c.csv", tmp_path / "out" / "c.png"
    result = run_cli([*SMALL, "-o", str(csv), "--plot", str(png)], capsys)
    assert result.returncode == 0 and result.stdout == "" and "wrote" in result.stderr
    table = pd.read_csv(csv, keep_default_na=False)
    assert len(table) == 2 * 2 * 5 and set(table["placement"]) == {"loss", "reward"}
    k2 = table[(table["estimator"] == "k2") & (table["placement"] == "reward")]
    assert k2["c"].tolist() == [d * d / 2 for d in k2["d"]]  # reward: c = k2 = d²/2, exact in binary here
    assert png.read_bytes().startswith(b"\x89PNG")


def test_json_has_every_grid_point(capsys):
    result = run_cli([*SMALL, "--format", "json"], capsys)
    records = json.loads(result.stdout)
    assert result.returncode == 0 and len(records) == 20 and records[0]["follows"] == "policy||ref"


@pytest.mark.parametrize("extra, message", [
    (["--grid", "4:-4:1"], "needs LO < HI"),
    (["--grid", "0:1"], "LO:HI:STEP"),
    (["--grid", "0:1:1e-9"], "points; allowed: 4 to"),
    (["--estimators", "k9"], "unknown estimator 'k9'"),
    (["--placements", "nowhere"], "unknown placement 'nowhere'"),
    (["--format", "xml"], "unknown format 'xml'"),
    (["--plot", "c.jpg"], "must name a .png file"),
])
def test_bad_input_is_one_line_with_exit_2_and_no_file(tmp_path, capsys, extra, message):
    out = tmp_path / "c.csv"
    result = run_cli(["coefficients", *extra, "-o", str(out)], capsys)
    assert result.returncode == 2 and result.stdout == "" and not out.exists()
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def _args(**kw):
    base = dict(estimators=None, placements=None, grid="-2:2:1", format="csv", output=None, plot=None, target=None)
    return argparse.Namespace(**{**base, **kw})


def test_the_target_hook_tabulates_the_loaded_callable_as_written():
    def load_target(text, kwargs):
        assert (text, kwargs) == ("mymodule:k2_loss", {})
        return lambda logp, ref: 0.5 * (logp - ref) ** 2

    table = pd.read_csv(StringIO(coefficients_cli.run(_args(target="mymodule:k2_loss"), load_target)))
    assert table["estimator"].unique().tolist() == ["mymodule:k2_loss"]
    assert table["placement"].unique().tolist() == ["as written"] and table["c"].tolist() == [-2, -1, 0, 1, 2]
    assert table["follows"].iloc[0] == "policy||ref"


def test_without_a_loader_argument_the_audits_loader_is_used(monkeypatch):
    from kl_grad.lab import target

    monkeypatch.setattr(target, "load_target", lambda text, kwargs: (lambda logp, ref: logp - ref))  # k1: c = 1
    table = pd.read_csv(StringIO(coefficients_cli.run(_args(target="m:k1"))))
    assert table["c"].tolist() == [1.0] * 5 and table["follows"].iloc[0] == "zero"


def test_a_target_with_builtins_is_refused():
    from kl_grad.errors import KLGradError

    with pytest.raises(KLGradError, match="tabulated as written"):
        coefficients_cli.run(_args(target="m:f", estimators="k3"), lambda t, k: torch.neg)
