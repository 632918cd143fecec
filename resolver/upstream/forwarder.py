"""Asking the real resolvers, and believing only genuine answers (RFC 5452).

Every attempt uses a fresh random ID; over UDP, a socket connected to the upstream on a
random port, which carries one question at a time and is replaced within a second
(``resolver.upstream.udp`` says why and how). An answer is accepted only if it carries the ID
sent, echoes the question asked and can be walked to its end; anything else is ignored
and counted while we keep waiting for the real answer until the timeout. The exchanges
themselves, over each transport, are ``resolver.upstream.exchanges``'s; here, the order
the upstreams are asked in, failover, and their health.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from resolver.dns import responses, wire
from resolver.dns.model import Answer, Outcome, Query
from resolver.dns.pending import Pending
from resolver.metrics import Metrics
from resolver.upstream.exchanges import EXCHANGE_FAILURES, Exchanges
from resolver.upstream.health import MAX_BACKOFF, Health, UpstreamHealth
from resolver.upstream.idents import query_id
from resolver.upstream.messages import Upstream as Upstream  # re-exported: the type callers know
from resolver.upstream.messages import answer_from, upstream_query
from resolver.upstream.streams import Rejected
from resolver.upstream.udp import Expected, Reply, UdpSocket, UdpSockets

log = logging.getLogger(__name__)

# Upstream rcodes that say "this server cannot answer", so the next one is asked.
_FAILOVER_RCODES: Final = frozenset({wire.SERVFAIL, wire.REFUSED, wire.NOTIMP, wire.FORMERR})


class _Asking:
    """One client question on its way through the upstreams."""

    __slots__ = ("index", "pending", "query", "started", "stop")

    def __init__(self, query: Query) -> None:
        self.query = query
        self.index = 0  # the upstream asked now
        self.started = 0.0  # when its question was sent (monotonic)
        # Stops the exchange in flight (gives up the socket's question, or cancels a
        # task): called when ``pending`` is cancelled, so its socket is closed at once.
        self.stop: Callable[[], object] | None = None
        self.pending = Pending(self._cancel)

    def _cancel(self) -> None:
        if self.stop is not None:
            self.stop()


class Forwarder:
    """Tries its upstreams strictly in order until one gives a usable answer, skipping
    those that the server's own probes found dead (``resolver.upstream.health``)."""

    def __init__(
        self,
        servers: tuple[Upstream, ...],
        timeout: float,
        metrics: Metrics,
        health: Callable[[Upstream], Health] | None = None,
        on_change: Callable[[Upstream, bool], None] | None = None,
        ca_file: Path | None = None,
    ) -> None:
        """``health``: how each upstream's health is known (default: this forwarder's
        own probes); ``on_change``: told when a probe finds an upstream dead or back;
        ``ca_file``: the CAs trusted for DoT and DoH upstreams (None: the system's)."""
        self.servers = servers
        self.timeout = timeout
        self._metrics = metrics
        self.last_success = 0.0  # monotonic time of the last usable answer (for /readyz)
        self.health: dict[Upstream, Health] = {
            server: health(server) if health is not None else UpstreamHealth() for server in servers
        }
        self._on_change = on_change
        self._checks: set[asyncio.Task[None]] = set()
        self._exchanges = Exchanges(servers, timeout, metrics, ca_file)
        # Keyed by label (a string caches its hash; an Upstream hashes six fields).
        # Looked up once, not per answer: a labelled child costs a lock and a lookup.
        self._durations = {s.label: metrics.upstream_duration.labels(s.label) for s in servers}
        # The same, by the upstream's index: an Upstream hashes six fields per look-up.
        self._healths = tuple(self.health[server] for server in servers)
        for server in servers:
            metrics.upstream_up.labels(server.label).set(1)
            metrics.preset_upstream(server.label)
            self._exchanges.preset(server)

    def ask(self, query: Query) -> Answer | Pending:
        """The answer to ``query`` from the first upstream that gives a usable one.

        An Answer when it is known at once (every upstream skipped, or each failed as
        its question was sent), else a ``Pending`` completed from the upstream socket's
        callback: a question over UDP, the common case, runs no task and no coroutine.
        DoT, DoH and the TCP retry of a truncated answer run as tasks."""
        asking = _Asking(query)
        answer = self._ask_from(asking, 0)
        return answer if answer is not None else asking.pending

    async def resolve(self, query: Query) -> Answer:
        """``ask``, awaited."""
        result = self.ask(query)
        return result if isinstance(result, Answer) else await result

    def _ask_from(self, asking: _Asking, first: int) -> Answer | None:
        """Ask the upstreams in order from index ``first``: None while one is asked,
        else the final answer (SERVFAIL when none gave a usable one)."""
        servers, healths = self.servers, self._healths
        for index in range(first, len(servers)):
            server = servers[index]
            if not healths[index].up:
                self._metrics.upstream_skipped.labels(server.label).inc()
                continue
            try:
                self._send(asking, index)
                return None
            except OSError as error:
                self._failed(server, error)
            answer = self._judged(index, None)
            if answer is not None:
                return answer
        # Never NXDOMAIN here: a failure must not look like "this name does not exist".
        return responses.error(
            asking.query,
            wire.SERVFAIL,
            Outcome.SERVFAIL,
            (wire.EDE_NO_REACHABLE_AUTHORITY, "no upstream answered"),
        )

    def _judged(self, index: int, answer: Answer | None) -> Answer | None:
        """After upstream ``index``'s attempt: the answer to give (None: ask the next
        one)."""
        health = self._healths[index]
        if answer is None:
            if health.suspect():
                self._start_check(self.servers[index])
            return None
        if health.succeeded():
            self._back(self.servers[index])
        return answer if answer.outcome is Outcome.FORWARDED else None

    def _send(self, asking: _Asking, index: int) -> None:
        """Send the question to upstream ``index``: its reply goes on with ``asking``.
        Raises OSError when the datagram could not be sent."""
        server = self.servers[index]
        query = asking.query
        ident = query_id()
        expected = Expected(
            ident, query.qname, query.raw[query.question_end - 4 : query.question_end]
        )
        message = upstream_query(query, ident, padded=server.scheme != "dns")
        asking.index, asking.started = index, time.monotonic()
        if server.scheme != "dns":
            task = asyncio.get_running_loop().create_task(
                self._exchanges.encrypted(server, message, expected)
            )
            asking.stop = task.cancel
            task.add_done_callback(functools.partial(self._replied, asking))
            return
        sockets = self._exchanges.sockets(server)
        sock = sockets.acquire()
        try:
            sock.ask(message, expected)
        except BaseException:
            sockets.release(sock, answered=False)
            raise
        asking.stop = sock.cancel
        # Called from the socket's reader callback itself: the answer goes on to the
        # client in the same callback, not on the event loop's next turn.
        sock.on_reply = functools.partial(
            self._replied_udp, asking, sockets, sock, message, expected
        )

    def _replied_udp(
        self,
        asking: _Asking,
        sockets: UdpSockets,
        sock: UdpSocket,
        message: bytes,
        expected: Expected,
        done: asyncio.Future[Reply],
    ) -> None:
        answered = not done.cancelled() and done.exception() is None
        sockets.release(sock, answered)
        if answered and wire.U16.unpack_from(done.result()[0], 2)[0] & wire.TC:
            if asking.pending.done():
                return
            # Too big for UDP: the full answer is only to be had over TCP (RFC 7766 5).
            server = self.servers[asking.index]
            task = asyncio.get_running_loop().create_task(
                self._exchanges.tcp(server, message, expected)
            )
            asking.stop = task.cancel
            task.add_done_callback(functools.partial(self._replied, asking))
            return
        self._replied(asking, done)

    def _replied(self, asking: _Asking, done: asyncio.Future[Reply]) -> None:
        """The exchange with upstream ``asking.index`` is over: answer, or ask the next."""
        pending = asking.pending
        if pending.done():
            return  # given up on (cancelled)
        if done.cancelled():
            pending.cancel()
            return
        server = self.servers[asking.index]
        error = done.exception()
        try:
            if error is None:
                answer = self._accepted(server, asking.query, asking.started, done.result())
            elif isinstance(error, EXCHANGE_FAILURES):
                self._failed(server, error)
                answer = None
            else:
                raise error  # a bug: the client gets SERVFAIL, counted
            final = self._judged(asking.index, answer)
            if final is None:
                final = self._ask_from(asking, asking.index + 1)
        except Exception as bug:
            pending.set_exception(bug)
            return
        if final is not None:
            pending.set_result(final)

    def _back(self, server: Upstream) -> None:
        """``server`` was down and gave a genuine answer."""
        log.info("upstream %s answers again", server.label)
        self._changed(server, True)

    def _changed(self, server: Upstream, up: bool) -> None:
        self._metrics.upstream_up.labels(server.label).set(1 if up else 0)
        if self._on_change is not None:
            self._on_change(server, up)

    def suspect(self, label: str) -> None:
        """Another process's client question to ``label`` failed: probe it (once, if a
        probe is not already on it). The supervisor's use."""
        for server, health in self.health.items():
            if server.label == label and health.suspect():
                self._start_check(server)

    def revived(self, label: str) -> None:
        """Another process got a genuine answer from ``label``: it is alive."""
        for server in self.health:
            if server.label == label and self.health[server].succeeded():
                self._back(server)

    def _start_check(self, server: Upstream) -> None:
        task = asyncio.get_running_loop().create_task(self._check(server))
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    async def _check(self, server: Upstream) -> None:
        """Probe a suspect upstream with our own question until it answers; while it
        does not, it is out of rotation."""
        health = self.health[server]
        assert isinstance(health, UpstreamHealth)  # only local health starts a probe
        try:
            while True:
                alive = await self._probe_one(server)
                self._metrics.upstream_probes.labels(
                    server.label, "alive" if alive else "dead"
                ).inc()
                if health.checked(alive):
                    if alive:
                        log.info("upstream %s answers again", server.label)
                    else:
                        log.warning(
                            "upstream %s does not answer our probe: not used until it does "
                            "(probed again every %.0f s at most)",
                            server.label,
                            MAX_BACKOFF,
                        )
                    self._changed(server, alive)
                if alive:
                    return
                await asyncio.sleep(health.backoff)
                if health.up:
                    return  # a client's question got a genuine answer meanwhile
        finally:
            health.checking = False

    async def _probe_one(self, server: Upstream) -> bool:
        """True if the upstream gives any genuine answer to our own question."""
        ident = query_id()
        message = wire.query_message(ident, wire.ROOT_NS)
        expected = Expected(ident, b"\x00", wire.ROOT_NS[1:])
        try:
            if server.scheme == "dns":
                # Over UDP only (any answer, even truncated, will do), on a socket of its
                # own: the probe tests the upstream, not a socket that served others.
                await self._exchanges.udp(server, message, expected, reuse=False)
            else:
                await self._exchanges.encrypted(server, message, expected)
        except EXCHANGE_FAILURES:
            return False
        return True

    async def close(self) -> None:
        for task in list(self._checks):
            task.cancel()
        if self._checks:
            await asyncio.gather(*self._checks, return_exceptions=True)
        await self._exchanges.close()

    def _failed(self, server: Upstream, error: BaseException) -> None:
        """An attempt that got no answer (timeout, network error, nothing genuine)."""
        if isinstance(error, TimeoutError):
            self._metrics.upstream_errors.labels(server.label, "timeout").inc()
            return
        # A TLS failure (certificate refused, handshake) is an ssl.SSLError.
        reason = "tls" if isinstance(error, ssl.SSLError) else "network"
        reason = error.reason if isinstance(error, Rejected) else reason
        self._metrics.upstream_errors.labels(server.label, reason).inc()
        log.debug("upstream %s failed: %s", server.label, error)

    def _accepted(self, server: Upstream, query: Query, started: float, reply: Reply) -> Answer:
        """A genuine answer: relayed, or SERVFAIL with outcome SERVFAIL when the
        upstream answered that it cannot (the next one is asked)."""
        data, scan = reply
        if scan.rcode in _FAILOVER_RCODES:
            reason = wire.RCODE_NAMES[scan.rcode].lower()
            self._metrics.upstream_errors.labels(server.label, reason).inc()
            # Alive, but no use for this question: the next one is asked.
            return responses.error(query, wire.SERVFAIL, Outcome.SERVFAIL)
        now = time.monotonic()
        self.last_success = now
        self._durations[server.label].observe(now - started)
        return answer_from(data, scan)

    async def probe(self) -> bool:
        """True if any upstream answers a query for the root NS (for /readyz)."""
        query = Query(
            raw=wire.query_message(0, wire.ROOT_NS),
            id=0,
            flags=wire.RD,
            qdcount=1,
            qname=b"\x00",
            labels=(),
            qtype=wire.TYPE_NS,
            qclass=wire.CLASS_IN,
            question_end=17,
            edns=None,
            protocol="internal",
            client="",
        )
        answer = await self.resolve(query)
        return answer.outcome is Outcome.FORWARDED
