"""NSD (Debian package ``nsd``) as a real upstream on a free loopback port, answering
every name from a wildcard root zone (/work/shared/notes/test-bed.md).

A wildcard covers only names below its closest encloser (RFC 4592): any node of the zone
shadows it for the names under that node. With ``big.test.`` in the zone, ``test.`` is an
empty non-terminal and ``anything.test.`` is NXDOMAIN, not the wildcard. So NSD counts as
ready only once ``READY_NAME``, directly under the root, answers the wildcard's address.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.peers.ports import free_port
from tests.peers.probe import addresses, probe
from tests.peers.process import Process

WILDCARD_A = "198.51.100.7"  # TEST-NET-2: never a real host
WILDCARD_AAAA = "2001:db8::7"
READY_NAME = "x.ready-check."  # no node above it but the root: always the wildcard


class NsdError(Exception):
    """NSD is missing, its zone is refused, or it does not answer."""


def nsd_binary() -> str | None:
    # /usr/sbin is not on a non-root PATH, yet that is where Debian puts the daemon.
    return shutil.which("nsd") or shutil.which("nsd", path="/usr/sbin:/sbin")


def root_zone(ttl: int = 300, records: str = "") -> str:
    """The apex, the wildcard and ``records`` (zone-file lines, each name absolute)."""
    return (
        f"$TTL {ttl}\n"
        ". IN SOA ns.invalid. hostmaster.invalid. 1 3600 600 86400 300\n"
        ". IN NS ns.invalid.\n"
        f"* IN A {WILDCARD_A}\n"
        f"* IN AAAA {WILDCARD_AAAA}\n"
        f"{records}"
    )


def nsd_conf(directory: Path, port: int) -> str:
    return f"""\
server:
  ip-address: 127.0.0.1@{port}
  port: {port}
  database: ""
  username: ""
  chroot: ""
  zonesdir: "{directory}"
  pidfile: "{directory}/nsd.pid"
  xfrdfile: "{directory}/xfrd.state"
  zonelistfile: "{directory}/zone.list"
  server-count: 1
  # NSD rate-limits by default, which caps a forwarder at a few hundred queries a second.
  rrl-ratelimit: 0
  verbosity: 0
remote-control:
  control-enable: no
zone:
  name: "."
  zonefile: "root.zone"
"""


class Nsd:
    """NSD serving ``root_zone(ttl, records)`` from ``directory`` on 127.0.0.1.

    ``launch`` starts the command (the benchmark pins it to CPUs and keeps it with its
    other children); by default it runs as a ``Process`` logging to ``nsd.log``.
    """

    def __init__(
        self,
        directory: Path,
        *,
        ttl: int = 300,
        records: str = "",
        launch: Callable[[list[str]], Process] | None = None,
        timeout: float = 30.0,
    ) -> None:
        binary = nsd_binary()
        if binary is None:
            raise NsdError("nsd is missing: run tests/tools/install-system-deps.sh")
        self.binary = binary
        self.port = free_port()
        zone = directory / "root.zone"
        zone.write_text(root_zone(ttl, records))
        (directory / "nsd.conf").write_text(nsd_conf(directory, self.port))
        checkzone = shutil.which("nsd-checkzone") or str(Path(binary).with_name("nsd-checkzone"))
        checked = subprocess.run(
            [checkzone, ".", str(zone)], capture_output=True, text=True, timeout=30, check=False
        )
        if checked.returncode != 0:
            raise NsdError(f"nsd-checkzone refused the zone:\n{checked.stdout}{checked.stderr}")
        command = [binary, "-c", str(directory / "nsd.conf"), "-d"]
        self.process = launch(command) if launch else Process(command, directory / "nsd.log")
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            reply = probe(self.address, READY_NAME, timeout=0.5, alive=lambda: self.process.alive)
            if reply is not None and WILDCARD_A in addresses(reply.message):
                return
            if not self.process.alive:
                raise NsdError(f"nsd exited:\n{self.process.tail()}")
            if time.monotonic() > deadline:
                got = "nothing" if reply is None else reply.message.to_text()
                raise NsdError(f"nsd did not answer {READY_NAME} in {timeout:g} s; got {got}")
            time.sleep(0.05)

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    @property
    def spec(self) -> str:
        """As aiwall's ``upstream.servers`` takes it."""
        return f"127.0.0.1:{self.port}"

    def version(self) -> str:
        done = subprocess.run(
            [self.binary, "-v"], capture_output=True, text=True, timeout=10, check=False
        )
        found = re.search(r"version (\S+)", done.stdout + done.stderr)
        return f"NSD {found.group(1) if found else '?'}"

    def stop(self) -> None:
        self.process.stop()

    def __enter__(self) -> Nsd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
