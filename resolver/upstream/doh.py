"""DNS over HTTPS to an upstream (RFC 8484): HTTP/2 (RFC 9113) over one TLS connection
negotiated with ALPN ``h2``, each query a POST of ``application/dns-message`` on a
stream of its own, answered on that stream. The ID is 0 (RFC 8484 4.1: caching
friendly); the stream, not the ID, tells the answers apart.

``h2`` only frames; the connection, its reads and writes are ours (asyncio streams).
"""

from __future__ import annotations

import asyncio
import ssl

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    ResponseReceived,
    StreamEnded,
    StreamReset,
)
from h2.exceptions import H2Error
from h2.settings import SettingCodes

from resolver.upstream.streams import (
    Connection,
    ConnectionLost,
    Rejected,
)

MEDIA_TYPE = b"application/dns-message"
MAX_ANSWER = 65535  # a DNS message is at most this long (RFC 8484 6 has no other bound)


class DohConnection(Connection):
    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, authority: str, path: str
    ) -> None:
        super().__init__(reader, writer)
        self._authority = authority
        self._path = path
        self._h2 = H2Connection(H2Configuration(client_side=True, header_encoding=None))
        self._h2.initiate_connection()
        self._h2.update_settings({SettingCodes.ENABLE_PUSH: 0})
        self._flush()
        self._status: dict[int, bytes] = {}
        self._bodies: dict[int, bytearray] = {}

    @property
    def capacity(self) -> int:
        # The server's SETTINGS_MAX_CONCURRENT_STREAMS bounds us too (RFC 9113 5.1.2).
        return min(super().capacity, self._h2.remote_settings.max_concurrent_streams)

    async def exchange(self, message: bytes) -> tuple[int, bytes]:
        """POST ``message`` with ID 0; that ID and the answer from the same stream."""
        message = b"\x00\x00" + message[2:]
        try:
            stream = self._h2.get_next_available_stream_id()
            self._h2.send_headers(stream, self._headers(len(message)))
            if self._h2.local_flow_control_window(stream) < len(message):
                self._h2.reset_stream(stream, ErrorCodes.CANCEL)
                self._flush()
                raise ConnectionError("HTTP/2 flow-control window exhausted")
            self._h2.send_data(stream, message, end_stream=True)
        except H2Error as error:  # stream IDs used up, or a connection gone bad
            self.close(ConnectionLost(f"HTTP/2: {error!r}"))
            raise ConnectionLost(f"HTTP/2: {error!r}") from None
        future = self.expect(stream)
        self._flush()
        return 0, await self.answer(stream, future)

    def _headers(self, length: int) -> list[tuple[bytes, bytes]]:
        return [
            (b":method", b"POST"),
            (b":scheme", b"https"),
            (b":authority", self._authority.encode()),
            (b":path", self._path.encode()),
            (b"accept", MEDIA_TYPE),
            (b"content-type", MEDIA_TYPE),
            (b"content-length", str(length).encode()),
        ]

    def abandoned(self, key: int) -> None:
        self._forget(key)
        try:
            self._h2.reset_stream(key, ErrorCodes.CANCEL)
        except H2Error:
            return  # already closed
        self._flush()

    async def receive(self) -> None:
        while True:
            data = await self._stream.read(65536)
            if not data:
                return
            self.heard()
            for event in self._h2.receive_data(data):
                self._handle(event)
            self._flush()

    def _handle(self, event: Event) -> None:
        if isinstance(event, ResponseReceived) and event.stream_id is not None:
            self._status[event.stream_id] = dict(event.headers or []).get(b":status", b"")
            self._bodies[event.stream_id] = bytearray()
        elif isinstance(event, DataReceived) and event.stream_id is not None:
            self._h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            body = self._bodies.get(event.stream_id)
            if body is not None and event.data is not None:
                body += event.data
                if len(body) > MAX_ANSWER:
                    self.deliver(event.stream_id, Rejected("malformed"))
                    self.abandoned(event.stream_id)
        elif isinstance(event, StreamEnded) and event.stream_id is not None:
            self._finish(event.stream_id)
        elif isinstance(event, StreamReset) and event.stream_id is not None:
            self._forget(event.stream_id)
            self.deliver(event.stream_id, ConnectionError("stream reset by the upstream"))
        elif isinstance(event, ConnectionTerminated):  # GOAWAY: no new streams here
            self.close(ConnectionLost(f"GOAWAY {event.error_code!r}"))

    def _finish(self, stream: int) -> None:
        status = self._status.pop(stream, b"")
        body = self._bodies.pop(stream, None)
        if status != b"200":
            self.deliver(stream, Rejected("http_status"))
        elif body is not None:
            self.deliver(stream, bytes(body))

    def _forget(self, stream: int) -> None:
        self._status.pop(stream, None)
        self._bodies.pop(stream, None)

    def _flush(self) -> None:
        data = self._h2.data_to_send()
        if data and not self.closed:
            self._writer.write(data)


async def open_doh(
    host: str, port: int, name: str, path: str, context: ssl.SSLContext
) -> DohConnection:
    """Connect, verify the certificate for ``name`` and insist on HTTP/2 by ALPN."""
    reader, writer = await asyncio.open_connection(host, port, ssl=context, server_hostname=name)
    if writer.get_extra_info("ssl_object").selected_alpn_protocol() != "h2":
        writer.close()
        raise ssl.SSLError("the upstream does not offer HTTP/2 (ALPN h2)")
    authority = name if port == 443 else f"{name}:{port}"
    if ":" in name:
        authority = f"[{name}]" if port == 443 else f"[{name}]:{port}"
    return DohConnection(reader, writer, authority, path)
