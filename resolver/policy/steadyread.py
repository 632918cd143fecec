"""Build from list files only while nobody is writing them.

An administrator's script may rewrite a list in place (``> list.txt``, ``cp``) just as a
reload reads it; the reader would then see the file cut short, and a cut list parses
fine: it just blocks less. So a build counts only if every list file was last changed a
moment before it started and is exactly as it was (inode, size, modification time) when
it ended; otherwise it is retried, and a file that never settles rejects the reload. A
list replaced by rename (write to a temporary file, then ``mv``) is always read whole.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

# A file changed more recently than this may still be in the middle of being written.
SETTLE_SECONDS = 0.2
# How long a reload keeps trying before it gives up on a file that never settles.
GIVE_UP_SECONDS = 10.0

Signature = tuple[int, int, int] | None


class ListsChanging(Exception):
    """A list file kept changing while it was read."""


def _signature(path: Path) -> Signature:
    try:
        status = os.stat(path)
    except OSError:
        # Missing or unreadable: the build itself says why.
        return None
    return (status.st_ino, status.st_size, status.st_mtime_ns)


def _unsettled_for(signatures: list[Signature], now: float, settle: float) -> float:
    """How long until the most recently changed file has been quiet for ``settle``. A
    modification time in the future (clock skew, ``cp -p``) tells nothing: not waited on."""
    recent = [s[2] / 1e9 for s in signatures if s is not None and now - settle < s[2] / 1e9 <= now]
    return max(recent) + settle - now if recent else 0.0


def build_when_steady(
    paths: Sequence[Path],
    build: Callable[[], T],
    *,
    settle: float = SETTLE_SECONDS,
    give_up: float = GIVE_UP_SECONDS,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``build`` (which reads ``paths``) until a run saw none of them change."""
    deadline = clock() + give_up
    while True:
        before = [_signature(path) for path in paths]
        wait = _unsettled_for(before, clock(), settle)
        if wait <= 0:
            try:
                result = build()
            except Exception:
                if [_signature(path) for path in paths] == before:
                    raise
                # Read mid-write (an empty or cut file): the error may be the writer's.
            else:
                if [_signature(path) for path in paths] == before:
                    return result
            wait = settle
        if clock() + wait > deadline:
            raise ListsChanging(
                f"{', '.join(str(p) for p in paths)}: a list kept changing while being read "
                f"for {give_up:.0f} s; replace list files by rename (write a temporary file, "
                "then mv)"
            )
        sleep(wait)
