"""Unbound (Debian ``unbound``, built with nghttp2) as a DoT (RFC 7858) and DoH
(RFC 8484) upstream on free loopback ports, with a certificate from the test's CA,
forwarding every name to a plain upstream (NSD in the tests). A plain port is served
too, for the readiness check and for comparing answers."""

from __future__ import annotations

from pathlib import Path

from tests.peers.ports import free_port
from tests.peers.probe import probe
from tests.peers.process import Process
from tests.peers.rpzpeer import binary
from tests.peers.tlsca import Issued
from tests.peers.unbound import unbound_conf

READY_NAME = "x.ready-check."


class UnboundTls:
    def __init__(
        self,
        directory: Path,
        upstream: tuple[str, int],
        certificate: Issued,
        *,
        idle_ms: int = 30_000,
        timeout: float = 30.0,
    ) -> None:
        """``idle_ms``: Unbound's tcp-idle-timeout for its clients (ours included)."""
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.upstream = upstream
        self.certificate = certificate
        self.idle_ms = idle_ms
        self.plain_port, self.dot_port, self.doh_port = free_port(), free_port(), free_port()
        found = binary("unbound")
        if found is None:
            raise RuntimeError("unbound is missing: run tests/tools/install-system-deps.sh")
        conf = directory / "unbound.conf"
        conf.write_text(self.conf())
        self.process = Process([found, "-d", "-c", str(conf)], directory / "unbound.log")
        reply = probe(
            ("127.0.0.1", self.plain_port),
            READY_NAME,
            timeout=timeout,
            alive=lambda: self.process.alive,
        )
        if reply is None:
            self.process.stop()
            raise RuntimeError(f"unbound does not answer:\n{self.process.tail(40)}")

    def conf(self) -> str:
        listening = f"""\
    interface: 127.0.0.1@{self.plain_port}
    interface: 127.0.0.1@{self.dot_port}
    interface: 127.0.0.1@{self.doh_port}
    port: {self.plain_port}
    tls-port: {self.dot_port}
    https-port: {self.doh_port}
    tls-service-key: "{self.certificate.key}"
    tls-service-pem: "{self.certificate.certificate}"
    http-endpoint: "/dns-query"
    http-notls-downstream: no
    incoming-num-tcp: 256
    tcp-idle-timeout: {self.idle_ms}
"""
        # Answers come from the forwarder each time: a cache would hide a dead upstream.
        no_cache = "    msg-cache-size: 0\n    rrset-cache-size: 0\n"
        return unbound_conf(self.directory, self.upstream, listening, "iterator", no_cache)

    def dot(self, name: str = "") -> str:
        """As aiwall's ``upstream.servers`` takes it; ``name``: the ``#name``."""
        return f"tls://127.0.0.1:{self.dot_port}" + (f"#{name}" if name else "")

    def doh(self, name: str = "") -> str:
        return f"https://127.0.0.1:{self.doh_port}/dns-query" + (f"#{name}" if name else "")

    def stop(self) -> None:
        self.process.stop()

    def __enter__(self) -> UnboundTls:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
