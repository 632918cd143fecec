"""The exports of the shipped policy, loaded by the programs they are written for.

Each format goes through its own program's checker, and the dnsmasq, Unbound and RPZ
exports are also served by the real program on a loopback port and queried with
dnspython: blocked names must be blocked (with their subdomains), and everything else,
allow exceptions included, must be forwarded to the fake upstream and answered by it.

Needs the Debian packages dnsmasq-base, unbound, bind9-utils and nsd
(tests/tools/install-system-deps.sh installs them).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from resolver.config import load_config
from resolver.policy.export import RESPONSES, ExportOptions, render
from resolver.policy.loading import load_policy
from resolver.policy.rules import PolicyEntry, Rule
from tests.fakes.upstream import DEFAULT_A, FakeUpstream
from tests.peers.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
SINK4 = "192.0.2.53"
SINK6 = "2001:db8::53"
START_TIMEOUT = 10.0

# Names under test beside the shipped catalog: an exception carved out of a catalog
# domain, a block inside that exception, and a subdomains-only entry.
_EXCEPTION = Rule(
    action="allow", source="config", service="allow", category="allowlist", description="t"
)
_LIST = Rule(action="block", source="list:t", service="list:t", category="custom", description="t")
EXTRA = [
    PolicyEntry("allowed.deepseek.com", False, _EXCEPTION),
    PolicyEntry("blocked.allowed.deepseek.com", False, _LIST),
    PolicyEntry("wild.example.net", True, _LIST),
]


def tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    assert found, f"{name} is missing: run tests/tools/install-system-deps.sh"
    return found


@pytest.fixture(scope="module")
def shipped() -> list[PolicyEntry]:
    groups = load_policy(load_config(ROOT / "deploy" / "aiwall.yaml"), compact=False).groups
    entries = groups.default.blocklist.entries()
    assert len(entries) > 100
    return entries


@pytest.fixture(scope="module")
def policy(shipped: list[PolicyEntry]) -> list[PolicyEntry]:
    """The shipped policy plus EXTRA, sorted as Blocklist.entries() sorts."""
    assert not {e.name for e in EXTRA} & {e.name for e in shipped}
    return sorted([*shipped, *EXTRA], key=lambda e: (e.name, e.below_only))


def export(
    entries: list[PolicyEntry], fmt: str, path: Path, response: str = "nxdomain", **options: str
) -> Path:
    text = render(
        entries,
        fmt,
        ExportOptions(
            response=response,
            sinkhole_ipv4=SINK4,
            sinkhole_ipv6=SINK6,
            generated="aiwall test",
            **options,
        ),
    )
    path.write_text(text, encoding="ascii")
    return path


def run(*command: str | Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, f"{command}: {done.stdout}{done.stderr}"
    return done


# --- the checkers ----------------------------------------------------------------------


@pytest.mark.parametrize("response", RESPONSES)
def test_unbound_checkconf_accepts_the_export_alone_and_included(shipped, tmp_path, response):
    exported = export(shipped, "unbound", tmp_path / "aiwall.conf", response)
    run(tool("unbound-checkconf"), exported)
    main = tmp_path / "unbound.conf"
    main.write_text(
        f'server:\n    directory: "{tmp_path}"\n    chroot: ""\n    username: ""\n'
        f'    include: "{exported}"\n'
        "remote-control:\n    control-enable: no\n"
    )
    run(tool("unbound-checkconf"), main)


@pytest.mark.parametrize("response", RESPONSES)
def test_dnsmasq_accepts_the_export(shipped, tmp_path, response):
    exported = export(shipped, "dnsmasq", tmp_path / "aiwall.conf", response)
    done = run(tool("dnsmasq"), "--test", f"--conf-file={exported}")
    assert "syntax check OK" in done.stdout + done.stderr


@pytest.mark.parametrize("response", RESPONSES)
def test_the_rpz_zone_loads_in_bind_and_nsd(shipped, tmp_path, response):
    zone = export(shipped, "rpz", tmp_path / "db.rpz.aiwall", response)
    loaded = run(tool("named-checkzone"), "rpz.aiwall", zone)
    assert "OK" in loaded.stdout
    run(tool("nsd-checkzone"), "rpz.aiwall", zone)


def test_named_checkconf_loads_the_bind_snippet_and_its_policy_zone(shipped, tmp_path):
    zone = export(shipped, "rpz", tmp_path / "db.rpz.aiwall")
    snippet = export(shipped, "bind", tmp_path / "aiwall.named.conf", rpz_file=str(zone))
    run(tool("named-checkconf"), snippet)
    # The statement the snippet tells the administrator to put in options { }, verbatim.
    (statement,) = (
        line.removeprefix("//").strip()
        for line in snippet.read_text().splitlines()
        if line.startswith("//") and "response-policy {" in line
    )
    named_conf = tmp_path / "named.conf"
    named_conf.write_text(
        f'options {{\n    directory "{tmp_path}";\n    {statement}\n}};\ninclude "{snippet}";\n'
    )
    # -z loads every primary zone too, so the RPZ file is checked as BIND will load it.
    loaded = run(tool("named-checkconf"), "-z", named_conf)
    assert "rpz.aiwall" in loaded.stdout


# --- the real programs -----------------------------------------------------------------


class Resolver:
    """A DNS program in the foreground on 127.0.0.1:port, stopped by the test's end."""

    def __init__(self, command: list[str], port: int, log: Path) -> None:
        self.port = port
        self.log = log
        with log.open("w") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()  # not yet in the fixture's list, so nobody else would
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"exited {self.process.returncode}: {self.log.read_text()}")
            with contextlib.suppress(dns.exception.Timeout, OSError):
                self.ask("use-application-dns.net", timeout=0.2)
                return
        raise AssertionError(f"did not answer within {START_TIMEOUT}s: {self.log.read_text()}")

    def ask(self, name: str, rdtype: str = "A", timeout: float = 2.0) -> dns.message.Message:
        query = dns.message.make_query(name, dns.rdatatype.from_text(rdtype))
        return dns.query.udp(query, "127.0.0.1", port=self.port, timeout=timeout)

    def rcode(self, name: str, rdtype: str = "A") -> str:
        return dns.rcode.to_text(self.ask(name, rdtype).rcode())

    def addresses(self, name: str, rdtype: str = "A") -> list[str]:
        reply = self.ask(name, rdtype)
        assert reply.rcode() == dns.rcode.NOERROR, (name, rdtype, reply)
        wanted = dns.rdatatype.from_text(rdtype)
        return sorted(
            rd.to_text() for rrset in reply.answer if rrset.rdtype == wanted for rd in rrset
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@pytest.fixture
def resolvers() -> Iterator[list[Resolver]]:
    started: list[Resolver] = []
    yield started
    for resolver in started:
        resolver.stop()


def start_dnsmasq(conf: Path, upstream: FakeUpstream, tmp_path: Path) -> Resolver:
    port = free_port()
    command = [
        tool("dnsmasq"),
        "--keep-in-foreground",
        f"--port={port}",
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
        "--no-resolv",
        "--no-hosts",
        f"--server=127.0.0.1#{upstream.port}",
        f"--conf-file={conf}",
        "--pid-file=",
        "--cache-size=0",
        "--log-facility=-",
    ]
    return Resolver(command, port, tmp_path / "dnsmasq.log")


def start_unbound(
    upstream: FakeUpstream, tmp_path: Path, *, include: Path | None = None, rpz: Path | None = None
) -> Resolver:
    port = free_port()
    lines = [
        "server:",
        "    interface: 127.0.0.1",
        f"    port: {port}",
        "    do-ip6: no",
        "    do-daemonize: no",
        '    chroot: ""',
        '    username: ""',
        f'    directory: "{tmp_path}"',
        f'    pidfile: "{tmp_path / "unbound.pid"}"',
        "    use-syslog: no",
        '    logfile: ""',
        "    num-threads: 1",
        # The fake upstream lives on loopback, where Unbound refuses to send by default.
        "    do-not-query-localhost: no",
        "    qname-minimisation: no",
        # respip is the module that applies RPZ; no validator: the fake signs nothing.
        f'    module-config: "{"respip iterator" if rpz else "iterator"}"',
    ]
    if include is not None:
        lines.append(f'    include: "{include}"')
    lines += [
        "remote-control:",
        "    control-enable: no",
        "forward-zone:",
        '    name: "."',
        f"    forward-addr: 127.0.0.1@{upstream.port}",
    ]
    if rpz is not None:
        lines += ["rpz:", '    name: "rpz.aiwall"', f'    zonefile: "{rpz}"']
    conf = tmp_path / "unbound.conf"
    conf.write_text("\n".join(lines) + "\n")
    run(tool("unbound-checkconf"), conf)
    return Resolver([tool("unbound"), "-d", "-c", str(conf)], port, tmp_path / "unbound.log")


RUNNERS = ["dnsmasq", "unbound", "unbound-rpz"]


def start(
    runner: str, entries: list[PolicyEntry], response: str, upstream: FakeUpstream, tmp: Path
) -> Resolver:
    if runner == "dnsmasq":
        return start_dnsmasq(
            export(entries, "dnsmasq", tmp / "aiwall.conf", response), upstream, tmp
        )
    if runner == "unbound":
        exported = export(entries, "unbound", tmp / "aiwall.conf", response)
        return start_unbound(upstream, tmp, include=exported)
    return start_unbound(upstream, tmp, rpz=export(entries, "rpz", tmp / "rpz.zone", response))


BLOCKED = [
    "chat.deepseek.com",
    "deep.sub.chat.deepseek.com",
    "blocked.allowed.deepseek.com",
    "x.blocked.allowed.deepseek.com",
]
FORWARDED = ["www.example.org", "allowed.deepseek.com", "x.allowed.deepseek.com"]


@pytest.mark.parametrize("runner", RUNNERS)
def test_nxdomain_export_blocks_in_the_real_program(runner, policy, upstream, tmp_path, resolvers):
    server = start(runner, policy, "nxdomain", upstream, tmp_path)
    resolvers.append(server)
    for name in [*BLOCKED, "use-application-dns.net"]:
        assert server.rcode(name) == "NXDOMAIN", name
        assert server.rcode(name, "HTTPS") == "NXDOMAIN", name
    for name in FORWARDED:
        assert server.addresses(name) == [DEFAULT_A], name
    assert all(upstream.answer_count(name) == 0 for name in BLOCKED)
    # A local zone cannot leave its apex out, so the Unbound export leaves
    # "*.wild.example.net" out (and says so) rather than block wild.example.net too.
    assert server.addresses("wild.example.net") == [DEFAULT_A]
    below = "NOERROR" if runner == "unbound" else "NXDOMAIN"
    assert server.rcode("a.wild.example.net") == below


@pytest.mark.parametrize("runner", RUNNERS)
def test_sinkhole_export_answers_addresses_but_keeps_canaries_nxdomain(
    runner, policy, upstream, tmp_path, resolvers
):
    server = start(runner, policy, "sinkhole", upstream, tmp_path)
    resolvers.append(server)
    for name in BLOCKED:
        assert server.addresses(name, "A") == [SINK4], name
        assert server.addresses(name, "AAAA") == [SINK6], name
        assert server.addresses(name, "MX") == [], name  # NODATA, never forwarded
    for canary in ("use-application-dns.net", "mask.icloud.com", "mask-h2.icloud.com"):
        assert server.rcode(canary) == "NXDOMAIN", canary
    for name in FORWARDED:
        assert server.addresses(name) == [DEFAULT_A], name
    assert all(upstream.answer_count(name) == 0 for name in BLOCKED)


@pytest.mark.parametrize("runner", ["unbound", "unbound-rpz"])
def test_nodata_export_answers_empty(runner, policy, upstream, tmp_path, resolvers):
    server = start(runner, policy, "nodata", upstream, tmp_path)
    resolvers.append(server)
    for name in BLOCKED:
        assert server.addresses(name) == [], name
    assert server.rcode("use-application-dns.net") == "NXDOMAIN"
    assert server.addresses("www.example.org") == [DEFAULT_A]
    assert all(upstream.answer_count(name) == 0 for name in BLOCKED)
