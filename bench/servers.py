"""The servers of a run: the snapshot of aiwall's code, the block list every server gets,
the NSD upstream they all forward to, and aiwall, dnsmasq and Unbound under test."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.report import Journal
from bench.settings import (
    AIWALL_VARIANTS,
    ENCRYPTED,
    PROBE_ALLOWED,
    RCODE_NAMES,
    REPO,
    BenchError,
    Settings,
    blocked_name,
)
from bench.system import Processes, find_binary, git_describe, pinned, run_tool
from tests.peers.nsd import Nsd, NsdError
from tests.peers.ports import free_port
from tests.peers.probe import probe
from tests.peers.process import Process
from tests.peers.tlsca import Issued, TestCA

# What an install builds from besides the package: the snapshot is built as one is.
BUILD_FILES = ("setup.py", "pyproject.toml", "README.md")


def _in_commit(ref: str, path: str) -> bool:
    """Whether ``path`` exists in commit ``ref`` (older commits had no setup.py)."""
    found = subprocess.run(
        ["git", "-C", str(REPO), "cat-file", "-e", f"{ref}:{path}"], capture_output=True
    )
    return found.returncode == 0


# Names asked at start besides the last listed one: with several workers, a server
# serves once every worker answers, and 32 names all miss one of two workers with odds
# of 2 in 2^32.
STARTED_PROBES = 32


@dataclass
class Running:
    name: str
    port: int
    proc: Process
    log: Path
    start_seconds: float
    version: str
    http: str = ""  # aiwall's /metrics (host:port)
    mode: str = "udp"  # dnsperf -m: udp, dot or doh
    perf_port: int = 0  # where dnsperf sends (0: ``port``); the DoT or DoH port

    @property
    def load_port(self) -> int:
        return self.perf_port or self.port


def write_lines(path: Path, lines: Iterable[str]) -> Path:
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


def metric(http: str, name: str) -> float:
    """The sum of a metric's samples on aiwall's /metrics (``http``: host:port)."""
    with urllib.request.urlopen(f"http://{http}/metrics", timeout=10) as response:
        text = response.read().decode()
    total = 0.0
    for line in text.splitlines():
        sample, _, value = line.rpartition(" ")
        if sample.partition("{")[0] == name:
            total += float(value)
    return total


def stall_buckets(http: str) -> dict[float, float]:
    """aiwall's loop-stall histogram now: upper bound (s) -> queries' cumulative count,
    summed over the workers."""
    with urllib.request.urlopen(f"http://{http}/metrics", timeout=10) as response:
        text = response.read().decode()
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        if not line.startswith("aiwall_loop_stall_seconds_bucket{"):
            continue
        sample, _, value = line.rpartition(" ")
        bound = sample.partition('le="')[2].partition('"')[0]
        key = float("inf") if bound == "+Inf" else float(bound)
        buckets[key] = buckets.get(key, 0.0) + float(value)
    return buckets


def worst_stall_between(before: dict[float, float], after: dict[float, float]) -> float | None:
    """The upper bound (ms) of the highest histogram bucket that gained a stall between
    two scrapes: the worst stall of that window lies under it (and over the bound
    below). None when no tick was observed."""
    bounds = sorted(after)
    gained = None
    previous = 0.0
    for bound in bounds:
        cumulative = after[bound] - before.get(bound, 0.0)
        if cumulative > previous:
            gained = bound
        previous = cumulative
    return None if gained is None else gained * 1000


def wait_answering(proc: Process, port: int, name: str, timeout: float) -> int:
    """Poll until the server answers ``name``; return its rcode."""
    reply = probe(
        ("127.0.0.1", port), name, timeout=timeout, attempt=0.05, alive=lambda: proc.alive
    )
    if reply is not None:
        return reply.rcode
    if not proc.alive:
        raise BenchError(f"{proc.name} exited with {proc.proc.returncode}:\n{proc.tail()}")
    raise BenchError(f"{proc.name} did not answer on port {port} within {timeout:.0f} s")


class Servers:
    """Starts every server of the run; its children stop with ``procs``."""

    def __init__(
        self, settings: Settings, workdir: Path, procs: Processes, journal: Journal
    ) -> None:
        self.settings = settings
        self.workdir = workdir
        self.procs = procs
        self.journal = journal
        self.catalog: list[str] = []
        self.upstream_port = 0
        self.upstream_pid = 0
        self.aiwall_version = "unknown"
        self._issued: Issued | None = None
        self._tls_port: dict[str, int] = {}

    def pinned(self, command: list[str], role: str) -> list[str]:
        return pinned(self.settings, command, role)

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
                    REPO / part,
                    dest / part,
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "compiled.json"),
                )
            for part in BUILD_FILES:
                if (REPO / part).exists():
                    shutil.copy(REPO / part, dest / part)
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
                        *(part for part in BUILD_FILES if _in_commit(ref, part)),
                    ],
                    capture_output=True,
                    timeout=60,
                    check=True,
                )
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
                raise BenchError(f"git archive {ref} failed: {error}") from None
            with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
                tar.extractall(dest, filter="data")
        described = f"{described} ({self._compile_snapshot()})"
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

    def _compile_snapshot(self) -> str:
        """Build the snapshot as an install does (its hot path compiled where the code
        has a setup.py and a C compiler is at hand; from source with AIWALL_PURE=1) and
        say how its hot path runs."""
        dest = self.aiwall_source
        if (dest / "setup.py").exists():
            subprocess.run(
                [sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
                cwd=dest,
                env=self.aiwall_env(),
                capture_output=True,
                timeout=900,
                check=True,
            )
        return (
            run_tool(
                [sys.executable, "-c", "import resolver.compiled as c; print(c.STATUS)"],
                timeout=30,
                cwd=dest,
                env=self.aiwall_env(),
            ).strip()
            if (dest / "resolver" / "compiled.py").exists()
            else "pure Python"
        )

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
            self.journal.warn(
                f"skipping {len(odd)} catalog entries that are not plain names: {odd[:3]}"
            )
            self.catalog = [n for n in self.catalog if n not in odd]

    def block_names(self, synthetic: int) -> Iterator[str]:
        yield from self.catalog
        for index in range(synthetic):
            yield blocked_name(index)

    # -- upstream --

    def start_upstream(self) -> Running:
        """NSD with a root zone of only the apex and the wildcard (tests/peers/nsd.py): any
        other node could shadow the wildcard for names below it (RFC 4592). TTL 300 so the
        forwarders cache what they get."""
        directory = self.workdir / "nsd"
        directory.mkdir()
        log = self.workdir / "logs" / "nsd.log"
        started = time.monotonic()
        try:
            nsd = Nsd(
                directory,
                ttl=300,
                launch=lambda command: self.procs.start(self.pinned(command, "load"), log),
            )
        except NsdError as error:
            raise BenchError(f"the NSD upstream: {error}") from None
        self.upstream_port = nsd.port
        self.upstream_pid = nsd.process.pid
        elapsed = time.monotonic() - started
        return Running("nsd", nsd.port, nsd.process, log, elapsed, nsd.version())

    # -- servers under test --

    def server_files(
        self, name: str, synthetic: int, tag: str, aiwall: dict[str, Any] | None = None
    ) -> tuple[list[str], str, int, str]:
        """Write the config and block list of one server; return its command, version,
        port and HTTP address (aiwall only). ``aiwall``: keys of aiwall's config set on
        top (the workers phase)."""
        http = ""
        directory = self.workdir / f"{name}-{tag}"
        directory.mkdir()
        port = free_port()
        names = self.block_names(synthetic)
        if name == "unbound-rpz":
            command, version = self._unbound_rpz(directory, names, port)
        elif name in AIWALL_VARIANTS:
            command, version, http = self._aiwall(name, directory, names, port, aiwall)
        elif name == "bare":
            command, version = self._bare(directory, names, port)
        elif name == "dnsmasq":
            command, version = self._dnsmasq(directory, names, port)
        elif name in ("unbound", "unbound-dot", "unbound-doh"):
            command, version = self._unbound_local_zones(name, directory, names, port)
        else:
            raise BenchError(f"unknown server {name!r}")
        return command, version, port, http

    def _aiwall(
        self,
        name: str,
        directory: Path,
        names: Iterator[str],
        port: int,
        aiwall: dict[str, Any] | None,
    ) -> tuple[list[str], str, str]:
        """aiwall (one of its variants) with the list in ``blocklist.txt``; return its
        command, version and HTTP address."""
        write_lines(directory / "blocklist.txt", names)
        config = self._aiwall_config(name, port, aiwall)
        conf = directory / "aiwall.yaml"
        conf.write_text(json.dumps(config, indent=2) + "\n")
        http: str = config["listen"]["http"]
        command = [sys.executable, "-m", "resolver", "serve", "--config", str(conf)]
        version = "aiwall " + self.aiwall_version.split()[0]
        return command, version, http

    def _aiwall_config(self, name: str, port: int, aiwall: dict[str, Any] | None) -> dict[str, Any]:
        """aiwall's config: the variant's keys, then ``aiwall``'s, then --aiwall-set's; and
        the DoT or DoH listener of an encrypted variant."""
        # JSON is YAML; the catalog comes in through the list, like the other servers.
        # HTTP on, for the loop-stall figures read from /metrics after the runs.
        config: dict[str, Any] = {
            "listen": {"dns": [f"127.0.0.1:{port}"], "http": f"127.0.0.1:{free_port()}"},
            "upstream": {"servers": [f"127.0.0.1:{self.upstream_port}"], "timeout": 2.0},
            "blocking": {"catalog": "none", "lists": ["blocklist.txt"]},
            "logging": {"level": "warning"},
            "state": {"directory": "state"},
        }
        if self.settings.aiwall_workers is not None:
            config["workers"] = self.settings.aiwall_workers
        for key, value in {**AIWALL_VARIANTS[name], **(aiwall or {})}.items():
            if isinstance(value, dict):
                config.setdefault(key, {}).update(value)
            else:
                config[key] = value
        for key, value in self.settings.aiwall_set:
            *parents, leaf = key.split(".")
            section = config
            for part in parents:
                section = section.setdefault(part, {})
            section[leaf] = value
        if name in ENCRYPTED:
            self._tls_port[name] = free_port()
            issued = self.certificate()
            config["listen"][ENCRYPTED[name]] = [f"127.0.0.1:{self._tls_port[name]}"]
            config["tls"] = {
                "certificate": str(issued.certificate),
                "key": str(issued.key),
                "name": "localhost",
            }
        return config

    def _bare(self, directory: Path, names: Iterator[str], port: int) -> tuple[list[str], str]:
        """The bare Python baseline (bench/bare.py) with the list in ``blocklist.txt``."""
        write_lines(directory / "blocklist.txt", names)
        command = [
            sys.executable,
            str(REPO / "bench" / "bare.py"),
            "--port",
            str(port),
            "--upstream",
            f"127.0.0.1:{self.upstream_port}",
            "--blocklist",
            str(directory / "blocklist.txt"),
        ]
        return command, "bare Python (bench/bare.py)"

    def _dnsmasq(self, directory: Path, names: Iterator[str], port: int) -> tuple[list[str], str]:
        """dnsmasq as a forwarding cache, each listed name an ``address=/name/`` line."""
        write_lines(directory / "blocklist.conf", (f"address=/{n}/" for n in names))
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
        return command, f"dnsmasq {found.group(1) if found else '?'}"

    def _unbound_local_zones(
        self, name: str, directory: Path, names: Iterator[str], port: int
    ) -> tuple[list[str], str]:
        """Unbound with each listed name an NXDOMAIN local zone; over DoT or DoH too for
        its encrypted variants."""
        write_lines(
            directory / "blocklist.conf",
            (f'    local-zone: "{n}." always_nxdomain' for n in names),
        )
        if name in ENCRYPTED:
            self._add_unbound_tls(directory, name)
        return self._unbound(directory, port)

    def _unbound(self, directory: Path, port: int) -> tuple[list[str], str]:
        """Unbound as a forwarding cache, with ``blocklist.conf`` (server: lines) in."""
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
        return command, "Unbound " + version.removeprefix("Version ").strip()

    def certificate(self) -> Issued:
        """The run's server certificate (for localhost and 127.0.0.1), made once."""
        if self._issued is None:
            self._issued = TestCA(self.workdir / "tls").issue(["localhost", "127.0.0.1"])
        return self._issued

    def _add_unbound_tls(self, directory: Path, name: str) -> None:
        """Unbound's DoT or DoH listener, added to its server: lines."""
        issued = self.certificate()
        port = self._tls_port[name] = free_port()
        lines = [
            f"    interface: 127.0.0.1@{port}",
            f'    tls-service-key: "{issued.key}"',
            f'    tls-service-pem: "{issued.certificate}"',
            f"    {'tls-port' if ENCRYPTED[name] == 'dot' else 'https-port'}: {port}",
            '    http-endpoint: "/dns-query"',
            "    http-notls-downstream: no",
            # As many client connections as dnsperf opens, and more.
            "    incoming-num-tcp: 256",
        ]
        with (directory / "blocklist.conf").open("a", encoding="ascii") as out:
            out.write("\n".join(lines) + "\n")

    def _unbound_rpz(
        self, directory: Path, names: Iterator[str], port: int
    ) -> tuple[list[str], str]:
        """Unbound enforcing aiwall's policy: the zone ``aiwall export --format rpz``
        writes from the same list (the content aiwall's live RPZ feed serves), loaded
        as an RPZ zone. The route of README "Scaling out" for a fleet of resolvers."""
        write_lines(directory / "blocklist.txt", names)
        config = {"blocking": {"catalog": "none", "lists": ["blocklist.txt"]}}
        (directory / "aiwall.yaml").write_text(json.dumps(config) + "\n")
        zone = directory / "policy.rpz"
        exported = [sys.executable, "-m", "resolver", "export", "--format", "rpz"]
        exported += ["--config", str(directory / "aiwall.yaml"), "--output", str(zone)]
        subprocess.run(
            exported, check=True, env=self.aiwall_env(), cwd=self.aiwall_source, timeout=600
        )
        (directory / "blocklist.conf").write_text(
            f"""\
    # RPZ needs the respip module in front of the iterator.
    module-config: "respip iterator"
rpz:
    name: rpz.aiwall.
    zonefile: "{zone}"
"""
        )
        command, version = self._unbound(directory, port)
        return command, version + ", aiwall's policy as an RPZ zone"

    def start_server(
        self, name: str, synthetic: int, tag: str, aiwall: dict[str, Any] | None = None
    ) -> Running:
        command, version, port, http = self.server_files(name, synthetic, tag, aiwall)
        log = self.workdir / "logs" / f"{name}-{tag}.log"
        env = self.aiwall_env() if name in AIWALL_VARIANTS else None
        # `python -m` puts the current directory first on sys.path, ahead of PYTHONPATH:
        # run aiwall from inside the snapshot, or the live checkout would be imported.
        cwd = self.aiwall_source if name in AIWALL_VARIANTS else None
        # Time from the exec to the first answer: the whole list has been loaded by then,
        # since all three load their lists before they open a port.
        started = time.monotonic()
        proc = self.procs.start(self.pinned(command, "server"), log, env=env, cwd=cwd)
        listed = blocked_name(synthetic - 1) if synthetic else self.catalog[-1]
        # Names below the last listed one, each steered to some worker by its hash: the
        # first answer to all of them is when every worker serves.
        for probe_name in [listed, *(f"w{index}.{listed}" for index in range(STARTED_PROBES))]:
            rcode = wait_answering(proc, port, probe_name, timeout=300)
            if rcode != 3:
                raise BenchError(
                    f"{name} answered {RCODE_NAMES.get(rcode, rcode)} for {probe_name}"
                )
        start_seconds = time.monotonic() - started
        rcode = wait_answering(proc, port, PROBE_ALLOWED, timeout=10)
        if rcode != 0:
            raise BenchError(f"{name} answered {RCODE_NAMES.get(rcode, rcode)} for an allowed name")
        if name in ENCRYPTED:
            mode, tls_port = ENCRYPTED[name], self._tls_port[name]
            return Running(name, port, proc, log, start_seconds, version, http, mode, tls_port)
        return Running(name, port, proc, log, start_seconds, version, http)

    # -- dnsperf --


def program_versions(servers: dict[str, Any], upstream: str) -> dict[str, str]:
    versions = {name: info["version"] for name, info in servers.items()}
    versions["upstream"] = upstream
    binary = find_binary("dnsperf")
    if binary:
        found = re.search(r"Version (\S+)", run_tool([binary, "-h"], timeout=10))
        versions["dnsperf"] = f"dnsperf {found.group(1) if found else '?'}"
    return versions
