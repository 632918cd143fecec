"""The ceiling for a DNS server in pure Python: the benchmark's reference, not a server.

For each datagram: read the header, look the rest of the packet up in a dict of ready
answers, patch the ID in, ``sendto``. That is all a Python process can do per query at
the least, so the report can say how far aiwall is from it. What is not in the dict
yet is made once: NXDOMAIN for a name on the block list (or below one), else the
upstream's answer, relayed and kept for good (no TTLs, no limits, no checks: never run
this for anything but a benchmark).

    python bench/bare.py --port 5300 --upstream 127.0.0.1:5301 --blocklist names.txt
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import socket
import struct

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


class Bare:
    def __init__(self, sock: socket.socket, upstream: tuple[str, int], blocked: set[bytes]):
        self.sock = sock
        self.upstream = upstream
        self.blocked = blocked
        self.ready: dict[bytes, bytes] = {}
        self.waiting: dict[int, tuple[bytes, bytes, tuple[str, int]]] = {}
        self.ids = itertools.cycle(range(1, 65536))
        self.out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.out.setblocking(False)
        self.out.connect(upstream)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
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
        ident = next(self.ids)
        self.waiting[ident] = (data[2:], data[:2], addr)
        self.out.send(struct.pack("!H", ident) + data[2:])

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
    args = parser.parse_args()
    host, _, port = args.upstream.rpartition(":")
    with open(args.blocklist, "rb") as stream:
        blocked = {line.strip().lower() for line in stream if line.strip()}
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", args.port))
    sock.setblocking(False)

    async def serve() -> None:
        Bare(sock, (host, int(port)), blocked).start(asyncio.get_running_loop())
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
