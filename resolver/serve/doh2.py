"""DoH over HTTP/2 (RFC 8484 5.2 recommends it; ALPN ``h2``), framed by the h2 library.

Each stream is one request, answered when its answer is ready, in any order. Bounds:
at most ``MAX_STREAMS`` streams at once (SETTINGS_MAX_CONCURRENT_STREAMS), the header
list at most ``max_header`` bytes (SETTINGS_MAX_HEADER_LIST_SIZE, enforced by the HPACK
decoder), frames at most 16 KiB (the default SETTINGS_MAX_FRAME_SIZE: a bigger one is a
FRAME_SIZE_ERROR), bodies at most 65535 bytes, and the bytes a client may send without
completing a request; a protocol error ends the connection with GOAWAY.
"""

from __future__ import annotations

import logging

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RequestReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from h2.exceptions import H2Error, ProtocolError
from h2.settings import SettingCodes, Settings

from resolver.serve.doh import MAX_MESSAGE, DohService, HttpConnection, Reply, error

log = logging.getLogger(__name__)

MAX_STREAMS = 100


class _Stream:
    __slots__ = ("body", "headers", "too_large")

    def __init__(self, headers: dict[bytes, bytes]) -> None:
        self.headers = headers
        self.body = bytearray()
        self.too_large = False


class Http2Connection(HttpConnection):
    def __init__(self, service: DohService, idle_timeout: float, max_header: int) -> None:
        super().__init__(service, idle_timeout)
        self._h2 = H2Connection(H2Configuration(client_side=False, header_encoding=None))
        self._h2.local_settings = Settings(
            client=False,
            initial_values={
                SettingCodes.MAX_CONCURRENT_STREAMS: MAX_STREAMS,
                SettingCodes.MAX_HEADER_LIST_SIZE: max_header,
            },
        )
        self._h2.decoder.max_header_list_size = max_header
        # Bytes a client may send with no request completed: a little more than one
        # request of the biggest size, so headers or bodies trickled forever are cut off.
        self._unfinished_limit = 2 * (max_header + MAX_MESSAGE)
        self._unfinished = 0
        self._streams: dict[int, _Stream] = {}
        self._waiting = 0  # requests passed to the pipeline, not yet answered
        self._unsent: dict[int, bytes] = {}  # bodies held back by flow control

    def _owed(self) -> bool:
        return self._waiting > 0

    def _started(self) -> None:
        self._h2.initiate_connection()
        self._flush()

    def data_received(self, data: bytes) -> None:
        self._unfinished += len(data)
        if self._unfinished > self._unfinished_limit:
            self._abort("too many bytes without a complete request")
            return
        try:
            events = self._h2.receive_data(data)
        except (ProtocolError, H2Error) as problem:
            self._abort(f"protocol error: {problem!r}")
            return
        for event in events:
            self._event(event)
        self._flush()

    def _event(self, event: object) -> None:
        if isinstance(event, RequestReceived) and event.stream_id is not None:
            headers = {bytes(k): bytes(v) for k, v in event.headers or []}
            self._streams[event.stream_id] = _Stream(headers)
        elif isinstance(event, DataReceived) and event.stream_id is not None:
            self._data(event)
        elif isinstance(event, StreamEnded) and event.stream_id is not None:
            self._ended(event.stream_id)
        elif isinstance(event, StreamReset) and event.stream_id is not None:
            self._streams.pop(event.stream_id, None)
            self._unsent.pop(event.stream_id, None)
        elif isinstance(event, WindowUpdated):
            for stream_id in list(self._unsent):
                self._send_body(stream_id, self._unsent.pop(stream_id))
        elif isinstance(event, ConnectionTerminated) and self._transport is not None:
            self._flush()
            self._transport.close()

    def _data(self, event: DataReceived) -> None:
        assert event.stream_id is not None
        stream = self._streams.get(event.stream_id)
        data = event.data or b""
        self._h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        if stream is None:
            return
        if len(stream.body) + len(data) > MAX_MESSAGE:
            stream.too_large = True
            stream.body.clear()
        elif not stream.too_large:
            stream.body += data

    def _ended(self, stream_id: int) -> None:
        stream = self._streams.pop(stream_id, None)
        if stream is None:
            return
        self._unfinished = 0
        self._waiting += 1
        self._idle.arm()
        if stream.too_large:
            self._respond(stream_id, error(413))
            return
        headers = stream.headers
        text = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers.items()}
        self._service.request(
            text.get(":method", ""),
            text.get(":path", ""),
            text.get("content-type", ""),
            bytes(stream.body),
            self._client,
            lambda reply: self._respond(stream_id, reply),
        )

    def _respond(self, stream_id: int, reply: Reply) -> None:
        self._waiting -= 1
        if self._transport is None:
            return
        try:
            self._h2.send_headers(stream_id, [(":status", str(reply.status)), *reply.headers()])
        except H2Error:
            return  # the client reset the stream meanwhile
        self._send_body(stream_id, reply.body)
        self._flush()
        self._idle.arm()

    def _send_body(self, stream_id: int, body: bytes) -> None:
        """As much of ``body`` as flow control lets out now; the rest on WINDOW_UPDATE."""
        try:
            while body:
                window = self._h2.local_flow_control_window(stream_id)
                size = min(window, self._h2.max_outbound_frame_size, len(body))
                if size <= 0:
                    self._unsent[stream_id] = body
                    return
                self._h2.send_data(stream_id, body[:size])
                body = body[size:]
            self._h2.end_stream(stream_id)
        except H2Error:
            self._unsent.pop(stream_id, None)

    def _flush(self) -> None:
        data = self._h2.data_to_send()
        if data and self._transport is not None:
            self._transport.write(data)

    def _abort(self, why: str) -> None:
        log.debug("DoH/2 client %s: %s", self._client, why)
        if self._transport is not None:
            self._h2.close_connection()
            self._flush()
            self._transport.close()

    def _on_idle(self) -> None:
        if self._transport is not None:
            self._h2.close_connection()
            self._flush()
            self._transport.close()
