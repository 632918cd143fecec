#!/usr/bin/env python3
"""Throw random, truncated and mutated packets at a running aiwall, over UDP and TCP.

Starts ``aiwall serve`` (one worker) on loopback with an upstream of its own, sends
``--packets`` packets (bounded by ``--seconds`` too), and checks along the way and at the
end that the server still answers real queries correctly, logged no pipeline failure,
and that its resident memory (VmRSS) did not grow by more than ``--rss-growth-mb``.
Exit status 0 when all of that holds. ``make fuzz`` runs 100,000 packets; the test suite
runs a few thousand (tests/integration/test_fuzz_smoke.py).

Packet kinds, in equal shares over UDP (TCP: one packet in ``--tcp-share``):
- random: any bytes, 0 to 600 of them;
- truncated: a valid query cut at a random point;
- mutated: a valid query with 1 to 8 bytes changed;
- header: a plausible header (small counts) and random bytes after it;
- crafted: the known hard cases (QR set, other opcodes, QDCOUNT 0 or 2, compression in
  the question, EDNS version 1, two OPT records, oversized labels and names, ANY, AXFR);
- valid: well-formed queries for random names and types (fills the cache, bounded).
Over TCP the frames are split at random points, some length prefixes lie (too long, too
short, zero) and some connections stop half-way.
"""

from __future__ import annotations

import argparse
import random
import socket
import struct
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.tools.harness import (
    ServerProcess,
    environment,
    run_command,
    start_upstream,
    workdir,
)

QTYPES = [1, 2, 5, 6, 12, 15, 16, 28, 33, 64, 65, 255, 252, 251, 41, 0, 65535]
KINDS = ("random", "truncated", "mutated", "header", "crafted", "valid")


def name_bytes(rng: random.Random) -> bytes:
    labels = [
        bytes(
            rng.choice(b"abcdefghijklmnopqrstuvwxyz0123456789-") for _ in range(rng.randint(1, 12))
        )
        for _ in range(rng.randint(1, 4))
    ]
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"


def opt(version: int = 0, payload: int = 1232, do: bool = False, options: bytes = b"") -> bytes:
    ttl = (version << 16) | (0x8000 if do else 0)
    return b"\x00" + struct.pack("!HHIH", 41, payload, ttl, len(options)) + options


def valid_query(rng: random.Random) -> bytes:
    edns = rng.random() < 0.7
    header = struct.pack("!HHHHHH", rng.getrandbits(16), 0x0100, 1, 0, 0, 1 if edns else 0)
    question = name_bytes(rng) + struct.pack("!HH", rng.choice(QTYPES[:12]), 1)
    extra = opt(payload=rng.choice([512, 1232, 4096]), do=rng.random() < 0.3) if edns else b""
    return header + question + extra


def crafted(rng: random.Random) -> bytes:
    ident = rng.getrandbits(16)
    name = name_bytes(rng)
    question = name + struct.pack("!HH", rng.choice(QTYPES), rng.choice([1, 3, 255, 254]))
    case = rng.randrange(10)
    if case == 0:  # a response: must be dropped, never answered (loops)
        return struct.pack("!HHHHHH", ident, 0x8180, 1, 0, 0, 0) + question
    if case == 1:  # other opcodes
        flags = rng.choice([1, 2, 4, 5, 6, 15]) << 11
        return struct.pack("!HHHHHH", ident, flags, 1, 0, 0, 0) + question
    if case == 2:  # no question, or two
        count = rng.choice([0, 2, 65535])
        return struct.pack("!HHHHHH", ident, 0x0100, count, 0, 0, 0) + question * min(count, 2)
    if case == 3:  # a compression pointer in the question, maybe pointing at itself
        pointer = struct.pack("!H", 0xC000 | rng.choice([12, 0, 13, 0x3FFF]))
        return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + pointer + b"\x00\x01\x00\x01"
    if case == 4:  # EDNS version 1
        return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 1) + question + opt(version=1)
    if case == 5:  # two OPT records
        return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 2) + question + opt() + opt()
    if case == 6:  # a label longer than 63 or a name longer than 255
        long_name = b"".join(b"\x3f" + b"a" * 63 for _ in range(rng.choice([1, 5]))) + b"\x00"
        if rng.random() < 0.5:
            long_name = b"\x50" + b"a" * 80 + b"\x00"
        return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + long_name + b"\x00\x01\x00\x01"
    if case == 7:  # counts that promise records that are not there
        counts = [rng.randint(0, 65535) for _ in range(3)]
        return struct.pack("!HHHHHH", ident, 0x0100, 1, *counts) + question
    if case == 8:  # EDNS with unknown, oversized and cut options
        options = struct.pack("!HH", rng.getrandbits(16), rng.randint(0, 400)) + rng.randbytes(
            rng.randint(0, 40)
        )
        return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 1) + question + opt(options=options)
    return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + question  # ANY, AXFR, CH...


def packet(rng: random.Random, kind: str) -> bytes:
    if kind == "random":
        return rng.randbytes(rng.randint(0, 600))
    if kind == "truncated":
        data = valid_query(rng)
        return data[: rng.randint(0, len(data) - 1)]
    if kind == "mutated":
        data = bytearray(valid_query(rng) if rng.random() < 0.8 else crafted(rng))
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.getrandbits(8)
        return bytes(data)
    if kind == "header":
        counts = [rng.randint(0, 3) for _ in range(4)]
        flags = rng.getrandbits(16) & ~0x8000
        return struct.pack("!HHHHHH", rng.getrandbits(16), flags, *counts) + rng.randbytes(
            rng.randint(0, 300)
        )
    if kind == "crafted":
        return crafted(rng)
    return valid_query(rng)


class UdpSender:
    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sent = self.replies = 0

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendto(data, self.address)
            self.sent += 1
        except BlockingIOError:
            self.drain(0.01)
            self.sock.sendto(data, self.address)
            self.sent += 1
        if self.sent % 32 == 0:
            self.drain(0)

    def drain(self, wait: float) -> None:
        deadline = time.monotonic() + wait
        while True:
            try:
                self.sock.recvfrom(65535)
                self.replies += 1
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return
                time.sleep(0.001)


def tcp_session(address: tuple[str, int], frames: list[bytes], rng: random.Random) -> int:
    """One connection carrying ``frames``, mangled as a hostile client would; returns the
    bytes read back."""
    stream = bytearray()
    for data in frames:
        style = rng.randrange(10)
        if style == 0:  # a length prefix that promises more than follows
            stream += struct.pack("!H", min(len(data) + rng.randint(1, 65535), 65535)) + data
        elif style == 1:  # one that promises less: the rest is read as the next frame
            stream += struct.pack("!H", max(len(data) - rng.randint(1, 12), 0)) + data
        elif style == 2:
            stream += b"\x00\x00"
        else:
            stream += struct.pack("!H", len(data)) + data
    if rng.random() < 0.2:
        stream = stream[: rng.randint(0, len(stream))]  # the client stops half-way
    received = 0
    try:
        with socket.create_connection(address, timeout=2) as sock:
            # Long enough for answers the server has at once; stalls are its to time out.
            sock.settimeout(0.1)
            position = 0
            while position < len(stream):
                step = rng.randint(1, max(len(stream) - position, 1))
                sock.sendall(stream[position : position + step])
                position += step
            if rng.random() < 0.5:
                sock.shutdown(socket.SHUT_WR)
            try:
                while chunk := sock.recv(65535):
                    received += len(chunk)
            except TimeoutError:
                pass
    except (ConnectionError, TimeoutError, OSError):
        pass
    return received


def run(args: argparse.Namespace) -> dict[str, object]:
    rng = random.Random(args.seed)
    report: dict[str, object] = {"seed": args.seed, **environment()}
    problems: list[str] = []
    with workdir(keep=args.keep) as directory:
        upstream = start_upstream(directory, prefer_nsd=not args.fake_upstream)
        server = ServerProcess(directory, upstream, listen={"tcp_idle_timeout": 1.0})
        try:
            report["upstream"] = upstream.kind
            # Warm up first, so the baseline includes what any busy server allocates.
            warm = UdpSender(server.address)
            for _ in range(2000):
                warm.send(valid_query(rng))
            warm.drain(1.0)
            problems += server.check_answers()
            baseline = server.rss()
            peak = baseline
            udp = UdpSender(server.address)
            kinds: Counter[str] = Counter()
            tcp_packets = tcp_sessions = tcp_bytes = 0
            started = time.monotonic()
            checkpoints = max(args.packets // 10, 1)
            sent = 0
            while sent < args.packets and time.monotonic() - started < args.seconds:
                if rng.randrange(args.tcp_share) == 0:
                    # Never past the packet budget: a session sends up to 8 frames.
                    count = min(rng.randint(1, 8), args.packets - sent)
                    frames = [packet(rng, rng.choice(KINDS)) for _ in range(count)]
                    tcp_bytes += tcp_session(server.address, frames, rng)
                    tcp_packets += count
                    tcp_sessions += 1
                    sent += count
                else:
                    kind = rng.choice(KINDS)
                    kinds[kind] += 1
                    udp.send(packet(rng, kind))
                    sent += 1
                if sent // checkpoints != (sent - 1) // checkpoints:
                    udp.drain(0.05)
                    if not server.alive:
                        problems.append(f"the server died after {sent} packets")
                        break
                    problems += server.check_answers()
                    peak = max(peak, server.rss())
            udp.drain(1.0)
            elapsed = time.monotonic() - started
            time.sleep(1.5)  # let idle TCP connections time out
            if server.alive:
                problems += server.check_answers()
                final = server.rss()
            else:
                final = peak
                problems.append("the server is not running at the end")
            problems += [f"log: {line}" for line in server.log_problems()]
            growth = (final - baseline) / 2**20
            if growth > args.rss_growth_mb:
                problems.append(f"memory grew {growth:.1f} MiB (bound {args.rss_growth_mb})")
            report.update(
                packets=sent,
                udp_packets=udp.sent,
                udp_replies=udp.replies,
                udp_by_kind=dict(kinds),
                tcp_packets=tcp_packets,
                tcp_connections=tcp_sessions,
                tcp_bytes_back=tcp_bytes,
                seconds=round(elapsed, 1),
                rss_baseline_mib=round(baseline / 2**20, 1),
                rss_peak_mib=round(peak / 2**20, 1),
                rss_final_mib=round(final / 2**20, 1),
            )
        finally:
            code = server.stop()
            upstream.stop()
            if code != 0:
                problems.append(f"the server exited with {code} on SIGTERM")
    report["problems"] = problems
    report["ok"] = not problems
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packets", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=600, help="stop after this long")
    parser.add_argument("--seed", type=int, default=20261122)
    parser.add_argument("--tcp-share", type=int, default=10, help="1 packet in N over TCP")
    parser.add_argument("--rss-growth-mb", type=float, default=48)
    return run_command(parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
