"""The benchmark's bare ceiling asks the upstream as aiwall does (RFC 5452), so that the
miss mix compares aiwall with a relay under the same socket discipline: each question in
flight on a socket (a port) of its own, and only the genuine answer taken."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rdatatype
import pytest

from tests.fakes.upstream import DEFAULT_A, FakeUpstream
from tests.support import free_port

BARE = Path(__file__).resolve().parents[2] / "bench" / "bare.py"
NAMES = [f"q{index}.bare.test" for index in range(4)]


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


def _start(
    tmp_path: Path, upstream: FakeUpstream, *extra: str
) -> tuple[subprocess.Popen[bytes], int]:
    blocklist = tmp_path / "blocklist.txt"
    blocklist.write_text("banned.test\n")
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            str(BARE),
            "--port",
            str(port),
            "--upstream",
            upstream.server_spec,
            "--blocklist",
            str(blocklist),
            *extra,
        ],
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            query = dns.message.make_query("banned.test", "A")
            dns.query.udp(query, "127.0.0.1", port=port, timeout=0.2)
            return process, port
        except (dns.exception.Timeout, OSError):
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise
            time.sleep(0.05)


def _ask_together(port: int) -> list[dns.message.Message]:
    def ask(name: str) -> dns.message.Message:
        return dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=5)

    with ThreadPoolExecutor(len(NAMES)) as pool:
        return list(pool.map(ask, NAMES))


def _answered_a(answer: dns.message.Message) -> list[str]:
    return [
        rr.address for rrset in answer.answer if rrset.rdtype == dns.rdatatype.A for rr in rrset
    ]


@pytest.mark.parametrize(
    ("extra", "ports"),
    [((), len(NAMES)), (("--one-socket",), 1)],
    ids=["a-port-per-question", "one-socket"],
)
def test_questions_in_flight_go_out_on_a_port_each_or_on_one_socket(
    tmp_path, upstream, extra, ports
):
    for name in NAMES:
        upstream.set_delay(name, 0.3)  # all four in flight at once
    process, port = _start(tmp_path, upstream, *extra)
    try:
        answers = _ask_together(port)
    finally:
        process.kill()
        process.wait()
    assert [_answered_a(answer) for answer in answers] == [[DEFAULT_A]] * len(NAMES)
    asked = [query for query in upstream.queries if query.name in NAMES]
    assert len(asked) == len(NAMES)
    assert len({query.source[1] for query in asked}) == ports


@pytest.mark.parametrize("kind", ["wrong-id", "wrong-question"])
def test_a_forged_answer_is_not_relayed(tmp_path, upstream, kind):
    upstream.set_forgery("forged.bare.test", kind)
    process, port = _start(tmp_path, upstream)
    try:
        query = dns.message.make_query("forged.bare.test", "A")
        answer = dns.query.udp(query, "127.0.0.1", port=port, timeout=5)
    finally:
        process.kill()
        process.wait()
    assert _answered_a(answer) == [DEFAULT_A]
    assert answer.question[0].name.to_text() == "forged.bare.test."
