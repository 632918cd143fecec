#!/usr/bin/env python3
"""Benchmark aiwall against dnsmasq and Unbound with dnsperf, all on loopback.

Every server under test loads the same block list (the shipped catalog plus N synthetic
names) and forwards everything else to the same local NSD, which answers any name from a
wildcard root zone. Three query mixes are measured: all blocked, all cached-allowed and
all cache-miss (unique names). Servers take turns within every round (A B C, then B C A,
...), so drift on a shared 2-core machine spreads over all of them; the report gives the
median of the rounds. A separate part measures how aiwall's start time, memory and
blocked throughput scale with the list size.

Outputs (in --output-dir): results.json (every raw run), results.md (the tables, also
printed) and results.png (a chart; needs matplotlib).

Nothing here passes or fails on speed: the targets are reported, never enforced.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import math
import os
import platform
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

REPO = Path(__file__).resolve().parent.parent
ALL_SERVERS = ("aiwall", "dnsmasq", "unbound")
ALL_MIXES = ("blocked", "cached", "miss")
# Debian package of each program the benchmark runs.
PACKAGES = {"dnsperf": "dnsperf", "nsd": "nsd", "dnsmasq": "dnsmasq-base", "unbound": "unbound"}
WILDCARD_A = "198.51.100.7"  # TEST-NET-2: never a real host
# The NXDOMAIN every blocked name gets, and NOERROR for every name the wildcard answers.
EXPECTED_RCODE = {"blocked": "NXDOMAIN", "cached": "NOERROR", "miss": "NOERROR"}
# Other processes' CPU during a run above this (in cores) makes the run suspect: the
# machine has 2 cores and the run itself needs both.
OTHER_LOAD_WARNING = 0.15
# Before a run, the machine counts as quiet below this load (cores); the servers idle.
QUIET_LOAD = 0.10
RCODE_NAMES = {0: "NOERROR", 2: "SERVFAIL", 3: "NXDOMAIN", 5: "REFUSED"}

# dnsperf shape from test-bed.md, so numbers compare with the ones measured there. One
# client thread: the load generator shares the machine's 2 cores with the server.
DNSPERF_CLIENTS = 4
DNSPERF_OUTSTANDING = 200

# Names that the synthetic parts of the benchmark use. None of their parents exists in
# the upstream zone, so the root wildcard covers them all (RFC 4592 4.1: a wildcard
# only answers below its closest encloser).
CACHED_SUFFIX = "bench-cached."
MISS_SUFFIX = "bench-miss."
PROBE_ALLOWED = "ready.bench-probe."


class BenchError(Exception):
    """The benchmark cannot go on; the message says why."""


def blocked_name(index: int) -> str:
    # Seven digits keep 1M names the same length as 200k names, so packets are alike.
    return f"blocked{index:07d}.example-ai.net"


# --- processes -----------------------------------------------------------------------


class Processes:
    """Every child the benchmark starts, so that all of them die with it."""

    def __init__(self) -> None:
        self._running: list[subprocess.Popen[bytes]] = []

    def start(
        self,
        command: Sequence[str],
        log: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            # A session of its own: the signal reaches the whole process group, and a
            # Ctrl-C in the terminal reaches only us, so we stop children in order.
            proc = subprocess.Popen(
                list(command),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        self._running.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc in self._running:
            self._running.remove(proc)
        if proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def stop_all(self) -> None:
        for proc in reversed(list(self._running)):
            self.stop(proc)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_tool(
    command: Sequence[str],
    timeout: float,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> str:
    """Run a short command and return its output; a failure stops the benchmark."""
    try:
        done = subprocess.run(
            list(command),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=cwd,
            env=env,
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"{command[0]} did not finish in {timeout:.0f} s") from None
    if done.returncode != 0:
        raise BenchError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout + done.stderr


def find_binary(name: str) -> str | None:
    # /usr/sbin is not on a non-root PATH, yet that is where Debian puts the daemons.
    return shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/sbin") / name) if p.exists()), None
    )


def ensure_packages(programs: Iterable[str]) -> None:
    """Install the Debian packages of missing programs, as tests/tools/install-system-deps.sh."""
    missing = sorted({PACKAGES[p] for p in programs if p in PACKAGES and find_binary(p) is None})
    if not missing:
        return
    if os.geteuid() != 0:
        raise BenchError(
            f"missing Debian packages: {' '.join(missing)} "
            f"(as root: apt-get install -y {' '.join(missing)})"
        )
    print(f"installing Debian packages: {' '.join(missing)}", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run_tool(["apt-get", "update", "-qq"], timeout=600, env=env)
    run_tool(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
        timeout=900,
        env=env,
    )
    # The packages may start system instances on port 53; the benchmark runs its own.
    subprocess.run(
        ["systemctl", "disable", "--now", "nsd", "unbound"],
        capture_output=True,
        timeout=60,
        check=False,
    )


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (the servers listen on both)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
            udp.bind(("127.0.0.1", 0))
            port: int = udp.getsockname()[1]
            try:
                tcp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise BenchError("no free loopback port")


# --- a tiny DNS client for readiness probes --------------------------------------------


def query_packet(name: str, qid: int) -> bytes:
    labels = b"".join(
        bytes([len(label)]) + label.encode("ascii") for label in name.rstrip(".").split(".")
    )
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + b"\x00\x00\x01\x00\x01"


def ask(port: int, name: str, timeout: float = 0.2) -> int | None:
    """The rcode of an A query for ``name``, or None when nothing answers in time."""
    qid = random.randrange(65536)
    packet = query_packet(name, qid)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(packet, ("127.0.0.1", port))
            while True:
                data = sock.recv(4096)
                if len(data) >= 12 and data[:2] == packet[:2] and data[2] & 0x80:
                    return data[3] & 0x0F
        except OSError:  # timeout, or ICMP port unreachable while the server starts
            return None


def wait_answering(
    proc: subprocess.Popen[bytes], port: int, name: str, log: Path, timeout: float
) -> int:
    """Poll until the server answers ``name``; return its rcode."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rcode = ask(port, name, timeout=0.05)
        if rcode is not None:
            return rcode
        if proc.poll() is not None:
            raise BenchError(f"{log.stem} exited with {proc.returncode}:\n{tail(log)}")
        time.sleep(0.005)
    raise BenchError(f"{log.stem} did not answer on port {port} within {timeout:.0f} s")


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --- memory ---------------------------------------------------------------------------


def _descendants(pid: int) -> list[int]:
    """pid and its children's pids: aiwall with ``workers:`` forks."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses; fields follow the last ')'.
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS), summed over the process tree.

    With forked workers the sum counts shared pages once per process, so it is an upper
    bound; with one process it is exact.
    """
    totals = {"VmRSS": 0, "VmHWM": 0}
    for member in _descendants(pid):
        try:
            status = Path(f"/proc/{member}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            key, _, value = line.partition(":")
            if key in totals:
                totals[key] += int(value.split()[0])
    return {"rss_kb": totals["VmRSS"], "peak_rss_kb": totals["VmHWM"]}


# --- CPU accounting -----------------------------------------------------------------


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU time of the whole machine that was not idle, steal included (another VM ran)."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a process tree."""
    total = 0
    for member in _descendants(pid):
        try:
            stat = Path(f"/proc/{member}/stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)
    return total / CLOCK_TICKS


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# --- dnsperf --------------------------------------------------------------------------


@dataclass
class PerfResult:
    qps: float
    sent: int
    completed: int
    lost: int
    run_time: float
    avg_latency_ms: float
    rcodes: dict[str, int]
    p50_ms: float | None = None
    p99_ms: float | None = None
    p999_ms: float | None = None
    max_ms: float | None = None
    # CPU cores busy on average during the run: the server under test, dnsperf, and
    # everything else on the machine (other users' jobs, the hypervisor's steal).
    server_cores: float = 0.0
    waited_for_quiet: float = 0.0
    load_before: float = 0.0
    dnsperf_cores: float = 0.0
    upstream_cores: float = 0.0
    other_cores: float = 0.0

    def expected_share(self, mix: str) -> float:
        answered = sum(self.rcodes.values())
        return self.rcodes.get(EXPECTED_RCODE[mix], 0) / answered if answered else 0.0


def _number(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    if match is None:
        raise BenchError(f"dnsperf output without {pattern!r}:\n{text[-2000:]}")
    return float(match.group(1))


def percentile(sorted_values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile: a value that was really measured."""
    rank = max(1, math.ceil(share * len(sorted_values)))
    return sorted_values[rank - 1]


def parse_dnsperf(path: Path, verbose: bool, timeout: float) -> PerfResult:
    text = path.read_text(errors="replace")
    stats = text[text.rfind("Statistics:") :] if "Statistics:" in text else text
    codes_line = re.search(r"Response codes:\s*(.*)", stats)
    rcodes = {
        code: int(count)
        for code, count in re.findall(
            r"([A-Z]+) (\d+) \(", codes_line.group(1) if codes_line else ""
        )
    }
    result = PerfResult(
        qps=_number(r"Queries per second:\s+([\d.]+)", stats),
        sent=int(_number(r"Queries sent:\s+(\d+)", stats)),
        completed=int(_number(r"Queries completed:\s+(\d+)", stats)),
        lost=int(_number(r"Queries lost:\s+(\d+)", stats)),
        run_time=_number(r"Run time \(s\):\s+([\d.]+)", stats),
        avg_latency_ms=_number(r"Average Latency \(s\):\s+([\d.]+)", stats) * 1000,
        rcodes=rcodes,
    )
    if verbose:
        # -v prints "> RCODE name type latency" per answer and "> T name type" per loss.
        latencies: list[float] = []
        for line in text.splitlines():
            if not line.startswith("> "):
                continue
            parts = line.split()
            latencies.append(timeout if parts[1] == "T" else float(parts[-1]))
        if latencies:
            latencies.sort()
            result.p50_ms = percentile(latencies, 0.50) * 1000
            result.p99_ms = percentile(latencies, 0.99) * 1000
            result.p999_ms = percentile(latencies, 0.999) * 1000
            result.max_ms = latencies[-1] * 1000
    return result


# --- the bench ------------------------------------------------------------------------


@dataclass
class Settings:
    names: int
    duration: float
    latency_duration: float
    rounds: int
    mixes: tuple[str, ...]
    servers: tuple[str, ...]
    output_dir: Path
    scale_sizes: tuple[int, ...]
    miss_queries: int
    blocked_queries: int
    cached_names: int
    aiwall_workers: int | None
    aiwall_set: tuple[tuple[str, Any], ...]
    pin: tuple[str, str] | None
    timeout: float
    quiet_wait: float
    aiwall_ref: str
    retries: int
    unbound_threads: int
    keep_workdir: bool
    smoke: bool


@dataclass
class Running:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    start_seconds: float
    version: str


@dataclass
class Bench:
    settings: Settings
    workdir: Path
    procs: Processes = field(default_factory=Processes)
    catalog: list[str] = field(default_factory=list)
    upstream_port: int = 0
    upstream_pid: int = 0
    aiwall_version: str = "unknown"
    # The load seen by each run that started without the machine going quiet first.
    busy_starts: list[float] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    # -- helpers --

    def pinned(self, command: list[str], role: str) -> list[str]:
        if self.settings.pin is None:
            return command
        cpus = self.settings.pin[0] if role == "server" else self.settings.pin[1]
        return ["taskset", "-c", cpus, *command]

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        print(f"warning: {message}", file=sys.stderr, flush=True)

    @property
    def aiwall_source(self) -> Path:
        return self.workdir / "aiwall-src"

    def aiwall_env(self) -> dict[str, str]:
        # The snapshot first: ahead of an editable install of the live checkout.
        path = os.environ.get("PYTHONPATH")
        source = str(self.aiwall_source)
        return dict(os.environ, PYTHONPATH=f"{source}{os.pathsep}{path}" if path else source)

    def snapshot_aiwall(self) -> str:
        """Copy the aiwall code under test into the workdir; return what it is.

        Others edit resolver/ while a benchmark runs for minutes: every aiwall started by
        this run must load the same code, the code the report names.
        """
        ref = self.settings.aiwall_ref
        dest = self.aiwall_source
        dest.mkdir()
        if ref == "worktree":
            described = git_describe()
            for part in ("resolver", "blocklists"):
                shutil.copytree(
                    REPO / part, dest / part, ignore=shutil.ignore_patterns("__pycache__")
                )
        else:
            described = run_tool(["git", "-C", str(REPO), "log", "--oneline", "-1", ref], 30)
            described = described.split(" ", 1)[0]
            try:
                archive = subprocess.run(
                    [
                        "git",
                        "-C",
                        str(REPO),
                        "archive",
                        "--format=tar",
                        ref,
                        "resolver",
                        "blocklists",
                    ],
                    capture_output=True,
                    timeout=60,
                    check=True,
                )
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
                raise BenchError(f"git archive {ref} failed: {error}") from None
            with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
                tar.extractall(dest, filter="data")
        # The same sys.path as the server gets: cwd first (as -m and -c both do), PYTHONPATH.
        where = run_tool(
            [sys.executable, "-c", "import resolver; print(resolver.__file__)"],
            timeout=30,
            cwd=dest,
            env=self.aiwall_env(),
        ).strip()
        if not Path(where).is_relative_to(dest):
            raise BenchError(f"python imports resolver from {where}, not from the snapshot")
        return described

    def load_catalog(self) -> None:
        text = run_tool(
            [sys.executable, "-m", "resolver", "export", "--format", "domains"],
            timeout=120,
            cwd=self.aiwall_source,
            env=self.aiwall_env(),
        )
        names = [line.strip() for line in text.splitlines()]
        self.catalog = [n for n in names if n and not n.startswith("#")]
        # The other servers' syntax covers a name and its subdomains only; a future
        # subdomains-only or exception entry would not mean the same there.
        odd = [n for n in self.catalog if not re.fullmatch(r"[a-z0-9.-]+", n)]
        if odd:
            self.warn(f"skipping {len(odd)} catalog entries that are not plain names: {odd[:3]}")
            self.catalog = [n for n in self.catalog if n not in odd]

    def block_names(self, synthetic: int) -> Iterator[str]:
        yield from self.catalog
        for index in range(synthetic):
            yield blocked_name(index)

    # -- files --

    def write_lines(self, path: Path, lines: Iterable[str]) -> Path:
        with path.open("w", encoding="ascii") as out:
            batch: list[str] = []
            for line in lines:
                batch.append(line)
                if len(batch) >= 65536:
                    out.write("\n".join(batch) + "\n")
                    batch.clear()
            if batch:
                out.write("\n".join(batch) + "\n")
        return path

    def blocked_queries(self, synthetic: int, path: Path) -> Path:
        rng = random.Random(synthetic)  # the same file for the same list size
        catalog = self.catalog

        def lines() -> Iterator[str]:
            for _ in range(self.settings.blocked_queries):
                # Mostly the big synthetic set, some catalog names; a quarter are
                # subdomains, which need a lookup per label on the way up.
                if synthetic == 0 or rng.random() < 0.05:
                    name = rng.choice(catalog)
                else:
                    name = blocked_name(rng.randrange(synthetic))
                if rng.random() < 0.25:
                    name = "www." + name
                yield f"{name} A"

        return self.write_lines(path, lines())

    def cached_queries(self, path: Path) -> Path:
        return self.write_lines(
            path, (f"www.host{i}.{CACHED_SUFFIX} A" for i in range(self.settings.cached_names))
        )

    def miss_queries(self, tag: str, count: int) -> Path:
        path = self.workdir / f"miss-{tag}.txt"
        return self.write_lines(path, (f"q{i}.{tag}.{MISS_SUFFIX} A" for i in range(count)))

    # -- upstream --

    def start_upstream(self) -> Running:
        directory = self.workdir / "nsd"
        directory.mkdir()
        port = free_port()
        # Only the apex and the wildcard: any other node could shadow the wildcard for
        # names below it (RFC 4592). TTL 300 so the forwarders cache what they get.
        (directory / "root.zone").write_text(
            "$TTL 300\n"
            ". IN SOA ns.invalid. hostmaster.invalid. 1 3600 600 86400 300\n"
            ". IN NS ns.invalid.\n"
            f"* IN A {WILDCARD_A}\n"
            "* IN AAAA 2001:db8::7\n"
        )
        (directory / "nsd.conf").write_text(
            f"""\
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
  # NSD rate-limits by default, which caps every forwarder at a few hundred qps.
  rrl-ratelimit: 0
  verbosity: 0
remote-control:
  control-enable: no
zone:
  name: "."
  zonefile: "root.zone"
"""
        )
        nsd = find_binary("nsd")
        assert nsd is not None  # ensure_packages ran
        checkzone = find_binary("nsd-checkzone") or str(Path(nsd).with_name("nsd-checkzone"))
        run_tool([checkzone, ".", str(directory / "root.zone")], timeout=30)
        log = self.workdir / "logs" / "nsd.log"
        started = time.monotonic()
        proc = self.procs.start(
            self.pinned([nsd, "-c", str(directory / "nsd.conf"), "-d"], "load"), log
        )
        rcode = wait_answering(proc, port, PROBE_ALLOWED, log, timeout=30)
        if rcode != 0:
            raise BenchError(f"the NSD upstream answered {RCODE_NAMES.get(rcode, rcode)}")
        self.upstream_port = port
        self.upstream_pid = proc.pid
        found = re.search(r"version (\S+)", run_tool([nsd, "-v"], timeout=10))
        version = f"NSD {found.group(1) if found else '?'}"
        return Running("nsd", port, proc, log, time.monotonic() - started, version)

    # -- servers under test --

    def server_files(self, name: str, synthetic: int, tag: str) -> tuple[list[str], str, int]:
        """Write the config and block list of one server; return its command, version, port."""
        directory = self.workdir / f"{name}-{tag}"
        directory.mkdir()
        port = free_port()
        names = self.block_names(synthetic)
        if name == "aiwall":
            self.write_lines(directory / "blocklist.txt", names)
            # JSON is YAML; the catalog comes in through the list, like the other servers.
            config: dict[str, Any] = {
                "listen": {"dns": [f"127.0.0.1:{port}"], "http": ""},
                "upstream": {"servers": [f"127.0.0.1:{self.upstream_port}"], "timeout": 2.0},
                "blocking": {"catalog": "none", "lists": ["blocklist.txt"]},
                "cache": {"size": 20000},
                "logging": {"level": "warning"},
                "state": {"directory": "state"},
            }
            if self.settings.aiwall_workers is not None:
                config["workers"] = self.settings.aiwall_workers
            for key, value in self.settings.aiwall_set:
                *parents, leaf = key.split(".")
                section = config
                for part in parents:
                    section = section.setdefault(part, {})
                section[leaf] = value
            conf = directory / "aiwall.yaml"
            conf.write_text(json.dumps(config, indent=2) + "\n")
            command = [sys.executable, "-m", "resolver", "serve", "--config", str(conf)]
            version = "aiwall " + self.aiwall_version.split()[0]
        elif name == "dnsmasq":
            self.write_lines(directory / "blocklist.conf", (f"address=/{n}/" for n in names))
            conf = directory / "dnsmasq.conf"
            conf.write_text(
                f"""\
port={port}
listen-address=127.0.0.1
bind-interfaces
no-resolv
no-hosts
no-poll
server=127.0.0.1#{self.upstream_port}
# Pi-hole's default cache size, and dnsmasq's own advice for the largest useful one.
cache-size=10000
# The default (150) would turn dnsperf's 200 outstanding queries into drops.
dns-forward-max=1024
pid-file=
log-facility=-
conf-file={directory / "blocklist.conf"}
"""
            )
            binary = find_binary("dnsmasq")
            assert binary is not None
            command = [binary, "-k", "-C", str(conf)]
            found = re.search(r"version (\S+)", run_tool([binary, "--version"], timeout=10))
            version = f"dnsmasq {found.group(1) if found else '?'}"
        elif name == "unbound":
            self.write_lines(
                directory / "blocklist.conf",
                (f'    local-zone: "{n}." always_nxdomain' for n in names),
            )
            conf = directory / "unbound.conf"
            conf.write_text(
                f"""\
server:
    interface: 127.0.0.1@{port}
    port: {port}
    do-ip6: no
    # One thread by default: one core, like dnsmasq (see --unbound-threads).
    num-threads: {self.settings.unbound_threads}
    username: ""
    chroot: ""
    directory: "{directory}"
    pidfile: ""
    use-syslog: no
    logfile: ""
    verbosity: 0
    do-not-query-localhost: no
    # A plain forwarding cache: no DNSSEC validation, as aiwall and dnsmasq here.
    module-config: "iterator"
    # Twice Debian's defaults; ample for the cached mix, and bounded like the others.
    msg-cache-size: 8m
    rrset-cache-size: 16m
    prefetch: no
    include: "{directory / "blocklist.conf"}"
remote-control:
    control-enable: no
forward-zone:
    name: "."
    forward-addr: 127.0.0.1@{self.upstream_port}
"""
            )
            binary = find_binary("unbound")
            assert binary is not None
            command = [binary, "-d", "-c", str(conf)]
            version = run_tool([binary, "-V"], timeout=10).splitlines()[0]
            version = "Unbound " + version.removeprefix("Version ").strip()
        else:
            raise BenchError(f"unknown server {name!r}")
        return command, version, port

    def start_server(self, name: str, synthetic: int, tag: str) -> Running:
        command, version, port = self.server_files(name, synthetic, tag)
        log = self.workdir / "logs" / f"{name}-{tag}.log"
        env = self.aiwall_env() if name == "aiwall" else None
        # `python -m` puts the current directory first on sys.path, ahead of PYTHONPATH:
        # run aiwall from inside the snapshot, or the live checkout would be imported.
        cwd = self.aiwall_source if name == "aiwall" else None
        # Time from the exec to the first answer: the whole list has been loaded by then,
        # since all three load their lists before they open a port.
        started = time.monotonic()
        proc = self.procs.start(self.pinned(command, "server"), log, env=env, cwd=cwd)
        probe = blocked_name(synthetic - 1) if synthetic else self.catalog[-1]
        rcode = wait_answering(proc, port, probe, log, timeout=300)
        start_seconds = time.monotonic() - started
        if rcode != 3:
            raise BenchError(f"{name} answered {RCODE_NAMES.get(rcode, rcode)} for {probe}")
        rcode = wait_answering(proc, port, PROBE_ALLOWED, log, timeout=10)
        if rcode != 0:
            raise BenchError(f"{name} answered {RCODE_NAMES.get(rcode, rcode)} for an allowed name")
        return Running(name, port, proc, log, start_seconds, version)

    # -- dnsperf --

    def dnsperf(
        self,
        server: Running,
        queries: Path,
        duration: float,
        *,
        rate: float | None = None,
        once: bool = False,
        verbose: bool = False,
    ) -> PerfResult:
        binary = find_binary("dnsperf")
        assert binary is not None
        command = [binary, "-s", "127.0.0.1", "-p", str(server.port), "-d", str(queries)]
        command += ["-l", f"{duration:g}", "-c", str(DNSPERF_CLIENTS), "-T", "1"]
        command += ["-q", str(DNSPERF_OUTSTANDING), "-t", f"{self.settings.timeout:g}"]
        if once:
            command += ["-n", "1"]
        if rate is not None:
            command += ["-Q", str(max(1, round(rate)))]
        if verbose:
            command.append("-v")
        waited, quiet = self.wait_quiet()
        out = self.workdir / "dnsperf.out"
        with out.open("wb") as sink:
            # Into a file, not a pipe we would read: reading it live would steal CPU from
            # the run being measured.
            before = self.cpu_counters(server)
            try:
                done = subprocess.run(
                    self.pinned(command, "load"),
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    timeout=duration + self.settings.timeout + 60,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise BenchError(f"dnsperf against {server.name} hung") from None
            after = self.cpu_counters(server)
        if done.returncode != 0:
            raise BenchError(f"dnsperf failed against {server.name}:\n{tail(out)}")
        if server.proc.poll() is not None:
            raise BenchError(f"{server.name} died during the run:\n{tail(server.log)}")
        result = parse_dnsperf(out, verbose, self.settings.timeout)
        wall, machine, server_cpu, upstream_cpu, dnsperf_cpu = (
            b - a for a, b in zip(before, after, strict=True)
        )
        result.server_cores = server_cpu / wall
        result.upstream_cores = upstream_cpu / wall
        result.dnsperf_cores = dnsperf_cpu / wall
        result.other_cores = max(0.0, machine - server_cpu - upstream_cpu - dnsperf_cpu) / wall
        result.waited_for_quiet = waited
        result.load_before = quiet
        return result

    def wait_quiet(self) -> tuple[float, float]:
        """Wait (bounded) until other jobs leave the CPUs: on a shared 2-core machine a
        test suite running next to the benchmark would land in the measurement.
        Returns the seconds waited and the load measured last."""
        started = time.monotonic()
        load = 0.0
        while self.settings.quiet_wait > 0:
            before, then = machine_busy_seconds(), time.monotonic()
            time.sleep(0.5)
            load = (machine_busy_seconds() - before) / (time.monotonic() - then)
            waited = time.monotonic() - started
            if load < QUIET_LOAD:
                break
            if waited > self.settings.quiet_wait:
                self.busy_starts.append(load)
                break
        return time.monotonic() - started, load

    def cpu_counters(self, server: Running) -> tuple[float, ...]:
        return (
            time.monotonic(),
            machine_busy_seconds(),
            process_cpu_seconds(server.proc.pid),
            process_cpu_seconds(self.upstream_pid),
            children_cpu_seconds(),  # dnsperf, once reaped
        )

    def warm(self, server: Running, queries: Path) -> None:
        # Ask every cached-mix name once, right before the run: the miss mix may have
        # evicted them, and TTL 300 may have run out during a long benchmark.
        result = self.dnsperf(server, queries, 30, once=True)
        # A few losses are dnsperf's end-of-run count; those names get cached by the run.
        if result.lost > result.sent * 0.05:
            self.warn(f"{server.name}: {result.lost} of the warm-up queries were lost")

    def record(
        self,
        round_: int,
        server: str,
        mix: str,
        kind: str,
        result: PerfResult,
        discarded: bool = False,
        **extra: Any,
    ) -> dict[str, Any]:
        run = {"round": round_, "server": server, "mix": mix, "kind": kind, **extra}
        run["discarded"] = discarded
        run.update(result.__dict__)
        run["expected_rcode_share"] = round(result.expected_share(mix), 4)
        if run["expected_rcode_share"] < 0.99:
            self.warn(
                f"{server} {mix} round {round_}: only {run['expected_rcode_share']:.1%} "
                f"{EXPECTED_RCODE[mix]} ({result.rcodes})"
            )
        if result.other_cores > OTHER_LOAD_WARNING and not discarded:
            self.warn(
                f"{server} {mix} {kind} round {round_}: other processes used"
                f" {result.other_cores:.2f} cores during the run; its numbers are noisy"
            )
        self.runs.append(run)
        latency = (
            f"p50 {result.p50_ms:.2f} ms p99 {result.p99_ms:.2f} ms"
            if result.p99_ms is not None
            else f"avg {result.avg_latency_ms:.2f} ms"
        )
        print(
            f"  round {round_} {mix:7} {kind:4} {server:8} {result.qps:9.0f} qps  {latency}"
            f"  lost {result.lost}  cores: server {result.server_cores:.2f}"
            f" dnsperf {result.dnsperf_cores:.2f} other {result.other_cores:.2f}"
            + (f"  (waited {result.waited_for_quiet:.0f} s)" if result.waited_for_quiet > 1 else "")
            + ("  NOISY: again" if discarded else ""),
            flush=True,
        )
        return run

    def measure(
        self,
        round_: int,
        server: Running,
        mix: str,
        kind: str,
        queries: Path | None,
        duration: float,
        rate: float | None = None,
    ) -> PerfResult:
        """One run, measured again (up to --retries times) when other jobs took the CPU.

        Interference only ever slows a run, so a quiet repeat is the better sample; the
        noisy attempts stay in the JSON, marked discarded. ``queries=None`` means the miss
        mix: a fresh file of never-asked names for every attempt, read once.
        """
        attempts = self.settings.retries + 1
        for attempt in range(attempts):
            path, count = queries, 0
            if path is None:
                count = self.settings.miss_queries
                if rate is not None:
                    count = min(count, int(rate * duration * 1.2) + 1000)
                path = self.miss_queries(f"r{round_}-{server.name}-{kind}-{attempt}", count)
            if mix == "cached":
                self.warm(server, path)
            try:
                result = self.dnsperf(
                    server,
                    path,
                    duration,
                    rate=rate,
                    once=queries is None,
                    verbose=rate is not None,
                )
            finally:
                if queries is None:
                    path.unlink()
            if count and result.sent >= count and rate is None:
                self.warn(f"{server.name} used up the miss file: raise --miss-queries")
            retry = result.other_cores > OTHER_LOAD_WARNING and attempt < attempts - 1
            extra = {} if rate is None else {"target_qps": rate}
            self.record(round_, server.name, mix, kind, result, discarded=retry, **extra)
            if not retry:
                return result
        raise AssertionError("the last attempt always returns")

    # -- the comparison --

    def compare(self) -> dict[str, Any]:
        s = self.settings
        servers: dict[str, Running] = {}
        for name in s.servers:
            print(f"starting {name} with {len(self.catalog) + s.names:,} blocked names", flush=True)
            servers[name] = self.start_server(name, s.names, "main")
            print(f"  answering after {servers[name].start_seconds:.2f} s", flush=True)
        files = {
            "blocked": self.blocked_queries(s.names, self.workdir / "blocked.txt"),
            "cached": self.cached_queries(self.workdir / "cached.txt"),
        }
        for round_ in range(1, s.rounds + 1):
            # Rotate who goes first, so no server always runs right after another.
            shift = (round_ - 1) % len(s.servers)
            order = [servers[n] for n in (s.servers[shift:] + s.servers[:shift])]
            for mix in s.mixes:
                peaks: dict[str, float] = {}
                for server in order:
                    result = self.measure(round_, server, mix, "peak", files.get(mix), s.duration)
                    peaks[server.name] = result.qps
                # Latency at half of each server's own peak: a server at 100 % only
                # shows its queue (dnsperf keeps 200 queries outstanding).
                for server in order:
                    rate = peaks[server.name] * 0.5
                    if rate < 1:
                        self.warn(f"{server.name} {mix}: no peak, no latency run")
                        continue
                    self.measure(
                        round_, server, mix, "half", files.get(mix), s.latency_duration, rate
                    )
        info: dict[str, Any] = {}
        for name, server in servers.items():
            info[name] = {
                "version": server.version,
                "start_seconds": round(server.start_seconds, 3),
                # aiwall with workers runs several; their memory is summed.
                "processes": len(_descendants(server.proc.pid)),
                **memory_kb(server.proc.pid),
            }
            self.procs.stop(server.proc)
        return info

    # -- list scale --

    def list_scale(self) -> list[dict[str, Any]]:
        s = self.settings
        sizes = s.scale_sizes
        samples: dict[int, dict[str, list[float]]] = {
            n: {"start_seconds": [], "rss_kb": [], "peak_rss_kb": [], "blocked_qps": []}
            for n in sizes
        }
        files = {n: self.blocked_queries(n, self.workdir / f"scale-blocked-{n}.txt") for n in sizes}
        for round_ in range(1, s.rounds + 1):
            shift = (round_ - 1) % len(sizes)
            for size in sizes[shift:] + sizes[:shift]:
                server = self.start_server("aiwall", size, f"scale-{size}-r{round_}")
                # Right after the first answer: the list is loaded, no query load yet.
                memory = memory_kb(server.proc.pid)
                result = self.measure(
                    round_, server, "blocked", f"scale-{size}", files[size], s.duration
                )
                self.procs.stop(server.proc)
                sample = samples[size]
                sample["start_seconds"].append(server.start_seconds)
                sample["rss_kb"].append(memory["rss_kb"])
                sample["peak_rss_kb"].append(memory["peak_rss_kb"])
                sample["blocked_qps"].append(result.qps)
                print(
                    f"  {size:>9,} names: answering after {server.start_seconds:.2f} s, "
                    f"RSS {memory['rss_kb'] / 1024:.0f} MB",
                    flush=True,
                )
        return [
            {
                "extra_names": size,
                "total_names": size + len(self.catalog),
                **{f"{key}_runs": values for key, values in samples[size].items()},
                **{key: statistics.median(values) for key, values in samples[size].items()},
            }
            for size in sizes
        ]


# --- summary and report ----------------------------------------------------------------


def git_describe() -> str:
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "log", "--oneline", "-1"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "resolver"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.split("\n")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    changed = [line[3:] for line in dirty if line.strip()]
    commit = head.split(" ", 1)[0] or "unknown"
    return commit + (f" + uncommitted {', '.join(changed)}" if changed else "")


def median_or_none(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarise(runs: list[dict[str, Any]], servers: Sequence[str], mixes: Sequence[str]) -> Any:
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for server in servers:
        for mix in mixes:
            peak = [
                r for r in runs if r["server"] == server and r["mix"] == mix and not r["discarded"]
            ]
            half = [r for r in peak if r["kind"] == "half"]
            peak = [r for r in peak if r["kind"] == "peak"]
            if not peak:
                continue
            qps = [r["qps"] for r in peak]
            summary.setdefault(server, {})[mix] = {
                "qps_median": statistics.median(qps),
                "qps_min": min(qps),
                "qps_max": max(qps),
                "qps_runs": qps,
                "avg_latency_at_peak_ms": median_or_none([r["avg_latency_ms"] for r in peak]),
                "lost_at_peak": sum(r["lost"] for r in peak),
                "server_cores_at_peak": median_or_none([r["server_cores"] for r in peak]),
                "other_cores_max": max(r["other_cores"] for r in peak + half),
                "half_load_qps": median_or_none([r["qps"] for r in half]),
                "p50_ms": median_or_none([r["p50_ms"] for r in half]),
                "p99_ms": median_or_none([r["p99_ms"] for r in half]),
                "p99_ms_runs": [r["p99_ms"] for r in half],
                "lost_at_half": sum(r["lost"] for r in half),
            }
    ratios: dict[str, dict[str, float]] = {}
    for mix in mixes:
        ours = summary.get("aiwall", {}).get(mix)
        for other in servers:
            theirs = summary.get(other, {}).get(mix)
            if other == "aiwall" or ours is None or theirs is None or not theirs["qps_median"]:
                continue
            ratios.setdefault(mix, {})[f"aiwall/{other}"] = (
                ours["qps_median"] / theirs["qps_median"]
            )
    return summary, ratios


def targets(
    summary: dict[str, Any], ratios: dict[str, Any], scale: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The lead's targets for issue 4, checked against what was measured (report only)."""
    found: list[dict[str, Any]] = []

    def add(name: str, value: float | None, limit: float, at_least: bool, unit: str = "") -> None:
        if value is None:
            return
        met = value >= limit if at_least else value <= limit
        found.append(
            {"target": name, "value": value, "limit": limit, "unit": unit, "met": bool(met)}
        )

    for mix, other, limit in (
        ("blocked", "dnsmasq", 1.0),
        ("blocked", "unbound", 0.8),
        ("cached", "dnsmasq", 1.0),
        ("miss", "dnsmasq", 0.8),
    ):
        value = ratios.get(mix, {}).get(f"aiwall/{other}")
        add(f"{mix}: aiwall/{other} qps >= {limit:.1f}", value, limit, True, "x")
    for mix, numbers in summary.get("aiwall", {}).items():
        add(f"{mix}: aiwall p99 at 50% of its peak <= 2 ms", numbers["p99_ms"], 2.0, False, "ms")
    if scale:
        by_size = {row["extra_names"]: row for row in scale}
        largest = max(by_size)
        base = by_size.get(0)
        add(
            f"{largest:,}-name list: start to answering <= 3 s",
            by_size[largest]["start_seconds"],
            3.0,
            False,
            "s",
        )
        if base is not None and largest:
            added = (by_size[largest]["rss_kb"] - base["rss_kb"]) / 1024
            add(f"{largest:,}-name list: RSS added vs no list <= 100 MB", added, 100.0, False, "MB")
        middle = [n for n in by_size if 0 < n < largest]
        if middle and by_size[max(middle)]["blocked_qps"]:
            ratio = by_size[largest]["blocked_qps"] / by_size[max(middle)]["blocked_qps"]
            # Noise on this machine is a few percent: 0.9 is "did not grow", not a speed bar.
            add(
                f"lookup cost flat: blocked qps {largest:,} / {max(middle):,} names >= 0.9",
                ratio,
                0.9,
                True,
                "x",
            )
    return found


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    summary = results["summary"]
    out = [
        "# aiwall benchmark",
        "",
        f"- aiwall: `{meta['aiwall_commit']}`",
        f"- peers: {', '.join(meta['versions'].values())}",
        f"- {meta['date']}, {meta['host']}",
        f"- block list: {meta['catalog_names']} catalog names + {meta['names']:,} synthetic names;"
        f" {meta['rounds']} rounds x {meta['duration']:g} s per run, servers alternating;"
        f" dnsperf -c {DNSPERF_CLIENTS} -T 1 -q {DNSPERF_OUTSTANDING} on loopback;"
        f" aiwall workers: {meta['aiwall_workers'] or 'config default'},"
        + "".join(f" {key}: {json.dumps(value)}," for key, value in meta["aiwall_set"].items())
        + f" Unbound num-threads: {meta['unbound_threads']}"
        + (f"; CPU pinning server:loadgen {':'.join(meta['pin'])}" if meta["pin"] else ""),
        "- qps: median of the rounds at full load (min-max in brackets); p50/p99: at 50 % of"
        " the server's own peak (dnsperf -Q), median of the rounds; a lost query counts as"
        f" {meta['dnsperf']['timeout']:g} s. dnsperf counts the queries in flight when a timed"
        " run stops as lost (about 35 per 10 s full-load run, for every server).",
        f"- other processes on the machine used up to {meta['other_cores_max']:.2f} cores"
        " during a kept run (0 = a quiet machine);"
        f" {meta['discarded_runs']} noisy runs were measured again",
        "",
        "## Throughput and latency",
        "",
        "| mix | server | qps (median) | [min-max] | server CPU at peak | avg latency at peak"
        " | p50 at 50% | p99 at 50% | lost |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for mix in meta["mixes"]:
        for server in meta["servers"]:
            row = summary.get(server, {}).get(mix)
            if row is None:
                continue
            out.append(
                f"| {mix} | {server} | {fmt(row['qps_median'], 0)} |"
                f" [{fmt(row['qps_min'], 0)}-{fmt(row['qps_max'], 0)}] |"
                f" {fmt(row['server_cores_at_peak'])} cores |"
                f" {fmt(row['avg_latency_at_peak_ms'])} ms | {fmt(row['p50_ms'])} ms |"
                f" {fmt(row['p99_ms'])} ms | {row['lost_at_peak'] + row['lost_at_half']} |"
            )
    others = [s for s in meta["servers"] if s != "aiwall"]
    if results["ratios"]:
        out += [
            "",
            "## aiwall / other (median qps)",
            "",
            "| mix | " + " | ".join(f"aiwall/{o}" for o in others) + " |",
            "|---|" + "---:|" * len(others),
        ]
        for mix, ratio in results["ratios"].items():
            cells = [fmt(ratio.get(f"aiwall/{o}")) + "x" for o in others]
            out.append(f"| {mix} | " + " | ".join(cells) + " |")
    out += [
        "",
        "## Start and memory (with the full list loaded)",
        "",
        "| server | version | processes | start to answering | peak RSS (VmHWM) after all runs"
        " | RSS at end |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for server, info in results["servers"].items():
        out.append(
            f"| {server} | {info['version']} | {info['processes']} |"
            f" {info['start_seconds']:.2f} s |"
            f" {info['peak_rss_kb'] / 1024:.1f} MB | {info['rss_kb'] / 1024:.1f} MB |"
        )
    if results["list_scale"]:
        out += [
            "",
            "## List scale (aiwall alone)",
            "",
            "| extra names | start to answering | RSS after load | VmHWM after load"
            " | blocked qps |",
            "|---:|---:|---:|---:|---:|",
        ]
        for row in results["list_scale"]:
            out.append(
                f"| {row['extra_names']:,} | {row['start_seconds']:.2f} s |"
                f" {row['rss_kb'] / 1024:.1f} MB | {row['peak_rss_kb'] / 1024:.1f} MB |"
                f" {fmt(row['blocked_qps'], 0)} |"
            )
    if results["targets"]:
        out += [
            "",
            "## Targets (reported, never enforced)",
            "",
            "| target | measured | met |",
            "|---|---:|---|",
        ]
        for target in results["targets"]:
            unit = target["unit"]
            value = fmt(target["value"]) + (unit if unit == "x" else f" {unit}")
            out.append(f"| {target['target']} | {value} | {'yes' if target['met'] else 'NO'} |")
    if results["warnings"]:
        out += ["", "## Warnings", ""] + [f"- {w}" for w in results["warnings"]]
    return "\n".join(out) + "\n"


def chart(results: dict[str, Any], path: Path) -> bool:
    """A PNG of qps, latency and list scale; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display on CI or a server
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    meta, summary = results["meta"], results["summary"]
    servers = [s for s in meta["servers"] if s in summary]
    mixes = meta["mixes"]
    scale = results["list_scale"]
    panels = 3 if scale else 2
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4.5))
    width = 0.8 / max(1, len(servers))
    positions = range(len(mixes))
    colours = {"aiwall": "tab:red", "dnsmasq": "tab:blue", "unbound": "tab:green"}
    for index, server in enumerate(servers):
        offsets = [p - 0.4 + width * (index + 0.5) for p in positions]
        rows = [summary[server].get(mix) for mix in mixes]
        medians = [r["qps_median"] if r else 0 for r in rows]
        spread = [
            [r["qps_median"] - r["qps_min"] if r else 0 for r in rows],
            [r["qps_max"] - r["qps_median"] if r else 0 for r in rows],
        ]
        colour = colours.get(server)
        axes[0].bar(offsets, medians, width, yerr=spread, capsize=3, label=server, color=colour)
        p99 = [r["p99_ms"] or 0 if r else 0 for r in rows]
        p50 = [r["p50_ms"] or 0 if r else 0 for r in rows]
        axes[1].bar(offsets, p99, width, label=f"{server} p99", color=colour)
        axes[1].plot(offsets, p50, "k_", markersize=12)
    axes[0].set_title("throughput at full load (median, min-max)")
    axes[0].set_ylabel("queries per second")
    axes[1].set_title("latency at 50% of own peak (bar p99, dash p50)")
    axes[1].set_ylabel("ms")
    axes[1].axhline(2.0, color="grey", linestyle="--", linewidth=1)
    for axis in axes[:2]:
        axis.set_xticks(list(positions), mixes)
        axis.legend(fontsize="small")
    if scale:
        axis = axes[2]
        labels = [f"{row['extra_names']:,}" for row in scale]
        axis.bar(labels, [row["blocked_qps"] for row in scale], color="tab:red", alpha=0.7)
        axis.set_title("aiwall list scale: blocked qps (bars), RSS (line)")
        axis.set_xlabel("extra names in the list")
        axis.set_ylabel("blocked queries per second")
        memory = axis.twinx()
        memory.plot(labels, [row["rss_kb"] / 1024 for row in scale], "ko-")
        memory.set_ylabel("RSS after load (MB)")
        memory.set_ylim(bottom=0)  # a zero baseline: the growth reads at its true size
        for label, row in zip(labels, scale, strict=True):
            axis.annotate(
                f"{row['start_seconds']:.2f} s",
                (label, row["blocked_qps"]),
                ha="center",
                va="bottom",
                fontsize="small",
            )
    fig.suptitle(
        f"aiwall {meta['aiwall_commit'].split()[0]}"
        f" (workers: {meta['aiwall_workers'] or 'default'}), {meta['names']:,} synthetic names,"
        f" {meta['rounds']} x {meta['duration']:g} s, {meta['host'].split(',')[0]}",
        fontsize="medium",
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# --- command line -----------------------------------------------------------------------


def _choices(text: str, allowed: Sequence[str], what: str) -> tuple[str, ...]:
    values = tuple(v.strip() for v in text.split(",") if v.strip())
    wrong = [v for v in values if v not in allowed]
    if wrong or not values:
        raise argparse.ArgumentTypeError(f"{what}: expected some of {','.join(allowed)}")
    return values


def parse_args(argv: Sequence[str] | None) -> Settings:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--names", type=int, help="synthetic blocked names (default 200000)")
    parser.add_argument("--duration", type=float, help="seconds per full-load run (default 10)")
    parser.add_argument(
        "--latency-duration", type=float, help="seconds per 50%%-load run (default duration/2)"
    )
    parser.add_argument("--rounds", type=int, help="rounds of alternating runs (default 3)")
    parser.add_argument("--mixes", default=",".join(ALL_MIXES))
    parser.add_argument("--servers", default=",".join(ALL_SERVERS))
    parser.add_argument("--output-dir", type=Path, default=REPO / "bench" / "results")
    parser.add_argument(
        "--scale-sizes",
        help="aiwall list-scale sizes, comma-separated, or 'none' (default 0,200000,1000000)",
    )
    parser.add_argument(
        "--miss-queries", type=int, help="unique names per cache-miss run (default 2000000)"
    )
    parser.add_argument("--blocked-queries", type=int, default=100_000)
    parser.add_argument("--cached-names", type=int, default=1000)
    parser.add_argument(
        "--aiwall-workers", type=int, help="add 'workers: N' to aiwall's config (default: absent)"
    )
    parser.add_argument(
        "--aiwall-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a key of aiwall's config, e.g. audit.enabled=false (value read as JSON,"
        " else a string); repeatable",
    )
    parser.add_argument(
        "--pin",
        metavar="SERVER_CPUS:LOADGEN_CPUS",
        help="taskset the servers and dnsperf+NSD apart, e.g. 1:0 (default: no pinning)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        help="dnsperf -t: seconds before a query counts as lost, and its latency in p99"
        " (default 2; every time-limited run waits this long for its last answers)",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        help="before each run, wait up to this many seconds for other jobs to leave the"
        " CPUs (default 30; 0 = never wait)",
    )
    parser.add_argument(
        "--aiwall-ref",
        default="worktree",
        help="the aiwall code to measure: 'worktree' (a copy of resolver/ taken at the start)"
        " or a git commit, e.g. HEAD (from git archive, untouched by uncommitted edits)",
    )
    parser.add_argument(
        "--retries",
        type=int,
        help="measure a run again when other processes used over"
        f" {OTHER_LOAD_WARNING} cores during it (default 1)",
    )
    parser.add_argument(
        "--unbound-threads", type=int, default=1, help="Unbound num-threads (default 1)"
    )
    parser.add_argument("--keep-workdir", action="store_true", help="keep configs and logs")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a few seconds: 1000 names, 1 s runs, 1 round, tiny list-scale sizes",
    )
    args = parser.parse_args(argv)
    smoke = bool(args.smoke)

    def pick(value: Any, full: Any, small: Any) -> Any:
        return value if value is not None else (small if smoke else full)

    duration = float(pick(args.duration, 10.0, 1.0))
    sizes_text = pick(args.scale_sizes, "0,200000,1000000", "0,1000,2000")
    try:
        mixes = _choices(args.mixes, ALL_MIXES, "--mixes")
        servers = _choices(args.servers, ALL_SERVERS, "--servers")
        sizes = () if sizes_text == "none" else tuple(int(v) for v in sizes_text.split(","))
    except (argparse.ArgumentTypeError, ValueError) as error:
        parser.error(str(error))
    aiwall_set: list[tuple[str, Any]] = []
    for item in args.aiwall_set:
        key, sep, text = item.partition("=")
        if not sep or not key:
            parser.error(f"--aiwall-set: expected KEY=VALUE, got {item!r}")
        try:
            value: Any = json.loads(text)
        except ValueError:
            value = text
        aiwall_set.append((key, value))
    pin = None
    if args.pin:
        server_cpus, sep, load_cpus = args.pin.partition(":")
        if not sep or not server_cpus or not load_cpus:
            parser.error("--pin: expected SERVER_CPUS:LOADGEN_CPUS, e.g. 1:0")
        pin = (server_cpus, load_cpus)
    if "aiwall" not in servers:
        sizes = ()
    return Settings(
        names=int(pick(args.names, 200_000, 1000)),
        duration=duration,
        latency_duration=float(pick(args.latency_duration, max(1.0, duration / 2), 0.5)),
        rounds=int(pick(args.rounds, 3, 1)),
        mixes=mixes,
        servers=servers,
        output_dir=args.output_dir,
        scale_sizes=tuple(dict.fromkeys(sizes)),
        miss_queries=int(pick(args.miss_queries, 2_000_000, 200_000)),
        blocked_queries=args.blocked_queries if not smoke else min(args.blocked_queries, 20_000),
        cached_names=args.cached_names,
        aiwall_workers=args.aiwall_workers,
        aiwall_set=tuple(aiwall_set),
        pin=pin,
        timeout=float(pick(args.timeout, 2.0, 0.5)),
        quiet_wait=float(pick(args.quiet_wait, 30.0, 0.0)),
        aiwall_ref=args.aiwall_ref,
        retries=int(pick(args.retries, 1, 0)),
        unbound_threads=args.unbound_threads,
        keep_workdir=args.keep_workdir,
        smoke=smoke,
    )


def program_versions(bench: Bench, servers: dict[str, Any], upstream: str) -> dict[str, str]:
    versions = {name: info["version"] for name, info in servers.items()}
    versions["upstream"] = upstream
    binary = find_binary("dnsperf")
    if binary:
        found = re.search(r"Version (\S+)", run_tool([binary, "-h"], timeout=10))
        versions["dnsperf"] = f"dnsperf {found.group(1) if found else '?'}"
    return versions


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="aiwall-bench-"))
    (workdir / "logs").mkdir()
    bench = Bench(settings, workdir)
    started = time.monotonic()
    try:
        ensure_packages(["dnsperf", "nsd", *settings.servers])
        if settings.pin and find_binary("taskset") is None:
            raise BenchError("--pin needs taskset (util-linux)")
        # Also without aiwall under test: its export gives everyone the catalog.
        bench.aiwall_version = bench.snapshot_aiwall()
        print(f"aiwall under test: {bench.aiwall_version}", flush=True)
        bench.load_catalog()
        upstream = bench.start_upstream()
        print(f"upstream: {upstream.version} on 127.0.0.1:{upstream.port}", flush=True)
        servers = bench.compare()
        scale: list[dict[str, Any]] = []
        if settings.scale_sizes:
            print("list scale (aiwall)", flush=True)
            scale = bench.list_scale()
        upstream_memory = memory_kb(upstream.proc.pid)
        if bench.busy_starts:
            bench.warn(
                f"{len(bench.busy_starts)} runs started on a busy machine (up to"
                f" {max(bench.busy_starts):.2f} cores) after waiting {settings.quiet_wait:g} s"
            )
        bench.procs.stop_all()
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        print(f"(configs and logs kept in {workdir})", file=sys.stderr)
        settings.keep_workdir = True
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        bench.procs.stop_all()
        signal.signal(signal.SIGTERM, previous)
        if not settings.keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)

    summary, ratios = summarise(bench.runs, settings.servers, settings.mixes)
    results: dict[str, Any] = {
        "meta": {
            "aiwall_commit": bench.aiwall_version,
            "aiwall_ref": settings.aiwall_ref,
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "host": f"{os.cpu_count()} CPUs, {platform.platform(terse=True)},"
            f" Python {platform.python_version()}",
            "versions": program_versions(bench, servers, upstream.version),
            "names": settings.names,
            "catalog_names": len(bench.catalog),
            "duration": settings.duration,
            "latency_duration": settings.latency_duration,
            "rounds": settings.rounds,
            "mixes": list(settings.mixes),
            "servers": list(settings.servers),
            "aiwall_workers": settings.aiwall_workers,
            "aiwall_set": dict(settings.aiwall_set),
            "unbound_threads": settings.unbound_threads,
            "pin": list(settings.pin) if settings.pin else None,
            "smoke": settings.smoke,
            "dnsperf": {
                "clients": DNSPERF_CLIENTS,
                "threads": 1,
                "outstanding": DNSPERF_OUTSTANDING,
                "timeout": settings.timeout,
            },
            "upstream_peak_rss_kb": upstream_memory["peak_rss_kb"],
            "other_cores_max": max(
                (r["other_cores"] for r in bench.runs if not r["discarded"]), default=0.0
            ),
            "retries": settings.retries,
            "quiet_wait": settings.quiet_wait,
            "discarded_runs": sum(r["discarded"] for r in bench.runs),
            "wall_seconds": round(time.monotonic() - started, 1),
        },
        "summary": summary,
        "ratios": ratios,
        "servers": servers,
        "list_scale": scale,
        "targets": targets(summary, ratios, scale),
        "warnings": bench.warnings,
        "runs": bench.runs,
    }
    out = settings.output_dir
    out.mkdir(parents=True, exist_ok=True)
    report = markdown(results)
    results["chart"] = "results.png" if chart(results, out / "results.png") else None
    if results["chart"] is None:
        report += "\n(no chart: matplotlib is not installed; `pip install matplotlib`)\n"
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(report)
    print()
    print(report)
    print(f"written: {out / 'results.json'}, {out / 'results.md'}", end="")
    print(f", {out / 'results.png'}" if results["chart"] else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
