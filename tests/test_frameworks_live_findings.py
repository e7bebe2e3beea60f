"""``frameworks --live`` findings beyond agreement (tests/test_frameworks_live.py has the basics): a vanished API
exits 1, a framework that calls sys.exit is a row, a gradient cut off between the clamp edges is drift although
float32 cannot resolve the gradient at |d| ≥ 20, and reward penalties are compared at the sampler's log-probs."""

from __future__ import annotations

import pytest

from kl_grad.frameworks import FRAMEWORK_TERMS
from kl_grad.frameworks.live_check import live_rows
from kl_grad.lab.cli import main
from tests import live_standins

CORE = "verl/trainer/ppo/core_algos.py"


@pytest.fixture
def standin(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    created: set[str] = set()

    def put(files):
        live_standins.forget(created)
        created.update(live_standins.install(tmp_path, files))

    yield put
    live_standins.forget(created)


def _row(name: str) -> dict:
    return live_rows([FRAMEWORK_TERMS[name]])[0]


def test_a_vanished_function_exits_1(standin, capsys):
    files = live_standins.verl()
    files[CORE] = "def compute_kl(a, b):\n    return a - b\n"
    standin(files)
    assert main(["frameworks", "--live", "--framework", "verl"]) == 1
    assert "| error" in capsys.readouterr().out


def test_sys_exit_in_a_framework_is_one_row_not_the_end_of_the_run(standin):
    files = live_standins.verl()
    files[CORE] = "import sys\n\ndef kl_penalty(a, b, mode):\n    sys.exit('boom')\n"
    standin(files)
    row = _row("verl:kl")
    assert row["status"] == "error" and "SystemExit: boom" in row["detail"]
    files[CORE] = "import sys\nsys.exit('at import')\n"
    standin(files)
    row = _row("verl:kl")
    assert row["status"] == "not installed" and "SystemExit" in row["detail"]


def test_a_gradient_cut_between_the_clamp_edges_drifts_in_float32(standin):
    # slime's w·k3 in float32 with k3 detached on −19 < d < −11 only: no clamp edge sees it, and the grid's
    # ±12 and ±15 are the points between them (without them the check read `agrees`)
    cut = live_standins.SLIME.replace(
        "        kl = importance_ratio * kl",
        "        kl = importance_ratio * torch.where((d < -11) & (d > -19), kl.detach(), kl)")
    assert cut != live_standins.SLIME
    standin({**live_standins.OTHERS["slime"], "slime/utils/ppo_utils.py": cut})
    row = _row("slime:k3-is")
    assert row["status"] == "drift" and "gradient" in row["where"] and ("-12" in row["where"] or "-15" in row["where"])
    standin(live_standins.OTHERS["slime"])
    assert _row("slime:k3-is")["status"] == "agrees"


def test_reward_penalties_are_compared_at_the_sampler(standin, monkeypatch):
    # verl's apply_kl_penalty takes kl_penalty(old_log_probs, ref): the reward rows are checked off-policy too,
    # and a row that took the penalty's value at logp (the catalogue before December 2026) drifts there
    import dataclasses

    from kl_grad.frameworks.live_check import conditions
    from kl_grad.frameworks.terms import elementwise, k1

    term = FRAMEWORK_TERMS["verl:reward:kl"]
    assert [c for c, _ in conditions(term)] == ["on-policy", "old = logp + 0.75", "old = logp − 3"]
    standin(live_standins.verl())
    assert _row("verl:reward:kl")["status"] == "agrees"
    monkeypatch.setitem(FRAMEWORK_TERMS, "verl:reward:kl", dataclasses.replace(term, fn=elementwise(k1)))
    row = _row("verl:reward:kl")
    assert row["status"] == "drift" and "old = logp" in row["where"]
