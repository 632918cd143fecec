"""The fast path (``serve.fastpath``) on the real server: a question asked before gets the
same answer, byte for byte but its ID, with every effect of the pipeline (counters, audit
rows), and no kept answer outlives a policy change, a pause or a temporary rule."""

from __future__ import annotations

import datetime
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

import dns.message
import dns.rcode
import yaml

from tests.peers.aiwall import Aiwall, two_worker_config
from tests.support import RunningServer, ask

TOKEN = "fast-path-test-token-0123456789"
ASKED = 6


def raw_ask(
    server: RunningServer, name: str, query_id: int, source: str = "127.0.0.1", wait: float = 3
) -> bytes:
    query = dns.message.make_query(name, "A", use_edns=0)
    query.id = query_id
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(wait)
        sock.sendto(query.to_wire(), (server.host, server.port))
        return sock.recv(65535)


def fast_hits(server: RunningServer) -> int:
    return server.call_soon(lambda: server.server.data.fast.hits)


def audit_rows(directory: Path) -> list[tuple[str, str, int]]:
    with sqlite3.connect(directory / "state" / "audit.db") as db:
        rows = db.execute("SELECT name, action, count FROM attempts ORDER BY rowid").fetchall()
    return [(str(name), str(action), int(count)) for name, action, count in rows]


def test_a_repeated_blocked_question_gets_the_same_bytes_and_every_effect(start_server, tmp_path):
    server = start_server()
    answers = [raw_ask(server, "chat.deepseek.com", 1000 + n) for n in range(ASKED)]
    assert {a[2:] for a in answers} == {answers[0][2:]}
    assert [int.from_bytes(a[:2], "big") for a in answers] == [1000 + n for n in range(ASKED)]
    assert dns.message.from_wire(answers[-1]).rcode() == dns.rcode.NXDOMAIN
    assert fast_hits(server) == ASKED - 1
    assert server.metric("aiwall_queries_total", protocol="udp", qtype="A") == ASKED
    assert server.metric("aiwall_blocked_queries_total", service="deepseek") == ASKED
    assert server.metric("aiwall_responses_total", outcome="blocked", rcode="NXDOMAIN") == ASKED
    server.stop()
    rows = audit_rows(tmp_path)
    assert sum(count for name, action, count in rows if action == "blocked") == ASKED
    assert {name for name, _, _ in rows} == {"chat.deepseek.com"}


def test_cached_answers_are_counted_and_their_ttl_still_counts_down(start_server, upstream):
    server = start_server()
    first = [dns.message.from_wire(raw_ask(server, "ttl.example.test", n)) for n in range(ASKED)]
    shown = first[0].answer[0].ttl
    # Counted down by the fast path at a moment of its second spread by the question's
    # hash: never higher than the cache's, at most one lower.
    assert {r.answer[0].ttl for r in first[1:]} <= {shown, shown - 1}
    assert fast_hits(server) >= ASKED - 2  # the miss, then at most one cache walk
    assert server.metric("aiwall_cache_hits_total") == ASKED - 1
    assert server.metric("aiwall_responses_total", outcome="cached", rcode="NOERROR") == ASKED - 1
    time.sleep(1.1)
    later = dns.message.from_wire(raw_ask(server, "ttl.example.test", 99))
    assert later.answer[0].ttl < first[0].answer[0].ttl
    assert upstream.answer_count("ttl.example.test") == 1


def test_a_pause_lets_a_kept_blocked_name_through_at_once(start_server):
    server = start_server(api={"token": TOKEN})
    for n in range(3):
        assert dns.message.from_wire(raw_ask(server, "chat.deepseek.com", n)).rcode() == 3
    assert server.post("/api/pause?minutes=5", token=TOKEN)[0] == 200
    assert ask(server, "chat.deepseek.com").rcode() == dns.rcode.NOERROR
    assert server.post("/api/pause?minutes=0", token=TOKEN)[0] == 200
    assert ask(server, "chat.deepseek.com").rcode() == dns.rcode.NXDOMAIN


def test_a_reload_that_bans_a_kept_cached_name_blocks_it_at_once(start_from_file):
    server, path = start_from_file(
        blocking={"catalog": {"block": {"all": True}, "allow": {"services": ["deepseek"]}}}
    )
    for n in range(4):
        reply = dns.message.from_wire(raw_ask(server, "chat.deepseek.com", n))
        assert reply.rcode() == dns.rcode.NOERROR
    assert fast_hits(server) >= 2  # kept: the fail-open direction is what is tested
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    raw["blocking"] = {"catalog": {"block": {"all": True}}}
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert server.call(server.server.reload())[0]
    reply = dns.message.from_wire(raw_ask(server, "chat.deepseek.com", 77))
    assert reply.rcode() == dns.rcode.NXDOMAIN


def test_a_temporary_exception_running_out_blocks_a_kept_answer_at_once(start_server):
    end = datetime.datetime.now(datetime.UTC).replace(microsecond=0) + datetime.timedelta(seconds=3)
    server = start_server(
        blocking={
            "catalog": {
                "block": {"all": True},
                "allow": {"services": ["deepseek"], "until": end.strftime("%Y-%m-%dT%H:%M:%SZ")},
            }
        }
    )
    # Stop the timer that would switch versions, so only the kept answers' own deadline
    # stands between a cached allowed answer and the ban.
    server.call_soon(lambda: server.server.data._expiry_timer.cancel())
    # Asked right up to the end, so answers kept a moment before it are still fresh.
    n = 0
    while time.time() < end.timestamp() - 0.02:
        assert dns.message.from_wire(raw_ask(server, "chat.deepseek.com", n)).rcode() == 0
        n += 1
        time.sleep(0.01)
    assert fast_hits(server) >= 2
    time.sleep(max(end.timestamp() - time.time(), 0) + 0.01)
    reply = dns.message.from_wire(raw_ask(server, "chat.deepseek.com", 88))
    assert reply.rcode() == dns.rcode.NXDOMAIN


def test_report_only_records_every_attempt(start_server, tmp_path):
    server = start_server(
        blocking={"catalog": {"block": {"all": True}, "report": {"services": ["deepseek"]}}}
    )
    for n in range(ASKED):
        assert dns.message.from_wire(raw_ask(server, "chat.deepseek.com", n)).rcode() == 0
    assert server.metric("aiwall_reported_queries_total", service="deepseek") == ASKED
    server.stop()
    rows = audit_rows(tmp_path)
    assert sum(count for _, action, count in rows if action == "report") == ASKED


def test_each_client_group_gets_its_own_answer_to_the_same_bytes(start_server):
    lab = {
        "name": "lab",
        "clients": ["127.0.0.3/32"],
        "catalog": {"block": {"all": True}, "allow": {"services": ["deepseek"]}},
    }
    server = start_server(groups=[lab])
    for n in range(3):
        blocked = dns.message.from_wire(raw_ask(server, "chat.deepseek.com", 1, "127.0.0.2"))
        allowed = dns.message.from_wire(raw_ask(server, "chat.deepseek.com", 1, "127.0.0.3"))
        assert blocked.rcode() == dns.rcode.NXDOMAIN, n
        assert allowed.answer[0][0].to_text() == "198.51.100.7", n
    assert server.metric("aiwall_blocked_queries_total", service="deepseek", group="default") == 3


def test_the_rate_limit_still_applies_to_repeated_questions(start_server):
    server = start_server(ratelimit={"rate": 1, "burst": 2, "slip": 0})
    wire = dns.message.make_query("chat.deepseek.com", "A").to_wire()
    answered = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        for _ in range(10):
            sock.sendto(wire, (server.host, server.port))
        try:
            while sock.recv(65535):
                answered += 1
        except TimeoutError:
            pass
    assert answered <= 3
    assert fast_hits(server) == 0


def test_a_banned_name_asked_first_time_gets_the_pipelines_answer_without_it(
    start_server, tmp_path
):
    """Client 127.0.0.1 is known to the fast path, so each new banned name it asks takes
    the first-answer path; each fresh client address (127.0.0.1x) is not, so its one
    question takes the pipeline. Same bytes (same ID), same counters, same audit rows."""
    server = start_server()
    assert dns.message.from_wire(raw_ask(server, "first.deepseek.com", 1)).rcode() == 3
    names = [f"n{i}.DeepSeek.com" for i in range(10)]
    hits = fast_hits(server)
    known = [raw_ask(server, name, 500 + i) for i, name in enumerate(names)]
    assert fast_hits(server) == hits + len(names)  # none took the pipeline
    fresh = [raw_ask(server, name, 500 + i, f"127.0.0.{10 + i}") for i, name in enumerate(names)]
    assert fast_hits(server) == hits + len(names)
    assert known == fresh
    for reply in map(dns.message.from_wire, known):
        assert reply.rcode() == dns.rcode.NXDOMAIN
        assert reply.authority[0].name.to_text() == "DeepSeek.com."
        assert reply.extended_errors()[0].code == 15  # Blocked (RFC 8914)
    total = 2 * len(names) + 1
    assert server.metric("aiwall_blocked_queries_total", service="deepseek") == total
    assert server.metric("aiwall_responses_total", outcome="blocked", rcode="NXDOMAIN") == total
    server.stop()
    rows = audit_rows(tmp_path)
    asked: dict[str, int] = {}
    for name, action, count in rows:
        if action == "blocked":  # a row per client and name
            asked[name] = asked.get(name, 0) + count
    assert asked == {"first.deepseek.com": 1, **{name.lower(): 2 for name in names}}


def test_in_the_multi_worker_server_each_new_banned_name_is_blocked(upstream, tmp_path):
    """The default deployment (workers, as ``aiwall serve`` runs) with dig as the client:
    names hash to both workers; every new one asked is blocked, every allowed one
    resolves."""
    config = two_worker_config(upstream.server_spec, tmp_path)
    with Aiwall(config, tmp_path) as server:
        port = server.address[1]
        server.wait_serving()
        for i in range(30):
            status = dig_status("127.0.0.1", port, f"w{i}.chat.deepseek.com")
            assert status == "NXDOMAIN", i
        assert dig_status("127.0.0.1", port, "allowed.example.test") == "NOERROR"
        assert server.metric("aiwall_blocked_queries_total", service="deepseek") == 30


def test_in_the_multi_worker_server_each_banned_name_is_one_audit_name_however_asked(
    upstream, tmp_path
):
    """Workers record a banned name's questions as they came (``attempts.QUESTION``); the
    supervisor's writer process turns them into names. Through the real supervisor, the
    same name asked in other forms (dig's random EDNS cookie, dnspython without EDNS,
    upper case) is one name in the trail, every attempt counted."""
    config = two_worker_config(upstream.server_spec, tmp_path)
    names = [f"q{i}.chat.deepseek.com" for i in range(8)]
    with Aiwall(config, tmp_path) as server:
        port = server.address[1]
        server.wait_serving()
        for name in names:
            assert dig_status("127.0.0.1", port, name) == "NXDOMAIN"
            assert dig_status("127.0.0.1", port, name.upper()) == "NXDOMAIN"
            for query_id in (1, 2):  # the second a kept answer (same bytes but the ID)
                query = dns.message.make_query(name, "A", use_edns=False)
                query.id = query_id
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                    sock.settimeout(3)
                    sock.sendto(query.to_wire(), ("127.0.0.1", port))
                    assert dns.message.from_wire(sock.recv(65535)).rcode() == dns.rcode.NXDOMAIN
        assert server.stop() == 0
    counts: dict[str, int] = {}
    for name, action, count in audit_rows(tmp_path):
        assert action == "blocked"
        counts[name] = counts.get(name, 0) + count
    assert counts == dict.fromkeys(names, 4)


def dig_status(host: str, port: int, name: str) -> str:
    output = subprocess.run(
        ["dig", f"@{host}", "-p", str(port), name, "A", "+tries=1", "+time=3"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout
    return output.split("status: ", 1)[1].split(",", 1)[0]
