"""Reliability papercuts of the command line (issue 18): each bad input one line, exit 2, nothing written;
numpy's warnings stay out of stderr; progress reaches a log that is not a terminal."""

from __future__ import annotations

import io

import pytest

from kl_grad.lab.cli import main
from kl_grad.lab.progress import Progress

TABLE = ["table", "--policy", "normal:0,1", "--ref", "normal:1,1.1"]
TRAIN = ["train", "--policy", "categorical:0,0", "--ref", "categorical:1,0", "--reward", "1,0", "--beta", "1"]


def _run(args, capsys):
    try:
        status = main(args)
    except SystemExit as exc:
        status = exc.code
    return status, *capsys.readouterr()


@pytest.mark.parametrize("args, message", [
    (TABLE + ["--trials", "100000000000", "--samples", "1000000"], "trials 100000000000 keeps"),
    (TABLE + ["--estimators", "k1,,k2", "--mode", "exact"], "has an empty name"),
    (TABLE + ["--placements", "loss,", "--mode", "exact"], "has an empty name"),
    (TRAIN + ["--steps", "1e11"], "steps must be an integer from 1 to 1_000_000"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(args, message, capsys, tmp_path):
    out = tmp_path / "x.md"
    status, stdout, err = _run(args + ["-o", str(out)], capsys)
    assert status == 2 and stdout == "" and not out.exists()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kl-grad: error: ") and message in lines[0], err


def test_a_huge_trial_count_from_a_toml_file_is_refused_too(tmp_path, capsys):
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "big.toml").write_text('kind = "gradients"\ntitle = "t"\npolicy = "normal:0,1"\nref = "normal:1,1.1"\n'
                                  'estimators = ["k1"]\ntrials = 100000000000\nsamples = 10\n')
    status, _, err = _run(["reproduce", str(exp), "--out", str(tmp_path / "out")], capsys)
    assert status == 2 and "trials 100000000000 keeps" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_format_md_is_markdown(capsys):
    status, md, _ = _run(TABLE + ["--mode", "exact", "--format", "md"], capsys)
    status2, markdown, _ = _run(TABLE + ["--mode", "exact", "--format", "markdown"], capsys)
    assert status == status2 == 0 and md == markdown and md.startswith("| estimator")


def test_numpy_warnings_do_not_leak(capsys):
    status, out, err = _run(["table", "--policy", "normal:1e308,1", "--ref", "normal:-1e308,1", "--mode", "exact"],
                            capsys)
    assert status == 0 and err == "" and "overflows float64" in out  # the refusal says why, in its row


def test_progress_prints_plain_lines_when_stderr_is_a_log():
    log = io.StringIO()  # not a TTY
    clock = iter([0.0, 1.0, 6.0, 7.0, 20.0])
    progress = Progress("trials", stream=log)
    progress.last = 0.0
    import kl_grad.lab.progress as module

    real = module.time.monotonic
    module.time.monotonic = lambda: next(clock)
    try:
        for done in (1, 2, 3, 4, 5):
            progress(done, 5)
    finally:
        module.time.monotonic = real
    # t = 1: too soon; t = 6: ≥ 5 s since the last line; t = 7: too soon; the last one always
    assert log.getvalue().splitlines() == ["  trials 3/5", "  trials 5/5"]


def test_progress_reaches_stderr_of_a_cli_run_and_quiet_silences_it(capsys):
    _, _, err = _run(TABLE + ["--trials", "3", "--samples", "100"], capsys)
    assert err.splitlines()[-1] == "  trials 3/3"
    _, _, err = _run(TRAIN + ["--steps", "3"], capsys)
    assert err.splitlines()[-1] == "  case 3/3: done"
    _, _, err = _run(TRAIN + ["--steps", "3", "-q"], capsys)
    assert err == ""
