"""Waiting for something a server or peer does in its own time, with a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(
    check: Callable[[], bool],
    timeout: float = 10.0,
    what: str = "the condition",
    step: float = 0.05,
) -> None:
    """Return as soon as ``check()`` is true; TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"gave up after {timeout:g} s waiting for {what}")
        time.sleep(step)
