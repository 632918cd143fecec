"""When to stop asking an upstream that keeps failing, and when to try it again.

After ``threshold`` consecutive failures (timeouts, network errors) the upstream is
skipped for a back-off period that starts at ``first`` seconds and doubles up to
``maximum``; when it ends one probe query is let through, and only its result decides
whether the upstream is back. A dead upstream so costs a timeout now and then instead of
one on every query (as CoreDNS's forward plugin and Unbound's infra cache do).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable

FAILURES_BEFORE_BACKOFF = 3
FIRST_BACKOFF = 5.0
MAX_BACKOFF = 60.0


class Admission(enum.Enum):
    SKIP = "skip"
    SEND = "send"
    # The one query let through when a back-off ends: its result decides.
    PROBE = "probe"


class UpstreamHealth:
    def __init__(
        self,
        *,
        threshold: int = FAILURES_BEFORE_BACKOFF,
        first: float = FIRST_BACKOFF,
        maximum: float = MAX_BACKOFF,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = threshold
        self._first = first
        self._maximum = maximum
        self._clock = clock
        self._failures = 0
        self.backoff = 0.0  # the current back-off period; 0 while the upstream is used
        self._until = 0.0
        self._probing = False
        self._last_success = -1.0

    def now(self) -> float:
        return self._clock()

    @property
    def up(self) -> bool:
        return self.backoff == 0.0

    def admit(self) -> Admission:
        if self.backoff == 0.0:
            return Admission.SEND
        if self._probing or self._clock() < self._until:
            return Admission.SKIP
        self._probing = True
        return Admission.PROBE

    def succeeded(self) -> None:
        """Any answer, probe or straggler, shows the upstream is alive."""
        self._last_success = self._clock()
        self._failures = 0
        self.backoff = 0.0
        self._probing = False

    def failed(self, admission: Admission, sent: float) -> bool:
        """Count a failure of an attempt sent at ``sent``; True when the upstream has just
        started (another) back-off."""
        if self._last_success >= sent:
            # It answered something else while this one waited: alive, only this question
            # is slow (a dead authoritative server behind it, say). Counting that would let
            # a few queries for such names take a healthy upstream out.
            return False
        if admission is Admission.PROBE:
            self._probing = False
            self._start(min(self.backoff * 2, self._maximum))
            return True
        if self.backoff:
            # A query sent before the back-off began: already accounted for.
            return False
        self._failures += 1
        if self._failures >= self._threshold:
            self._start(self._first)
            return True
        return False

    def abandoned(self, admission: Admission) -> None:
        """The attempt ended without a verdict (cancelled): let another probe through."""
        if admission is Admission.PROBE:
            self._probing = False

    def _start(self, period: float) -> None:
        self.backoff = period
        self._until = self._clock() + period
