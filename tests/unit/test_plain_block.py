"""A banned name's first answer without the pipeline (``FastPath._first_block``): for a
plain query, the same bytes and the same effects as the pipeline's answer, in every
response mode; anything else is left to the pipeline (no sockets).

Each case asks the real pipeline (``build_pipeline``) first, then the fast path with the
client known, and compares the two: answer bytes, counters, audit records."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.rdatatype
import pytest

from resolver.audit.attempts import QUESTION, settled
from resolver.config import ClientNetwork, config_from_mapping
from resolver.dns import responses, wire
from resolver.dns.codec import encode_answer, parse_query, plain_query
from resolver.dns.model import Answer, Outcome
from resolver.metrics import Metrics
from resolver.pipeline import Pipeline, build_pipeline
from resolver.policy.blocklist import Blocklist
from resolver.policy.domainset import DomainSet
from resolver.policy.groups import ClientGroups, Group
from resolver.policy.rules import Rule
from resolver.serve.fastpath import FastPath
from tests.unit.handler_support import FakeNext

DEEPSEEK = Rule("block", "catalog", "deepseek", "chat_assistant", "DeepSeek (CN)")
CANARY = Rule("canary", "catalog", "canary", "doh_canary", "browser DoH canary")
ALLOWED = Rule("allow", "config", "config", "custom", "allowed")
REPORTED = Rule("report", "config", "config", "custom", "report only")
LONG = Rule("block", "list:long.txt", "long.txt", "custom", "x" * 300)

# Clients by response mode; 10.0.0.9 is in a report-only group.
CLIENTS = {"nxdomain": "10.0.0.1", "nodata": "10.0.0.2", "sinkhole": "10.0.0.3"}
CLIENTS["refused"] = "10.0.0.4"
REPORT_CLIENT = "10.0.0.9"


def _policy() -> Blocklist:
    names = Blocklist()
    for name, rule in {
        "deepseek.com": DEEPSEEK,
        "use-application-dns.net": CANARY,
        "ok.deepseek.com": ALLOWED,
        "watched.example": REPORTED,
        "long.example": LONG,
        # Names stages before blocking answer themselves: listed, so only the fast
        # path's reserved names keep it from answering them.
        "resolver.arpa": DEEPSEEK,
        "aiwall": DEEPSEEK,
    }.items():
        names.names.add(wire.text_to_name(name), rule)
    names.names.add(wire.text_to_name("wild.example"), DEEPSEEK, below_only=True)
    return names


def _groups() -> ClientGroups:
    policy = _policy()

    def group(name: str, mode: str, group_mode: str = "enforce") -> Group:
        return Group(name, policy, responses.BlockAnswers(mode, 120, "0.0.0.0", "::"), group_mode)

    by_mode = [((network(client),), group(mode, mode)) for mode, client in CLIENTS.items()] + [
        ((network(REPORT_CLIENT),), group("watch", "nxdomain", "report"))
    ]
    return ClientGroups(group("default", "nxdomain"), by_mode)


def network(address: str) -> ClientNetwork:
    return ClientNetwork.parse(address + "/32")


class Setup:
    def __init__(self, tmp_path: Path, rpz: bool = False) -> None:
        raw: dict[str, Any] = {
            "listen": {"dns": ["127.0.0.1:0"]},
            "upstream": {"servers": ["127.0.0.1:9"]},
            "access": {"allow": ["10.0.0.0/8", "127.0.0.0/8"]},
        }
        self.metrics = Metrics()
        self.pipeline_audit: list[tuple[Any, ...]] = []
        self.fast_audit: list[tuple[Any, ...]] = []
        config = config_from_mapping(raw, base_dir=tmp_path)
        self.pipeline: Pipeline = build_pipeline(
            config, _groups(), self.metrics, attempts=self._pipeline_attempt
        )
        blocking = self.pipeline.blocking
        self.fast = FastPath(
            self.metrics,
            lambda client: blocking.current().group_for(client),
            # As the writer process reads it: a question as it came becomes a name.
            lambda *row: self.fast_audit.append(settled(row) if row[3] == QUESTION else row),
        )
        self.fast.blocker = blocking
        self.fast.reserved = self.pipeline.ddr.names + ((b"\x03rpz\x06aiwall\x00",) if rpz else ())

    def _pipeline_attempt(self, query: Any, group: str, *rest: str) -> None:
        self.pipeline_audit.append((query.client, group, query.qname, query.qtype, *rest))

    def through_pipeline(self, data: bytes, client: str) -> bytes:
        query = parse_query(data, "udp", client)
        assert query is not None
        answer = self.pipeline.head.handle(query)
        assert isinstance(answer, Answer)
        sent = encode_answer(query, answer, udp=True)
        self.fast.keep(query, answer, sent)
        return sent

    def know(self, client: str) -> None:
        """The client's first question takes the pipeline, as on the wire."""
        self.through_pipeline(ask("first.deepseek.com"), client)
        self.pipeline_audit.clear()

    def know_by_a_cached_answer(self, client: str) -> None:
        """A client the table knows from a cached answer (as the cache would give it)."""
        query = parse_query(ask("cached.example"), "udp", client)
        assert query is not None
        answer = responses.error(query, wire.NOERROR, Outcome.CACHED)
        answer.reuse_until = math.inf
        self.fast.keep(query, answer, encode_answer(query, answer, udp=True))

    def counts(self) -> dict[str, dict[Any, int]]:
        m = self.metrics
        return {
            "queries": dict(m.queries.counts),
            "responses": dict(m.responses.counts),
            "blocked": dict(m.blocked.counts),
            "cache_hits": dict(m.cache_hits.counts),
        }


def ask(name: str, rdtype: str = "A", **kw: Any) -> bytes:
    edns = kw.pop("edns", 0)
    message = dns.message.make_query(name, dns.rdatatype.from_text(rdtype), use_edns=edns, **kw)
    message.id = 0x1234
    return message.to_wire()


def delta(before: dict[str, dict[Any, int]], after: dict[str, dict[Any, int]]) -> dict[str, Any]:
    return {
        kind: {
            k: v - before[kind].get(k, 0)
            for k, v in after[kind].items()
            if v != before[kind].get(k, 0)
        }
        for kind in after
    }


CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("Chat.DeepSeek.com", "A", {}),
    ("deepseek.com", "AAAA", {}),
    ("a.b.c.deepseek.com", "MX", {}),
    ("chat.deepseek.com", "TXT", {"edns": False}),
    ("chat.deepseek.com", "ANY", {}),
    ("chat.deepseek.com", "HTTPS", {"want_dnssec": True}),
    ("chat.deepseek.com", "A", {"payload": 4096}),
    ("chat.deepseek.com", "AAAA", {"payload": 100}),
    ("chat.deepseek.com", "A", {"flags": dns.flags.RD | dns.flags.CD | dns.flags.AD}),
    ("chat.deepseek.com", "A", {"flags": 0}),
    ("use-application-dns.net", "A", {}),
    ("x.wild.example", "A", {}),
    ("long.example", "A", {}),
    ("long.example", "TXT", {"edns": False}),
]


@pytest.mark.parametrize("mode", list(CLIENTS))
@pytest.mark.parametrize(("name", "rdtype", "kw"), CASES)
def test_a_plain_first_question_gets_the_pipelines_bytes_and_effects(
    tmp_path: Path, mode: str, name: str, rdtype: str, kw: dict[str, Any]
) -> None:
    client = CLIENTS[mode]
    expected_setup, lane_setup = Setup(tmp_path), Setup(tmp_path)
    data = ask(name, rdtype, **kw)
    for setup in (expected_setup, lane_setup):
        setup.know(client)
    before = expected_setup.counts()
    expected = expected_setup.through_pipeline(data, client)
    pipeline_effects = delta(before, expected_setup.counts())

    before = lane_setup.counts()
    hits = lane_setup.fast.hits
    answer = lane_setup.fast.answer(data, client)
    assert answer == expected
    assert lane_setup.fast.hits == hits + 1
    assert delta(before, lane_setup.counts()) == pipeline_effects
    assert lane_setup.fast_audit == expected_setup.pipeline_audit
    # Asked again: the answer kept, the same bytes with the new ID.
    again = b"\x43\x21" + data[2:]
    assert lane_setup.fast.answer(again, client) == b"\x43\x21" + expected[2:]


def test_an_answer_too_big_for_the_clients_buffer_is_left_to_the_pipeline(tmp_path: Path) -> None:
    setup = Setup(tmp_path)
    setup.know(CLIENTS["nxdomain"])
    # 512 bytes advertised: the 200-byte EDE text with a long name does not fit.
    name = ".".join(["a" * 60] * 3 + ["b" * 40]) + ".long.example"
    data = ask(name, "A", payload=512)
    assert setup.fast.answer(data, CLIENTS["nxdomain"]) is None
    sent = setup.through_pipeline(data, CLIENTS["nxdomain"])
    assert dns.message.from_wire(sent).flags & dns.flags.TC


def _with(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value) :]


PLAIN = ask("chat.deepseek.com")
NAME_END = 12 + len(b"\x04chat\x08deepseek\x03com\x00")
DECLINED: dict[str, Callable[[], bytes]] = {
    "a response": lambda: _with(PLAIN, 2, b"\x81\x00"),
    "opcode NOTIFY": lambda: _with(PLAIN, 2, b"\x21\x00"),
    "two questions": lambda: _with(PLAIN, 4, b"\x00\x02"),
    "an answer record": lambda: _with(PLAIN, 6, b"\x00\x01"),
    "two additional records": lambda: _with(PLAIN, 10, b"\x00\x02"),
    "EDNS version 1": lambda: _with(PLAIN, NAME_END + 4 + 6, b"\x01"),
    "class CHAOS": lambda: _with(PLAIN, NAME_END + 2, b"\x00\x03"),
    "type AXFR": lambda: ask("chat.deepseek.com", "AXFR"),
    "type IXFR": lambda: ask("chat.deepseek.com", "IXFR"),
    "type OPT": lambda: _with(PLAIN, NAME_END, b"\x00\x29"),
    "bytes after the OPT": lambda: PLAIN + b"\x00",
    "bytes after the question": lambda: ask("chat.deepseek.com", edns=False) + b"\x00",
    "a cut question": lambda: ask("chat.deepseek.com", edns=False)[:-1],
    "a compression pointer": lambda: PLAIN[:12] + b"\xc0\x0c" + PLAIN[NAME_END:],
    "an allowed name": lambda: ask("ok.deepseek.com"),
    "an unlisted name": lambda: ask("example.org"),
    "a reported name": lambda: ask("watched.example"),
    "the wildcard's own name": lambda: ask("wild.example"),
    "DDR's name": lambda: ask("_dns.resolver.arpa", "SVCB"),
    "a name under resolver.arpa": lambda: ask("deepseek.com.resolver.arpa"),
}


@pytest.mark.parametrize("case", list(DECLINED))
def test_anything_but_a_plain_question_to_block_takes_the_pipeline(
    tmp_path: Path, case: str
) -> None:
    setup = Setup(tmp_path)
    setup.know(CLIENTS["nxdomain"])
    before = setup.counts()
    assert setup.fast.answer(DECLINED[case](), CLIENTS["nxdomain"]) is None
    assert setup.counts() == before
    assert setup.fast_audit == []


def test_names_under_an_rpz_zone_served_take_the_pipeline(tmp_path: Path) -> None:
    setup = Setup(tmp_path, rpz=True)
    setup.know(CLIENTS["nxdomain"])
    assert setup.fast.answer(ask("deepseek.com.rpz.aiwall"), CLIENTS["nxdomain"]) is None


def test_a_report_only_group_an_unknown_client_or_a_pause_takes_the_pipeline(
    tmp_path: Path,
) -> None:
    setup = Setup(tmp_path)
    setup.know_by_a_cached_answer(REPORT_CLIENT)
    assert setup.fast.answer(ask("chat.deepseek.com"), REPORT_CLIENT) is None
    assert setup.fast.answer(ask("chat.deepseek.com"), "10.9.9.9") is None  # never seen
    setup.know(CLIENTS["nxdomain"])
    setup.pipeline.blocking.pause(60)
    setup.fast.clear()  # as the data plane does on a pause
    setup.know_by_a_cached_answer(CLIENTS["nxdomain"])
    assert setup.fast.answer(ask("chat.deepseek.com"), CLIENTS["nxdomain"]) is None


def test_without_a_blocking_stage_nothing_is_answered_first_time(tmp_path: Path) -> None:
    setup = Setup(tmp_path)
    setup.know(CLIENTS["nxdomain"])
    setup.fast.blocker = None
    assert setup.fast.answer(ask("chat.deepseek.com"), CLIENTS["nxdomain"]) is None


def test_a_kept_first_answer_never_outlives_a_temporary_rule(tmp_path: Path) -> None:
    """The kept answer's deadline is the policy's next change (``reuse_cap``)."""
    setup = Setup(tmp_path)
    setup.know(CLIENTS["nxdomain"])
    blocking = setup.pipeline.blocking
    blocking._reuse_cap = 0.0  # the policy changes now
    data = ask("chat.deepseek.com")
    assert setup.fast.answer(data, CLIENTS["nxdomain"]) is not None
    assert setup.fast.answer(b"\x00\x01" + data[2:], CLIENTS["nxdomain"]) is None


def _handle(setup: Setup, data: bytes, client: str) -> Answer:
    """The pipeline's blocking stage on ``data`` (the same bytes object), with a fake next
    stage that answers at once (no upstream)."""
    query = parse_query(data, "udp", client)
    assert query is not None
    setup.pipeline.blocking._next = FakeNext()
    result = setup.pipeline.blocking.handle(query)
    assert isinstance(result, Answer)
    return result


def counting_matches(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    seen: list[bytes] = []
    find = DomainSet.find

    def counted(self: DomainSet[Rule], qname: bytes, labels: tuple[int, ...]) -> Any:
        seen.append(qname)
        return find(self, qname, labels)

    monkeypatch.setattr(DomainSet, "find", counted)
    return seen


def test_a_name_left_to_the_pipeline_is_looked_up_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = Setup(tmp_path)
    client = CLIENTS["nxdomain"]
    setup.know(client)
    seen = counting_matches(setup, monkeypatch)
    data = ask("ok.deepseek.com")  # allowed: the pipeline forwards it
    assert setup.fast.answer(data, client) is None
    assert _handle(setup, data, client).outcome is Outcome.FORWARDED
    assert seen == [b"\x02ok\x08deepseek\x03com\x00"]
    # Another datagram with the same bytes is another question: looked up again.
    assert _handle(setup, bytes(bytearray(data)), client).outcome is Outcome.FORWARDED
    assert len(seen) == 2


def test_a_lookup_kept_for_the_pipeline_never_outlives_a_policy_change(tmp_path: Path) -> None:
    setup = Setup(tmp_path)
    client = CLIENTS["nxdomain"]
    setup.know(client)
    data = ask("ok.deepseek.com")
    assert setup.fast.answer(data, client) is None  # allowed, for now
    banned = _policy()
    banned.names.add(wire.text_to_name("ok.deepseek.com"), DEEPSEEK)
    groups = _groups()
    for group in groups.all:
        group.blocklist = banned
    setup.pipeline.blocking.replace_groups(groups)
    answer = _handle(setup, data, client)
    assert answer is not None
    assert (
        dns.message.from_wire(encode_answer(parse_query(data, "udp", client), answer, True)).rcode()
        == 3
    )  # type: ignore[arg-type]


def test_a_plain_question_left_to_the_pipeline_is_handed_over_once_for_that_datagram(
    tmp_path: Path,
) -> None:
    setup = Setup(tmp_path)
    client = CLIENTS["nxdomain"]
    setup.know(client)
    data = ask("Allowed.Example", "AAAA", want_dnssec=True)
    assert setup.fast.answer(data, client) is None  # not blocked: the pipeline's
    # Another datagram of the same bytes gets nothing: it was not read.
    assert setup.fast.take_question(bytes(bytearray(data))) is None
    assert setup.fast.answer(data, client) is None
    question = setup.fast.take_question(data)
    assert question is not None
    assert plain_query(data, "udp", client, question) == parse_query(data, "udp", client)
    assert setup.fast.take_question(data) is None  # once
