"""Keep freed tensor memory in the process instead of handing it back to the OS (glibc only).

A Monte-Carlo run allocates and frees MiB-sized tensors tens of thousands of times.
Under glibc's default, dynamic thresholds the top of the heap is trimmed between
chunks, so the kernel has to fault in (and zero) fresh pages for the next chunk's
tensors. ``keep_freed_memory`` fixes the thresholds with ``mallopt`` so that freed
memory is reused, at the same peak memory (``make bench`` measures the saving; the README's
Performance section has the figures). The setting is process-wide, so
importing kl_grad never applies it: the ``kl-grad`` command does, and a script
or notebook may call it. The process keeps its peak memory until it exits.
"""

from __future__ import annotations

import ctypes
import platform

# mallopt parameters from glibc's <malloc.h>
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
SETTINGS = {
    _M_MMAP_THRESHOLD: 32 << 20,  # glibc's maximum: tensors below 32 MiB come from the reusable heap
    _M_TRIM_THRESHOLD: 1 << 30,  # never trim less than 1 GiB of free heap top
    _M_TOP_PAD: 64 << 20,  # grow the heap 64 MiB at a time
}


def keep_freed_memory() -> bool:
    """Apply every one of ``SETTINGS`` with glibc's ``mallopt``; True if all were accepted.

    On other C libraries nothing is changed and the result is False. Calling it again is harmless.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the running process's C library
    except (OSError, AttributeError):
        return False
    accepted = [mallopt(param, value) == 1 for param, value in SETTINGS.items()]  # all applied, then checked
    return all(accepted)
