"""Long-lived connections to encrypted upstreams (DoT, DoH), shared by the queries in
flight: opened on demand, reused, closed when idle or known dead.

A connection holds its queries in flight by key (DoT: the DNS ID, DoH: the HTTP/2
stream), at most ``MAX_IN_FLIGHT`` of them. When it breaks (reset, end of stream, TLS error)
every query waiting on it fails at once, so the forwarder fails over to the next
upstream without waiting out its timeout, and the next query opens a new connection.
A query that times out while nothing at all came back on its connection since it was
sent shows the connection dead too: it is closed rather than trusted again.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

# Idle connections are closed after this long (RFC 7766 6.2.3 leaves the time to the
# client; 30 s matches Unbound's own tcp-idle-timeout default for its clients).
IDLE_CLOSE = 30.0
# Queries in flight on one connection, and connections to one upstream, at most.
MAX_IN_FLIGHT = 100
MAX_CONNECTIONS = 4


class Rejected(Exception):
    """A packet that is not the answer we wait for; ``reason`` is a bounded label."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ConnectionLost(ConnectionError):
    """The connection closed or broke before the answer came."""


def tls_context(ca_file: Path | None, alpn: list[str] | None = None) -> ssl.SSLContext:
    """Always verifying: the chain against ``ca_file`` (or the system's store) and the
    name or IP address given as ``server_hostname`` (RFC 8310 8.1, RFC 6125)."""
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 8310 / RFC 7525: 1.2 or later
    if alpn:
        context.set_alpn_protocols(alpn)
    return context


class Connection:
    """The queries in flight on one connection; subclasses speak the protocol."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._stream = reader
        self._writer = writer
        self._idle = IDLE_CLOSE  # read now, so that a test may shorten it
        self.pending: dict[int, asyncio.Future[bytes]] = {}
        self.closed = False
        self._heard = time.monotonic()  # when bytes last came from the upstream
        self._idle_timer: asyncio.TimerHandle | None = None
        self._reader: asyncio.Task[None] | None = None
        self._on_close: list[Callable[[], None]] = []

    @property
    def capacity(self) -> int:
        return MAX_IN_FLIGHT

    @property
    def full(self) -> bool:
        return len(self.pending) >= self.capacity

    def start(self, on_close: Callable[[], None]) -> None:
        self._on_close.append(on_close)
        self._reader = asyncio.get_running_loop().create_task(self._read_all())
        self._arm_idle()

    async def exchange(self, message: bytes) -> tuple[int, bytes]:
        """Send ``message``; the ID it was sent with and its answer (subclasses)."""
        raise NotImplementedError

    async def receive(self) -> None:
        """Read answers until the connection ends (subclasses)."""
        raise NotImplementedError

    def abandoned(self, key: int) -> None:
        """A query gave up waiting for ``key`` (subclasses may tell the upstream)."""

    async def _read_all(self) -> None:
        error: BaseException = ConnectionLost("closed by the upstream")
        try:
            await self.receive()
        except asyncio.CancelledError:
            raise
        except Exception as failure:  # any failure to read ends the connection
            error = ConnectionLost(f"connection broken: {failure!r}")
        self.close(error)

    def heard(self) -> None:
        self._heard = time.monotonic()

    def expect(self, key: int) -> asyncio.Future[bytes]:
        if self.closed:  # closed since it was picked: nothing would ever answer
            raise ConnectionLost("closed")
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.pending[key] = future
        return future

    async def answer(self, key: int, future: asyncio.Future[bytes]) -> bytes:
        sent = time.monotonic()
        try:
            return await future
        except asyncio.CancelledError:
            # Our timeout: if nothing at all came back since we asked, the connection
            # is dead (a silent upstream, a black hole), not just slow on one name.
            if self._heard < sent:
                self.close(ConnectionLost("no answer on this connection"))
            else:
                self.abandoned(key)
            raise
        finally:
            if self.pending.get(key) is future:
                del self.pending[key]
            if not self.pending:
                self._arm_idle()

    def deliver(self, key: int, result: bytes | BaseException) -> bool:
        """Hand ``result`` to the query waiting for ``key``; False if none waits."""
        future = self.pending.get(key)
        if future is None or future.done():
            return False
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)
        return True

    def _arm_idle(self) -> None:
        if self.closed or self._idle_timer is not None:
            return
        self._idle_timer = asyncio.get_running_loop().call_later(self._idle, self._idle_close)

    def _idle_close(self) -> None:
        self._idle_timer = None
        if not self.pending:
            self.close(ConnectionLost("idle"))

    def close(self, error: BaseException) -> None:
        if self.closed:
            return
        self.closed = True
        for future in self.pending.values():
            if not future.done():
                future.set_exception(error)
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        self._writer.close()
        if self._reader is not None and self._reader is not asyncio.current_task():
            self._reader.cancel()
        for callback in self._on_close:
            callback()


Opener = Callable[[], Awaitable[Connection]]
Events = Callable[[str], None]  # "opened", "reused", "failed", "closed"


class Pool:
    """The connections to one upstream: a query takes the first with room, or waits for
    the one being opened; many concurrent queries share one connection."""

    def __init__(self, opener: Opener, events: Events) -> None:
        self._opener = opener
        self._events = events
        self._connections: list[Connection] = []
        self._opening: asyncio.Task[Connection] | None = None

    async def exchange(self, message: bytes) -> tuple[int, bytes]:
        connection = self._free()
        if connection is not None:
            self._events("reused")
            try:
                return await connection.exchange(message)
            except ConnectionLost:
                # Likely closed by the upstream while idle (RFC 7766 6.2.3 lets it):
                # the question is asked once more, on a new connection.
                pass
        while True:
            connection = await self._open()
            if not connection.full:  # else: filled by those who waited with us
                return await connection.exchange(message)

    def _free(self) -> Connection | None:
        for connection in self._connections:
            if not connection.closed and not connection.full:
                return connection
        return None

    async def _open(self) -> Connection:
        if self._opening is None:
            free = self._free()
            if free is not None:
                return free
            if len(self._connections) >= MAX_CONNECTIONS:
                raise ConnectionLost(f"all {MAX_CONNECTIONS} connections are full")
            self._opening = asyncio.get_running_loop().create_task(self._connect())
            # Retrieved here, so a failure nobody waits for any more is not reported.
            self._opening.add_done_callback(lambda task: task.cancelled() or task.exception())
        # Shielded: a query giving up does not cancel the opening the others wait for.
        return await asyncio.shield(self._opening)

    async def _connect(self) -> Connection:
        try:
            connection = await self._opener()
        except BaseException:
            self._events("failed")
            raise
        finally:
            self._opening = None
        self._connections.append(connection)
        self._events("opened")
        connection.start(lambda: self._closed(connection))
        return connection

    def _closed(self, connection: Connection) -> None:
        with contextlib.suppress(ValueError):
            self._connections.remove(connection)
        self._events("closed")

    async def close(self) -> None:
        if self._opening is not None:
            self._opening.cancel()
            await asyncio.gather(self._opening, return_exceptions=True)
        for connection in list(self._connections):
            connection.close(ConnectionLost("shutting down"))
