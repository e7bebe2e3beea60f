"""kl_grad.lab.results.reproduce: ``make reproduce``: validate everything first, write results/ byte for byte
reproducibly, keep foreign folders, remove stale ones."""

from __future__ import annotations

import pytest

from kl_grad.errors import KLGradError
from kl_grad.lab.results.reproduce import reproduce


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


def test_out_must_be_a_folder_and_experiments_must_exist(tmp_path):
    exp_dir, _ = experiment_and_old_results(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(KLGradError, match="it is a file, not a directory"):
        reproduce(exp_dir, tmp_path / "file", echo=lambda *_: None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(KLGradError, match="no experiment files"):
        reproduce(tmp_path / "empty", tmp_path / "out2", echo=lambda *_: None)


def test_the_index_links_every_experiment_with_its_notes(tmp_path):
    exp_dir, out = experiment_and_old_results(tmp_path)
    (exp_dir / "b.toml").write_text('kind="values"\ntitle="bee"\npolicy="normal:0,1"\nref="normal:1,1"\n'
                                    'estimators=["k1"]\nnotes="a note"\n')
    lines = []
    assert reproduce(exp_dir, out, echo=lines.append) == 2
    index = (out / "README.md").read_text()
    assert "## [a](a/)" in index and "## [bee](b/)" in index and "a note" in index
    assert (out / "b" / "config.toml").read_bytes() == (exp_dir / "b.toml").read_bytes()
    assert any(line.startswith("== b: bee") for line in lines)
