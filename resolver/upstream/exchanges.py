"""One exchange with one upstream, over whichever transport it is reached by.

Owns what the forwarder asks through: the pool of UDP sockets for each upstream, made
for the event loop that runs (``resolver.upstream.udp``); the DoT and DoH connections
(``resolver.upstream.encrypted``); the TCP retry of an answer truncated over UDP; and
the checks of an answer that came over a stream, which are those of a datagram
(``udp.check``) plus one: over a stream, a truncated answer is refused. What each
upstream sends that is not a genuine answer is counted here, by reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Final

from resolver.dns import wire
from resolver.metrics import Metrics
from resolver.upstream.encrypted import EncryptedUpstreams
from resolver.upstream.messages import Upstream
from resolver.upstream.streams import Rejected
from resolver.upstream.udp import Expected, Reply, UdpSockets, check

# How an exchange fails without a genuine answer: the next upstream is asked. Anything
# else is a bug, and fails the question (SERVFAIL, counted by the listener).
EXCHANGE_FAILURES: Final = (OSError, TimeoutError, Rejected, asyncio.IncompleteReadError)


class Exchanges:
    """The transports to a forwarder's upstreams, each exchange bounded by ``timeout``."""

    def __init__(
        self,
        servers: tuple[Upstream, ...],
        timeout: float,
        metrics: Metrics,
        ca_file: Path | None,
    ) -> None:
        self.timeout = timeout
        self._metrics = metrics
        self._encrypted = EncryptedUpstreams(ca_file, timeout, metrics)
        # Keyed by label (a string caches its hash; an Upstream hashes six fields).
        self._rejected = {s.label: self._rejection_counter(s.label) for s in servers}
        self._udp: dict[str, UdpSockets] = {}  # per upstream, for this event loop

    def preset(self, server: Upstream) -> None:
        """The metrics of an encrypted upstream's connections, at 0 before any."""
        if server.scheme != "dns":
            self._encrypted.preset(server)

    def _rejection_counter(self, label: str) -> Callable[[str], None]:
        def rejected(reason: str) -> None:
            self._metrics.upstream_rejected.labels(label, reason).inc()

        return rejected

    def sockets(self, server: Upstream) -> UdpSockets:
        """The pool of UDP sockets to ``server``, for the running event loop."""
        loop = asyncio.get_running_loop()
        sockets = self._udp.get(server.label)
        if sockets is None or sockets.loop is not loop:
            if sockets is not None:
                sockets.close()
            sockets = self._udp[server.label] = UdpSockets(
                loop,
                (server.host, server.port),
                server.family,
                self._rejected[server.label],
                self.timeout,
            )
        return sockets

    async def udp(
        self, server: Upstream, message: bytes, expected: Expected, reuse: bool = True
    ) -> Reply:
        """The probes' exchange. ``reuse``: on a socket that sequential questions
        share (``udp``), else on one opened for this question alone."""
        sockets = self.sockets(server)
        sock = sockets.acquire(reuse)
        answered = False
        try:
            reply = await sock.ask(message, expected)
            answered = True
            return reply
        finally:
            sockets.release(sock, answered, reuse)

    async def tcp(self, server: Upstream, message: bytes, expected: Expected) -> Reply:
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

    async def encrypted(self, server: Upstream, message: bytes, expected: Expected) -> Reply:
        """DoT, DoH: the connection picks the ID (unique among those in flight on it; 0
        for DoH), the answer is checked here as any other."""
        async with asyncio.timeout(self.timeout):
            ident, data = await self._encrypted.exchange(server, message)
        return self._accept_stream(server, data, replace(expected, ident=ident))

    def _accept_stream(self, server: Upstream, data: bytes, expected: Expected) -> Reply:
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

    async def close(self) -> None:
        await self._encrypted.close()
        for sockets in self._udp.values():
            sockets.close()
        self._udp.clear()
