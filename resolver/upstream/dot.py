"""DNS over TLS to an upstream (RFC 7858): one TLS connection carries many queries at
once (pipelining, RFC 7858 3.3 and RFC 7766 6.2.1.1), each framed by its two-byte
length, answered in any order and matched by ID. IDs are random and unique among the
queries in flight on the connection, so an answer can never be given to the wrong one.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable

from resolver.dns import wire
from resolver.upstream.idents import query_id
from resolver.upstream.streams import Connection


class DotConnection(Connection):
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        on_stray: Callable[[], None],
    ) -> None:
        super().__init__(reader, writer)
        self._on_stray = on_stray

    async def exchange(self, message: bytes) -> tuple[int, bytes]:
        """Send ``message`` under a fresh ID; that ID and the answer that carries it."""
        ident = query_id()
        while ident in self.pending:
            ident = query_id()
        message = wire.U16.pack(ident) + message[2:]
        future = self.expect(ident)
        self._writer.write(wire.U16.pack(len(message)) + message)
        return ident, await self.answer(ident, future)

    async def receive(self) -> None:
        while True:
            length = wire.U16.unpack(await self._stream.readexactly(2))[0]
            data = await self._stream.readexactly(length)
            self.heard()
            if len(data) < 2 or not self.deliver(wire.U16.unpack_from(data)[0], data):
                self._on_stray()  # an ID nobody waits for: late, or not for us


async def open_dot(
    host: str, port: int, name: str, context: ssl.SSLContext, on_stray: Callable[[], None]
) -> DotConnection:
    """Connect and finish the TLS handshake, the certificate verified for ``name``."""
    reader, writer = await asyncio.open_connection(host, port, ssl=context, server_hostname=name)
    return DotConnection(reader, writer, on_stray)
