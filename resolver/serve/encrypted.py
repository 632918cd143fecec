"""The DoT and DoH listeners of one process, on sockets bound by ``serve.sockets``.

DoT connections are ``TcpConnection``s (the same framing, pipelining and limits as DNS
over TCP, RFC 7858 3.3) labelled ``dot``; DoH connections speak HTTP/2 or HTTP/1.1 as
the handshake's ALPN chose (``serve.doh2``, ``serve.doh``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import ssl
from collections.abc import Callable, Sequence

from resolver.config import Config
from resolver.metrics import Metrics
from resolver.serve.connections import TcpConnections
from resolver.serve.doh import DohService, Http1Connection
from resolver.serve.doh2 import Http2Connection
from resolver.serve.tcp import TcpConnection
from resolver.serve.tls import ClientSlots, Live, TlsAcceptor, TlsContexts
from resolver.serve.transport import QueryRunner

log = logging.getLogger(__name__)

# What each kind of listener is called in sockets and in the config.
DOT, DOH = "dot", "doh"


class DotConnection(TcpConnection):
    PROTOCOL = "dot"


class EncryptedListeners:
    def __init__(self, config: Config, metrics: Metrics) -> None:
        listen = config.listen
        self.contexts = TlsContexts(metrics)
        self._listen = listen
        self._slots = ClientSlots(
            listen.tls_max_connections_per_client, listen.tls_max_connections, metrics
        )
        # Closed by the cap: counted with TCP's; open ones are in the TLS connections' gauge.
        self._dot = TcpConnections(
            listen.tls_max_connections, listen.tls_idle_timeout, metrics.tcp_closed
        )
        self._servers: list[asyncio.Server] = []
        self._live = Live()

    def reload(self, config: Config) -> None:
        """Read the certificate again (a bad one: the running one stays)."""
        self.contexts.load(config)

    async def start(
        self, sockets: Sequence[tuple[str, socket.socket]], runner: QueryRunner
    ) -> None:
        loop = asyncio.get_running_loop()
        listen = self._listen
        doh = DohService(runner, listen.doh_path)
        idle, header = listen.tls_idle_timeout, listen.http_max_header_bytes

        def dot(_alpn: str | None) -> asyncio.BaseProtocol:
            return DotConnection(runner, self._dot)

        def http(alpn: str | None) -> asyncio.BaseProtocol:
            if alpn == "h2":
                return Http2Connection(doh, idle, header)
            return Http1Connection(doh, idle, header)  # ALPN http/1.1, or none sent

        for kind, sock in sockets:
            accept = functools.partial(
                TlsAcceptor,
                self._context_for(kind),
                self._slots,
                dot if kind == DOT else http,
                listen.tls_handshake_timeout,
                self._live,
            )
            server = await loop.create_server(accept, sock=sock, backlog=256)
            self._servers.append(server)
            log.info("serving %s on %s", kind.upper(), sock.getsockname()[:2])

    def _context_for(self, kind: str) -> Callable[[], ssl.SSLContext | None]:
        # Looked up at each connection: a reload's new certificate serves new handshakes.
        if kind == DOT:
            return lambda: self.contexts.dot
        return lambda: self.contexts.doh

    def stop_accepting(self) -> None:
        for server in self._servers:
            server.close()

    async def close(self) -> None:
        self._live.close()
        for server in self._servers:
            await server.wait_closed()
