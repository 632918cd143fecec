"""DNS over HTTPS (RFC 8484): what a request means, and HTTP/1.1 keep-alive connections.

``DohService`` turns one HTTP request (GET with ``?dns=``, or POST of
``application/dns-message``) into a query for the pipeline and its answer into a
response; the HTTP/1.1 connection below and the HTTP/2 one (``serve.doh2``) only frame.
The query's client is the connection's peer address, as for UDP and TCP, so access
control, client groups and the audit trail apply unchanged.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from resolver.dns import wire
from resolver.dns.codec import encode_answer, parse_query
from resolver.dns.model import Answer, Outcome, Query
from resolver.serve.http import _REASONS, _headers
from resolver.serve.transport import QueryRunner

DNS_MESSAGE = "application/dns-message"  # RFC 8484 6
# A DNS message over a stream is at most 65535 bytes (RFC 1035 4.2.2); so is a request.
MAX_MESSAGE = 65535
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")
_TEXT = "text/plain"
REASONS = {
    **_REASONS,
    415: "Unsupported Media Type",
    431: "Request Header Fields Too Large",
    501: "Not Implemented",
}


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    content_type: str = _TEXT
    max_age: int | None = None  # cache-control: max-age (RFC 8484 5.1)

    def headers(self) -> list[tuple[str, str]]:
        fields = [("content-type", self.content_type), ("content-length", str(len(self.body)))]
        if self.max_age is not None:
            fields.append(("cache-control", f"max-age={self.max_age}"))
        if self.status == 405:
            fields.append(("allow", "GET, POST"))
        return fields


def error(status: int) -> Reply:
    return Reply(status, f"{status} {REASONS.get(status, 'Error')}\n".encode())


Respond = Callable[[Reply], None]


def freshness(message: bytes) -> int:
    """The answer's freshness lifetime: the smallest TTL of its answer records, or for a
    negative answer the SOA's negative TTL (RFC 8484 5.1, RFC 2308 5); found by walking
    the records without decoding them (``wire.scan_response``)."""
    try:
        scan = wire.scan_response(message)
    except wire.WireError:
        return 0
    if scan.min_ttl is not None:
        return scan.min_ttl
    return scan.negative_ttl or 0


class DohService:
    """The DoH endpoint at ``path``, answering through ``runner``."""

    def __init__(self, runner: QueryRunner, path: str) -> None:
        self.runner = runner
        self.path = path

    def request(
        self,
        method: str,
        target: str,
        content_type: str,
        body: bytes,
        client: str,
        respond: Respond,
    ) -> None:
        """Answer one request; ``respond`` is called once, now or when the answer comes."""
        message = self._message(method, target, content_type, body)
        if isinstance(message, Reply):
            respond(message)
            return
        query = parse_query(message, "doh", client)
        if query is None:
            self.runner.metrics.dropped.labels("doh", "unparsable").inc()
            respond(error(400))
            return
        answer = self.runner.answer_now(query, _reply, respond)
        if answer is not None:
            _reply(query, answer, respond)

    def _message(self, method: str, target: str, content_type: str, body: bytes) -> bytes | Reply:
        url = urlsplit(target)
        if url.path != self.path:
            return error(404)
        if method == "POST":
            if content_type.split(";")[0].strip().lower() != DNS_MESSAGE:
                return error(415)
            return body if len(body) <= MAX_MESSAGE else error(413)
        if method != "GET":
            return error(405)
        values = parse_qs(url.query).get("dns", [])
        # RFC 8484 4.1: base64url (RFC 4648 5) without padding.
        if len(values) != 1 or not _BASE64URL.fullmatch(values[0]):
            return error(400)
        text = values[0]
        if len(text) * 3 // 4 > MAX_MESSAGE:
            return error(413)
        try:
            return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            return error(400)


def _reply(query: Query, answer: Answer, respond: Any) -> None:
    if answer.outcome is Outcome.DROPPED:
        # Only UDP answers are ever dropped (rate limit); HTTP must still answer.
        respond(error(503))
        return
    # The answer's ID is the query's, 0 as RFC 8484 4.1 asks clients to send.
    message = encode_answer(query, answer, udp=False)
    respond(Reply(200, message, DNS_MESSAGE, freshness(message)))


class IdleTimer:
    """Ends a connection on which no request completed for ``timeout`` seconds, unless
    answers are still owed to it (``busy``): waiting for an upstream is not the client's
    fault. Only complete requests re-arm it, so bytes trickled forever do not."""

    def __init__(self, timeout: float, busy: Callable[[], bool], end: Callable[[], None]) -> None:
        self._timeout = timeout
        self._busy = busy
        self._end = end
        self._timer: asyncio.TimerHandle | None = None

    def arm(self) -> None:
        self.cancel()
        self._timer = asyncio.get_running_loop().call_later(self._timeout, self._fire)

    def _fire(self) -> None:
        if self._busy():
            self.arm()
        else:
            self._end()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class StallGuard:
    """A client that does not read its answers: its requests are no longer read, and it
    is cut off if it has not caught up within the idle timeout (answers cannot pile up
    in memory)."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._timer: asyncio.TimerHandle | None = None

    def paused(self, transport: asyncio.Transport | None) -> None:
        if transport is not None and self._timer is None:
            transport.pause_reading()
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._timeout, transport.abort)

    def resumed(self, transport: asyncio.Transport | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if transport is not None and not transport.is_closing():
            transport.resume_reading()


class HttpConnection(asyncio.Protocol):
    """What both HTTP versions share: the peer's address, the idle timer and the guard
    against a client that does not read."""

    def __init__(self, service: DohService, idle_timeout: float) -> None:
        self._service = service
        self._transport: asyncio.Transport | None = None
        self._client = ""
        self._idle = IdleTimer(idle_timeout, self._owed, self._on_idle)
        self._stall = StallGuard(idle_timeout)

    def _owed(self) -> bool:
        """Answers are still owed to the client (it is not idle)."""
        raise NotImplementedError

    def _on_idle(self) -> None:
        raise NotImplementedError

    def _started(self) -> None:
        """The connection is up (HTTP/2 sends its settings here)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        peer = transport.get_extra_info("peername")
        self._client = peer[0] if peer else ""
        self._started()
        self._idle.arm()

    def pause_writing(self) -> None:
        self._stall.paused(self._transport)

    def resume_writing(self) -> None:
        self._stall.resumed(self._transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._idle.cancel()
        self._transport = None


class Http1Connection(HttpConnection):
    """HTTP/1.1 with keep-alive: requests answered one at a time, in order (RFC 9112 9.3.2).

    A request must arrive whole within the idle timeout of the last one: a client that
    dribbles a header a byte at a time is cut off, and one whose head passes
    ``max_header`` bytes gets 431 and is closed.
    """

    def __init__(self, service: DohService, idle_timeout: float, max_header: int) -> None:
        super().__init__(service, idle_timeout)
        self._max_header = max_header
        self._buffer = bytearray()
        self._busy = False
        self._close_after = False
        self._reading = False  # inside _next's loop

    def _owed(self) -> bool:
        return self._busy

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) > self._max_header + MAX_MESSAGE:
            self._transport_pause()
        self._next()

    def _transport_pause(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()

    def _next(self) -> None:
        """Take the requests waiting in the buffer, one at a time: a loop, not recursion,
        since an answer given at once calls back here (a pipelined burst stays flat)."""
        if self._reading:
            return
        self._reading = True
        try:
            while not self._busy and self._transport is not None and self._one():
                pass
        finally:
            self._reading = False

    def _one(self) -> bool:
        """Start the first request in the buffer; False when it is not all there yet."""
        end = self._buffer.find(b"\r\n\r\n", 0, self._max_header + 4)
        if end < 0:
            if len(self._buffer) > self._max_header:
                self._fail(431)
            return False
        lines = self._buffer[:end].decode("latin-1").split("\r\n")
        request = lines[0].split(" ")
        headers = _headers(lines[1:])
        length_text = headers.get("content-length", "0")
        status = 0
        if len(request) != 3 or request[2] not in ("HTTP/1.1", "HTTP/1.0"):
            status = 400
        elif "transfer-encoding" in headers:
            status = 501  # a DNS message has a known length: Content-Length only
        elif not length_text.isdigit():
            status = 400
        elif int(length_text) > MAX_MESSAGE:
            status = 413
        if status:
            self._fail(status)
            return False
        total = end + 4 + int(length_text)
        if len(self._buffer) < total:
            return False
        body = bytes(self._buffer[end + 4 : total])
        del self._buffer[:total]
        self._busy = True
        self._close_after = request[2] == "HTTP/1.0" or headers.get("connection") == "close"
        self._idle.arm()
        content_type = headers.get("content-type", "")
        self._service.request(request[0], request[1], content_type, body, self._client, self._send)
        return True

    def _send(self, reply: Reply) -> None:
        self._busy = False
        if self._transport is None or self._transport.is_closing():
            return
        reason = REASONS.get(reply.status, "Error")
        fields = reply.headers()
        if self._close_after:
            fields.append(("connection", "close"))
        head = "".join(f"{name}: {value}\r\n" for name, value in fields)
        self._transport.write(
            f"HTTP/1.1 {reply.status} {reason}\r\n{head}\r\n".encode("latin-1") + reply.body
        )
        if self._close_after:
            self._transport.close()
            return
        self._idle.arm()
        self._transport.resume_reading()
        self._next()

    def _fail(self, status: int) -> None:
        """A request we cannot frame: answer it, then close (no way to find the next)."""
        self._close_after = True
        self._buffer.clear()
        self._send(error(status))

    def _on_idle(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def eof_received(self) -> bool:
        # Finish the answer in flight, then close.
        self._close_after = True
        return self._busy
