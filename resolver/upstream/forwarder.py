"""Asking the real resolvers, and believing only genuine answers (RFC 5452).

Every attempt uses a fresh random ID; over UDP, a socket connected to the upstream on a
random port, which carries one question at a time and is replaced within a second
(``resolver.upstream.udp`` says why and how). An answer is accepted only if it carries the ID
sent, echoes the question asked and can be walked to its end; anything else is ignored
and counted while we keep waiting for the real answer until the timeout.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from resolver.config import EncryptedEndpoint, Endpoint
from resolver.dns import responses, wire
from resolver.dns.model import Answer, Outcome, Query
from resolver.metrics import Metrics
from resolver.upstream.encrypted import EncryptedUpstreams
from resolver.upstream.health import MAX_BACKOFF, Health, UpstreamHealth
from resolver.upstream.streams import Rejected
from resolver.upstream.udp import Expected, UdpSockets, check

log = logging.getLogger(__name__)

# Upstream rcodes that say "this server cannot answer", so the next one is asked.
_FAILOVER_RCODES = frozenset({wire.SERVFAIL, wire.REFUSED, wire.NOTIMP, wire.FORMERR})


@dataclass(frozen=True, slots=True)
class Upstream:
    host: str
    port: int
    label: str  # "host:port" (or the tls:// or https:// URL), the metric label
    scheme: str = "dns"  # "dns" (UDP, TCP on truncation), "tls" (DoT) or "https" (DoH)
    name: str = ""  # DoT, DoH: the name (or IP address) the certificate must show
    path: str = ""  # DoH: the URL path

    @classmethod
    def at(cls, endpoint: Endpoint) -> Upstream:
        return cls(endpoint.host, endpoint.port, str(endpoint))

    @classmethod
    def encrypted(cls, end: EncryptedEndpoint) -> Upstream:
        return cls(end.host, end.port, str(end), end.scheme, end.name, end.path)

    @property
    def family(self) -> socket.AddressFamily:
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET


_OPTION_PADDING = 12  # RFC 7830
_PAD_BLOCK = 128  # RFC 8467 4.1: queries padded to a multiple of 128 octets
_OPT = {do: wire.opt_record(do=do) for do in (False, True)}  # unpadded, by DO bit


def _upstream_query(query: Query, ident: int, padded: bool = False) -> bytes:
    """Our own query for the client's question: new ID, RD set (we forward to recursive
    resolvers), CD echoed, and an OPT asking for 1232-byte answers with the client's DO bit.
    ``padded`` (DoT, DoH): the length hides the name (RFC 7858 3.4, RFC 8467)."""
    flags = wire.RD | (query.flags & wire.CD)
    do = query.edns.do if query.edns is not None else False
    head = wire.HEADER.pack(ident, flags, 1, 0, 0, 1) + query.raw[12 : query.question_end]
    if not padded:
        return head + _OPT[do]
    fill = -(len(head) + len(wire.opt_record(do=do)) + 4) % _PAD_BLOCK
    padding = wire.U16.pack(_OPTION_PADDING) + wire.U16.pack(fill) + bytes(fill)
    return head + wire.opt_record(do=do, options=padding)


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
        self._encrypted = EncryptedUpstreams(ca_file, timeout, metrics)
        # Keyed by label (a string caches its hash; an Upstream hashes six fields).
        # Looked up once, not per answer: a labelled child costs a lock and a lookup.
        self._durations = {s.label: metrics.upstream_duration.labels(s.label) for s in servers}
        self._rejected = {s.label: self._rejection_counter(s.label) for s in servers}
        self._udp: dict[str, UdpSockets] = {}  # per upstream, for this event loop
        for server in servers:
            metrics.upstream_up.labels(server.label).set(1)
            metrics.preset_upstream(server.label)
            if server.scheme != "dns":
                self._encrypted.preset(server)

    async def resolve(self, query: Query) -> Answer:
        for server in self.servers:
            health = self.health[server]
            if not health.up:
                self._metrics.upstream_skipped.labels(server.label).inc()
                continue
            answer = await self._attempt(server, query)
            if answer is None:
                if health.suspect():
                    self._start_check(server)
                continue
            self._alive(server)
            if answer.outcome is Outcome.FORWARDED:
                return answer
        # Never NXDOMAIN here: a failure must not look like "this name does not exist".
        return responses.error(
            query,
            wire.SERVFAIL,
            Outcome.SERVFAIL,
            (wire.EDE_NO_REACHABLE_AUTHORITY, "no upstream answered"),
        )

    def _rejection_counter(self, label: str) -> Callable[[str], None]:
        def rejected(reason: str) -> None:
            self._metrics.upstream_rejected.labels(label, reason).inc()

        return rejected

    def _alive(self, server: Upstream) -> None:
        if self.health[server].succeeded():
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
            if server.label == label:
                self._alive(server)

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
        ident = secrets.randbits(16)
        message = wire.query_message(ident, wire.ROOT_NS)
        expected = Expected(ident, b"\x00", wire.ROOT_NS[1:])
        try:
            if server.scheme == "dns":
                # Over UDP only (any answer, even truncated, will do), on a socket of its
                # own: the probe tests the upstream, not a socket that served others.
                await self._exchange_udp(server, message, expected, reuse=False)
            else:
                await self._exchange(server, message, expected)
        except (OSError, TimeoutError, Rejected, asyncio.IncompleteReadError):
            return False
        return True

    async def close(self) -> None:
        for task in list(self._checks):
            task.cancel()
        if self._checks:
            await asyncio.gather(*self._checks, return_exceptions=True)
        await self._encrypted.close()
        for sockets in self._udp.values():
            sockets.close()
        self._udp.clear()

    async def _attempt(self, server: Upstream, query: Query) -> Answer | None:
        """One upstream's answer; None when it did not answer (timeout, network error,
        nothing genuine), an Answer with outcome SERVFAIL when it answered that it cannot."""
        ident = secrets.randbits(16)
        expected = Expected(
            ident, query.qname, query.raw[query.question_end - 4 : query.question_end]
        )
        message = _upstream_query(query, ident, padded=server.scheme != "dns")
        started = time.monotonic()
        try:
            data, scan = await self._exchange(server, message, expected)
        except TimeoutError:
            self._metrics.upstream_errors.labels(server.label, "timeout").inc()
            return None
        except (OSError, Rejected, asyncio.IncompleteReadError) as error:
            # A TLS failure (certificate refused, handshake) is an ssl.SSLError.
            reason = "tls" if isinstance(error, ssl.SSLError) else "network"
            reason = error.reason if isinstance(error, Rejected) else reason
            self._metrics.upstream_errors.labels(server.label, reason).inc()
            log.debug("upstream %s failed: %s", server.label, error)
            return None
        if scan.rcode in _FAILOVER_RCODES:
            reason = wire.RCODE_NAMES[scan.rcode].lower()
            self._metrics.upstream_errors.labels(server.label, reason).inc()
            # Alive, but no use for this question: the next one is asked.
            return responses.error(query, wire.SERVFAIL, Outcome.SERVFAIL)
        now = time.monotonic()
        self.last_success = now
        self._durations[server.label].observe(now - started)
        return _answer_from(data, scan)

    async def _exchange(
        self, server: Upstream, message: bytes, expected: Expected
    ) -> tuple[bytes, wire.ResponseScan]:
        if server.scheme != "dns":
            # DoT, DoH: the connection picks the ID (unique among those in flight on it;
            # 0 for DoH), the answer is checked here as any other.
            async with asyncio.timeout(self.timeout):
                ident, data = await self._encrypted.exchange(server, message)
            return self._accept_stream(server, data, replace(expected, ident=ident))
        data, scan = await self._exchange_udp(server, message, expected)
        if wire.U16.unpack_from(data, 2)[0] & wire.TC:
            # Too big for UDP: the full answer is only to be had over TCP (RFC 7766 5).
            data, scan = await self._exchange_tcp(server, message, expected)
        return data, scan

    def _sockets(self, server: Upstream) -> UdpSockets:
        loop = asyncio.get_running_loop()
        sockets = self._udp.get(server.label)
        if sockets is None or sockets.loop is not loop:
            if sockets is not None:
                sockets.close()
            sockets = self._udp[server.label] = UdpSockets(
                loop, (server.host, server.port), server.family, self._rejected[server.label]
            )
        return sockets

    async def _exchange_udp(
        self, server: Upstream, message: bytes, expected: Expected, reuse: bool = True
    ) -> tuple[bytes, wire.ResponseScan]:
        """``reuse``: on a socket that sequential questions share (``udp``), else on
        one opened for this question alone."""
        sockets = self._sockets(server)
        sock = sockets.acquire(reuse)
        answered = False
        try:
            reply = await sock.ask(message, expected, self.timeout)
            answered = True
            return reply
        finally:
            sockets.release(sock, answered, reuse)

    async def _exchange_tcp(
        self, server: Upstream, message: bytes, expected: Expected
    ) -> tuple[bytes, wire.ResponseScan]:
        async with asyncio.timeout(self.timeout):
            reader, writer = await asyncio.open_connection(server.host, server.port)
            try:
                writer.write(wire.U16.pack(len(message)) + message)
                await writer.drain()
                length = wire.U16.unpack(await reader.readexactly(2))[0]
                data = await reader.readexactly(length)
            finally:
                writer.close()
        return self._accept_stream(server, data, expected)

    def _accept_stream(
        self, server: Upstream, data: bytes, expected: Expected
    ) -> tuple[bytes, wire.ResponseScan]:
        """An answer over a stream (TCP, TLS, HTTPS), checked as ``udp.check`` does."""
        try:
            scan = check(data, expected)
            if wire.U16.unpack_from(data, 2)[0] & wire.TC:
                # Over TCP there is no bigger channel to retry on: a cut answer is broken,
                # and relayed or cached it would be served cut.
                raise Rejected("truncated")
            return data, scan
        except Rejected as rejected:
            self._rejected[server.label](rejected.reason)
            raise

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


def _answer_from(data: bytes, scan: wire.ResponseScan) -> Answer:
    message, ttl_offsets = wire.without_opt(data, scan)
    if scan.huge_ttls:
        message = wire.zero_huge_ttls(message, ttl_offsets)
    flags = wire.U16.unpack_from(message, 2)[0]
    if flags & wire.AA:
        # We did not author this data: never claim authority for it.
        message = message[:2] + wire.U16.pack(flags & ~wire.AA) + message[4:]
    cache_ttl: int | None = None
    if scan.rcode == wire.NOERROR and scan.min_ttl is not None:
        cache_ttl = scan.min_ttl
    elif scan.rcode in (wire.NOERROR, wire.NXDOMAIN) and scan.negative_ttl is not None:
        cache_ttl = scan.negative_ttl
    return Answer(
        message=message,
        outcome=Outcome.FORWARDED,
        rcode=scan.rcode,
        cnames=scan.cnames,
        ttl_offsets=ttl_offsets,
        cache_ttl=cache_ttl,
    )
