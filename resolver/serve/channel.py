"""The control channel between the supervisor and a worker: requests with IDs.

Each message is a length-prefixed pickle of ``(kind, id, op, payload, deadline)`` over
a UNIX stream socket (a socketpair made before the worker starts; only our own
processes hold its ends). A request waits for the reply with its own ID, until its
deadline; a reply that comes later finds nobody waiting and is dropped, so it can never
answer the next request. Requests are handled concurrently, so a slow one (a reload)
never holds up a quick one (/metrics, /readyz); a handler still running at its
deadline is cancelled and sends nothing. Notes are one-way (the audit batches, an
upstream found failing).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import pickle
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

_LENGTH = struct.Struct("!I")
# A message bigger than this is a bug (or an attack on a channel only we hold).
MAX_MESSAGE = 64 * 1024 * 1024

REQUEST, REPLY, NOTE = "request", "reply", "note"
# A request's handler: (op, payload) -> result (pickled back to the caller).
Handler = Callable[[str, Any], Awaitable[Any]]


class ChannelClosed(ConnectionError):
    """The other end is gone."""


class RemoteError(RuntimeError):
    """The handler on the other end raised; the message says what."""


class Channel:
    def __init__(self, sock: socket.socket, handler: Handler | None = None) -> None:
        self._sock = sock
        self._handler = handler
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()
        self.late_replies = 0

    async def start(self) -> None:
        reader, self._writer = await asyncio.open_unix_connection(sock=self._sock)
        self._reader_task = asyncio.get_running_loop().create_task(self._read(reader))

    async def request(self, op: str, payload: Any = None, wait: float = 5.0) -> Any:
        """Send a request and wait for its reply; TimeoutError after ``wait`` seconds,
        ChannelClosed when the other end goes away, RemoteError when it failed."""
        if self.closed.is_set():
            raise ChannelClosed(op)
        ident = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[ident] = future
        try:
            self._send(REQUEST, ident, op, payload, time.time() + wait)
            async with asyncio.timeout(wait):
                return await future
        finally:
            self._pending.pop(ident, None)

    def note(self, op: str, payload: Any = None) -> None:
        """A one-way message (dropped when the channel is closed)."""
        if not self.closed.is_set():
            self._send(NOTE, 0, op, payload, 0.0)

    def close(self) -> None:
        if self._reader_task is not None:
            self._reader_task.cancel()
        for task in self._tasks:
            task.cancel()
        if self._writer is not None:
            self._writer.close()
        self._fail_pending()

    def _send(self, kind: str, ident: int, op: str, payload: Any, deadline: float) -> None:
        if self._writer is None or self._writer.is_closing():
            raise ChannelClosed(op)
        data = pickle.dumps((kind, ident, op, payload, deadline), pickle.HIGHEST_PROTOCOL)
        self._writer.write(_LENGTH.pack(len(data)) + data)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
                if length > MAX_MESSAGE:
                    raise ChannelClosed(f"a message of {length} bytes")
                message = pickle.loads(await reader.readexactly(length))
                self._dispatch(*message)
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as error:
            log.debug("control channel closed: %r", error)
        finally:
            self.closed.set()
            self._fail_pending()

    def _dispatch(self, kind: str, ident: int, op: str, payload: Any, deadline: float) -> None:
        if kind == REPLY:
            future = self._pending.get(ident)
            if future is None or future.done():
                # Its requester gave up: a late reply answers nobody.
                self.late_replies += 1
                return
            ok, value = payload
            if ok:
                future.set_result(value)
            else:
                future.set_exception(RemoteError(value))
            return
        if self._handler is None:
            return
        task = asyncio.get_running_loop().create_task(
            self._handle(kind, ident, op, payload, deadline)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, kind: str, ident: int, op: str, payload: Any, deadline: float) -> None:
        assert self._handler is not None
        try:
            if kind == NOTE:
                await self._handler(op, payload)
                return
            async with asyncio.timeout(max(deadline - time.time(), 0.0)):
                result: tuple[bool, Any] = (True, await self._handler(op, payload))
        except TimeoutError:
            log.warning("control request %s ran past its deadline; no reply", op)
            return
        except Exception as error:  # the caller gets it as a RemoteError
            if kind == NOTE:
                log.exception("control note %s failed", op)
                return
            result = (False, f"{type(error).__name__}: {error}")
        with contextlib.suppress(ChannelClosed, OSError):
            self._send(REPLY, ident, op, result, 0.0)

    def _fail_pending(self) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ChannelClosed("the other end is gone"))
        self._pending.clear()
