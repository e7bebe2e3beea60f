"""``kl-grad audit``: the json shape, the text views, and one-line errors with exit status 2."""

import json
import os
import sys

import pytest

from kl_grad.lab.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "examples", "trainer_kl_terms.py")

BAD = '''
import torch

def shape(logp, ref_logp):
    return (logp - ref_logp).sum(0)  # sums the batch axis (tokens are last; .sum(-1) is per-sequence)

def nan(logp, ref_logp):
    return logp * float("nan")

def one_arg(logp):
    return logp

value = 1.5
'''


def run(args, capsys):
    try:
        status = main(args)
    except SystemExit as exc:  # argparse
        status = exc.code
    out = capsys.readouterr()
    return status, out.out, out.err


def test_json_has_follows_warnings_and_problems(capsys, tmp_path):
    path = tmp_path / "audit.json"
    status, out, err = run(["audit", f"{EXAMPLES}:k3_loss", "--quiet", "-o", str(path)], capsys)
    assert status == 0 and out == "", err
    data = json.loads(path.read_text())  # the .json extension picks the format
    assert set(data) == {"function", "follows", "follows_sequence", "warnings", "problems"}
    assert data["follows"] == "ref||policy" and data["function"] == "k3_loss"
    assert data["follows_sequence"] == "none"  # per-token k3: the token-level partial gradient on sequences
    assert isinstance(data["warnings"], list)
    names = [p["problem"] for p in data["problems"]]
    assert names == ["gauss-near", "gauss-far", "gauss-narrow-ref", "gauss-wide-ref", "tokens-3", "tokens-6",
                     "markov-3x4", "markov-2x6"]
    assert [p["tokens"] for p in data["problems"]] == [1] * 6 + [4, 6]
    first = data["problems"][0]
    for key in ("follows", "mode", "rel_bias_norm_vs_policy||ref", "rel_bias_norm_vs_ref||policy", "stdev_ratio",
                "zero_mass", "params"):
        assert key in first
    assert [q["param"] for q in first["params"]] == ["loc", "scale"]


def test_markdown_and_placement(capsys):
    status, out, err = run(["audit", f"{EXAMPLES}:k1_loss", "--placement", "reward", "--quiet", "--format", "grid"],
                           capsys)
    assert status == 0, err
    assert out.startswith("k1_loss: follows policy||ref")  # k1 as a REINFORCE reward: w·sg(k1)
    assert "╒" in out


@pytest.fixture
def bad_file(tmp_path):
    path = tmp_path / "bad_terms.py"
    path.write_text(BAD)
    return str(path)


@pytest.mark.parametrize("target, match", [
    ("no_such_module_abc:fn", "no module named"),
    ("missing/terms.py:fn", "does not exist"),
    ("{bad}:value", "not callable"),
    ("{bad}:nope", "has no attribute"),
    ("{bad}:one_arg", "wrong signature"),
    ("{bad}:shape", "returned shape"),
    ("{bad}:nan", "NaN"),
    ("{examples}:k2_detached", "no gradient reaches logp"),
])
def test_bad_targets_exit_2_with_one_line(capsys, tmp_path, bad_file, target, match):
    out_file = tmp_path / "never.json"
    status, out, err = run(["audit", target.format(bad=bad_file, examples=EXAMPLES), "-o", str(out_file)], capsys)
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("kl-grad: error: ") and match in err, err
    assert not out_file.exists()  # no half-written file


@pytest.mark.parametrize("extra, match", [
    (["--placement", "nowhere"], "unknown placement"), (["--format", "csv"], "unknown format"),
    (["--kwarg", "novalue"], "NAME=VALUE"),
])
def test_bad_options_exit_2(capsys, extra, match):
    status, out, err = run(["audit", f"{EXAMPLES}:k2_loss", *extra], capsys)
    assert status == 2 and match in err and err.count("\n") == 1, err


def test_help_teaches_with_examples(capsys):
    status, out, _ = run(["audit", "--help"], capsys)
    assert status == 0
    assert "examples:" in out and "--kwarg kl_penalty=low_var_kl" in out and "follows" in out


def test_readme_shows_the_real_output(capsys):
    status, out, err = run(["audit", f"{EXAMPLES}:k3_loss", "--quiet"], capsys)
    assert status == 0, err
    page = open(os.path.join(ROOT, "docs", "audit.md"), encoding="utf-8").read()
    assert f"```\n{out.rstrip()}\n```" in page  # docs/audit.md's output block


def test_every_example_in_the_help_epilog_loads_its_target(monkeypatch):
    """Each ``kl-grad audit ...`` line of --help names a real target, kwargs and placement (from the repo root)."""
    import argparse
    import shlex

    from kl_grad.lab.auditing.cli import EPILOG, _group, add_parser
    from kl_grad.lab.target import load_target, parse_kwargs
    from kl_grad.placements import get_placement

    monkeypatch.chdir(ROOT)
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(), "audit")
    commands = [line.strip() for line in EPILOG.splitlines() if line.strip().startswith("kl-grad audit ")]
    assert len(commands) >= 3
    for command in commands:
        args = parser.parse_args(shlex.split(command)[1:])
        fn = load_target(args.target, parse_kwargs(args.kwarg))
        assert callable(fn), command
        if args.placement == "group-reward":
            assert _group(args).size >= 2, command
        elif args.placement is not None:
            get_placement(args.placement)
    sys.modules.pop("examples.trainer_kl_terms", None)


def test_help_kwarg_example_binds_the_framework_keyword():
    from kl_grad.lab.target import load_target

    fn = load_target(f"{EXAMPLES}:kl_penalty", {"kl_penalty": "mse"})
    import torch

    logp, ref = torch.tensor([-1.0, -2.0]), torch.tensor([-1.5, -0.5])
    assert torch.allclose(fn(logp, ref), 0.5 * (logp - ref) ** 2)


@pytest.mark.parametrize("name, extra, message", [
    ("audit.csv", [], "audit.csv: this command writes markdown, grid, json; name the file .md or .json"),
    ("audit.json", ["--format", "markdown"], "would write markdown into"),
])
def test_an_output_name_that_contradicts_the_format_is_refused_before_running(tmp_path, capsys, name, extra, message):
    path = tmp_path / name
    status, out, err = run(["audit", f"{EXAMPLES}:k3_loss", "-o", str(path), *extra], capsys)
    assert status == 2 and message in err and err.count("\n") == 1 and not path.exists()


def test_reward_local_placement_is_accepted(capsys):
    """--help lists reward-local (w·sg(fn_t), each token alone); the CLI once refused it as an unknown placement."""
    status, out, err = run(["audit", f"{EXAMPLES}:k1_loss", "--placement", "reward-local", "--quiet"], capsys)
    assert status == 0, err
    assert out.startswith("k1_loss: follows policy||ref")
