"""``kl-grad reproduce --check``: the committed results/ are what experiments/ produce (our CI regression on
gradient bias), every estimator is covered by an exact experiment, and the check's exit codes, messages and
write-nothing promise hold."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

from kl_grad.estimators import ESTIMATORS
from kl_grad.lab.cli import main
from kl_grad.lab.experiments import load_experiment
from kl_grad.lab.results.check import check
from kl_grad.lab.results.reproduce import reproduce
from kl_grad.placements import PLACEMENTS

ROOT = Path(__file__).resolve().parents[2]
COVERAGE_FILE = "experiments/estimators_all_exact.toml"


# The slowest experiments, left to `make check` (the full `kl-grad reproduce --check`) to keep `make test` within
# CI's budget: 47 s of the whole check's 66 s on an idle machine (one thread, 2026-12-02). Each kind keeps its own
# unit tests in `make test`, and every estimator's formula stays guarded there by the exact coverage experiments
# (estimators_all_exact, estimators_all_tokens_exact), which catch a 0.1% change (benchmarks/mutation_check.py).
SLOW = {"train_markov": 14.0, "train_gaussian_linear": 8.1, "seq_length_sweep": 7.3, "frameworks_catalogue": 9.4,
        "seq_length_sweep_offpolicy": 6.7, "audit_trainer_terms": 4.1}
CHECKED = sorted(p.stem for p in (ROOT / "experiments").glob("*.toml") if p.stem not in SLOW)


def test_the_slow_list_names_real_experiments():
    assert set(SLOW) <= {p.stem for p in (ROOT / "experiments").glob("*.toml")}
    assert {"estimators_all_exact", "estimators_all_tokens_exact"} <= set(CHECKED)


@pytest.mark.parametrize("name", CHECKED)
def test_committed_results_are_what_the_experiments_produce(name):
    """The check, in-process: every number of results/<name>/ within its tolerance (``make check``: all)."""
    report = check(ROOT / "experiments" / f"{name}.toml", ROOT / "results", progress=False)
    assert not report.failed, "\n".join(["results/ differ from a rerun of experiments/ (if the change is "
                                         "intended, run `make reproduce` and commit results/):", *report.lines()])
    assert report.experiments == 1 and report.numbers > 10


def test_every_results_folder_has_its_experiment():
    """What the folder-wide check adds to the per-file ones: no stale results folder (no experiment file)."""
    stems = {p.stem for p in (ROOT / "experiments").glob("*.toml")}
    folders = {p.name for p in (ROOT / "results").iterdir() if p.is_dir() and (p / "config.toml").is_file()}
    assert folders == stems


def uncovered(estimators, placements) -> list[tuple[str, str]]:
    """The (estimator, placement) pairs with no finite exact mean gradient in any committed exact table."""
    covered = set()
    for path in sorted((ROOT / "experiments").glob("*.toml")):
        exp = load_experiment(path)
        if exp.kind != "gradients" or exp.mode != "exact":
            continue
        table = pd.read_csv(ROOT / "results" / path.stem / "table.csv")
        finite = table[table["mean_grad"].notna()]
        covered |= set(zip(finite["estimator"], finite["placement"]))
    return sorted({(e, p) for e in estimators for p in placements} - covered)


def test_the_coverage_rule_sees_a_new_estimator_or_placement():
    assert uncovered([*ESTIMATORS, "new:estimator"], [*PLACEMENTS, "new"]) == sorted(
        [("new:estimator", p) for p in [*PLACEMENTS, "new"]] + [(e, "new") for e in ESTIMATORS])


def test_every_estimator_and_placement_has_a_finite_exact_row():
    """A 0.1% change of an estimator is caught only if some exact experiment measures it: every registered
    (estimator, placement) pair needs a finite exact mean gradient in results/."""
    missing = uncovered(ESTIMATORS, PLACEMENTS)
    names = sorted({e for e, _ in missing})
    assert not missing, (f"no exact experiment measures {missing}: add {names} to `estimators` (and any new "
                         f"placement to `placements`) in {COVERAGE_FILE} and in "
                         f"experiments/estimators_all_tokens_exact.toml, then run `kl-grad reproduce "
                         f"{COVERAGE_FILE}` and `kl-grad reproduce experiments/estimators_all_tokens_exact.toml`"
                         f" and commit results/")


SMALL_EXACT = ('kind="gradients"\ntitle="a"\npolicy="normal:0,1"\nref="normal:1,1.1"\nestimators=["k2","k3"]\n'
               'placements=["loss","reward"]\nmode="exact"\nsamples=100\n')


@pytest.fixture
def small(tmp_path):
    """exp/a.toml (exact, milliseconds) and its results in out/."""
    exp, out = tmp_path / "exp", tmp_path / "out"
    exp.mkdir()
    (exp / "a.toml").write_text(SMALL_EXACT)
    reproduce(exp, out, echo=lambda *_: None)
    return exp, out


def snapshot(*folders):
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for f in folders for p in sorted(f.rglob("*")) if p.is_file()}


def test_check_passes_and_writes_nothing(small, capsys):
    exp, out = small
    before = snapshot(exp, out)
    assert main(["reproduce", "--check", str(exp), "--out", str(out)]) == 0
    assert capsys.readouterr().out.startswith("check passed: ")
    assert snapshot(exp, out) == before


def test_check_summary_counts_rows_and_numbers(small, capsys):
    exp, out = small
    main(["reproduce", "--check", str(exp), "--out", str(out)])
    table = pd.read_csv(out / "a" / "table.csv")
    numbers = int(sum(table[c].notna().sum() for c in table.columns if pd.api.types.is_numeric_dtype(table[c])))
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"check passed: no differences beyond each number's tolerance; checked 1 experiment, {len(table)} rows, "
        f"{numbers} numbers")


def test_a_moved_number_fails_naming_the_experiment_row_column_and_both_numbers(small, capsys):
    exp, out = small
    csv = out / "a" / "table.csv"
    table = pd.read_csv(csv)
    row = table.index[(table["estimator"] == "k3") & (table["placement"] == "reward") & (table["param"] == "scale")][0]
    old = table.loc[row, "mean_grad"]
    text = csv.read_text().replace("%.10g" % old, "%.10g" % (old * 1.001))
    csv.write_text(text)
    before = snapshot(exp, out)
    assert main(["reproduce", "--check", str(exp), "--out", str(out)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith(f"{csv} line {row + 2} (k3, reward, policy||ref, scale), mean_grad: committed "
                               f"{'%.10g' % (old * 1.001)}, recomputed {'%.10g' % old}") for line in lines), lines
    assert lines[-1].startswith("check failed: ") and " in 1 experiment; checked 1 experiment," in lines[-1]
    assert snapshot(exp, out) == before  # a failing check repairs nothing either


def test_listing_is_capped_per_experiment(small, capsys):
    exp, out = small
    csv = out / "a" / "table.csv"
    # 8 rows × 3 text cells (mode, sampler, sampling) = 24 differences: 20 listed, 4 counted
    header, *rows = csv.read_text().splitlines()
    rows = [r.replace(",exact,", ",mc,").replace(",policy,sample", ",other,x") for r in rows]
    csv.write_text("\n".join([header, *rows]) + "\n")
    assert main(["reproduce", "--check", str(exp), "--out", str(out)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 22 and lines[20] == f"{csv}: … and 4 more differences"
    assert lines[21].startswith("check failed: 24 differences in 1 experiment;")


def test_missing_and_stale_folders_fail(small, capsys):
    exp, out = small
    (exp / "b.toml").write_text(SMALL_EXACT.replace('title="a"', 'title="b"'))
    shutil.copytree(out / "a", out / "gone")  # a result whose experiment file was deleted
    assert main(["reproduce", "--check", str(exp), "--out", str(out)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert f"{out / 'b' / 'table.csv'} folder: missing; run `kl-grad reproduce {exp / 'b.toml'} --out {out}` and " \
           f"commit {out / 'b'}/" in lines
    assert any(line.startswith(f"{out / 'gone' / 'table.csv'} folder: stale") for line in lines)
    assert lines[-1].startswith("check failed: 2 differences in 2 experiments; checked 2 experiments,")


def test_an_edited_experiment_file_fails_even_with_the_same_numbers(small, capsys):
    exp, out = small
    (exp / "a.toml").write_text(SMALL_EXACT + 'notes = "edited"\n')
    assert main(["reproduce", "--check", str(exp), "--out", str(out)]) == 1
    assert f"config.toml: not a byte copy of {exp / 'a.toml'}" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["missing"], "does not exist"),
    (["exp/notes.txt"], "is not a .toml file"),
    (["exp", "--out", "nowhere"], "is not a folder of results"),
])
def test_bad_input_is_one_line_and_exit_2(small, tmp_path, capsys, args, message):
    (tmp_path / "exp" / "notes.txt").write_text("x")
    args = [str(tmp_path / a) if not a.startswith("-") else a for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "out")]
    assert main(["reproduce", "--check", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("kl-grad: error: ") and message in err[0]
    assert not (tmp_path / "nowhere").exists()


def test_reproduce_keeps_a_folder_whose_numbers_moved_below_tolerance(small):
    """make reproduce on another machine: a number off by less than its tolerance leaves the file byte for byte;
    beyond it, the folder is rewritten with the recomputed numbers."""
    exp, out = small
    csv = out / "a" / "table.csv"
    table = pd.read_csv(csv)
    stdev = table.loc[0, "stdev"]  # exact row: tolerance max(1e-9 relative, 10th digit); moved by one 10th digit
    unit = 10.0 ** (math.floor(math.log10(stdev)) - 9)
    nudged = csv.read_text().replace("%.10g" % stdev, "%.10g" % (stdev + unit), 1)
    assert nudged != csv.read_text()
    csv.write_text(nudged)
    reproduce(exp, out, echo=lambda *_: None)
    assert csv.read_text() == nudged
    csv.write_text(nudged.replace("%.10g" % (stdev + unit), "%.10g" % (stdev * 1.001), 1))
    reproduce(exp, out, echo=lambda *_: None)
    assert pd.read_csv(csv).loc[0, "stdev"] == pytest.approx(stdev, rel=1e-12)
