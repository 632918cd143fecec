"""The ceiling for a DNS server in pure Python: the benchmark's reference, not a server.

For each datagram: read the header, look the rest of the packet up in a dict of ready
answers, patch the ID in, ``sendto``. That is all a Python process can do per query at
the least, so the report can say how far aiwall is from it. What is not in the dict
yet is made once: NXDOMAIN for a name on the block list (or below one), else the
upstream's answer, relayed and kept for good (no TTLs, no timeouts, no limits: never run
this for anything but a benchmark).

The upstream is asked as aiwall asks it (RFC 5452): each question in flight on a socket
of its own, connected to the upstream from a random port, with a random ID, reused for
later questions at most 100 times and for at most 0.9 s; an answer is taken only with
the ID and question sent. So the miss mix's ceiling is that of aiwall's socket
discipline, not of a cheaper one. ``--one-socket`` asks everything over one socket and
takes any answer to an ID in flight, as a relay with no care for forgeries could.

    python bench/bare.py --port 5300 --upstream 127.0.0.1:5301 --blocklist names.txt
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import socket
import struct
import time

_HEADER = struct.Struct("!HHHHHH")


def _qname_end(data: bytes) -> int:
    offset = 12
    while data[offset]:
        offset += data[offset] + 1
    return offset + 1


def _suffixes(data: bytes, end: int) -> list[bytes]:
    """The question name and each of its parents, lowercase dotted text, as bytes."""
    labels = []
    offset = 12
    while offset < end - 1:
        length = data[offset]
        labels.append(data[offset + 1 : offset + 1 + length].lower())
        offset += length + 1
    return [b".".join(labels[i:]) for i in range(len(labels))]


# A socket to the upstream carries at most this many questions, and lives this long (s).
SOCKET_USES = 100
SOCKET_AGE = 0.9


class _Asking:
    """A socket to the upstream and the one question it carries now."""

    __slots__ = ("born", "fd", "ident", "key", "reply_to", "sock", "uses")

    def __init__(self, upstream: tuple[str, int], loop: asyncio.AbstractEventLoop, bare: Bare):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK)
        self.sock.connect(upstream)  # the kernel picks a random port
        self.fd = self.sock.fileno()
        self.born = time.monotonic()
        self.uses = 0
        self.ident = 0
        self.key = b""
        self.reply_to: tuple[bytes, tuple[str, int]] = (b"", ("", 0))
        loop.add_reader(self.fd, bare.on_own_answer, self)


class Bare:
    def __init__(
        self,
        sock: socket.socket,
        upstream: tuple[str, int],
        blocked: set[bytes],
        one_socket: bool = False,
    ):
        self.sock = sock
        self.upstream = upstream
        self.blocked = blocked
        self.one_socket = one_socket
        self.ready: dict[bytes, bytes] = {}
        self.waiting: dict[int, tuple[bytes, bytes, tuple[str, int]]] = {}
        self.ids = itertools.cycle(range(1, 65536))
        self.random_ids: list[int] = []
        self.idle: list[_Asking] = []
        self.out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.out.setblocking(False)
        self.out.connect(upstream)
        self.loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        loop.add_reader(self.sock.fileno(), self.on_query)
        loop.add_reader(self.out.fileno(), self.on_answer)

    def on_query(self) -> None:
        ready, recvfrom, sendto = self.ready, self.sock.recvfrom, self.sock.sendto
        for _ in range(64):
            try:
                data, addr = recvfrom(4096)
            except BlockingIOError:
                return
            answer = ready.get(data[2:])
            if answer is not None:
                sendto(data[:2] + answer, addr)
            elif len(data) > 12:
                self.make(data, addr)

    def make(self, data: bytes, addr: tuple[str, int]) -> None:
        end = _qname_end(data) + 4
        if any(name in self.blocked for name in _suffixes(data, end - 4)):
            flags = 0x8180 | 3  # QR, RD, RA, NXDOMAIN
            answer = struct.pack("!HHHHH", flags, 1, 0, 0, 0) + data[12:end]
            self.ready[data[2:]] = answer
            self.sock.sendto(data[:2] + answer, addr)
            return
        if self.one_socket:
            ident = next(self.ids)
            self.waiting[ident] = (data[2:], data[:2], addr)
            self.out.send(struct.pack("!H", ident) + data[2:])
            return
        if not self.random_ids:
            self.random_ids = list(struct.unpack("2048H", os.urandom(4096)))
        assert self.loop is not None
        asking = self.idle.pop() if self.idle else _Asking(self.upstream, self.loop, self)
        asking.uses += 1
        asking.ident = self.random_ids.pop()
        asking.key = data[2:]
        asking.reply_to = (data[:2], addr)
        asking.sock.send(struct.pack("!H", asking.ident) + data[2:])

    def on_own_answer(self, asking: _Asking) -> None:
        """The answer on a socket of its own: taken only with the ID and question sent."""
        try:
            data = asking.sock.recv(65535)
        except OSError:
            return
        if len(data) <= 12 or struct.unpack_from("!H", data)[0] != asking.ident:
            return
        end = _qname_end(data) + 4
        # The question from offset 12 of the answer is at offset 10 of the key (no ID).
        if data[12:end].lower() != asking.key[10 : end - 2].lower():
            return
        ident, addr = asking.reply_to
        self.ready[asking.key] = data[2:]
        self.sock.sendto(ident + data[2:], addr)
        if asking.uses < SOCKET_USES and time.monotonic() - asking.born < SOCKET_AGE:
            self.idle.append(asking)
        else:
            assert self.loop is not None
            self.loop.remove_reader(asking.fd)
            asking.sock.close()

    def on_answer(self) -> None:
        for _ in range(64):
            try:
                data = self.out.recv(65535)
            except BlockingIOError:
                return
            waiting = self.waiting.pop(struct.unpack_from("!H", data)[0], None)
            if waiting is None:
                continue
            key, ident, addr = waiting
            self.ready[key] = data[2:]
            self.sock.sendto(ident + data[2:], addr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="HOST:PORT")
    parser.add_argument("--blocklist", required=True, help="one name per line")
    parser.add_argument(
        "--one-socket", action="store_true", help="ask the upstream over one socket"
    )
    args = parser.parse_args()
    host, _, port = args.upstream.rpartition(":")
    with open(args.blocklist, "rb") as stream:
        blocked = {line.strip().lower() for line in stream if line.strip()}
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", args.port))
    sock.setblocking(False)

    async def serve() -> None:
        bare = Bare(sock, (host, int(port)), blocked, one_socket=args.one_socket)
        bare.start(asyncio.get_running_loop())
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
