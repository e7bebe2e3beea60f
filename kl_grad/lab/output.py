"""Writing output files: whole or not at all, without breaking what the path points at.

    a new path or a regular file   written atomically: a temporary file beside it, renamed over it
                                   (an interrupted or failed write leaves the old file or none);
                                   an existing file keeps its permission bits
    a symlink                      followed: its target is written as above, the link stays a link
    a stream (FIFO, terminal,      written in place, appending: it cannot be renamed over, and
    /dev/stdout, /proc/self/fd/N)  replacing /dev/stdout would turn it into a regular file;
                                   a FIFO waits for its reader, as ``cat > fifo`` does
    a directory                    refused

Errors (a directory in the way, no permission) become a one-line ``KLGradError``.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from ..errors import KLGradError


def _through_proc(path: Path) -> bool:
    """Does the path lead through /proc (e.g. /dev/stdout → /proc/self/fd/1): a process's stream, not a file?"""
    hops = str(path)
    for _ in range(40):  # the kernel's own limit on symlink hops
        if hops.startswith(("/proc/", "/dev/fd/")):
            return True
        if not os.path.islink(hops):
            return False
        link = os.readlink(hops)
        hops = link if os.path.isabs(link) else os.path.join(os.path.dirname(hops), link)
    return False


def write_atomic(path: Path, text: str | bytes) -> None:
    """Write ``text`` to ``path`` as the module docstring says."""
    path = Path(path)
    data = text.encode() if isinstance(text, str) else text
    try:
        if _through_proc(path):
            return _write_in_place(path, data)
        target = Path(os.path.realpath(path))  # a symlink's final target (the link itself stays)
        if target.is_dir():
            raise KLGradError(f"cannot write {path}: it is a directory")
        if target.exists() and not target.is_file():
            return _write_in_place(target, data)
        _replace(target, data)
    except OSError as exc:
        raise KLGradError(f"cannot write {path}: {exc.strerror or exc}") from None


def _write_in_place(path: Path, data: bytes) -> None:
    with open(path, "ab") as fh:
        fh.write(data)


def _replace(target: Path, data: bytes) -> None:
    """A temporary file in the target's folder, renamed over it; mode: the old file's, else 0666 − umask."""
    target.parent.mkdir(parents=True, exist_ok=True)
    mode = stat.S_IMODE(target.stat().st_mode) if target.exists() else 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
