"""A cache miss as a ``Pending`` (``resolver.dns.pending``): what each stage does with
the upstream's answer still happens, in order, before the answer leaves; a failing
stage still costs a SERVFAIL, never the upstream's answer; a question given up on
(shutdown, a cancelled waiter) closes its upstream socket at once."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import dns.rcode
import pytest

from resolver import compiled
from resolver.dns import wire
from resolver.dns.model import Answer, Outcome
from resolver.dns.pending import Pending
from resolver.handlers.blocking import BlockingHandler
from resolver.handlers.cache import AnswerCache
from resolver.metrics import Metrics
from resolver.policy.blocklist import Blocklist
from resolver.upstream.forwarder import Forwarder, Upstream
from tests.fakes.upstream import FakeUpstream
from tests.peers.nsd import Nsd, nsd_binary
from tests.support import RunningServer, ask, make_config
from tests.unit.handler_support import make_query

# CNAME chains NSD follows within its zone and sends whole in one answer: the banned
# name last, in the middle (the chain goes on to an allowed name), and an allowed one.
CHAINS = """\
hop1.chain.test.   IN CNAME hop2.chain.test.
hop2.chain.test.   IN CNAME hop3.chain.test.
hop3.chain.test.   IN CNAME chat.deepseek.com.
mid1.chain.test.   IN CNAME mid2.chain.test.
mid2.chain.test.   IN CNAME api.deepseek.com.
api.deepseek.com.  IN CNAME end.chain.test.
end.chain.test.    IN A     192.0.2.9
fine1.chain.test.  IN CNAME fine2.chain.test.
fine2.chain.test.  IN CNAME end.chain.test.
"""


@pytest.fixture(scope="module")
def nsd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    assert nsd_binary(), "nsd is installed by tests/tools/install-system-deps.sh"
    with Nsd(tmp_path_factory.mktemp("nsd"), records=CHAINS) as upstream:
        yield upstream.spec


@pytest.mark.parametrize(
    ("name", "target"),
    [("hop1.chain.test", "chat.deepseek.com"), ("mid1.chain.test", "api.deepseek.com")],
)
def test_every_cname_of_a_chain_is_inspected(nsd, catalog_dir: Path, tmp_path: Path, name, target):
    config = make_config(nsd, base_dir=tmp_path)
    with RunningServer(config, catalog_dir=catalog_dir) as server:
        for _ in range(2):  # from the upstream, then from the cache
            reply = ask(server, name)
            assert reply.rcode() == dns.rcode.NXDOMAIN
            assert not reply.answer
            assert f"via CNAME {target}" in reply.extended_errors()[0].text
        # The chain without a banned name is relayed whole.
        fine = ask(server, "fine1.chain.test")
        assert fine.rcode() == dns.rcode.NOERROR
        assert [rrset.name.to_text() for rrset in fine.answer] == [
            "fine1.chain.test.",
            "fine2.chain.test.",
            "end.chain.test.",
        ]


def test_a_failing_cname_inspection_gives_servfail_not_the_upstreams_answer(
    start_server, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
):
    def broken(*_args: object) -> None:
        raise RuntimeError("a bug in the inspection")

    upstream.set_records("www.example.test", "CNAME", ["edge.example.test."])
    server = start_server()
    # The inspection's look-up of the CNAME target fails (a method of the policy's
    # block list, which compiled code calls like any other: resolver.compiled).
    monkeypatch.setattr(Blocklist, "match", broken)
    reply = ask(server, "www.example.test")
    assert reply.rcode() == dns.rcode.SERVFAIL
    assert not reply.answer
    assert upstream.answer_count("www.example.test") == 1
    assert server.metric("aiwall_responses_total", outcome="servfail", rcode="SERVFAIL") == 1
    assert server.metric("aiwall_responses_total", outcome="forwarded") == 0


@pytest.mark.skipif(
    compiled.COMPILED,
    reason="the fault is injected by replacing a method, which compiled code never calls; "
    "make test runs this file again from source (AIWALL_PURE=1)",
)
def test_a_failing_cache_put_gives_servfail_and_skips_the_later_steps(
    start_server, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
):
    inspected: list[Answer] = []
    inspect = BlockingHandler._inspect_cnames

    def watched(self: BlockingHandler, query: object, group: object, answer: Answer) -> Answer:
        inspected.append(answer)
        return inspect(self, query, group, answer)  # type: ignore[arg-type]

    def broken(*_args: object) -> None:
        raise RuntimeError("a bug in the cache")

    server = start_server()
    monkeypatch.setattr(BlockingHandler, "_inspect_cnames", watched)
    monkeypatch.setattr(AnswerCache, "put", broken)
    assert ask(server, "www.example.test").rcode() == dns.rcode.SERVFAIL
    # The cache's step runs first: once it failed, no outer stage saw an answer.
    assert inspected == []
    assert server.metric("aiwall_responses_total", outcome="servfail", rcode="SERVFAIL") == 1


def _silent_forwarder(upstream: FakeUpstream) -> Forwarder:
    upstream.set_silent()
    host, port = upstream.address
    return Forwarder((Upstream(host, port, f"{host}:{port}"),), 5.0, Metrics())


def _open_sockets(forwarder: Forwarder) -> list[socket.socket]:
    return [sock._sock for pool in forwarder._exchanges._udp.values() for sock in pool._open]


def test_closing_the_forwarder_cancels_the_questions_in_flight_and_their_sockets(
    upstream: FakeUpstream,
):
    async def scenario() -> None:
        forwarder = _silent_forwarder(upstream)
        results = [forwarder.ask(make_query(f"q{i}.example.test")) for i in range(3)]
        assert all(isinstance(result, Pending) for result in results)
        told: list[Pending] = []
        for result in results:
            assert isinstance(result, Pending)
            result.add_done_callback(told.append)
        sockets = _open_sockets(forwarder)
        assert len(sockets) == 3
        await forwarder.close()  # the server stopping
        assert all(sock.fileno() == -1 for sock in sockets)
        assert all(result.cancelled() for result in results)
        assert sorted(map(id, told)) == sorted(map(id, results))  # each told once
        await asyncio.sleep(0.01)  # nothing is left to run for them
        assert _open_sockets(forwarder) == []

    asyncio.run(scenario())


def test_a_waiter_cancelled_cancels_the_question_and_closes_its_socket(upstream: FakeUpstream):
    async def scenario() -> None:
        forwarder = _silent_forwarder(upstream)
        waiter = asyncio.ensure_future(forwarder.resolve(make_query("gone.example.test")))
        await asyncio.sleep(0.05)
        (sock,) = _open_sockets(forwarder)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        await asyncio.sleep(0.01)
        assert sock.fileno() == -1
        assert _open_sockets(forwarder) == []
        # Given up on, not timed out: nothing counted against the upstream.
        label = forwarder.servers[0].label
        assert forwarder._metrics.upstream_errors.labels(label, "timeout")._value.get() == 0
        await forwarder.close()

    asyncio.run(scenario())


def test_a_cancelled_answer_is_never_sent(upstream: FakeUpstream):
    """The listener's callback on a cancelled Pending: nothing to send, no SERVFAIL."""

    async def scenario() -> None:
        from resolver.serve.transport import QueryRunner

        forwarder = _silent_forwarder(upstream)

        class Head:
            name = "head"

            def handle(self, query: object) -> Answer | Pending:
                return forwarder.ask(query)  # type: ignore[arg-type]

        metrics = Metrics()
        runner = QueryRunner(Head(), metrics)  # type: ignore[arg-type]
        sent: list[Answer] = []
        query = make_query("never.example.test")
        assert runner.answer_now(query, lambda _q, answer, _c: sent.append(answer), None) is None
        await forwarder.close()
        assert not runner._upcoming  # the cancellation reached the runner: nothing in flight
        await runner.drain(1.0)
        assert sent == []
        assert metrics.responses.value((Outcome.SERVFAIL, wire.SERVFAIL)) == 0

    asyncio.run(scenario())
