"""The HTTP listener: /metrics for Prometheus, /healthz and /readyz for orchestrators,
and POST /api/reload for administrators holding the API token.

A deliberately tiny HTTP/1.1 server on the event loop (one request per connection), so
the process needs no web framework and no extra thread.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import socket
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST

from resolver.serve.control import Control

log = logging.getLogger(__name__)

_MAX_REQUEST_HEAD = 8192
# No endpoint takes a body; one is read (to keep the connection orderly) only up to this.
_MAX_REQUEST_BODY = 4096
_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    422: "Unprocessable Content",
    503: "Service Unavailable",
}

Response = tuple[int, str, bytes]


class StatusServer:
    """The HTTP endpoint of a server or of a supervisor, whichever ``control`` is."""

    def __init__(self, control: Control) -> None:
        self._control = control
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> tuple[str, int]:
        self._server = await asyncio.start_server(self._serve, host, port)
        bound = self._server.sockets[0].getsockname()
        return bound[0], bound[1]

    @property
    def sockets(self) -> list[socket.socket]:
        """The listening sockets (a forked worker closes its copies)."""
        if self._server is None:
            return []
        return [sock for sock in self._server.sockets if isinstance(sock, socket.socket)]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            # One deadline for the whole request: a slow sender cannot hold a connection.
            async with asyncio.timeout(5):
                head = await reader.readuntil(b"\r\n\r\n")
                if len(head) > _MAX_REQUEST_HEAD:
                    raise ValueError("request head too large")
                lines = head.decode("latin-1").split("\r\n")
                method, target = lines[0].split(" ")[:2]
                headers = _headers(lines[1:])
                length = int(headers.get("content-length", "0"))
                if not 0 <= length <= _MAX_REQUEST_BODY:
                    raise _TooLarge
                await reader.readexactly(length)
            url = urlsplit(target)
            status, content_type, body = await self._route(
                method, url.path, headers.get("authorization", ""), parse_qs(url.query)
            )
        except _TooLarge:
            status, content_type, body = 413, "text/plain", b"request body too large\n"
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
            status, content_type, body = 400, "text/plain", b"bad request\n"
        except ConnectionError:
            return
        challenge = 'WWW-Authenticate: Bearer realm="aiwall"\r\n' if status == 401 else ""
        head_out = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            f"{challenge}Connection: close\r\n\r\n"
        ).encode("latin-1")
        try:
            writer.write(head_out + body)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _route(
        self, method: str, path: str, authorization: str, query: dict[str, list[str]]
    ) -> Response:
        control = self._control
        if path in ("/api/reload", "/api/pause"):
            if method != "POST":
                return 405, "text/plain", b"method not allowed: use POST\n"
            if path == "/api/reload":
                return await self._api(authorization, control.reload)
            return await self._api(authorization, self._pause_for(query))
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"method not allowed\n"
        if path == "/api/check":
            name, client = query.get("name", [""])[0], query.get("client", [""])[0]
            try:
                return _json(200, await control.check(name, client))
            except ValueError as error:
                return _json(400, {"error": str(error)})
        if path == "/api/stats":
            return _json(200, await control.stats())
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, await control.exposition()
        if path == "/healthz":
            return 200, "text/plain", b"ok\n"
        if path == "/readyz":
            ready, detail = await control.ready()
            return (200 if ready else 503), "text/plain", (detail + "\n").encode()
        return 404, "text/plain", b"not found\n"

    async def _api(
        self, authorization: str, action: Callable[[], Awaitable[tuple[bool, str]]]
    ) -> Response:
        token = self._control.api_token()
        if not token:
            return 403, "text/plain", b"API disabled: set api.token or api.token_file\n"
        scheme, _, presented = authorization.partition(" ")
        # Constant time, so the token cannot be guessed byte by byte from response times.
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            presented.strip().encode(), token.encode()
        ):
            return 401, "text/plain", b"missing or wrong bearer token\n"
        accepted, detail = await action()
        return (200 if accepted else 422), "text/plain", (detail + "\n").encode()

    def _pause_for(self, query: dict[str, list[str]]) -> Callable[[], Awaitable[tuple[bool, str]]]:
        """The pause action bound to ?minutes= (the API's actions take no arguments)."""
        try:
            minutes = float(query.get("minutes", ["5"])[0])
        except ValueError:
            minutes = -1.0

        async def act() -> tuple[bool, str]:
            return await self._control.pause(minutes)

        return act


def _json(status: int, document: dict[str, object]) -> Response:
    return status, "application/json", (json.dumps(document, indent=1) + "\n").encode()


class _TooLarge(Exception):
    """A request body above _MAX_REQUEST_BODY."""


def _headers(lines: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers
