"""A TCP client's end, decided by its timers: idle (nothing asked, nothing left to send)
or stalled (answers it does not take), counted once whichever timer fires first."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from resolver.serve.connections import TcpConnections
from resolver.serve.tcp import TcpConnection


class FakeTransport(asyncio.Transport):
    """Records what the connection does to it; ``unsent`` bytes wait in its buffer."""

    def __init__(self, unsent: int = 0) -> None:
        super().__init__()
        self.unsent = unsent
        self.aborted = False
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("192.0.2.1", 5353) if name == "peername" else default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return self.unsent

    def pause_reading(self) -> None:
        pass

    def abort(self) -> None:
        self.aborted = True

    def close(self) -> None:
        self.closed = True


def _open(unsent: int) -> tuple[TcpConnection, FakeTransport, Counter]:
    closed = Counter("closed", "closed", ["reason"], registry=CollectorRegistry())
    connections = TcpConnections(10, 0.5, closed)
    connection = TcpConnection(None, connections)  # type: ignore[arg-type]  # never asked
    transport = FakeTransport(unsent)
    connection.connection_made(transport)
    return connection, transport, closed


def _count(closed: Counter, reason: str) -> float:
    return closed.labels(reason)._value.get()


def _in_a_loop(unsent: int, *steps: str) -> tuple[FakeTransport, Counter]:
    """Open a connection in a running loop (its timers need one), then call ``steps``
    (its methods, by name) as the loop's timers would."""

    async def scenario() -> tuple[FakeTransport, Counter]:
        connection, transport, closed = _open(unsent)
        for step in steps:
            getattr(connection, step)()
        return transport, closed

    return asyncio.run(scenario())


def test_an_idle_client_with_nothing_left_to_send_is_closed_as_idle() -> None:
    transport, closed = _in_a_loop(0, "_on_idle")
    assert transport.closed
    assert not transport.aborted
    assert (_count(closed, "idle"), _count(closed, "write_stalled")) == (1, 0)


def test_answers_left_untaken_for_the_idle_period_are_a_stall_not_an_idle_close() -> None:
    # Below the high-water mark, so no stall timer runs: a graceful close would wait for
    # the client to read them, for ever.
    transport, closed = _in_a_loop(4096, "_on_idle")
    assert transport.aborted
    assert not transport.closed
    assert (_count(closed, "idle"), _count(closed, "write_stalled")) == (0, 1)


def test_the_stall_and_idle_timers_firing_together_count_one_close() -> None:
    # pause_writing starts the stall timer; the idle timer is due in the same turn.
    transport, closed = _in_a_loop(128 * 1024, "pause_writing", "_on_write_stalled", "_on_idle")
    assert transport.aborted
    assert (_count(closed, "idle"), _count(closed, "write_stalled")) == (0, 1)
