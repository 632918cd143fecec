"""The HTTP listener: /metrics for Prometheus, /healthz and /readyz for orchestrators.

A deliberately tiny HTTP/1.1 server on the event loop (one request per connection), so
the process needs no web framework and no extra thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from resolver.metrics import Metrics

log = logging.getLogger(__name__)

_MAX_REQUEST_HEAD = 8192
_REASONS = {
    200: "OK",
    404: "Not Found",
    405: "Method Not Allowed",
    400: "Bad Request",
    503: "Service Unavailable",
}

Response = tuple[int, str, bytes]


Exposition = Callable[[], Awaitable[bytes]]
Readiness = Callable[[], Awaitable[tuple[bool, str]]]


def registry_exposition(metrics: Metrics) -> Exposition:
    async def exposition() -> bytes:
        return generate_latest(metrics.registry)

    return exposition


class StatusServer:
    """``exposition`` renders /metrics: one registry, or several workers' merged."""

    def __init__(self, exposition: Exposition, ready: Readiness) -> None:
        self._exposition = exposition
        self._ready = ready
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> tuple[str, int]:
        self._server = await asyncio.start_server(self._serve, host, port)
        bound = self._server.sockets[0].getsockname()
        return bound[0], bound[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                head = await reader.readuntil(b"\r\n\r\n")
            if len(head) > _MAX_REQUEST_HEAD:
                raise ValueError("request head too large")
            method, target = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")[:2]
            status, content_type, body = await self._route(method, urlsplit(target).path)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
            status, content_type, body = 400, "text/plain", b"bad request\n"
        except ConnectionError:
            return
        head_out = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode("latin-1")
        try:
            writer.write(head_out + body)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _route(self, method: str, path: str) -> Response:
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"method not allowed\n"
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, await self._exposition()
        if path == "/healthz":
            return 200, "text/plain", b"ok\n"
        if path == "/readyz":
            ready, detail = await self._ready()
            return (200 if ready else 503), "text/plain", (detail + "\n").encode()
        return 404, "text/plain", b"not found\n"
