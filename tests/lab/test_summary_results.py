"""``summary = true`` on a gradient experiment: ``make reproduce`` writes the vector summary beside the
per-parameter table (summary.md/.csv/.json), reads it back as the same numbers, and ``reproduce --check``
recomputes and compares it (a moved, missing or stale summary fails)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from kl_grad.errors import KLGradError
from kl_grad.lab.cli import main
from kl_grad.lab.experiments import KINDS, parse_experiment
from kl_grad.lab.results.check import check
from kl_grad.lab.results.reproduce import reproduce

L = 3
SEQ = (f'kind="gradients"\ntitle="seq"\npolicy="markov:{L}:0.4,-0.4:0.8,-0.8/-0.5,0.5"\n'
       f'ref="markov:{L}:0,0:0.3,-0.3/0,0.2"\nestimators=["k1","k2","k3"]\n'
       'placements=["loss","loss-w","loss-prefix-w","trl-seq"]\nmode="exact"\nsamples=64\n')


def quiet(*_):
    pass


@pytest.fixture
def seq(tmp_path):
    """exp/seq.toml (an exact binary Markov chain, L = 3, summary = true) and its results in out/."""
    exp, out = tmp_path / "exp", tmp_path / "out"
    exp.mkdir()
    (exp / "seq.toml").write_text(SEQ + "summary = true\n")
    reproduce(exp, out, echo=quiet)
    return exp, out


def test_summary_is_written_beside_the_table_and_reads_back(seq):
    exp, out = seq
    folder = out / "seq"
    assert {"table.md", "table.csv", "table.json", "summary.md", "summary.csv", "summary.json"} <= {
        p.name for p in folder.iterdir()}
    table, summary = pd.read_csv(folder / "table.csv"), pd.read_csv(folder / "summary.csv", keep_default_na=False,
                                                                     na_values=[""])
    assert len(summary) == 3 * 4 and (summary["params"] == 2 + 4).all()  # init[2] + trans[2][2]
    for (est, place), block in table.groupby(["estimator", "placement"], sort=False):
        row = summary[(summary.estimator == est) & (summary.placement == place)].iloc[0]
        g, t = block["mean_grad"].to_numpy(), block["true_grad"].to_numpy()  # plain numpy norms of the rows
        expected = 0.0 if row["follows"] == "policy||ref" else np.linalg.norm(g - t) / np.linalg.norm(t)
        assert row["rel_bias_norm"] == pytest.approx(expected, rel=1e-8, abs=1e-12)
        assert row["rel_stdev"] == pytest.approx(np.linalg.norm(block["stdev"]) / np.linalg.norm(t), rel=1e-8)
    by = summary.set_index(["estimator", "placement"])
    assert by.loc[("k1", "loss"), "rel_bias_norm"] == pytest.approx(1.0, abs=1e-9)  # E[∇ k1] = E[score] = 0
    # TRL's ratio exp(mean_t log w_t): its gradient carries the mean, not the sum, of the L token scores
    assert by.loc[("k1", "trl-seq"), "rel_bias_norm"] == pytest.approx(1 - 1 / L, abs=1e-9)
    assert by.loc[("k3", "loss-prefix-w"), "follows"] == "policy||ref"
    records = json.loads((folder / "summary.json").read_text())
    assert [(r["estimator"], r["placement"]) for r in records] == list(zip(summary.estimator, summary.placement))
    assert [r["rel_bias_norm"] for r in records] == pytest.approx(summary["rel_bias_norm"].tolist(), rel=1e-9)
    md = (folder / "summary.md").read_text()
    assert md.startswith("# seq: vector summary") and md.count("\n| k") == 12
    index = (out / "README.md").read_text()
    assert "[summary](seq/summary.md) ([csv](seq/summary.csv)" in index and "| k2 " not in index  # links only


def test_rerun_keeps_the_files_and_the_check_passes(seq, capsys):
    exp, out = seq
    before = {p: p.read_bytes() for p in (out / "seq").iterdir()}
    reproduce(exp, out, echo=quiet)
    assert {p: p.read_bytes() for p in (out / "seq").iterdir()} == before
    report = check(exp, out, progress=False)
    summary_rows = len(pd.read_csv(out / "seq" / "summary.csv"))
    assert not report.failed and report.rows == len(pd.read_csv(out / "seq" / "table.csv")) + summary_rows


def test_a_moved_summary_number_fails_the_check_naming_summary_csv(seq, capsys):
    exp, out = seq
    csv = out / "seq" / "summary.csv"
    summary = pd.read_csv(csv)
    row = summary.index[(summary.estimator == "k2") & (summary.placement == "loss-w")][0]
    old = summary.loc[row, "rel_bias_norm"]
    csv.write_text(csv.read_text().replace("%.10g" % old, "%.10g" % (old * 1.001)))
    assert main(["reproduce", "--check", str(exp), "--out", str(out)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith(f"{csv} line {row + 2} (k2, loss-w, policy||ref), rel_bias_norm: committed "
                               f"{'%.10g' % (old * 1.001)}, recomputed {'%.10g' % old}") for line in lines), lines


def test_a_missing_or_stale_summary_fails_and_reproduce_repairs_it(seq, capsys):
    exp, out = seq
    csv = out / "seq" / "summary.csv"
    csv.unlink()
    assert main(["reproduce", "--check", str(exp), "--out", str(out)]) == 1
    assert f"{csv} file: missing; run `kl-grad reproduce" in capsys.readouterr().out
    reproduce(exp, out, echo=quiet)
    assert csv.is_file() and not check(exp, out, progress=False).failed
    (exp / "seq.toml").write_text(SEQ)  # summary switched off: the committed summary is stale
    (out / "seq" / "config.toml").write_text(SEQ)
    assert main(["reproduce", "--check", str(exp), "--out", str(out)]) == 1
    assert f"{csv} file: stale;" in capsys.readouterr().out
    reproduce(exp, out, echo=quiet)
    assert not any((out / "seq" / f"summary.{ext}").exists() for ext in ("md", "csv", "json"))
    assert not check(exp, out, progress=False).failed


def test_summary_needs_exact_mode(tmp_path, capsys):
    exp = parse_experiment({**_toml(SEQ), "mode": "mc", "trials": 10, "summary": True}, "test")
    with pytest.raises(KLGradError, match='summary = true needs mode = "exact"'):
        KINDS["gradients"].check(exp)
    with pytest.raises(KLGradError, match="summary must be a bool"):
        parse_experiment({**_toml(SEQ), "summary": "yes"}, "test")
    (tmp_path / "mc.toml").write_text(SEQ.replace('mode="exact"', 'mode="mc"\ntrials=10') + "summary = true\n")
    assert main(["reproduce", str(tmp_path / "mc.toml"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'needs mode = "exact"' in err[0] and not (tmp_path / "out").exists()


def _toml(text: str) -> dict:
    import tomllib

    return tomllib.loads(text)
