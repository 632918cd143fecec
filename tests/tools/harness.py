"""What the fuzz and soak scripts share: a real ``aiwall serve`` process on loopback, an
upstream for it (NSD when installed, else the fake), probes, and the server's memory."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.exception
import dns.message
import dns.query
import dns.rcode
import yaml

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.fakes.upstream import FakeUpstream  # noqa: E402

UPSTREAM_A = "198.51.100.7"  # what both upstreams answer for any name
BLOCKED = "chat.deepseek.com"  # in the shipped catalog
LISTED = "listed.fuzz.test"  # in the list file every run writes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
        for _ in range(50):
            udp.bind(("127.0.0.1", 0))
            port: int = udp.getsockname()[1]
            try:
                tcp.bind(("127.0.0.1", port))
            except OSError:
                udp.close()
                udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                continue
            return port
    raise OSError("no port free for both UDP and TCP")


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (VmRSS of /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


@dataclass
class Upstream:
    spec: str
    kind: str
    process: subprocess.Popen[bytes] | None = None
    fake: FakeUpstream | None = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
        if self.fake is not None:
            self.fake.stop()


def start_nsd(directory: Path, ttl: int) -> Upstream | None:
    """NSD answering every name from a wildcard root zone, rate limiting off (its default
    RRL would cap a forwarder at a few hundred queries a second)."""
    nsd = shutil.which("nsd") or ("/usr/sbin/nsd" if Path("/usr/sbin/nsd").exists() else None)
    if nsd is None:
        return None
    port = free_port()
    (directory / "root.zone").write_text(
        f"$TTL {ttl}\n"
        ". IN SOA ns.invalid. hostmaster.invalid. 1 3600 600 86400 300\n"
        ". IN NS ns.invalid.\n"
        f"* IN A {UPSTREAM_A}\n"
        "* IN AAAA 2001:db8::7\n"
    )
    (directory / "nsd.conf").write_text(
        f"""server:
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
  rrl-ratelimit: 0
  verbosity: 0
remote-control:
  control-enable: no
zone:
  name: "."
  zonefile: "root.zone"
"""
    )
    log = (directory / "nsd.log").open("wb")
    process = subprocess.Popen([nsd, "-c", str(directory / "nsd.conf"), "-d"], stderr=log)
    upstream = Upstream(f"127.0.0.1:{port}", "nsd", process=process)
    if probe(("127.0.0.1", port), "up.nsd.test", timeout=10) is None:
        upstream.stop()
        return None
    return upstream


def start_upstream(directory: Path, *, prefer_nsd: bool = True, ttl: int = 300) -> Upstream:
    if prefer_nsd:
        nsd = start_nsd(directory, ttl)
        if nsd is not None:
            return nsd
    fake = FakeUpstream().start()
    return Upstream(fake.server_spec, "fake (Python)", fake=fake)


def probe(
    address: tuple[str, int], name: str, *, tcp: bool = False, timeout: float = 2.0
) -> tuple[int, float] | None:
    """(rcode, seconds) of one query, or None when no answer came in ``timeout``."""
    query = dns.message.make_query(name, "A")
    started = time.monotonic()
    deadline = started + timeout
    while True:
        # Short tries: a query sent before the server was listening is lost, not late.
        attempt = max(min(0.5, deadline - time.monotonic()), 0.05)
        try:
            if tcp:
                answer = dns.query.tcp(query, address[0], port=address[1], timeout=attempt)
            else:
                answer = dns.query.udp(query, address[0], port=address[1], timeout=attempt)
            return answer.rcode(), time.monotonic() - started
        except (TimeoutError, dns.exception.Timeout, OSError):
            if time.monotonic() >= deadline:
                return None


class ServerProcess:
    """``python -m resolver serve`` on a free loopback port, one worker (so its memory is
    one process's), with a list file of its own next to the config."""

    def __init__(self, directory: Path, upstream: Upstream, **sections: Any) -> None:
        self.port = free_port()
        self.http_port = free_port()
        (directory / "list.txt").write_text(f"{LISTED}\n")
        raw: dict[str, Any] = {
            "listen": {
                "dns": [f"127.0.0.1:{self.port}"],
                "http": f"127.0.0.1:{self.http_port}",
            },
            "upstream": {"servers": [upstream.spec], "timeout": 1.0},
            "blocking": {"lists": ["list.txt"]},
            "logging": {"level": "warning"},
            "workers": 1,
        }
        for name, values in sections.items():
            raw.setdefault(name, {}).update(values)
        config = directory / "aiwall.yaml"
        config.write_text(yaml.safe_dump(raw))
        self.log_path = directory / "aiwall.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "resolver", "serve", "--config", str(config)],
            cwd=REPO,
            stderr=self._log,
        )
        if probe(self.address, LISTED, timeout=30) is None:
            self.stop()
            raise RuntimeError(f"the server did not start; see {self.log_path}")

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def rss(self) -> int:
        return rss_bytes(self.process.pid)

    def check_answers(self) -> list[str]:
        """What is wrong with the answers to a forwarded, a blocked and a listed name, over
        UDP and TCP ([] when nothing)."""
        problems = []
        for name, expected in ((f"ok{time.time_ns()}.fuzz.test", 0), (BLOCKED, 3), (LISTED, 3)):
            for tcp in (False, True):
                got = probe(self.address, name, tcp=tcp, timeout=3.0)
                if got is None or got[0] != expected:
                    transport = "tcp" if tcp else "udp"
                    problems.append(f"{name} over {transport}: {got} instead of rcode {expected}")
        return problems

    def log_problems(self) -> list[str]:
        text = self.log_path.read_text(errors="replace")
        return [line for line in text.splitlines() if "Traceback" in line or "failed on" in line]

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


@contextlib.contextmanager
def workdir(keep: bool = False) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="aiwall-"))
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)


def environment() -> dict[str, str]:
    return {"cpus": str(os.cpu_count()), "python": sys.version.split()[0]}
