"""A TCP (and DoT) client connection: 2-byte length framing (RFC 1035 4.2.2), pipelined
queries answered as they complete, back-pressure on a client that does not read."""

from __future__ import annotations

import asyncio
from typing import Any

from resolver.dns import wire
from resolver.dns.codec import encode_answer, parse_query
from resolver.dns.model import Answer, Outcome, Query
from resolver.serve.connections import TcpConnections
from resolver.serve.transport import QueryRunner
from resolver.serve.xfr import ZoneService

# Answers queued for a TCP client that does not read them: above HIGH its queries are no
# longer read (back-pressure), below LOW reading resumes. A client that stays above HIGH
# for the idle timeout is cut off, so its answers cannot pile up in memory.
TCP_WRITE_HIGH = 64 * 1024
TCP_WRITE_LOW = 16 * 1024
# Pipelined queries one connection may have waiting for an answer (RFC 7766 6.2.1.1 asks
# for concurrency, not for unbounded concurrency); beyond this its stream is not read.
TCP_MAX_OUTSTANDING = 100


class TcpConnection(asyncio.Protocol):
    """One client connection: 2-byte length framing, pipelined queries answered as they
    complete (RFC 7766 6.2.1.1), closed after an idle period with nothing outstanding."""

    # The transport label of its queries; DoT (RFC 7858 3.3) frames exactly as TCP does.
    PROTOCOL = "tcp"

    def __init__(
        self, runner: QueryRunner, connections: TcpConnections, zones: ZoneService | None = None
    ) -> None:
        self._runner = runner
        self._zones = zones
        self._writable = asyncio.Event()
        self._writable.set()
        self._connections = connections
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._outstanding = 0
        self._peer = ""
        self._idle_timer: asyncio.TimerHandle | None = None
        self._stall_timer: asyncio.TimerHandle | None = None
        self._eof = False
        self._write_paused = False
        self._read_paused = False

    @property
    def busy(self) -> bool:
        return self._outstanding > 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        peer = transport.get_extra_info("peername")
        self._peer = peer[0] if peer else ""
        if not self._connections.admit(self):
            transport.abort()
            self._transport = None
            return
        transport.set_write_buffer_limits(high=TCP_WRITE_HIGH, low=TCP_WRITE_LOW)
        self._arm_idle_timer()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._process()

    def _process(self) -> None:
        while len(self._buffer) >= 2 and self._transport is not None and not self._read_paused:
            if self._outstanding >= TCP_MAX_OUTSTANDING:
                self._pause_reading()
                return
            length = wire.U16.unpack_from(self._buffer)[0]
            if len(self._buffer) < 2 + length:
                return
            message = bytes(self._buffer[2 : 2 + length])
            del self._buffer[: 2 + length]
            self._connections.touch(self)
            query = parse_query(message, self.PROTOCOL, self._peer)
            if query is None:
                # No way to resync a stream after a message we cannot read as a query.
                self._runner.metrics.dropped.labels(self.PROTOCOL, "unparsable").inc()
                self._connections.count_closed("malformed")
                self.close()
                return
            self._outstanding += 1
            self._arm_idle_timer()
            zones = self._zones  # an rpz zone's transfer (resolver.serve.xfr)
            if zones is not None and zones.active and (zone := zones.claims(query)):
                zones.start_tcp(zone, query, self._write, self._drained, self._answered)
                continue
            answer = self._runner.answer_now(query, self._send, None)
            if answer is not None:
                self._send(query, answer, None)

    def _send(self, query: Query, answer: Answer, _context: Any) -> None:
        if self._transport is not None and answer.outcome is not Outcome.DROPPED:
            self._write(encode_answer(query, answer, udp=False))
        self._answered()

    def _answered(self, failed: bool = False) -> None:
        """One question fully answered (``failed``: the stream is broken, close it)."""
        self._outstanding -= 1
        if failed or (self._eof and not self._outstanding):
            self.close()
        else:
            self._arm_idle_timer()
            self._maybe_resume_reading()

    def _write(self, message: bytes) -> None:
        if self._transport is not None:
            self._transport.write(wire.U16.pack(len(message)) + message)

    async def _drained(self) -> None:
        if self._transport is None:
            raise ConnectionError("the client closed the connection")
        await self._writable.wait()

    def _pause_reading(self) -> None:
        if not self._read_paused and self._transport is not None:
            self._read_paused = True
            self._transport.pause_reading()

    def _maybe_resume_reading(self) -> None:
        if (
            self._read_paused
            and not self._write_paused
            and self._outstanding < TCP_MAX_OUTSTANDING
            and self._transport is not None
        ):
            self._read_paused = False
            self._transport.resume_reading()
            # Queries read before the pause are still in the buffer.
            self._process()

    def pause_writing(self) -> None:
        # The client is not reading its answers: stop reading its queries, and give it the
        # idle timeout to catch up.
        self._write_paused = True
        self._writable.clear()
        self._pause_reading()
        if self._stall_timer is None and self._transport is not None:
            loop = asyncio.get_running_loop()
            timeout = self._connections.idle_timeout
            self._stall_timer = loop.call_later(timeout, self._on_write_stalled)

    def resume_writing(self) -> None:
        self._write_paused = False
        self._writable.set()
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        self._maybe_resume_reading()

    def _on_write_stalled(self) -> None:
        self._stall_timer = None
        if self._transport is not None:
            self._cut_off()

    def _cut_off(self) -> None:
        """A client that does not take its answers: counted once, and aborted, not
        closed (close would wait to flush answers nobody reads)."""
        transport, self._transport = self._transport, None
        for timer in (self._idle_timer, self._stall_timer):
            if timer is not None:
                timer.cancel()
        self._idle_timer = self._stall_timer = None
        self._connections.count_closed("write_stalled")
        if transport is not None:
            transport.abort()

    def eof_received(self) -> bool:
        # The client has sent its last query; answer what is outstanding, then close.
        self._eof = True
        return self._outstanding > 0

    def _arm_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        if self._transport is not None:
            loop = asyncio.get_running_loop()
            self._idle_timer = loop.call_later(self._connections.idle_timeout, self._on_idle)

    def _on_idle(self) -> None:
        self._idle_timer = None
        if self._transport is None:
            return
        if self._outstanding or self._write_paused:
            # Still answering; or behind on reading its answers: the stall timer's case.
            self._arm_idle_timer()
            return
        if self._transport.get_write_buffer_size():
            # Answers left untaken for a whole idle period: stalled, not idle. A graceful
            # close would wait for them for as long as the client does not read.
            self._cut_off()
            return
        self._connections.count_closed("idle")
        self.close()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        if self._stall_timer is not None:
            self._stall_timer.cancel()
        self._transport = None
        self._writable.set()  # a transfer waiting to write finds the connection gone
        self._connections.forget(self)
