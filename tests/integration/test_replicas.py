"""Replicas as one fleet (issue 15): two real ``aiwall serve`` processes, one of them
with a supervisor and two workers, report the same ``aiwall_policy_info`` fingerprint
when they decide alike, and different ones when a list differs by a single name, which
is what the AiwallReplicasDisagree alert (deploy/prometheus/alerts.yml, unit-tested by
promtool in test_deploy_files.py) compares. Each process has its own hash salt, so a
fingerprint that leaned on in-memory hashes would differ here even for equal policies."""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rcode
import pytest

from tests.fakes.upstream import FakeUpstream
from tests.peers.aiwall import Aiwall
from tests.peers.ports import free_port
from tests.peers.wait import wait_until

_INFO = re.compile(r'^aiwall_policy_info\{fingerprint="([0-9a-f]{16})"\} 1\.0$', re.M)


def _config(upstream: FakeUpstream, lists: Path, state: Path, workers: int) -> dict[str, Any]:
    return {
        "listen": {"dns": [f"127.0.0.1:{free_port()}"], "http": f"127.0.0.1:{free_port()}"},
        "upstream": {"servers": [upstream.server_spec], "timeout": 0.5},
        "workers": workers,
        "blocking": {"lists": [{"path": str(lists)}]},
        "state": {"directory": str(state)},
    }


def _fingerprints(server: Aiwall) -> list[str]:
    return _INFO.findall(server.http("/metrics")[1])


@pytest.fixture
def replicas(
    tmp_path: Path, catalog_dir: Path, upstream: FakeUpstream
) -> Iterator[tuple[Aiwall, Aiwall, Path]]:
    """Two replicas reading the same list file (as from one ConfigMap), one and two
    workers."""
    lists = tmp_path / "blocked.txt"
    lists.write_text("".join(f"banned{i}.example\n" for i in range(2000)))
    started = []
    for index, workers in enumerate((1, 2)):
        config = _config(upstream, lists, tmp_path / f"state{index}", workers)
        started.append(Aiwall(config, tmp_path, catalog_dir=catalog_dir, name=f"replica{index}"))
    try:
        for server in started:
            server.wait_serving(60)
        yield started[0], started[1], lists
    finally:
        for server in started:
            server.stop()


def test_replicas_with_one_policy_report_one_fingerprint(
    replicas: tuple[Aiwall, Aiwall, Path],
) -> None:
    first, second, _ = replicas
    assert len(_fingerprints(first)) == 1
    assert _fingerprints(first) == _fingerprints(second)
    # The version counts each server's own builds: not what tells replicas apart.
    assert first.metric("aiwall_policy_version") == second.metric("aiwall_policy_version") == 1


def test_one_name_more_on_one_replica_changes_its_fingerprint_alone(
    replicas: tuple[Aiwall, Aiwall, Path], tmp_path: Path
) -> None:
    first, second, lists = replicas
    before = _fingerprints(first)
    # Only the second replica reloads after the file grew by one name (as a pod that
    # picked up a new ConfigMap while the other did not).
    with lists.open("a") as stream:
        stream.write("one-more.example\n")
    second.signal(signal.SIGHUP)
    wait_until(lambda: second.metric("aiwall_policy_version") == 2, timeout=30)
    host, port = second.address
    reply = dns.query.udp(
        dns.message.make_query("one-more.example", "A"), host, port=port, timeout=3
    )
    assert reply.rcode() == dns.rcode.NXDOMAIN
    after = _fingerprints(second)
    assert len(after) == 1  # the old fingerprint's series is gone
    assert after != before
    assert _fingerprints(first) == before
    # The first replica catches up: the fleet agrees again.
    first.signal(signal.SIGHUP)
    wait_until(lambda: first.metric("aiwall_policy_version") == 2, timeout=30)
    assert _fingerprints(first) == after


def test_a_reload_that_changes_nothing_keeps_the_fingerprint(
    replicas: tuple[Aiwall, Aiwall, Path],
) -> None:
    first, _, _ = replicas
    before = _fingerprints(first)
    first.signal(signal.SIGHUP)
    wait_until(lambda: first.metric("aiwall_policy_version") == 2, timeout=30)
    assert _fingerprints(first) == before
