"""The office deployment as the README writes it, on a gateway with several addresses.

Two network namespaces joined by a veth pair: the gateway, with two IPv4 and two IPv6
addresses on its side, runs ``aiwall serve`` with ``listen.dns: ["0.0.0.0:53",
"[::]:53"]`` and its default worker count; the client uses glibc's own resolver
(``getent ahosts``) with each gateway address in turn as its nameserver. glibc drops an
answer that comes from another address than the one it asked, so an answer sent from
the wrong address shows up as a lookup that fails after its timeout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peers.aiwall import Aiwall

ROOT = Path(__file__).resolve().parents[2]
SERVER_ADDRESSES = ["10.77.0.1", "10.77.0.53", "fd77::1", "fd77::53"]

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("getent") is None,
    reason="needs root, iproute2 and glibc's getent (CI has them)",
)


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


class Namespaces:
    """A gateway namespace and a client namespace joined by a veth pair."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 100000}"
        self.gateway = f"aiwall-gw-{tag}"
        self.client = f"aiwall-cl-{tag}"
        self.resolv_dir = Path("/etc/netns") / self.client

    def create(self) -> None:
        ip("netns", "add", self.gateway)
        ip("netns", "add", self.client)
        veth, peer = f"vgw{os.getpid() % 100000}", f"vcl{os.getpid() % 100000}"
        ip("link", "add", veth, "type", "veth", "peer", "name", peer)
        ip("link", "set", veth, "netns", self.gateway)
        ip("link", "set", peer, "netns", self.client)
        gw = ("-n", self.gateway)
        cl = ("-n", self.client)
        # The first address of each family is the one the kernel would pick by routing.
        for address in ("10.77.0.1/24", "10.77.0.53/24"):
            ip(*gw, "addr", "add", address, "dev", veth)
        for address in ("fd77::1/64", "fd77::53/64"):
            ip(*gw, "addr", "add", address, "dev", veth, "nodad")
        ip(*cl, "addr", "add", "10.77.0.2/24", "dev", peer)
        ip(*cl, "addr", "add", "fd77::2/64", "dev", peer, "nodad")
        for namespace, device in ((gw, veth), (cl, peer)):
            ip(*namespace, "link", "set", "lo", "up")
            ip(*namespace, "link", "set", device, "up")

    def use_nameserver(self, address: str) -> None:
        self.resolv_dir.mkdir(parents=True, exist_ok=True)
        (self.resolv_dir / "resolv.conf").write_text(
            f"nameserver {address}\noptions timeout:2 attempts:1\n"
        )

    def lookup(self, name: str) -> tuple[int, str, float]:
        started = time.monotonic()
        result = subprocess.run(
            ["ip", "netns", "exec", self.client, "getent", "ahosts", name],
            capture_output=True,
            text=True,
            timeout=20,
        )
        return result.returncode, result.stdout, time.monotonic() - started

    def delete(self) -> None:
        for namespace in (self.gateway, self.client):
            subprocess.run(["ip", "netns", "delete", namespace], capture_output=True)
        shutil.rmtree(self.resolv_dir, ignore_errors=True)


@pytest.fixture
def namespaces() -> Iterator[Namespaces]:
    spaces = Namespaces()
    try:
        spaces.create()
        yield spaces
    finally:
        spaces.delete()


def test_wildcard_listeners_answer_from_the_address_asked(namespaces, catalog_dir, tmp_path):
    upstream = subprocess.Popen(
        ["ip", "netns", "exec", namespaces.gateway, sys.executable, "-m", "tests.fakes.upstream"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert upstream.stdout is not None
        port = int(upstream.stdout.readline())
        config = {
            # As the office guide says; the worker count is the default.
            "listen": {"dns": ["0.0.0.0:53", "[::]:53"], "http": "127.0.0.1:9153"},
            "upstream": {"servers": [f"127.0.0.1:{port}"]},
            "state": {"directory": str(tmp_path / "state")},
        }
        prefix = ["ip", "netns", "exec", namespaces.gateway]
        with Aiwall(config, tmp_path, catalog_dir=catalog_dir, prefix=prefix) as gateway:
            gateway.wait_log("serving", timeout=30)
            time.sleep(0.5)  # every worker reads its socket
            for address in SERVER_ADDRESSES:
                namespaces.use_nameserver(address)
                code, out, took = namespaces.lookup("intranet.example")
                assert code == 0, (address, out, gateway.log)
                assert "198.51.100.7" in out, (address, out)
                assert "2001:db8::7" in out, (address, out)
                assert took < 1.0, (address, took)
                code, out, took = namespaces.lookup("chat.deepseek.com")
                assert code == 2, (address, out)  # "not found": NXDOMAIN, not a timeout
                assert took < 1.0, (address, took)
            assert gateway.stop() == 0
    finally:
        if upstream.stdin is not None:
            upstream.stdin.close()
        upstream.wait(10)
