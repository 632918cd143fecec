"""The process's heap, as glibc's malloc manages it: one arena, and freed memory given back.

Python's big objects (a policy's name table, its key arrays, the strings of a list being
parsed) come from malloc. By default glibc gives each thread that allocates its own
arena; a policy built in a helper thread then leaves its free holes in that arena, where
they stay resident (measured: 15 MB more per process after a start with a 1M-name list,
and the supervisor of two workers grew from 36 MB to 90 MB over three reloads). aiwall's
threads run one at a time under the GIL, so they gain nothing from arenas of their own:
one arena keeps the freed memory in one place, where ``trim`` returns it to the system.
Neither does anything on a C library other than glibc.
"""

from __future__ import annotations

import contextlib
import ctypes

M_ARENA_MAX = -8  # glibc's malloc.h


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def single_arena() -> None:
    """Every thread allocates from the main arena (call before any thread starts)."""
    libc = _libc()
    if libc is not None:
        with contextlib.suppress(AttributeError):
            libc.mallopt(M_ARENA_MAX, 1)


def trim() -> None:
    """Hand the free pages of the heap back to the system."""
    libc = _libc()
    if libc is not None:
        with contextlib.suppress(AttributeError):
            libc.malloc_trim(0)
