"""Several worker processes on one port, one correct /metrics for all of them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dns.message
import dns.query
import pytest
import yaml

from tests.support import free_port


def udp_sockets_on(port: int) -> int:
    """How many UDP sockets are bound to 127.0.0.1:port (SO_REUSEPORT lets several)."""
    wanted = f"0100007F:{port:04X}"
    lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    return sum(1 for line in lines if line.split()[1] == wanted)


def metric(url: str, name: str) -> float:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture
def workers(upstream, catalog_dir, tmp_path):
    port, http = free_port(), free_port()
    config = tmp_path / "aiwall.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "listen": {"dns": [f"127.0.0.1:{port}"], "http": f"127.0.0.1:{http}"},
                "upstream": {"servers": [upstream.server_spec], "timeout": 0.5},
                "workers": 2,
            }
        )
    )
    env = {**os.environ, "AIWALL_CATALOG_DIR": str(catalog_dir)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "resolver", "serve", "--config", str(config)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{http}"
    deadline = time.monotonic() + 30
    # The supervisor binds the ports before the workers start; the HTTP listener opens
    # once every worker serves.
    while not answers(url + "/healthz"):
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "workers did not start"
        time.sleep(0.1)
    yield proc, port, url
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def worker_pids(proc: subprocess.Popen[str]) -> list[str]:
    """The supervisor's workers: its children but the audit trail's writer process."""
    children = subprocess.run(
        ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True
    ).stdout.split()
    return [
        pid
        for pid in children
        if b"resolver.audit.writer" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


def ask_from_fresh_ports(port: int, count: int) -> None:
    # A new socket per query: new source ports, so the kernel spreads them over workers.
    for index in range(count):
        query = dns.message.make_query(f"n{index}.chat.deepseek.com", "A")
        reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=3)
        assert reply.rcode() == 3


def test_metrics_are_the_sum_over_workers(workers):
    _, port, url = workers
    assert udp_sockets_on(port) == 2
    ask_from_fresh_ports(port, 200)
    assert metric(url, "aiwall_queries_total") == 200
    assert metric(url, "aiwall_blocked_queries_total") == 200
    assert metric(url, "aiwall_workers") == 2
    # Gauges every worker reports alike are not doubled.
    assert metric(url, 'aiwall_list_entries{source="catalog"}') == 2


def test_a_dead_worker_is_restarted_and_sigterm_stops_all(workers):
    proc, port, url = workers
    children = worker_pids(proc)
    assert len(children) == 2
    os.kill(int(children[0]), signal.SIGKILL)
    deadline = time.monotonic() + 30
    while metric(url, "aiwall_worker_restarts_total") < 1 or len(worker_pids(proc)) < 2:
        assert time.monotonic() < deadline, "the worker was not restarted"
        time.sleep(0.2)
    # The supervisor holds the sockets: the group never lost or gained a member.
    assert udp_sockets_on(port) == 2
    ask_from_fresh_ports(port, 20)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    assert udp_sockets_on(port) == 0


def test_api_reaches_every_worker(workers):
    _, port, url = workers
    ask_from_fresh_ports(port, 40)
    with urllib.request.urlopen(url + "/api/stats", timeout=10) as response:
        stats = json.loads(response.read())
    assert stats["queries"] == 40
    assert stats["blocked_by_service"] == {"deepseek": 40}
    with urllib.request.urlopen(url + "/api/check?name=chat.deepseek.com", timeout=10) as response:
        assert json.loads(response.read())["decision"] == "blocked"
