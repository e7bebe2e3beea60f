"""kl_grad.lab.output.write_atomic: whole files or none, never a partial one; directories refused."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import kl_grad.lab.output as output
from kl_grad.errors import KLGradError
from kl_grad.lab.output import write_atomic


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_writes_text_and_bytes_and_creates_parents(tmp_path):
    write_atomic(tmp_path / "a" / "b" / "t.md", "héllo\n")
    write_atomic(tmp_path / "p.png", b"\x89PNG\x00")
    assert (tmp_path / "a" / "b" / "t.md").read_text(encoding="utf-8") == "héllo\n"
    assert (tmp_path / "p.png").read_bytes() == b"\x89PNG\x00"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "p.png"]  # no temporary left behind


def test_a_new_file_follows_the_umask(tmp_path):
    write_atomic(tmp_path / "t.md", "x")
    assert ((tmp_path / "t.md").stat().st_mode & 0o777) == (0o666 & ~_umask())  # not mkstemp's 0600


def test_refuses_a_directory_and_leaves_it_alone(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "keep").write_text("k")
    with pytest.raises(KLGradError, match="cannot write .*d: it is a directory"):
        write_atomic(tmp_path / "d", "x")
    assert (tmp_path / "d" / "keep").read_text() == "k"


def test_a_failed_write_leaves_the_old_file_and_no_partial_one(tmp_path, monkeypatch):
    path = tmp_path / "t.csv"
    path.write_text("old, whole\n")

    def fail(*_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(output.os, "replace", fail)
    with pytest.raises(KLGradError, match="cannot write .*t.csv: No space left on device"):
        write_atomic(path, "new\n" * 1000)
    assert path.read_text() == "old, whole\n"
    assert [p.name for p in tmp_path.iterdir()] == ["t.csv"]


def test_an_interrupted_write_leaves_no_file_and_is_not_swallowed(tmp_path, monkeypatch):
    def interrupt(*_):
        raise KeyboardInterrupt

    monkeypatch.setattr(output.os, "replace", interrupt)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(tmp_path / "t.md", "x")
    assert list(tmp_path.iterdir()) == []


def test_a_file_in_the_way_of_a_parent_folder_is_one_error(tmp_path):
    (tmp_path / "f").write_text("a file")
    with pytest.raises(KLGradError, match="cannot write .*f/t.md"):
        write_atomic(tmp_path / "f" / "t.md", "x")
    assert (tmp_path / "f").read_text() == "a file"


def test_overwriting_replaces_the_whole_file(tmp_path):
    path = tmp_path / "t.md"
    write_atomic(path, "a much longer first version\n")
    write_atomic(path, "short\n")
    assert path.read_text() == "short\n"


# --------------------------------------------------------------------------- #
# -o through symlinks, to streams and FIFOs
# --------------------------------------------------------------------------- #

def test_symlink_is_followed_and_kept(tmp_path):
    real, link = tmp_path / "real.csv", tmp_path / "link.csv"
    real.write_text("old")
    link.symlink_to(real.name)
    write_atomic(link, "new")
    assert link.is_symlink() and real.read_text() == "new"


def test_existing_file_keeps_its_permissions(tmp_path):
    target = tmp_path / "t.csv"
    target.write_text("old")
    target.chmod(0o600)
    write_atomic(target, "new")
    assert target.read_text() == "new" and (target.stat().st_mode & 0o777) == 0o600


def test_fifo_is_written_in_place(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(Path(fifo).read_text()))
    reader.start()
    write_atomic(fifo, "through the pipe")
    reader.join(timeout=10)
    assert got == ["through the pipe"] and stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_dev_stdout_goes_to_stdout_and_stays_a_link(tmp_path):
    # In a subprocess whose stdout is a pipe: before, -o /dev/stdout printed nothing and (as root)
    # replaced the system's /dev/stdout symlink with a regular file.
    code = "from kl_grad.lab.output import write_atomic; write_atomic('/dev/stdout', 'hello\\n')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout == "hello\n"
    assert os.path.islink("/dev/stdout")


def test_dev_stdout_redirected_with_append_keeps_what_was_there(tmp_path):
    log = tmp_path / "log.txt"
    log.write_text("before\n")
    code = "from kl_grad.lab.output import write_atomic; write_atomic('/dev/stdout', 'after\\n')"
    with open(log, "a") as fh:
        subprocess.run([sys.executable, "-c", code], stdout=fh, check=True, timeout=60)
    assert log.read_text() == "before\nafter\n"
