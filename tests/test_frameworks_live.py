"""``kl-grad frameworks --live`` (kl_grad/frameworks/live/, live_check.py): stand-in framework modules written
from each framework's semantics (tests/live_standins.py) must agree with every catalogue row they cover; one
changed clamp or cap must be reported as drift at the right point, with exit status 1; absent modules, missing
dependencies, missing functions and raising calls get their own statuses; JSON carries the promised fields."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys

import pytest
import torch

from kl_grad.frameworks import FRAMEWORK_TERMS
from kl_grad.frameworks.live import LIVE_SPECS, NO_CALLABLE
from kl_grad.frameworks.live_check import D_GRID, OLD_OFFSETS, STATUSES, TOL_F32, TOL_F64, grid, live_rows, scaled_diff
from kl_grad.lab.cli import main
from tests import live_standins

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def standin(tmp_path, monkeypatch):
    """standin(files): put stand-in packages on sys.path for this test only."""
    monkeypatch.syspath_prepend(str(tmp_path))
    created: set[str] = set()

    def put(files):
        live_standins.forget(created)
        created.update(live_standins.install(tmp_path, files))

    yield put
    live_standins.forget(created)


def _rows(framework: str) -> dict[str, dict]:
    """The framework's rows that have a live spec; its other rows (entries added later) must say "no callable"."""
    rows = {r["name"]: r for r in live_rows([t for t in FRAMEWORK_TERMS.values() if t.framework == framework])}
    assert all(r["status"] == "no callable" for n, r in rows.items() if n not in LIVE_SPECS)
    return {n: r for n, r in rows.items() if n in LIVE_SPECS}


def test_every_spec_names_a_catalogue_row_and_a_module_function():
    assert set(LIVE_SPECS) <= set(FRAMEWORK_TERMS)
    for spec in LIVE_SPECS.values():
        assert spec.targets and all(t.count(":") == 1 and all(t.split(":")) for t in spec.targets), spec.term
        assert spec.source


def test_the_grid_is_exact_in_float32_and_covers_the_edges():
    d, logp, ref = grid()
    assert torch.equal(logp - ref, d)  # exact in float64
    assert torch.equal(d.float().double(), d) and torch.equal(logp.float().double(), logp)
    assert torch.equal(ref.float().double(), ref)
    assert torch.equal((logp.float() - ref.float()).double(), d)  # a float32 framework sees the same d
    assert float(torch.maximum(logp, ref).max()) == float(torch.maximum(logp, ref).min()) == -1.0
    for offset in OLD_OFFSETS:  # the off-policy sampler's log-probs: exact in float32, and log-probs (< 0)
        old = logp + offset
        assert torch.equal(old.float().double(), old) and float(old.max()) < 0
    for x in (0.0, 10.0, 20.0, 30.0, 50.0, 10.0 + 2 ** -10, 20.0 - 2 ** -10):
        assert x in D_GRID and -x in D_GRID
    assert min(abs(x) for x in D_GRID if x) < 1e-6 * 1.05


def test_scaled_diff_counts_nan_and_inf_honestly():
    cat = torch.tensor([1.0, 100.0, math.nan, math.inf, 2.0, math.inf, 0.0], dtype=torch.float64)
    live = torch.tensor([1.5, 101.0, math.nan, math.inf, math.nan, 5.0, 1e-3], dtype=torch.float64)
    want = [0.5, 0.01, 0.0, 0.0, math.inf, math.inf, 1e-3]
    assert scaled_diff(live, cat).tolist() == pytest.approx(want, rel=1e-12)


def test_every_verl_row_agrees_with_a_verl_standin(standin):
    standin(live_standins.verl())
    rows = _rows("verl")
    assert set(rows) == {n for n in LIVE_SPECS if n.startswith("verl")}
    for name, row in rows.items():
        assert row["status"] == "agrees", (name, row)
        assert row["scaled_diff"] <= TOL_F64 and row["live"] == "verl.trainer.ppo.core_algos:kl_penalty"
        assert row["version"] == "verl.__version__ 0.0-standin (no distribution metadata)"
        assert "float64" in row["tolerance"]


def test_a_changed_clamp_is_drift_at_the_point_where_it_bites(standin):
    standin(live_standins.verl(clamp=5.0))
    rows = _rows("verl")
    # k3 = e^(−d) − 1 + d lies in (5, 10] only at d = −2.5 (8.68) and d = 10, 10 ± 2^-10 (≈ 9) on the grid:
    # the clamp at 5 zeroes the gradient there; at d = −2.5 the catalogue's gradient 1 − e^2.5 is lost whole
    # (scaled diff 1)
    row = rows["verl:low_var_kl"]
    assert row["status"] == "drift"
    assert row["where"].startswith("gradient at d = -2.5 (on-policy): live 0, catalogue")
    assert row["scaled_diff"] == pytest.approx(1.0, abs=1e-12)
    assert float(row["where"].rsplit(" ", 1)[1]) == pytest.approx(1 - math.exp(2.5), rel=1e-5)
    # value of the "+" variant: 5 instead of 10 where k3 > 10 (d = −5: scaled diff 5/10)
    assert rows["verl:k3+"]["status"] == rows["verl:reward:low_var_kl"]["status"] == "drift"
    assert rows["verl:k3+"]["scaled_diff"] == pytest.approx(0.5, abs=1e-12)
    for name in ("verl:kl", "verl:abs", "verl:mse", "verl:k1+", "verl:reward:kl"):
        assert rows[name]["status"] == "agrees", name


def test_drift_exits_1_and_agreement_0(standin, capsys):
    standin(live_standins.verl(clamp=5.0))
    assert main(["frameworks", "--live", "--framework", "verl"]) == 1
    assert "| drift" in capsys.readouterr().out
    standin(live_standins.verl())
    assert main(["frameworks", "--live", "--framework", "verl"]) == 0
    assert "drift" not in capsys.readouterr().out


def test_json_has_one_object_per_entry(standin, capsys, tmp_path):
    standin(live_standins.verl())
    out = tmp_path / "live.json"
    assert main(["frameworks", "--live", "--framework", "verl", "-o", str(out)]) == 0
    records = json.loads(out.read_text())
    assert [r["name"] for r in records] == [t.name for t in FRAMEWORK_TERMS.values() if t.framework == "verl"]
    for r in records:
        assert {"name", "live", "status", "version", "scaled_diff", "where", "tolerance"} <= set(r)
        if r["name"] in LIVE_SPECS:
            assert r["status"] == "agrees" and r["live"] == "verl.trainer.ppo.core_algos:kl_penalty"
    assert main(["frameworks", "--live", "--framework", "trl", "--format", "json"]) == 0
    trl = json.loads(capsys.readouterr().out)
    assert {r["status"] for r in trl} == {"no callable"} and all(r["scaled_diff"] is None for r in trl)
    assert all(r["status"] in STATUSES for r in records + trl)


def test_absent_module_and_missing_dependency_are_not_installed(standin, monkeypatch):
    monkeypatch.setitem(sys.modules, "verl", None)  # as if verl were not installed, whatever this machine has
    row = _rows("verl")["verl:kl"]
    assert row["status"] == "not installed" and "verl" in row["detail"] and row["version"] == ""
    monkeypatch.delitem(sys.modules, "verl")
    files = live_standins.verl()
    core = "verl/trainer/ppo/core_algos.py"
    files[core] = "import a_dependency_nobody_has\n" + files[core]
    standin(files)
    row = _rows("verl")["verl:kl"]
    assert row["status"] == "not installed" and "a_dependency_nobody_has" in row["detail"]
    files[core] = "raise RuntimeError('needs a GPU | two')\n"
    standin(files)
    row = _rows("verl")["verl:kl"]
    assert row["status"] == "not installed" and "RuntimeError: needs a GPU | two" in row["detail"]


def test_markdown_rows_keep_their_columns_when_a_reason_has_a_pipe(standin, capsys):
    files, core = live_standins.verl(), "verl/trainer/ppo/core_algos.py"
    files[core] = "raise RuntimeError('needs a GPU | two')\n"
    standin(files)
    assert main(["frameworks", "--live", "--framework", "verl"]) == 0
    lines = capsys.readouterr().out.splitlines()
    cells = {len(re.findall(r"(?<!\\)\|", line)) for line in lines}
    assert cells == {10} and "needs a GPU \\| two" in lines[2] and "| –" in lines[2]


def test_a_missing_function_or_a_raising_call_is_an_error(standin):
    files, core = live_standins.verl(), "verl/trainer/ppo/core_algos.py"
    files[core] = "def kl_penalty(logprob, ref_logprob):\n    return logprob - ref_logprob\n"
    standin(files)
    row = _rows("verl")["verl:mse"]
    assert row["status"] == "error" and row["detail"].startswith("the call raised TypeError")
    assert "\n" not in row["detail"]
    files[core] = "def compute_kl(a, b):\n    return a - b\n"
    standin(files)
    row = _rows("verl")["verl:kl"]
    assert row["status"] == "error" and row["detail"] == "verl.trainer.ppo.core_algos has no kl_penalty"
    files[core] = "def kl_penalty(a, b, mode):\n    return (a - b).sum()\n"
    standin(files)
    assert "returned shape ()" in _rows("verl")["verl:kl"]["detail"]


def test_openrlhf_standin_agrees_at_float32_and_a_changed_weight_cap_drifts_off_policy(standin):
    standin(live_standins.openrlhf())
    rows = _rows("openrlhf")
    assert set(rows) == {n for n in LIVE_SPECS if n.startswith("openrlhf:")}
    for name, row in rows.items():
        assert row["status"] == "agrees", (name, row)
        assert row["scaled_diff"] <= TOL_F32 and "float32" in row["tolerance"]
    standin(live_standins.openrlhf(cap=5.0))
    row = _rows("openrlhf")["openrlhf:k3-unbiased-gradient"]
    # w = e^3 ≈ 20 is capped at 5 instead of 10: the gradient w·d halves where d ≠ 0, only off-policy
    assert row["status"] == "drift" and row["where"].startswith("gradient at d = ")
    assert "(old = logp − 3)" in row["where"] and row["scaled_diff"] == pytest.approx(0.5, rel=1e-5)


@pytest.mark.parametrize("framework", sorted(live_standins.OTHERS))
def test_other_frameworks_standins_agree_with_their_rows(standin, monkeypatch, framework):
    monkeypatch.setitem(sys.modules, "skyrl", None)  # SkyRL: the older skyrl_train layout, the second target
    standin(live_standins.OTHERS[framework])
    rows = _rows(framework)
    assert rows and set(rows) == {n for n in LIVE_SPECS if n.startswith(framework + ":")}
    for name, row in rows.items():
        assert row["status"] == "agrees", (name, row)


def test_every_row_has_a_spec_or_its_frameworks_reason_for_none():
    rows = live_rows([t for t in FRAMEWORK_TERMS.values() if t.name not in LIVE_SPECS])
    assert rows and all(r["status"] == "no callable" and r["detail"] == NO_CALLABLE[r["framework"]] for r in rows)
    assert not {t.framework for t in FRAMEWORK_TERMS.values() if t.name in LIVE_SPECS} & set(NO_CALLABLE)
    assert "JAX" in NO_CALLABLE["tunix"] and "compute_kl_divergence" in NO_CALLABLE["tunix-0.1.6"]


def test_a_changed_trinity_weight_clamp_drifts_only_off_policy_where_the_weight_passes_it(standin):
    standin(live_standins.trinity(cap=1.5))
    rows = _rows("trinity")
    # w = e^3 ≈ 20 is held at 1.5 instead of 2: value and gradient (the clamp passes none through w) both lose a
    # quarter, scaled diff 0.5·x/max(1, 2·x) = 0.25 wherever 2·x ≥ 1; at w = e^-0.75 neither clamp bites
    row = rows["trinity:corrected_k3"]
    assert row["status"] == "drift" and "(old = logp − 3)" in row["where"]
    assert row["scaled_diff"] == pytest.approx(0.25, rel=1e-9)
    assert rows["trinity:k2"]["status"] == "agrees"


def test_gradients_within_rounding_of_the_value_agree_but_a_dropped_clamp_does_not(standin):
    # slime k3-is in float32: at d = −50 the gradient w·k3 + w·k3' cancels two summands of ≈ w·e^50, leaving
    # float32 rounding of that size (≈ 1e15) against the row's float64 rounding: within 8·2^-24·|value|
    standin(live_standins.OTHERS["slime"])
    row = _rows("slime")["slime:k3-is"]
    assert row["status"] == "agrees" and "agree within rounding of the value" in row["tolerance"]
    # NeMo-RL's legacy k3 without its ±20 input clamp (v0.3.1): at d = −30 the gradient 1 − e^30 ≈ −1e13 against
    # the row's 0, far beyond rounding of the clamped value e^20
    standin({**live_standins.OTHERS["nemo-rl"], "nemo_rl/algorithms/utils.py":
             live_standins.NEMO.replace("clamp_value=20.0):", "clamp_value=1e9):")})
    row = _rows("nemo-rl")["nemo-rl:k3-legacy"]
    assert row["status"] == "drift" and row["where"].startswith("gradient at d = -50")
    assert "within rounding" not in row["tolerance"]


def test_plain_listing_does_not_import_the_live_check():
    code = ("import sys; from kl_grad.lab.cli import main; main(['frameworks', '--format', 'csv'])\n"
            "print('kl_grad.frameworks.live_check' in sys.modules, file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=ROOT))
    assert done.returncode == 0 and done.stderr.strip().splitlines()[-1] == "False"


def test_the_help_states_the_grid_offsets_and_tolerances_the_check_uses():
    from kl_grad.lab.catalogue.cli import EPILOG

    text = " ".join(EPILOG.split())
    named = {0.0, 2.0 ** -20, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 10 - 2 ** -10, 10 + 2 ** -10, 20 - 2 ** -10,
             20 + 2 ** -10, 12.0, 15.0, 30.0, 50.0}
    assert {abs(x) for x in D_GRID} == named
    assert "{0, ±2^-20, ±0.5, ±1, ±2.5, ±5, ±10 and ±20 exactly and 2^-10 either side, ±12, ±15, ±30, ±50}" in text
    assert OLD_OFFSETS == (0.75, -3.0) and "old_logp = logp + 0.75 and logp − 3" in text
    f64, f32 = re.search(r"≤ (\S+)·max\(1, \|row\|\), (\S+) where the framework computes in float32", text).groups()
    assert float(f64) == pytest.approx(TOL_F64, rel=1e-12) and float(f32) == pytest.approx(TOL_F32, rel=1e-12)
    docs = " ".join(open(os.path.join(ROOT, "docs", "frameworks.md"), encoding="utf-8").read().split())
    f64, f32 = re.search(r"\|live − row\| ≤ (\S+)·max\(1, \|row\|\) at every point \((\S+) for float32", docs).groups()
    assert float(f64) == pytest.approx(TOL_F64, rel=1e-12) and float(f32) == pytest.approx(TOL_F32, rel=1e-12)
    assert "old_logp = logp + 0.75 and logp − 3" in docs
