"""The UDP listener and the query runner: bytes in, a Query to the pipeline, an Answer
back to bytes (TCP and DoT connections: ``tcp``).

Nothing here knows about blocking or caching. An answer the pipeline has at once is
sent from inside the receive callback, so blocked and cached queries cost no task; an
answer that waits for an upstream is a ``Pending``, sent from the callback that completes
it (no task either).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import time
from collections.abc import Callable
from typing import Any, Final

from resolver.dns import responses, wire
from resolver.dns.codec import PlainQuestion, encode_answer, parse_query, plain_query
from resolver.dns.model import Answer, Handler, Outcome, Query
from resolver.dns.pending import Pending
from resolver.metrics import Metrics
from resolver.serve.fastpath import FastPath
from resolver.serve.xfr import ZoneService

log = logging.getLogger(__name__)

# Datagrams read per wake-up before yielding to the event loop: at most UDP_BATCH, and
# no more chunks of UDP_CHUNK once the batch has held the loop UDP_BATCH_TIME seconds.
# Big batches amortise the selector's turn (about 4 µs) when answers are cheap (64
# blocked or cached answers take about 0.5 ms); the time bound keeps a batch of cache
# misses (about 60 µs each) from holding the loop 3-5 ms while the upstreams' answers and
# the loop's timers wait, as it did at 64 (development VM, 2026-11-30).
UDP_BATCH: Final = 64
UDP_CHUNK: Final = 16
UDP_BATCH_TIME = 0.001  # not Final: tests/integration/test_udp_batch.py changes it

Later = Callable[[Query, Answer, Any], None]


class QueryRunner:
    """Runs queries through the pipeline: answers at once when it can, else later."""

    def __init__(self, head: Handler, metrics: Metrics) -> None:
        self.head = head
        self.metrics = metrics
        # Answers still to come that ``drain`` waits for: the pipeline's, and futures
        # others add (a worker's questions relayed to another worker).
        self.pending: set[asyncio.Future[Answer]] = set()
        self._upcoming: set[Pending] = set()

    def answer_now(self, query: Query, later: Later, context: Any) -> Answer | None:
        """The answer if the pipeline has it at once; otherwise None, and ``later`` is
        called with (query, answer, context) when the answer is ready."""
        try:
            result = self.head.handle(query)
            if isinstance(result, Answer):
                return result
            # The pipeline's stages return a Pending, completed from the upstream
            # socket's callback: no task for a miss (any other awaitable gets one).
            pending = Pending.of(result)
        except Exception:
            # A bug must cost one answer, not the listener.
            log.exception("pipeline failed on a query")
            return self._servfail(query)
        self._upcoming.add(pending)
        pending.add_done_callback(functools.partial(self._finish, query, later, context))
        return None

    def _finish(self, query: Query, later: Later, context: Any, done: Pending) -> None:
        self._upcoming.discard(done)
        if done.cancelled():
            return
        error = done.exception()
        if error is not None:
            log.error("pipeline failed on a query: %r", error)
            later(query, self._servfail(query), context)
            return
        later(query, done.result(), context)

    def _servfail(self, query: Query) -> Answer:
        self.metrics.count_response(Outcome.SERVFAIL, wire.SERVFAIL)
        return responses.error(query, wire.SERVFAIL, Outcome.SERVFAIL)

    async def drain(self, seconds: float) -> None:
        """Wait for answers still in flight (on shutdown), at most ``seconds``."""
        waiting: set[asyncio.Future[Any]] = set(self.pending)
        loop = asyncio.get_running_loop()
        for pending in self._upcoming:
            future = loop.create_future()
            pending.add_done_callback(functools.partial(_mark_done, future))
            waiting.add(future)
        if waiting:
            await asyncio.wait(waiting, timeout=seconds)


def _mark_done(future: asyncio.Future[None], _done: Pending) -> None:
    if not future.done():
        future.set_result(None)


# Linux's IP_PKTINFO; Python's socket module lacks the constant.
IP_PKTINFO: Final = getattr(socket, "IP_PKTINFO", 8)
_ANCILLARY_SPACE: Final = socket.CMSG_SPACE(20)


def enable_destination_info(sock: socket.socket) -> None:
    """Ask the kernel for each datagram's destination address (IP_PKTINFO,
    IPV6_RECVPKTINFO), so a socket bound to 0.0.0.0 or [::] can answer from it."""
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
    else:
        sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)


def _reply_from(ancillary: list[tuple[int, int, bytes]]) -> list[tuple[int, int, bytes]]:
    """The control message that makes an answer leave from the address the query was
    sent to: on a host with several addresses, the kernel would otherwise pick one by
    routing, and clients drop answers from an address they did not ask (RFC 1123
    6.1.3.5; Unbound's interface-automatic does the same)."""
    for level, kind, data in ancillary:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(data) >= 12:
            # struct in_pktinfo {ifindex; spec_dst; addr}: send from addr, any interface.
            return [(level, kind, b"\0\0\0\0" + data[8:12] + b"\0\0\0\0")]
        if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO and len(data) >= 20:
            # struct in6_pktinfo {addr; ifindex}: both as received (link-local needs it).
            return [(level, kind, data[:20])]
    return []


class UdpListener:
    """Reads a non-blocking UDP socket straight from the event loop's selector.

    asyncio's datagram transport costs a callback chain per packet; reading the socket
    in batches and answering with a plain ``sendto`` is most of the speed on the hot path.
    A socket bound to a wildcard address (``wildcard``) reads each query's destination
    address and sends the answer from it.
    """

    def __init__(
        self,
        sock: socket.socket,
        runner: QueryRunner,
        *,
        wildcard: bool = False,
        fast: FastPath | None = None,
        zones: ZoneService | None = None,
    ) -> None:
        sock.setblocking(False)
        self._fast = fast
        self._zones = zones
        if wildcard:
            enable_destination_info(sock)
        self._sock = sock
        self._wildcard = wildcard
        self._runner = runner
        # Cleared on shutdown: answers in flight still go out, new queries are ignored.
        self.accepting = True
        self._dropped = runner.metrics.dropped.labels("udp", "unparsable")
        self._send_failed = runner.metrics.dropped.labels("udp", "send_failed")
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        loop.add_reader(self._sock.fileno(), self._on_readable)

    def close(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self._sock.fileno())
            self._loop = None
        self._sock.close()

    def _on_readable(self) -> None:
        recvfrom = self._sock.recvfrom
        recvmsg = self._sock.recvmsg
        wildcard = self._wildcard
        runner = self._runner
        fast = self._fast
        # Read once per batch: the fast path is switched on or off between batches only.
        ready_answer = fast.answer if fast is not None and fast.enabled else None
        context: Any
        question: PlainQuestion | None
        deadline = time.monotonic() + UDP_BATCH_TIME
        for count in range(UDP_BATCH):
            # At each chunk's end: the batch stops once it has held the loop long enough.
            if count and not count % UDP_CHUNK and time.monotonic() >= deadline:
                return
            try:
                if wildcard:
                    data, ancillary, _flags, addr = recvmsg(65535, _ANCILLARY_SPACE)
                    context = (addr, _reply_from(ancillary))
                else:
                    data, addr = recvfrom(65535)
                    context = addr
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                # ICMP errors for earlier answers (a client gone away); nothing to do.
                log.debug("UDP receive error: %s", error)
                continue
            if not self.accepting:
                continue
            question = None
            if ready_answer is not None:
                ready = ready_answer(data, addr[0])
                if ready is not None:
                    self._send_bytes(ready, context)
                    continue
                assert fast is not None
                question = fast.take_question(data)  # read by the fast path already
            if question is None:
                query = parse_query(data, "udp", addr[0])
            else:
                query = plain_query(data, "udp", addr[0], question)
            if query is None:
                self._dropped.inc()
                continue
            zones = self._zones  # the rpz zones served (resolver.serve.xfr)
            if zones is not None and zones.active and (zone := zones.claims(query)):
                self._send_bytes(zones.answer(zone, query), context)
                continue
            answer = runner.answer_now(query, self._send, context)
            if answer is not None:
                self._send(query, answer, context)

    def _send(self, query: Query, answer: Answer, context: Any) -> None:
        if answer.outcome is Outcome.DROPPED or self._sock.fileno() < 0:
            return
        data = encode_answer(query, answer, udp=True)
        if answer.reuse_until and self._fast is not None and self._fast.enabled:
            self._fast.keep(query, answer, data)
        self._send_bytes(data, context)

    def _send_bytes(self, data: bytes, context: Any) -> None:
        try:
            if self._wildcard:
                addr, ancillary = context
                self._sock.sendmsg([data], ancillary, 0, addr)
            else:
                self._sock.sendto(data, context)
        except OSError:
            # A full socket buffer under overload: UDP may lose this answer, the client retries.
            self._send_failed.inc()
