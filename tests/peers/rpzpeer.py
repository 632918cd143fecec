"""A real resolver from Debian following aiwall's RPZ feed as a secondary, on a free
loopback port in a test's folder: what BIND, Unbound, PowerDNS Recursor and Knot
Resolver have in common (start, wait until serving, ask, stop by PID)."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import dns.message
import dns.query
import dns.rcode

from tests.peers.ports import free_port
from tests.peers.probe import probe
from tests.peers.process import Process


@dataclass(frozen=True)
class Feed:
    """Where the secondary transfers the zone from, and with which key."""

    zone: str
    primary: tuple[str, int]
    key_name: str
    secret: str  # base64, HMAC-SHA256


def binary(name: str) -> str | None:
    # Debian puts the daemons in /usr/sbin, which is not on a non-root PATH.
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


class ResolverPeer:
    """One resolver process; subclasses write its config and give its command."""

    program = ""

    def __init__(
        self,
        directory: Path,
        feed: Feed,
        upstream: tuple[str, int],
        port: int | None = None,
        *,
        start: bool = True,
    ) -> None:
        """``port``: chosen beforehand, so aiwall's config can name it as a NOTIFY target;
        ``start``: False to start it later (``start``)."""
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.feed = feed
        self.upstream = upstream
        self.port = port or free_port()
        self.process: Process | None = None
        if start:
            self.start()

    def start(self) -> None:
        found = binary(self.program)
        if found is None:
            raise RuntimeError(f"{self.program} is missing: run tests/tools/install-system-deps.sh")
        self.process = Process(self.command(found), self.directory / f"{self.program}.log")

    def command(self, binary: str) -> Sequence[str]:
        raise NotImplementedError

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    @property
    def notify_target(self) -> str:
        """As aiwall's ``rpz[].notify`` takes it."""
        return f"127.0.0.1:{self.port}"

    def wait_serving(self, name: str, timeout: float = 30.0) -> None:
        """Until it answers ``name`` (a name its upstream resolves) at all."""
        process = self.process
        assert process is not None
        reply = probe(self.address, name, timeout=timeout, alive=lambda: process.alive)
        if reply is None:
            raise RuntimeError(f"{self.program} does not answer:\n{process.tail(40)}")

    def rcode(self, name: str, rdtype: str = "A") -> int:
        query = dns.message.make_query(name, rdtype)
        host, port = self.address
        return int(dns.query.udp(query, host, port=port, timeout=3.0).rcode())

    def blocks(self, name: str) -> bool:
        return self.rcode(name) == dns.rcode.NXDOMAIN

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
