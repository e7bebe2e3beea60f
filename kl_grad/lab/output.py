"""Writing output files: whole or not at all (a temporary file renamed into place).

Errors (a directory in the way, no permission) become a one-line ``KLGradError``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..errors import KLGradError


def write_atomic(path: Path, text: str | bytes) -> None:
    """Write via a temporary file in the same folder and rename it into place.

    Errors (a directory in the way, no permission) become a one-line KLGradError.
    The file gets the usual mode (0666 minus the umask), not mkstemp's 0600.
    """
    path = Path(path)
    if path.is_dir():
        raise KLGradError(f"cannot write {path}: it is a directory")
    data = text.encode() if isinstance(text, str) else text
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as exc:
        raise KLGradError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as exc:
        os.unlink(tmp)
        if isinstance(exc, OSError):
            raise KLGradError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
