"""Questions of a client the fast path knows, through the default deployment (the real
supervisor, two workers, NSD upstream): the fast path reads each such question and hands
it to the pipeline (``FastPath.take_question``, ``codec.plain_query``) rather than have
it parsed again. What the pipeline decides from that question must not change: a name
whose CNAME leads to a banned name is still blocked, in whatever case it is asked, with
or without EDNS; an allowed name is answered with its question echoed as asked."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest

from tests.peers.aiwall import Aiwall, two_worker_config
from tests.peers.nsd import WILDCARD_A, Nsd, nsd_binary

RECORDS = """\
hop1.chain.test.      IN CNAME www.banned.example.
www.banned.example.   IN A     192.0.2.9
"""
# Names under the root wildcard (``.test`` has a node, hop1.chain.test, so the
# wildcard does not cover it). Enough of them that both workers keep answers for this
# client (names are steered to workers by name), so both know it.
WARM = 24


@pytest.fixture(scope="module")
def nsd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    assert nsd_binary(), "nsd is installed by tests/tools/install-system-deps.sh"
    with Nsd(tmp_path_factory.mktemp("nsd"), records=RECORDS) as upstream:
        yield upstream.spec


def _ask(server: Aiwall, name: str, edns: int | bool = False) -> dns.message.Message:
    message = dns.message.make_query(name, "A", use_edns=edns, want_dnssec=edns is not False)
    host, port = server.address
    return dns.query.udp(message, host, port=port, timeout=2.0)


def test_a_known_clients_questions_are_decided_as_any_others(nsd: str, tmp_path: Path) -> None:
    banned = tmp_path / "banned.txt"
    banned.write_text("banned.example\n", encoding="utf-8")
    config = two_worker_config(nsd, tmp_path, blocking={"lists": [str(banned)]})
    with Aiwall(config, tmp_path) as server:
        server.wait_serving()
        for index in range(WARM):  # twice each: the second answer is a kept one
            for _ in range(2):
                assert _ask(server, f"warm{index}.known-warm").rcode() == dns.rcode.NOERROR
        for name in ("hop1.chain.test", "HoP1.ChAiN.TeSt"):
            for edns in (False, 0):
                reply = _ask(server, name, edns)
                assert reply.rcode() == dns.rcode.NXDOMAIN, (name, edns, reply)
                assert not reply.answer
                if edns is not False:  # the reason rides in the OPT (EDE)
                    assert "via CNAME www.banned.example" in reply.extended_errors()[0].text
        allowed = _ask(server, "NeW.KnOwN-WaRm", 0)
        assert allowed.rcode() == dns.rcode.NOERROR
        assert allowed.flags & dns.flags.RD
        assert allowed.question[0].name.to_text() == "NeW.KnOwN-WaRm."
        assert [rr.address for rrset in allowed.answer for rr in rrset] == [WILDCARD_A]
        # The client was known: the fast path gave kept answers.
        assert server.metric("aiwall_cache_hits_total") >= WARM
