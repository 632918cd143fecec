"""TLS for the DoT and DoH listeners: the certificate in force, swapped on reload, and
the accepting side, which bounds every client before it costs a handshake.

A listening socket keeps the context it was created with, so the swap happens per
connection: each new connection is handed to ``loop.start_tls`` with whatever context
is current at that moment, and connections already open keep theirs. A certificate
that cannot be loaded on reload is refused; the one in force stays (logged, counted).

A connection is counted against its client's address from the first byte, not from
the end of the handshake: a client that opens connections and never completes a
handshake (a slowloris) is refused beyond ``tls_max_connections_per_client`` and cut
off after ``tls_handshake_timeout``. All of this runs on the event loop as callbacks
with deadlines, so a hostile client never blocks the UDP listener.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import Counter

from resolver.config import Config, ConfigError
from resolver.config.tls import ALPN_DOH, ALPN_DOT, server_context
from resolver.metrics import Metrics

log = logging.getLogger(__name__)


class TlsContexts:
    """The server contexts in force (DoT and DoH differ only in ALPN)."""

    def __init__(self, metrics: Metrics) -> None:
        self.dot: ssl.SSLContext | None = None
        self.doh: ssl.SSLContext | None = None
        self._loaded_from: tuple[bytes, bytes] | None = None
        self.reloads = Counter(
            "aiwall_tls_certificate_loads_total",
            "Loads of the DoT/DoH certificate and key (start and reload), by result.",
            ["result"],
            registry=metrics.registry,
        )

    def load(self, config: Config) -> bool:
        """Read the certificate and key again; keep the old ones if they are unusable.
        True when the new ones are in force (or nothing is configured)."""
        listen, tls = config.listen, config.tls
        if not (listen.dot or listen.doh):
            return True
        try:
            contents = _contents(config.base_dir, tls.certificate, tls.key)
            if contents == self._loaded_from:
                return True  # unchanged: nothing to do for a list refresh
            dot = server_context(tls, config.base_dir, ALPN_DOT)
            doh = server_context(tls, config.base_dir, ALPN_DOH)
        except (ConfigError, OSError) as error:
            self.reloads.labels("rejected").inc()
            if self.dot is None:
                raise
            log.error("TLS certificate not reloaded, keeping the one in force: %s", error)
            return False
        self.dot, self.doh, self._loaded_from = dot, doh, contents
        self.reloads.labels("success").inc()
        log.info("TLS certificate loaded from %s", config.base_dir / tls.certificate)
        return True


def _contents(base_dir: Path, certificate: str, key: str) -> tuple[bytes, bytes]:
    try:
        return (base_dir / certificate).read_bytes(), (base_dir / key).read_bytes()
    except OSError as error:
        raise ConfigError(f"tls.certificate: cannot read: {error}") from None


class ClientSlots:
    """Connections open per client address, and in all, under caps."""

    def __init__(self, per_client: int, total: int, metrics: Metrics) -> None:
        self.per_client = per_client
        self.total = total
        self._open: dict[str, int] = {}
        self._count = 0
        self._closed = metrics.tcp_closed

    def take(self, client: str) -> bool:
        if self._open.get(client, 0) >= self.per_client:
            self._closed.labels("tls_per_client_limit").inc()
            return False
        if self._count >= self.total:
            self._closed.labels("tls_limit").inc()
            return False
        self._open[client] = self._open.get(client, 0) + 1
        self._count += 1
        return True

    def give_back(self, client: str) -> None:
        left = self._open.get(client, 0) - 1
        if left > 0:
            self._open[client] = left
        else:
            self._open.pop(client, None)
        self._count -= 1


# The protocol that serves a connection once its handshake is done, chosen by ALPN.
Chooser = Callable[[str | None], asyncio.BaseProtocol]


@dataclass(slots=True)
class Live:
    """Handshakes under way and connections open, so a stop can end them all."""

    handshakes: set[asyncio.Task[None]] = field(default_factory=set)
    transports: set[asyncio.Transport] = field(default_factory=set)

    def close(self) -> None:
        for task in list(self.handshakes):
            task.cancel()
        for transport in list(self.transports):
            transport.close()


class _Early(asyncio.Protocol):
    """Holds what arrives between the end of the handshake and the hand-over (a TLS 1.3
    client sends its first request right behind its Finished message)."""

    def __init__(self) -> None:
        self.data: list[bytes] = []
        self.eof = False
        self.lost = False

    def data_received(self, data: bytes) -> None:
        self.data.append(data)

    def eof_received(self) -> bool:
        self.eof = True
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True


class TlsAcceptor(asyncio.Protocol):
    """One accepted TCP connection: admitted, handshaken, then handed to its protocol."""

    def __init__(
        self,
        context: Callable[[], ssl.SSLContext | None],
        slots: ClientSlots,
        choose: Chooser,
        handshake_timeout: float,
        live: Live,
    ) -> None:
        self._context = context
        self._slots = slots
        self._choose = choose
        self._timeout = handshake_timeout
        self._live = live
        self._client = ""
        self._admitted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        peer = transport.get_extra_info("peername")
        self._client = peer[0] if peer else ""
        context = self._context()
        if context is None or not self._slots.take(self._client):
            transport.abort()
            return
        self._admitted = True
        # Nothing may be read before start_tls takes the stream (the ClientHello).
        transport.pause_reading()
        task = asyncio.get_running_loop().create_task(self._handshake(transport, context))
        self._live.handshakes.add(task)
        task.add_done_callback(self._live.handshakes.discard)

    async def _handshake(self, transport: asyncio.Transport, context: ssl.SSLContext) -> None:
        loop = asyncio.get_running_loop()
        early = _Early()
        try:
            secure = await loop.start_tls(
                transport, early, context, server_side=True, ssl_handshake_timeout=self._timeout
            )
        except (ConnectionError, OSError, TimeoutError, ssl.SSLError) as error:
            log.debug("TLS handshake with %s failed: %r", self._client, error)
            self._slots_back()
            transport.abort()
            return
        except asyncio.CancelledError:  # the server stops
            self._slots_back()
            transport.abort()
            raise
        if secure is None or early.lost:
            self._slots_back()
            return
        ssl_object = secure.get_extra_info("ssl_object")
        alpn = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        served = self._choose(alpn)
        assert isinstance(served, asyncio.Protocol)
        self._live.transports.add(secure)

        def release() -> None:
            self._live.transports.discard(secure)
            self._slots_back()

        secure.set_protocol(_Releasing(served, release))
        served.connection_made(secure)
        for chunk in early.data:
            served.data_received(chunk)
        if early.eof and not served.eof_received():
            secure.close()

    def _slots_back(self) -> None:
        if self._admitted:
            self._admitted = False
            self._slots.give_back(self._client)

    def connection_lost(self, exc: Exception | None) -> None:
        # The raw transport closed; start_tls took it over, so this runs only when the
        # connection went before the handshake was started.
        self._slots_back()


class _Releasing(asyncio.Protocol):
    """The served protocol, plus giving the client's slot back when the connection ends."""

    def __init__(self, served: asyncio.Protocol, release: Callable[[], None]) -> None:
        self._served = served
        self._release = release

    def data_received(self, data: bytes) -> None:
        self._served.data_received(data)

    def eof_received(self) -> bool | None:
        return self._served.eof_received()

    def pause_writing(self) -> None:
        self._served.pause_writing()

    def resume_writing(self) -> None:
        self._served.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._release()
        self._served.connection_lost(exc)
