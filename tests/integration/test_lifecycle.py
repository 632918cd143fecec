"""Start and stop: the policy is in force before any port opens; SIGTERM stops accepting,
finishes the answers in flight and exits 0."""

from __future__ import annotations

import select
import signal
import socket
import struct
import time

import dns.message
import pytest

from resolver.serve import server as server_module
from resolver.serve.server import Server
from tests.fakes.upstream import DEFAULT_A
from tests.integration.test_cli import Process, write_config
from tests.support import RunningServer, free_port, make_config

# The upstream's answer is still on its way when SIGTERM arrives (the timeout is 0.5 s).
DELAY = 0.35


@pytest.fixture
def running_process(upstream, catalog_dir, tmp_path):
    started: list[Process] = []

    def start(workers: int) -> Process:
        port = free_port()
        config = tmp_path / "aiwall.yaml"
        write_config(config, upstream, port, catalog_dir)
        config.write_text(config.read_text() + f"workers: {workers}\n")
        process = Process(config, catalog_dir, port)
        started.append(process)
        process.wait_ready()
        return process

    yield start
    for process in started:
        if process.proc.poll() is None:
            process.proc.kill()
            process.proc.wait()


def wait_for_log(process: Process, texts: set[str], timeout: float = 5.0) -> None:
    """Read the server's log until a line containing each of ``texts`` went by."""
    stream = process.proc.stderr
    assert stream is not None
    missing = set(texts)
    deadline = time.monotonic() + timeout
    while missing and time.monotonic() < deadline:
        ready, _, _ = select.select([stream], [], [], max(deadline - time.monotonic(), 0))
        if ready:
            line = stream.readline()
            missing = {text for text in missing if text not in line}
    assert not missing, f"no log line with {missing}"


def addresses(data: bytes) -> list[str]:
    return [str(r.address) for rrset in dns.message.from_wire(data).answer for r in rrset]


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_lets_udp_and_tcp_answers_in_flight_reach_their_clients(
    running_process, upstream, workers
):
    upstream.set_delay("inflight-udp.example.test", DELAY)
    upstream.set_delay("inflight-tcp.example.test", DELAY)
    server = running_process(workers)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    late = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        udp.settimeout(5)
        udp.sendto(
            dns.message.make_query("inflight-udp.example.test", "A").to_wire(),
            ("127.0.0.1", server.port),
        )
        query = dns.message.make_query("inflight-tcp.example.test", "A").to_wire()
        tcp.sendall(struct.pack("!H", len(query)) + query)
        assert upstream.wait_for_queries(1, name="inflight-udp.example.test")
        assert upstream.wait_for_queries(1, name="inflight-tcp.example.test")
        server.proc.send_signal(signal.SIGTERM)
        # Each process logs this just before it stops taking queries.
        stopping = {f"worker {i}: shutting down" for i in range(workers)} if workers > 1 else set()
        wait_for_log(server, stopping or {"shutting down"})
        # A query arriving after SIGTERM is not taken on any more.
        late.settimeout(DELAY / 2)
        late.sendto(
            dns.message.make_query("too-late.example.test", "A").to_wire(),
            ("127.0.0.1", server.port),
        )
        assert addresses(udp.recv(65535)) == [DEFAULT_A]
        length = struct.unpack("!H", tcp.recv(2))[0]
        data = b""
        while len(data) < length:
            data += tcp.recv(length - len(data))
        assert addresses(data) == [DEFAULT_A]
        with pytest.raises(TimeoutError):
            late.recv(65535)
    finally:
        udp.close()
        tcp.close()
        late.close()
    code, log = server.stop()
    assert code == 0, log
    assert upstream.answer_count("too-late.example.test") == 0


def test_the_policy_is_in_force_before_any_port_opens(upstream, catalog_dir, tmp_path, monkeypatch):
    extra = tmp_path / "extra.txt"
    extra.write_text("listed.test\n")
    seen: list[bool] = []
    servers: list[Server] = []
    bind = server_module.bind_dns

    def spy(specs, workers=1):
        # What a query would meet the moment a port is bound.
        pipeline = servers[0].pipeline
        seen.append(
            pipeline is not None
            and pipeline.blocking.groups.default.blocklist.decide("listed.test").blocked
            and pipeline.blocking.groups.default.blocklist.decide("chat.deepseek.com").blocked
        )
        return bind(specs, workers)

    monkeypatch.setattr(server_module, "bind_dns", spy)
    config = make_config(upstream.server_spec, base_dir=tmp_path, blocking={"lists": [str(extra)]})
    running = RunningServer(config, catalog_dir=catalog_dir)
    servers.append(running.server)
    with running as server:
        assert server.port
    assert seen == [True]


def test_a_list_that_cannot_be_read_at_start_opens_no_port(upstream, catalog_dir, tmp_path):
    port = free_port()
    config = make_config(
        upstream.server_spec,
        base_dir=tmp_path,
        listen={"dns": [f"127.0.0.1:{port}"]},
        blocking={"lists": [str(tmp_path / "missing.txt")]},
    )
    server = RunningServer(config, catalog_dir=catalog_dir)
    with pytest.raises(Exception, match=r"missing\.txt"):
        server.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", port))  # free: nothing was ever bound there
    finally:
        server.loop.call_soon_threadsafe(server.loop.stop)
