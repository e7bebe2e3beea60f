"""kl_grad.lab.memory.keep_freed_memory: applied through glibc's mallopt, or reported as not applicable."""

from __future__ import annotations

import platform

from kl_grad.lab.memory import SETTINGS, keep_freed_memory


def test_keep_freed_memory_applies_on_glibc_and_is_idempotent():
    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert keep_freed_memory() is glibc
    assert keep_freed_memory() is glibc  # calling it again is harmless
    assert set(SETTINGS) == {-1, -2, -3}  # M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD
