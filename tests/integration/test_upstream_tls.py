"""Forwarding over TLS (DoT, RFC 7858) and HTTPS (DoH, RFC 8484) to a real Unbound,
itself forwarding to NSD, with certificates from the test's own CA: right answers,
banned names never sent, bad certificates refused, one connection for many queries,
fast failover when the connection dies, idle connections closed."""

from __future__ import annotations

import concurrent.futures
import datetime
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rcode
import pytest

from tests.peers.aiwall import Aiwall
from tests.peers.nsd import WILDCARD_A, Nsd
from tests.peers.ports import free_port
from tests.peers.tlsca import TestCA
from tests.peers.unbound_tls import UnboundTls
from tests.peers.wait import wait_until
from tests.support import RunningServer, ask


@dataclass
class Peers:
    directory: Path
    ca: TestCA
    nsd: Nsd
    unbound: UnboundTls  # certificate for dns.test and 127.0.0.1


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peers]:
    directory = tmp_path_factory.mktemp("tls-upstream")
    (directory / "nsd").mkdir()
    ca = TestCA(directory / "ca")
    with (
        Nsd(directory / "nsd") as nsd,
        UnboundTls(directory / "unbound", nsd.address, ca.issue(["dns.test", "127.0.0.1"])) as ub,
    ):
        yield Peers(directory, ca, nsd, ub)


Start = Callable[..., RunningServer]


@pytest.fixture
def start(start_server: Start, peers: Peers) -> Start:
    """A server trusting the test's CA, with a 5 s upstream timeout."""

    def run(servers: list[str], ca_file: Path | None = None, **sections: Any) -> RunningServer:
        upstream = {"ca_file": str(ca_file or peers.ca.path), "timeout": 5.0}
        return start_server(servers, upstream=upstream | sections.pop("upstream", {}), **sections)

    return run


def addresses(answer: dns.message.Message) -> list[str]:
    return [str(rdata.address) for rrset in answer.answer for rdata in rrset if rrset.rdtype == 1]


def readyz(server: RunningServer) -> int:
    try:
        with urllib.request.urlopen(server.http_url + "/readyz", timeout=15) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def connections(server: RunningServer, label: str, event: str) -> float:
    return server.metric("aiwall_upstream_connections_total", upstream=label, event=event)


def errors(server: RunningServer, label: str) -> float:
    """Failed attempts for any reason."""
    total = 0.0
    for line in server.metrics_text().splitlines():
        if line.startswith("aiwall_upstream_errors_total{") and f'upstream="{label}"' in line:
            total += float(line.rpartition(" ")[2])
    return total


def asked(server: RunningServer, label: str) -> float:
    return server.metric("aiwall_upstream_request_duration_seconds_count", upstream=label)


@pytest.mark.parametrize("kind", ["dot", "doh"])
def test_forwards_and_blocks(start: Start, peers: Peers, kind: str) -> None:
    # DoT to the bare address: the certificate's IP SAN is checked; DoH by #name.
    spec = peers.unbound.dot() if kind == "dot" else peers.unbound.doh("dns.test")
    server = start([spec])
    label = spec  # the metric label is the URL as configured, port included
    for name in ("one.example.", "two.example.", "three.example."):
        answer = ask(server, name)
        assert answer.rcode() == dns.rcode.NOERROR
        assert addresses(answer) == [WILDCARD_A]
    assert asked(server, label) == 3
    # The banned name is answered here, and never costs an upstream question.
    assert ask(server, "deepseek.com.").rcode() == dns.rcode.NXDOMAIN
    assert ask(server, "api.deepseek.com.").rcode() == dns.rcode.NXDOMAIN
    assert asked(server, label) == 3
    assert connections(server, label, "opened") == 1
    assert connections(server, label, "reused") == 2
    assert server.metric("aiwall_upstream_open_connections", upstream=label) == 1
    assert readyz(server) == 200


def _expired(peers: Peers) -> UnboundTls:
    long_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=10)
    issued = peers.ca.issue(["127.0.0.1"], "expired", valid_days=2, not_before=long_ago)
    return UnboundTls(peers.directory / "expired", peers.nsd.address, issued)


@pytest.mark.parametrize("case", ["wrong-name", "no-ip-san", "unknown-ca", "expired"])
@pytest.mark.parametrize("kind", ["dot", "doh"])
def test_bad_certificates_are_refused(start: Start, peers: Peers, kind: str, case: str) -> None:
    unbound = peers.unbound
    name, ca_file = "", peers.ca.path
    if case == "wrong-name":
        name = "other.test"
    elif case == "no-ip-san":
        issued = peers.ca.issue(["dns.test"], "name-only")  # no 127.0.0.1 SAN
        unbound = UnboundTls(peers.directory / f"name-only-{kind}", peers.nsd.address, issued)
    elif case == "unknown-ca":
        ca_file = TestCA(peers.directory / f"stranger-{kind}", "another CA").path
    else:
        unbound = _expired(peers)
    try:
        spec = unbound.dot(name) if kind == "dot" else unbound.doh(name)
        server = start([spec], ca_file=ca_file)
        started = time.monotonic()
        answer = ask(server, "refused.example.", timeout=10)
        # Refused at once (not after the 5 s timeout), and never an answer from it.
        assert time.monotonic() - started < 2
        assert answer.rcode() == dns.rcode.SERVFAIL
        assert addresses(answer) == []
        assert server.metric("aiwall_upstream_errors_total", upstream=spec, reason="tls") >= 1
        assert connections(server, spec, "failed") >= 1
        assert connections(server, spec, "opened") == 0
        # The server's own probe goes over TLS too, and takes it out of rotation.
        wait_until(lambda: server.metric("aiwall_upstream_up", upstream=spec) == 0, timeout=5)
        assert readyz(server) == 503
        # With a good second upstream, the question fails over to it.
        second = start([spec, peers.unbound.dot()], ca_file=peers.ca.path)
        assert addresses(ask(second, "over.example.")) == [WILDCARD_A]
    finally:
        if unbound is not peers.unbound:
            unbound.stop()


@pytest.mark.parametrize("kind", ["dot", "doh"])
def test_concurrent_queries_share_one_connection(start: Start, peers: Peers, kind: str) -> None:
    spec = peers.unbound.dot("dns.test") if kind == "dot" else peers.unbound.doh()
    server = start([spec])
    names = [f"q{index}.pipelined.example." for index in range(60)]
    with concurrent.futures.ThreadPoolExecutor(30) as pool:
        answers = list(pool.map(lambda name: ask(server, name, timeout=10), names))
    assert all(addresses(answer) == [WILDCARD_A] for answer in answers)
    assert [answer.question[0].name.to_text() for answer in answers] == names
    assert connections(server, spec, "opened") == 1
    # Those that came while it was being opened waited for it; all the others reused it.
    assert connections(server, spec, "reused") >= 30
    assert asked(server, spec) == 60


def test_killed_upstream_fails_over_fast(start: Start, peers: Peers) -> None:
    issued = peers.ca.issue(["127.0.0.1"], "doomed")
    doomed = UnboundTls(peers.directory / "doomed", peers.nsd.address, issued)
    try:
        server = start([doomed.dot(), doomed.doh(), peers.unbound.dot()])
        assert addresses(ask(server, "before.example.")) == [WILDCARD_A]
        assert connections(server, doomed.dot(), "opened") == 1
        doomed.process.proc.kill()
        doomed.process.proc.wait(10)
        started = time.monotonic()
        answer = ask(server, "after.example.", timeout=10)
        elapsed = time.monotonic() - started
        assert addresses(answer) == [WILDCARD_A]
        assert elapsed < 1.0, f"failover took {elapsed:.2f} s (timeout 5 s)"
        assert asked(server, peers.unbound.dot()) == 1
        assert server.metric("aiwall_upstream_open_connections", upstream=doomed.dot()) == 0
    finally:
        doomed.stop()


def test_idle_connections_close_and_reopen(
    start: Start, peers: Peers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("resolver.upstream.streams.IDLE_CLOSE", 0.3)
    spec = peers.unbound.dot()
    server = start([spec])
    assert addresses(ask(server, "idle1.example.")) == [WILDCARD_A]
    assert server.metric("aiwall_upstream_open_connections", upstream=spec) == 1
    wait_until(lambda: connections(server, spec, "closed") == 1, timeout=5)
    assert server.metric("aiwall_upstream_open_connections", upstream=spec) == 0
    assert addresses(ask(server, "idle2.example.")) == [WILDCARD_A]
    assert connections(server, spec, "opened") == 2


def test_upstream_closing_idle_connections_costs_no_answer(start: Start, peers: Peers) -> None:
    """Unbound closes our idle connection first (its tcp-idle-timeout): the next
    question opens a new one and is answered, with no error."""
    issued = peers.ca.issue(["127.0.0.1"], "impatient")
    impatient = UnboundTls(peers.directory / "impatient", peers.nsd.address, issued, idle_ms=200)
    try:
        spec = impatient.dot()
        server = start([spec])
        assert addresses(ask(server, "first.example.")) == [WILDCARD_A]
        wait_until(lambda: connections(server, spec, "closed") == 1, timeout=5)
        assert addresses(ask(server, "second.example.")) == [WILDCARD_A]
        assert connections(server, spec, "opened") == 2
        assert errors(server, spec) == 0
    finally:
        impatient.stop()


def test_two_workers_forward_over_dot(peers: Peers, tmp_path: Path, catalog_dir: Path) -> None:
    """``aiwall serve`` as run, two workers and the supervisor, the CA bundle named
    relative to the config file's folder."""
    shutil.copy(peers.ca.path, tmp_path / "upstream-ca.pem")
    dot = peers.unbound.dot("dns.test")
    config = {
        "listen": {"dns": [f"127.0.0.1:{free_port()}"], "http": f"127.0.0.1:{free_port()}"},
        "upstream": {"servers": [dot], "timeout": 5.0, "ca_file": "upstream-ca.pem"},
        "workers": 2,
    }
    server = Aiwall(config, tmp_path, catalog_dir=catalog_dir)
    try:
        server.wait_serving(60)
        host, port = server.address
        for index in range(20):
            query = dns.message.make_query(f"w{index}.workers.example.", "A")
            answer = dns.query.udp(query, host, port=port, timeout=5)
            assert addresses(answer) == [WILDCARD_A]
        banned = dns.query.udp(dns.message.make_query("deepseek.com.", "A"), host, port=port)
        assert banned.rcode() == dns.rcode.NXDOMAIN
        assert server.http("/readyz")[0] == 200
        assert server.metric("aiwall_upstream_request_duration_seconds_count", upstream=dot) == 20
        # One connection per worker at most, each reused.
        opened = server.metric("aiwall_upstream_connections_total", upstream=dot, event="opened")
        assert 1 <= opened <= 2
        assert (
            server.metric("aiwall_upstream_connections_total", upstream=dot, event="reused") >= 18
        )
    finally:
        server.stop()


def test_doh_error_status_is_no_answer(start: Start, peers: Peers) -> None:
    """Unbound answers another path with an HTTP error: no answer from it, counted."""
    wrong = f"https://127.0.0.1:{peers.unbound.doh_port}/not-dns#dns.test"
    server = start([wrong, peers.unbound.doh("dns.test")])
    assert addresses(ask(server, "status.example.")) == [WILDCARD_A]
    assert server.metric("aiwall_upstream_errors_total", upstream=wrong, reason="http_status") == 1
    assert asked(server, wrong) == 0


def test_a_host_name_is_resolved_and_verified(start: Start, peers: Peers) -> None:
    """``tls://localhost`` connects to what the system resolves (``/etc/hosts``); the
    certificate is checked for the ``#name``."""
    spec = f"tls://localhost:{peers.unbound.dot_port}#dns.test"
    server = start([spec])
    assert addresses(ask(server, "named.example.")) == [WILDCARD_A]
    assert connections(server, spec, "opened") == 1
