"""``kl-grad coefficients TARGET``: a user's KL term (``file.py:function`` or ``module:function``, ``--kwarg``
bound) is loaded by the audit's loader and tabulated as written; a bad target is one line with exit 2.

Oracle: c(d) = ∂surrogate/∂log π_θ by hand. For k3 = e^{−d} + d − 1 (d = log π_θ − log π_ref) it is 1 − e^{−d};
a clamp of the value at B cuts the gradient to 0 wherever e^{−d} + d − 1 > B. The CSV prints 10 significant
digits, hence rtol 1e-9."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.lab.test_cli import run_cli

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "trainer_kl_terms.py"

CLAMPED = '''import torch


def clamped_k3(logp, ref_logp, bound=10.0, scale=1.0):
    log_ratio = ref_logp - logp
    return scale * torch.clamp(torch.exp(log_ratio) - log_ratio - 1, max=bound)
'''


def _rows(stdout: str, name: str) -> pd.DataFrame:
    table = pd.read_csv(StringIO(stdout))
    return table[table["estimator"] == name].reset_index(drop=True)


def _k3_clamped_c(d: np.ndarray, bound: float, scale: float = 1.0) -> np.ndarray:
    k3 = np.exp(-d) + d - 1
    return np.where(k3 > bound, 0.0, scale * (1 - np.exp(-d)))


def test_the_example_verl_low_var_kl_has_c_zero_where_clamped(tmp_path, capsys):
    target = f"{EXAMPLE}:verl_low_var_kl"  # clamp log r to ±20, then k3 to [−10, 10]
    png = tmp_path / "c.png"
    result = run_cli(["coefficients", target, "--format", "csv", "--plot", str(png)], capsys)
    assert result.returncode == 0, result.stderr
    rows = _rows(result.stdout, target)
    d = rows["d"].to_numpy()
    assert len(d) == 33 and d.min() == -4 and d.max() == 4  # the default grid, every point in CSV
    np.testing.assert_allclose(rows["c"], _k3_clamped_c(d, 10.0), rtol=1e-9, atol=1e-12)
    clamped = np.exp(-d) + d - 1 > 10  # d ≤ -2.75 on this grid
    assert set(d[rows["c"] == 0]) == set(d[clamped]) | {0.0} and clamped.sum() == 6  # (c(0) = 0 unclamped)
    assert (rows["placement"] == "as written").all() and rows["expected_gradient"].iloc[0] == "problem-dependent"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_kwargs_are_bound_repeatably(tmp_path, capsys, monkeypatch):
    (tmp_path / "mykl.py").write_text(CLAMPED)
    monkeypatch.chdir(tmp_path)  # module:function is imported from the current directory
    result = run_cli(["coefficients", "mykl:clamped_k3", "--kwarg", "bound=1", "--kwarg", "scale=2.5",
                      "--grid=-3:3:0.5", "--format", "csv"], capsys)
    assert result.returncode == 0, result.stderr
    rows = _rows(result.stdout, "mykl:clamped_k3")
    d = rows["d"].to_numpy()
    np.testing.assert_allclose(rows["c"], _k3_clamped_c(d, 1.0, 2.5), rtol=1e-9, atol=1e-12)
    clamped = np.exp(-d) + d - 1 > 1
    assert set(d[rows["c"] == 0]) == set(d[clamped]) | {0.0} and clamped.sum() == 7
    unclamped = run_cli(["coefficients", f"{tmp_path / 'mykl.py'}:clamped_k3", "--grid=-1:1:0.5",
                         "--format", "csv"], capsys)
    rows = _rows(unclamped.stdout, f"{tmp_path / 'mykl.py'}:clamped_k3")
    np.testing.assert_allclose(rows["c"], 1 - np.exp(-rows["d"]), rtol=1e-9, atol=1e-12)
    assert rows["follows"].iloc[0] == "ref||policy"


@pytest.mark.parametrize("args, message", [
    (["nosuchmodule_xyz:f"], "no module named 'nosuchmodule_xyz'"),
    (["missing.py:f"], "target file missing.py does not exist"),
    ([f"{EXAMPLE}:no_such_term"], "has no attribute 'no_such_term'"),
    ([str(EXAMPLE)], "expected module:function or path/to/file.py:function"),
    ([f"{EXAMPLE}:k3_loss", "--kwarg", "bound"], "expected NAME=VALUE"),
    ([f"{EXAMPLE}:k3_loss", "--kwarg", "bound=1"], "takes no parameter bound"),
    (["--kwarg", "bound=1"], "--kwarg binds an argument of a TARGET"),
    ([f"{EXAMPLE}:k3_loss", "--estimators", "k3"], "tabulated as written"),
])
def test_a_bad_target_is_one_line_with_exit_2_and_no_file(tmp_path, capsys, args, message):
    out, png = tmp_path / "c.csv", tmp_path / "c.png"
    result = run_cli(["coefficients", *args, "-o", str(out), "--plot", str(png)], capsys)
    assert result.returncode == 2 and result.stdout == "" and not out.exists() and not png.exists()
    err = result.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("kl-grad: error: ") and message in err[0], err


def test_a_term_that_raises_is_one_line_and_status_2(tmp_path, capsys):
    (tmp_path / "terms.py").write_text("def bad(logp, ref_logp):\n    raise ValueError('boom')\n\n"
                                       "def scaled(logp, ref_logp, coef=0.1):\n"
                                       "    return coef * (logp - ref_logp) ** 2\n")
    raised = run_cli(["coefficients", f"{tmp_path / 'terms.py'}:bad", "--grid=-1:1:0.5"], capsys)
    assert raised.returncode == 2 and "raised ValueError: boom" in raised.stderr
    assert raised.stderr.strip().count("\n") == 0
    # a value that is not a Python literal reaches the function as its text (k3+ as verl users type it); where the
    # function cannot use it, that is its error, one line too
    broken = run_cli(["coefficients", f"{tmp_path / 'terms.py'}:scaled", "--kwarg", "coef=[1", "--grid=-1:1:0.5"],
                     capsys)
    assert broken.returncode == 2 and "raised TypeError" in broken.stderr and broken.stderr.strip().count("\n") == 0
