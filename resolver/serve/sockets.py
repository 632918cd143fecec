"""Binding the DNS ports so that one address is served by one server only.

With several workers, each worker has its own UDP socket on the port (SO_REUSEPORT), and
the kernel spreads queries over them. The same option would let a second aiwall, stale
or mis-configured, join that group silently: the kernel would then split the clients
between two policies. So the ports are bound once, by the process that starts the
workers, and only after a probe: a socket bound *without* SO_REUSEPORT fails if anything
serves the address already (a wildcard address included), and the server refuses to
start with an error that names the address and, when it can be found, the process.
A lock (an abstract UNIX socket, released by the kernel when its holder dies) keeps two
servers starting at the same moment from both passing the probe.

TCP needs no group: one listening socket is shared by the workers.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from resolver.config import DnsEndpoint

LOCK_WAIT_SECONDS = 5.0
# What each UDP socket's receive queue may hold, asked of the kernel (which caps it at
# net.core.rmem_max and counts it twice: room for the datagrams and their bookkeeping).
# Linux's default, 208 KiB (net.core.rmem_default), holds 256 queries as loopback
# carries them: a burst that meets the event loop busy for a few milliseconds (a turn of
# cache misses at a high rate) overflowed it, and the kernel dropped queries
# (RcvbufErrors), each a client's retry seconds later. 4 MiB, or as much as the system
# allows, holds thousands: tens of milliseconds at any rate one process answers.
UDP_RECEIVE_BUFFER = 4 * 1024 * 1024


class AddressInUse(OSError):
    """Another process serves a configured address."""


@dataclass(slots=True)
class DnsSockets:
    """The sockets of one ``listen.dns`` address: a UDP socket per worker, and one TCP
    listening socket for all of them."""

    host: str
    port: int
    udp: list[socket.socket] = field(default_factory=list)
    tcp: socket.socket | None = None

    @property
    def wildcard(self) -> bool:
        return self.host in ("0.0.0.0", "::")

    def close(self) -> None:
        for sock in self.udp:
            sock.close()
        if self.tcp is not None:
            self.tcp.close()


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _socket(host: str, kind: socket.SocketKind, *, reuse_port: bool) -> socket.socket:
    sock = socket.socket(_family(host), kind)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if kind == socket.SOCK_STREAM:
        # A restart must not wait for the last run's TIME_WAIT connections (this does not
        # let two listeners share a port).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if sock.family == socket.AF_INET6:
        # Lets 0.0.0.0 and [::] be configured side by side on the same port.
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    return sock


@contextlib.contextmanager
def _bind_lock(port: int) -> Iterator[None]:
    """Serialise probe-and-bind between servers starting at once on the same port."""
    lock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    try:
        while True:
            try:
                lock.bind(f"\0aiwall-dns-port-{port}")
                break
            except OSError as error:
                if error.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                    break  # the probe still protects us; the lock only closes a race
                time.sleep(0.05)
        yield
    finally:
        lock.close()


def _holder(port: int, kind: socket.SocketKind) -> str:
    """' (pid N, name)' of a local process with a socket on ``port``, or ''."""
    tables = ("udp", "udp6") if kind == socket.SOCK_DGRAM else ("tcp", "tcp6")
    inodes: set[str] = set()
    for table in tables:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                if len(fields) > 9 and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(fields[9])
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    name = (proc / "comm").read_text().strip()
                    return f" (pid {proc.name}, {name})"
    return ""


def _probe(host: str, port: int, where: str) -> None:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with _socket(host, kind, reuse_port=False) as probe:
            try:
                probe.bind((host, port))
            except OSError as error:
                if error.errno != errno.EADDRINUSE:
                    raise
                protocol = "UDP" if kind == socket.SOCK_DGRAM else "TCP"
                shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
                raise AddressInUse(
                    errno.EADDRINUSE,
                    f"{where}: {shown} ({protocol}) is already served by another process"
                    f"{_holder(port, kind)}; a second server on the same address would take "
                    "part of its clients, so this one does not start",
                ) from None


def bind_dns(endpoints: tuple[DnsEndpoint, ...], workers: int = 1) -> list[DnsSockets]:
    """Bind every ``listen.dns`` address: ``workers`` UDP sockets (SO_REUSEPORT when more
    than one) and one TCP socket each. Raises AddressInUse when an address is taken."""
    bound: list[DnsSockets] = []
    try:
        for index, endpoint in enumerate(endpoints):
            where = f"listen.dns[{index}]"
            bound.append(_bind_one(endpoint.host, endpoint.port, workers, where))
    except BaseException:
        for sockets in bound:
            sockets.close()
        raise
    return bound


def _bind_one(host: str, port: int, workers: int, where: str) -> DnsSockets:
    group = workers > 1
    with _bind_lock(port) if port else contextlib.nullcontext():
        if port and group:
            _probe(host, port, where)
        # Port 0 picks a free port for UDP; TCP then needs the same one, so try again
        # with another if TCP's is taken.
        for attempt in range(20):
            sockets = DnsSockets(host, port)
            try:
                first = _bound(host, port, socket.SOCK_DGRAM, group, where)
                sockets.udp.append(first)
                sockets.port = first.getsockname()[1]
                sockets.udp += [
                    _bound(host, sockets.port, socket.SOCK_DGRAM, group, where)
                    for _ in range(workers - 1)
                ]
                sockets.tcp = _bound(host, sockets.port, socket.SOCK_STREAM, False, where)
                return sockets
            except AddressInUse:
                sockets.close()
                if port or attempt == 19:
                    raise
        raise AssertionError("unreachable")


def _bound(
    host: str, port: int, kind: socket.SocketKind, reuse_port: bool, where: str
) -> socket.socket:
    sock = _socket(host, kind, reuse_port=reuse_port)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            protocol = "UDP" if kind == socket.SOCK_DGRAM else "TCP"
            raise AddressInUse(
                errno.EADDRINUSE,
                f"{where}: {shown} ({protocol}) is already served by another process"
                f"{_holder(port, kind)}",
            ) from None
        raise
    if kind == socket.SOCK_DGRAM:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
    return sock


def bind_encrypted(
    dot: tuple[DnsEndpoint, ...], doh: tuple[DnsEndpoint, ...]
) -> list[tuple[str, socket.socket]]:
    """Bind every ``listen.dot`` and ``listen.doh`` address: one TCP listening socket
    each, shared by the workers as the DNS TCP sockets are. Raises AddressInUse."""
    bound: list[tuple[str, socket.socket]] = []
    try:
        for kind, endpoints in (("dot", dot), ("doh", doh)):
            for index, endpoint in enumerate(endpoints):
                where = f"listen.{kind}[{index}]"
                sock = _bound(endpoint.host, endpoint.port, socket.SOCK_STREAM, False, where)
                bound.append((kind, sock))
    except BaseException:
        for _, sock in bound:
            sock.close()
        raise
    return bound
