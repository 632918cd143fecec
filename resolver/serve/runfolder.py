"""The ``run`` folder of the state folder: what a running server writes there for its
own processes (policies being built, ``build-*``; versions handed to the workers,
``policy-*``), and what a server killed meanwhile leaves behind.

A server removes those files itself when it is done with them. One killed (SIGKILL, the
OOM killer, a power cut) leaves them, and a policy of a million names is tens of
megabytes a version: a server that keeps crashing would fill the disk. So a starting
server claims the folder with a lock (``flock`` on ``run/.owner``, held until its last
process exits: the workers inherit it) and, if it gets it, removes what is left there.
If another running server holds it (two servers sharing a state folder), nothing is
removed: those files may be that server's, in use.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

LOCK_NAME = ".owner"
# What a server writes in run/ (serve.builder, policy.published).
LEFTOVERS = ("build-*", "policy-*")


class RunFolder:
    """The claim on ``state/run``: the lock's file descriptor, kept open."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def claim(state_dir: Path) -> RunFolder | None:
    """Claim ``state_dir/run`` and remove what a server killed earlier left there. None
    when another running server holds it or the folder cannot be written (nothing is
    removed then; DNS does not depend on it)."""
    directory = state_dir / "run"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as error:
        log.warning("cannot claim %s (%s): what a killed server left there stays", directory, error)
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        log.warning(
            "another running aiwall uses the state folder %s: its files in %s are left alone",
            state_dir,
            directory,
        )
        return None
    removed = 0
    for pattern in LEFTOVERS:
        for path in directory.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed += 1
    if removed:
        log.info("removed %d files and folders a stopped server left in %s", removed, directory)
    return RunFolder(fd)
