"""The DoT and DoH upstreams of one forwarder: a pool of connections for each, opened
within the forwarder's timeout, counted by ``aiwall_upstream_connections_total``."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Protocol

from resolver.metrics import Metrics
from resolver.upstream.doh import open_doh
from resolver.upstream.dot import open_dot
from resolver.upstream.streams import Connection, Pool, tls_context

PROTOCOLS = {"tls": "dot", "https": "doh"}  # the metric's protocol label by URL scheme


class Target(Protocol):
    """What an encrypted upstream is (``resolver.upstream.forwarder.Upstream``)."""

    @property
    def label(self) -> str: ...
    @property
    def scheme(self) -> str: ...
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def path(self) -> str: ...


class EncryptedUpstreams:
    def __init__(self, ca_file: Path | None, timeout: float, metrics: Metrics) -> None:
        self._ca_file = ca_file
        self._timeout = timeout
        self._metrics = metrics
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._pools: dict[str, Pool] = {}

    def preset(self, server: Target) -> None:
        protocol = PROTOCOLS[server.scheme]
        for event in ("opened", "reused", "failed", "closed"):
            self._metrics.upstream_connections.labels(server.label, protocol, event)
        self._metrics.upstream_open_connections.labels(server.label, protocol)
        for reason in ("tls", "http_status"):
            self._metrics.upstream_errors.labels(server.label, reason)

    async def exchange(self, server: Target, message: bytes) -> tuple[int, bytes]:
        """The ID ``message`` went out with, and the answer (raw, unchecked)."""
        pool = self._pools.get(server.label)
        if pool is None:
            pool = self._pools[server.label] = Pool(
                lambda: self._open(server), lambda event: self._count(server, event)
            )
        return await pool.exchange(message)

    async def _open(self, server: Target) -> Connection:
        async with asyncio.timeout(self._timeout):
            if server.scheme == "tls":
                return await open_dot(
                    server.host,
                    server.port,
                    server.name,
                    self._context(None),
                    lambda: self._metrics.upstream_rejected.labels(server.label, "wrong_id").inc(),
                )
            return await open_doh(
                server.host, server.port, server.name, server.path, self._context(["h2"])
            )

    def _context(self, alpn: list[str] | None) -> ssl.SSLContext:
        key = ",".join(alpn or [])
        context = self._contexts.get(key)
        if context is None:
            context = self._contexts[key] = tls_context(self._ca_file, alpn)
        return context

    def _count(self, server: Target, event: str) -> None:
        protocol = PROTOCOLS[server.scheme]
        self._metrics.upstream_connections.labels(server.label, protocol, event).inc()
        if event in ("opened", "closed"):
            change = 1 if event == "opened" else -1
            self._metrics.upstream_open_connections.labels(server.label, protocol).inc(change)

    async def close(self) -> None:
        for pool in self._pools.values():
            await pool.close()
