"""Whether an upstream is used, decided by the server's own probes, never by clients'.

A client question that times out may just be a name whose own servers are dead; a flood
of such names must not take a healthy upstream out of service. So a failed client
attempt only makes the upstream *suspect*: the server then asks it its own question
(the root NS set, as CoreDNS's forward plugin does), and only that probe's result
decides. A failed probe takes the upstream out of rotation (clients no longer pay its
timeout) and further probes, spaced ``first`` seconds apart and doubling up to
``maximum``, bring it back the moment it answers. Any genuine answer from it, probe or
straggler, brings it back too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final, Protocol

from resolver.shared import HealthBoard

FIRST_BACKOFF: Final = 1.0
MAX_BACKOFF: Final = 30.0
# After a probe found the upstream alive, failed client questions do not start another
# probe for this long: a flood of unanswerable names costs at most one probe a second.
RECHECK_AFTER: Final = 1.0


class UpstreamHealth:
    def __init__(
        self,
        *,
        first: float = FIRST_BACKOFF,
        maximum: float = MAX_BACKOFF,
        recheck_after: float = RECHECK_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._first = first
        self._maximum = maximum
        self._recheck_after = recheck_after
        self._clock = clock
        self.up = True
        self.checking = False  # a probe is in flight (or scheduled)
        self.backoff = 0.0  # the wait before the next probe while down
        self._checked_at = -recheck_after  # when a probe last found it alive

    def suspect(self) -> bool:
        """A client attempt failed (timeout, network error). True when a probe should
        start now; it is then the caller's to run and report with ``checked``."""
        if self.checking or not self.up:
            return False
        if self._clock() - self._checked_at < self._recheck_after:
            return False
        self.checking = True
        return True

    def checked(self, alive: bool) -> bool:
        """A probe's result. True when the state changed (up to down or back)."""
        if alive:
            self.checking = False
            self._checked_at = self._clock()
            return self.succeeded()
        changed = self.up
        self.up = False
        self.backoff = self._first if changed else min(self.backoff * 2, self._maximum)
        # Still checking: the prober waits ``backoff`` and asks again.
        return changed

    def succeeded(self) -> bool:
        """Any genuine answer shows the upstream alive. True when it was down."""
        changed = not self.up
        self.up = True
        self.backoff = 0.0
        return changed


class Health(Protocol):
    """What the forwarder asks about one upstream: whether to use it, and what it tells
    of the outcome of a client's question."""

    @property
    def up(self) -> bool: ...

    def suspect(self) -> bool:
        """A client attempt failed; True: run the probe here (``checked`` reports it)."""

    def succeeded(self) -> bool:
        """A genuine answer came; True when the upstream was down until now."""


class SharedHealth:
    """An upstream's health as the supervisor's probes decide it, read from the board
    every worker shares: a dead upstream costs one probe for the whole server, however
    many workers met its timeout. ``report`` tells the supervisor of a failed attempt,
    ``revive`` of a genuine answer while the board shows it dead."""

    def __init__(
        self,
        board: HealthBoard,
        slot: int,
        report: Callable[[], None],
        revive: Callable[[], None] = lambda: None,
        *,
        recheck_after: float = RECHECK_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._board = board
        self._slot = slot
        self._report = report
        self._revive = revive
        self._recheck_after = recheck_after
        self._clock = clock
        self._reported = -recheck_after

    @property
    def up(self) -> bool:
        return self._board.is_up(self._slot)

    def suspect(self) -> bool:
        """Tell the supervisor (at most once a RECHECK_AFTER); it probes, not us."""
        now = self._clock()
        if now - self._reported >= self._recheck_after:
            self._reported = now
            self._report()
        return False

    def succeeded(self) -> bool:
        """A genuine answer from an upstream the board shows dead: tell the supervisor,
        whose health of it (and the board) then comes back at once."""
        if not self.up:
            self._revive()
        return False
