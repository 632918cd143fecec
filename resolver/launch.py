"""The command's first step: make a starting aiwall safe from SIGHUP.

Importing the server takes about half a second (more on a busy machine), and SIGHUP's
default action ends the process. An administrator who reloads a service that is still
starting (``systemctl reload``, a config-management run) must not kill it: until the
server installs its own handlers, a SIGHUP is only remembered here, and the server
applies that reload once it serves (``serve.supervisor``, ``serve.server``).
"""

from __future__ import annotations

import logging
import signal
from types import FrameType

log = logging.getLogger(__name__)

pending: list[int] = []


def _remember(number: int, _frame: FrameType | None) -> None:
    pending.append(number)


def reload_was_asked() -> bool:
    """Whether a SIGHUP came before the server's own handlers (asked once)."""
    asked = signal.SIGHUP in pending
    pending.clear()
    if asked:
        log.info("SIGHUP while aiwall was starting: the reload follows once it serves")
    return asked


def main() -> int:
    signal.signal(signal.SIGHUP, _remember)
    from resolver.cli import main as run  # after the handler, on purpose

    return run()
