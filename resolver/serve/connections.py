"""The cap on open client connections (TCP, and DoT on its own cap): least recently
active first, so that stalled connections can never lock real clients out."""

from __future__ import annotations

from collections import OrderedDict
from typing import Protocol

from prometheus_client import Counter, Gauge


class Connection(Protocol):
    @property
    def busy(self) -> bool: ...

    def close(self) -> None: ...


class TcpConnections:
    """Open client connections, least recently active first, under a cap.

    When the cap is reached, the connection idle the longest is closed to admit the new
    one, so stalled connections can never lock real clients out (RFC 7766 6.2.3).
    ``closed`` counts the connections closed by the cap, by reason; ``gauge`` (if any)
    shows how many are open.
    """

    def __init__(
        self, limit: int, idle_timeout: float, closed: Counter, gauge: Gauge | None = None
    ) -> None:
        self.limit = limit
        self.idle_timeout = idle_timeout
        self._closed = closed
        self._gauge = gauge
        self._open: OrderedDict[Connection, None] = OrderedDict()

    def admit(self, connection: Connection) -> bool:
        if len(self._open) >= self.limit:
            victim = next((c for c in self._open if not c.busy), None)
            if victim is None:
                self.count_closed("limit")
                return False
            self.count_closed("evicted")
            # Forget it now, not in connection_lost: a newcomer admitted before then would
            # otherwise pick the same victim again and push us past the cap.
            self.forget(victim)
            victim.close()
        self._open[connection] = None
        self._count()
        return True

    def touch(self, connection: Connection) -> None:
        if connection in self._open:
            self._open.move_to_end(connection)

    def forget(self, connection: Connection) -> None:
        self._open.pop(connection, None)
        self._count()

    def count_closed(self, reason: str) -> None:
        """A connection closed for ``reason`` (idle, malformed, write_stalled...)."""
        self._closed.labels(reason).inc()

    def close_all(self) -> None:
        for connection in list(self._open):
            connection.close()

    def _count(self) -> None:
        if self._gauge is not None:
            self._gauge.set(len(self._open))
