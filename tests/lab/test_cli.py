"""kl_grad.lab.cli: ``kl-grad``: output formats, and one-line errors with exit status 2 for every bad input."""

import json
import os
import subprocess
import sys
from io import StringIO

import pandas as pd
import pytest

from kl_grad.lab.cli import main
from kl_grad.lab.gradient_table import COLUMNS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMALL = ["table", "--policy", "normal:0,1", "--ref", "normal:1,1.1", "--samples", "200", "--trials", "5", "-q"]


def run_subprocess(args):
    """Run ``python -m kl_grad`` in a subprocess (what users run); returns the CompletedProcess."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "kl_grad", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=120)


def run_cli(args, capsys):
    """``main(args)`` in this process (milliseconds instead of a 2 s interpreter start): (status, stdout, stderr).

    argparse's errors exit through SystemExit; any other exception escapes and fails the test, which is how
    "no traceback" is checked here. test_entry_point_errors_are_one_line checks the real ``python -m``.
    """
    try:
        status = main(args)
    except SystemExit as exc:
        status = exc.code
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, status, out, err)


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_machine_formats_carry_all_columns(fmt, capsys):
    assert main(SMALL + ["--format", fmt]) == 0
    out = capsys.readouterr().out
    table = pd.read_csv(StringIO(out)) if fmt == "csv" else pd.DataFrame(json.loads(out))
    assert list(table.columns) == COLUMNS
    assert len(table) == 3 * 2  # k1, k2, k3 by default × (loc, scale)
    assert set(table["direction"]) == {"policy||ref"}


def test_markdown_and_grid_views(capsys):
    assert main(SMALL + ["--estimators", "k2,reverse_k2", "--format", "grid"]) == 0
    out = capsys.readouterr().out
    assert "╒" in out and "bias/true" in out and "∇KL(ref‖policy) w.r.t. scale" in out
    assert main(SMALL) == 0
    assert capsys.readouterr().out.startswith("| estimator")


BAD_INPUTS = [
    (["--estimators", "k1,k4"], "expected one of k1, k2, k3"),
    (["--policy", "normal:0"], "expected normal:LOC,SCALE"),
    (["--policy", "gauss:0,1"], "expected one of normal"),
    (["--policy", "normal0,1"], "expected FAMILY:PARAMS"),
    (["--ref", "normal:1,abc"], "is not a number"),
    (["--policy", "normal:0,0"], "scale must be > 0"),
    (["--ref", "normal:0,-1"], "scale must be > 0"),
    (["--policy", "normal:nan,1"], "loc must be finite"),
    (["--samples", "0"], "samples must be a positive integer"),
    (["--samples", "-5"], "samples must be a positive integer"),
    (["--trials", "0"], "trials must be an integer >= 2"),
    (["--trials", "1"], "trials must be an integer >= 2"),
    (["--trials", "x"], "'x' is not a whole number"),
    (["--placements", "penalty"], "expected one of loss"),
    (["--format", "xml"], "expected one of markdown"),
    (["--dtype", "float16"], "expected one of float32, float64"),
    (["--estimators", ","], "has an empty name"),
    (["--pathwise", "--sampler", "normal:0,2"], "on-policy only"),
    (["--direction", "backward"], "expected one of policy||ref, ref||policy, reverse, forward"),
]


@pytest.mark.parametrize("extra, message", BAD_INPUTS)
def test_bad_input_one_line_exit_2_no_file(extra, message, tmp_path, capsys):
    out_file = tmp_path / "out.csv"
    # Later flags override the defaults in SMALL, so each case changes exactly one input.
    proc = run_cli(SMALL + extra + ["-o", str(out_file)], capsys)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr  # one line, no traceback
    assert message in lines[0]
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert not out_file.exists() and list(tmp_path.iterdir()) == []


def test_missing_required_distribution_is_one_line(capsys):
    proc = run_cli(["table", "--policy", "normal:0,1"], capsys)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "--ref" in proc.stderr


def test_output_file_written_whole(tmp_path):
    out_file = tmp_path / "t.json"
    assert main(SMALL + ["--format", "json", "-o", str(out_file)]) == 0
    assert len(json.loads(out_file.read_text())) == 6
    assert [p.name for p in tmp_path.iterdir()] == ["t.json"]  # no temporary left behind


@pytest.mark.parametrize("name, check", [("t.csv", lambda text: pd.read_csv(StringIO(text))),
                                         ("t.json", json.loads), ("t.md", lambda text: text.index("| estimator"))])
def test_output_extension_picks_the_format(tmp_path, name, check):
    assert main(SMALL + ["-o", str(tmp_path / name)]) == 0
    check((tmp_path / name).read_text())


def test_format_clashing_with_the_extension_is_refused(tmp_path, capsys):
    proc = run_cli(SMALL + ["--format", "markdown", "-o", str(tmp_path / "t.csv")], capsys)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "whose extension means csv" in proc.stderr and list(tmp_path.iterdir()) == []


def test_trials_are_not_checked_in_exact_mode(capsys):
    assert main(SMALL + ["--mode", "exact", "--trials", "1", "--format", "csv"]) == 0
    assert len(pd.read_csv(StringIO(capsys.readouterr().out))) == 6


@pytest.mark.parametrize("names, message", [
    ("k1,k1", "k1 is given twice"),
    ("k3_clamped,verl:low_var_kl", "k3_clamped is given twice (k3_clamped and verl:low_var_kl are the same estimator)"),
])
def test_duplicates_say_whether_an_alias_is_involved(names, message, capsys):
    assert main(["values", "--policy", "normal:0,1", "--ref", "normal:1,1", "--estimators", names]) == 2
    err = capsys.readouterr().err
    assert err == f"kl-grad: error: {message}\n"  # one line; an alias is mentioned only when one was used


def test_values_refuses_a_gradient_surrogate_and_lists_the_value_estimators(capsys):
    proc = run_cli(["values", "--policy", "normal:0,1", "--ref", "normal:1,1", "--estimators", "reverse_k2"], capsys)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "value estimators: k1, k2, k3, reverse_k1" in proc.stderr and "reverse_k2," not in proc.stderr


def test_seed_chooses_the_draws(capsys):
    means = []
    for seed in ("1", "1", "2"):
        assert main(SMALL + ["--seed", seed, "--format", "csv"]) == 0
        means.append(pd.read_csv(StringIO(capsys.readouterr().out))["mean_grad"].tolist())
    assert means[0] == means[1] and means[0] != means[2]


def test_estimators_listing(capsys):
    assert main(["estimators"]) == 0
    out = capsys.readouterr().out
    assert "reverse_k2" in out and "verl:low_var_kl" in out


def test_direction_aliases_follow_the_papers_convention(capsys):
    # reverse = policy||ref (the RLHF papers' usage), forward = ref||policy; seed 003 uses the opposite words.
    tables = {}
    for name in ("policy||ref", "reverse", "ref||policy", "forward"):
        assert main(SMALL + ["--estimators", "k3", "--mode", "exact", "--format", "csv", "--direction", name]) == 0
        tables[name] = pd.read_csv(StringIO(capsys.readouterr().out))
    assert (tables["reverse"]["direction"] == "policy||ref").all()
    assert (tables["forward"]["direction"] == "ref||policy").all()
    pd.testing.assert_frame_equal(tables["reverse"], tables["policy||ref"])
    pd.testing.assert_frame_equal(tables["forward"], tables["ref||policy"])
    # Against its own target k3 is biased; against ref||policy it is unbiased (seed 001/003's finding).
    assert (tables["forward"]["verdict"] == "unbiased").all()
    assert (tables["reverse"]["verdict"] == "biased").all()


@pytest.mark.parametrize("args", [SMALL + ["--policy", "normal:0,-1"], ["table", "--trials", "x"]])
def test_entry_point_errors_are_one_line(args):
    proc = run_subprocess(args)  # the real `python -m kl_grad`: a library error and an argparse error
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith("kl-grad: error: ") and "Traceback" not in proc.stderr and proc.stdout == ""


def test_mismatched_families_are_rejected(capsys):
    proc = run_cli(SMALL + ["--ref", "categorical:0,1"], capsys)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "does not match policy normal:0,1" in proc.stderr


@pytest.mark.parametrize("extra, message", [
    (["-o", "/"], "it is a directory"),
    (["-o", "/proc/no/such.md"], "cannot write /proc/no/such.md"),
])
def test_unwritable_output_is_one_line(extra, message, capsys):
    proc = run_cli(SMALL + extra, capsys)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_written_files_follow_the_umask(tmp_path):
    out = tmp_path / "t.md"
    assert main(SMALL + ["-o", str(out)]) == 0
    mask = os.umask(0)
    os.umask(mask)
    assert (out.stat().st_mode & 0o777) == (0o666 & ~mask)


@pytest.mark.parametrize("fmt", ["markdown", "csv", "json"])
def test_values_command_formats(fmt, capsys):
    assert main(["values", "--policy", "normal:0,1", "--ref", "normal:1,1", "--format", fmt]) == 0
    out = capsys.readouterr().out
    if fmt == "markdown":
        assert out.startswith("| estimator")
    else:
        table = pd.read_csv(StringIO(out)) if fmt == "csv" else pd.DataFrame(json.loads(out))
        assert table["estimator"].tolist() == ["k1", "k2", "k3"]  # the default estimators
        assert table["verdict"].tolist() == ["unbiased", "biased", "unbiased"]  # Schulman's table, exact by default


def test_reproduce_command_writes_the_results(tmp_path, capsys):
    exp = tmp_path / "a.toml"
    exp.write_text('kind="values"\ntitle="a"\npolicy="normal:0,1"\nref="normal:1,1"\nestimators=["k1"]\n')
    assert main(["reproduce", str(exp), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "a" / "table.json").is_file()
    assert "== a: a" in capsys.readouterr().out


def test_reproduce_command_errors_are_one_line(tmp_path, capsys):
    proc = run_cli(["reproduce", str(tmp_path / "missing"), "--out", str(tmp_path / "out")], capsys)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "does not exist" in proc.stderr


# --------------------------------------------------------------------------- #
# Inputs that used to give tracebacks or be silently accepted
# --------------------------------------------------------------------------- #

@pytest.mark.parametrize("argv, message", [
    (["table", "--policy", "normal:0,1", "--ref", "normal:1,1.1", "--seed", str(2**64)], "seed must be an integer"),
    (["table", "--policy", "normal:0,1", "--ref", "normal:1,1.1", "--samples", "3000000000"], "fit in this machine"),
    (["table", "--policy", "normal:0,1", "--ref", "normal:1,1.1", "--direction", ""], "unknown direction ''"),
    (["table", "--policy", "normal:0,1", "--ref", "normal:1,1.1", "--samples", "1.5"], "not a whole number"),
    (["table", "--policy", "categorical:" + ",".join(["0"] * 20000), "--ref", "categorical:" + ",".join(["1"] * 20000),
      "--mode", "exact"], "logits fit"),
    (["values", "--policy", "normal:0,1", "--ref", "normal:1,1", "--mode", "mc", "--seed", str(-(2**64))],
     "seed must be an integer"),
])
def test_bad_numbers_get_one_line_and_exit_2(argv, message, capsys):
    try:
        status = main(argv)
    except SystemExit as exit_:  # argparse's own errors (the type of --samples) exit from parse_args
        status = exit_.code
    assert status == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_scientific_notation_counts_are_accepted(capsys):
    assert main(["table", "--policy", "normal:0,1", "--ref", "normal:1,1.1", "--samples", "1e3", "--trials",
                 "1e1", "--format", "csv", "-q"]) == 0
    table = pd.read_csv(StringIO(capsys.readouterr().out))
    assert (table.samples == 1000).all() and (table.trials == 10).all()


def test_bare_command_prints_help_and_version_works(capsys):
    assert main([]) == 0
    assert "usage: kl-grad" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith("kl-grad ")


def test_extreme_input_leaks_no_numpy_warning_and_every_refusal_says_why():
    # A reference of scale 1e-30 overflows float32 gradients; a softmax(0, −800) policy underflows: the
    # numbers are refused (NaN) with a reason, and nothing but the table reaches the terminal.
    for args in (["table", "--policy", "normal:0,1", "--ref", "normal:1e-30,1e-30", "--trials", "3",
                  "--samples", "10", "--format", "csv", "-q"],
                 ["table", "--policy", "categorical:0,-800", "--ref", "categorical:0,800", "--mode", "exact",
                  "--estimators", "k1,k2,k3,reverse_k1,reverse_k2", "--format", "csv"]):
        out = run_subprocess(args)
        assert out.returncode == 0 and out.stderr == "", out.stderr
        table = pd.read_csv(StringIO(out.stdout), keep_default_na=False, na_values=[""])
        refused = table[table.mean_grad.isna()]
        assert (refused.warning.str.len() > 0).all()
