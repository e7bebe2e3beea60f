"""Experiment files: strict parsing, every shipped experiment runs at a tiny budget, reruns are byte-identical."""

import dataclasses
from pathlib import Path

import pytest

from kl_grad.errors import KLGradError
from kl_grad.lab.experiments import KINDS, load_experiment, parse_experiment
from kl_grad.lab.reproduce import reproduce

EXPERIMENTS = sorted((Path(__file__).parent.parent / "experiments").glob("*.toml"))
TINY = {"samples": 64, "trials": 3}


def test_there_are_experiments():
    assert len(EXPERIMENTS) >= 2


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_shipped_experiment_runs_at_tiny_budget(path):
    exp = load_experiment(path)
    kind = KINDS[exp.kind]
    kind.check(exp)
    tiny = dataclasses.replace(exp, **{k: v for k, v in TINY.items() if hasattr(exp, k)})
    table, figures = kind.run(tiny)
    assert len(table) > 0
    # A number is either present or refused with a reason (e.g. exact mode on clamped estimators).
    means = table["mean_grad"] if "mean_grad" in table else table["mean"]
    assert (means.notna() | (table["warning"] != "")).all()
    assert all(png.startswith(b"\x89PNG") for png in figures.values())


GOOD = {"kind": "gradients", "title": "t", "policy": "normal:0,1", "ref": "normal:1,1", "estimators": ["k2"]}


@pytest.mark.parametrize("change, message", [
    ({"trails": 5}, "unknown key(s) trails; allowed: kind, title"),
    ({"kind": "grads"}, "unknown experiment kind 'grads'; expected one of gradients, values, sweep"),
    ({"samples": "100"}, "samples must be a int"),
    ({"samples": 1.5}, "samples must be a int"),
    ({"estimators": "k1"}, "estimators must be a list of strings"),
    ({"seed": True}, "seed must be a int"),
])
def test_bad_config_is_rejected(change, message):
    with pytest.raises(KLGradError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_experiment({**GOOD, **change}, "x.toml")


def test_missing_key_is_named():
    data = dict(GOOD)
    del data["ref"]
    with pytest.raises(KLGradError, match="missing key.*ref"):
        parse_experiment(data, "x.toml")


def test_invalid_names_fail_before_anything_is_written(tmp_path):
    exp_dir, out = tmp_path / "exp", tmp_path / "out"
    exp_dir.mkdir()
    (exp_dir / "a.toml").write_text('kind="gradients"\ntitle="a"\npolicy="normal:0,1"\nref="normal:1,1"\n'
                                    'estimators=["k2"]\nsamples=50\ntrials=3\n')
    (exp_dir / "b.toml").write_text('kind="gradients"\ntitle="b"\npolicy="normal:0,1"\nref="normal:1,1"\n'
                                    'estimators=["k9"]\n')
    with pytest.raises(KLGradError, match="unknown estimator 'k9'"):
        reproduce(exp_dir, out, echo=lambda *_: None)
    assert not out.exists()  # a.toml is valid, but nothing ran because b.toml is not


def test_reproduce_is_byte_identical(tmp_path):
    exp_dir = tmp_path / "exp"
    exp_dir.mkdir()
    (exp_dir / "small.toml").write_text('kind="gradients"\ntitle="small"\npolicy="normal:0,1"\n'
                                        'ref="normal:1,1.1"\nestimators=["k1","k3"]\nsamples=100\ntrials=4\n')
    snapshots = []
    for out in (tmp_path / "one", tmp_path / "two"):
        assert reproduce(exp_dir, out, echo=lambda *_: None) == 1
        snapshots.append({p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()})
    assert snapshots[0] == snapshots[1]
    names = {str(p) for p in snapshots[0]}
    assert names == {"README.md", "small/table.md", "small/table.csv", "small/table.json", "small/config.toml"}
    assert str(tmp_path) not in b"".join(snapshots[0].values()).decode()  # no machine paths inside


def experiment_and_old_results(tmp_path):
    """exp/a.toml (exact, fast) and out/old/, the results of an earlier run of another experiment."""
    exp_dir, out = tmp_path / "exp", tmp_path / "out"
    exp_dir.mkdir()
    (exp_dir / "a.toml").write_text('kind="gradients"\ntitle="a"\npolicy="normal:0,1"\nref="normal:1,1"\n'
                                    'estimators=["k2"]\nmode="exact"\nsamples=50\n')
    (out / "old").mkdir(parents=True)
    (out / "old" / "config.toml").write_text("x")
    return exp_dir, out


def test_stale_results_are_removed_but_foreign_folders_kept(tmp_path):
    exp_dir, out = experiment_and_old_results(tmp_path)  # old/: its experiment file has since been deleted
    (out / "mine").mkdir()
    (out / "mine" / "notes.txt").write_text("keep")  # not ours: never touched
    reproduce(exp_dir, out, echo=lambda *_: None)
    assert not (out / "old").exists() and (out / "mine" / "notes.txt").exists() and (out / "a").is_dir()


def test_one_file_writes_only_its_folder(tmp_path):
    exp_dir, out = experiment_and_old_results(tmp_path)  # a single file must keep old/ and the index as they are
    assert reproduce(exp_dir / "a.toml", out, echo=lambda *_: None) == 1
    assert (out / "a" / "table.csv").is_file() and (out / "old").is_dir() and not (out / "README.md").exists()


@pytest.mark.parametrize("name, message", [("missing", "does not exist"), ("notes.txt", "is not a .toml file")])
def test_reproduce_names_a_missing_or_wrong_path(tmp_path, name, message):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(KLGradError, match=message):
        reproduce(tmp_path / name, tmp_path / "out", echo=lambda *_: None)
    assert not (tmp_path / "out").exists()


def test_folders_named_like_experiment_files_are_skipped_and_suffixes_ignore_case(tmp_path):
    exp_dir, out = experiment_and_old_results(tmp_path)
    (exp_dir / "sub.toml").mkdir()  # a folder, not an experiment file
    assert reproduce(exp_dir, out, echo=lambda *_: None) == 1
    (exp_dir / "a.toml").rename(exp_dir / "B.TOML")
    assert reproduce(exp_dir / "B.TOML", out, echo=lambda *_: None) == 1 and (out / "B").is_dir()


def test_sweep_moves_the_reference_to_each_grid_value():
    # Each block must be the table at its own reference: its true gradients are autograd of the closed form
    # there, and k2 (unbiased for ∇KL(policy‖ref)) must equal them.
    from kl_grad.lab import sweep, true_gradients
    from kl_grad.lab.families import parse_spec

    policy = parse_spec("normal:0,1")
    table = sweep(policy, parse_spec("normal:1,1.1"), "loc", [0.5, 2.0], ["k2"])
    for x, block in table.groupby("x"):
        truth = true_gradients(policy, parse_spec(f"normal:{x},1.1"))["policy||ref"]
        assert block["true_grad"].tolist() == pytest.approx(truth.tolist(), rel=1e-12)
        assert block["mean_grad"].tolist() == pytest.approx(truth.tolist(), rel=1e-12)  # measured ≤ 6e-15
