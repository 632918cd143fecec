"""What the first-answer path keeps from one question to the next: the parts of a block
answer made once per kind of question (``BlockAnswers._plan``), and the client's group
handed to the blocking stage. Many questions through one server, each compared with the
real pipeline's answer; and every policy change (a reload, a temporary rule running out,
a policy swapped in without the fast path being told) leaves them unused."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import dns.edns
import dns.flags
import dns.message
import pytest

from resolver.audit.attempts import AttemptBatcher
from resolver.dns import responses, wire
from resolver.dns.model import Outcome
from resolver.policy.groups import ClientGroups, Group
from tests.unit.test_plain_block import (
    ALLOWED,
    CANARY,
    CLIENTS,
    DEEPSEEK,
    LONG,
    Setup,
    _handle,
    _policy,
    ask,
    delta,
)

FLAGS = {
    "RD": dns.flags.RD,
    "none": 0,
    "RD CD": dns.flags.RD | dns.flags.CD,
    "CD": dns.flags.CD,
}
EDNS: list[dict[str, Any]] = [
    {},
    {"edns": False},
    {"want_dnssec": True},
    {"payload": 4096},
    {"want_dnssec": True, "payload": 600},
]
# Names under each kind of rule, at several depths (the SOA points at the entry's label).
ZONES = ["deepseek.com", "use-application-dns.net", "wild.example", "long.example"]


def questions() -> list[bytes]:
    """Every kind of question, each name asked once: the plans made by the first ones
    are reused by the later ones, whose flags, EDNS, depth and type differ."""
    asked = []
    kinds = itertools.product(["A", "AAAA", "TXT"], FLAGS.values(), EDNS, ZONES)
    for index, (rdtype, flags, edns, zone) in enumerate(kinds):
        depth = ".".join(f"l{index}x{level}" for level in range(index % 3 + 1))
        asked.append(ask(f"{depth}.{zone}", rdtype, flags=flags, **edns))
    return asked


@pytest.mark.parametrize("mode", list(CLIENTS))
def test_one_server_answers_every_kind_of_first_question_as_the_pipeline(
    tmp_path: Path, mode: str
) -> None:
    client = CLIENTS[mode]
    expected_setup, lane_setup = Setup(tmp_path), Setup(tmp_path)
    for setup in (expected_setup, lane_setup):
        setup.know(client)
    for data in questions():
        before = expected_setup.counts()
        expected = expected_setup.through_pipeline(data, client)
        pipeline_effects = delta(before, expected_setup.counts())
        before = lane_setup.counts()
        answer = lane_setup.fast.answer(data, client)
        if answer is None:
            # Too big for the client's buffer: the pipeline sends it truncated.
            assert dns.message.from_wire(expected).flags & dns.flags.TC
            lane_setup.through_pipeline(data, client)
            continue
        assert answer == expected
        assert delta(before, lane_setup.counts()) == pipeline_effects
    assert lane_setup.fast_audit == expected_setup.pipeline_audit
    assert len(lane_setup.fast_audit) == len(questions())


def _swapped(rules: dict[str, Any], mode: str = "nxdomain", ttl: int = 120) -> ClientGroups:
    """The test policy with ``rules`` added, every client in one group of ``mode``."""
    policy = _policy()
    for name, rule in rules.items():
        policy.names.add(wire.text_to_name(name), rule)
    answers = responses.BlockAnswers(mode, ttl, "192.0.2.7", "2001:db8::7")
    return ClientGroups(Group("swapped", policy, answers, "enforce"))


def test_a_policy_swapped_in_without_clearing_is_never_answered_from_the_old_groups(
    tmp_path: Path,
) -> None:
    """The fast path hands the blocking stage the group it knows for a client only while
    the stage's policy is the one that group came from."""
    setup = Setup(tmp_path)
    client = CLIENTS["nxdomain"]
    setup.know(client)
    # Now an exception covers chat.deepseek.com, and newly.example is banned.
    swapped = _swapped({"chat.deepseek.com": ALLOWED, "newly.example": DEEPSEEK})
    setup.pipeline.blocking.replace_groups(swapped)
    allowed = ask("chat.deepseek.com")
    assert setup.fast.answer(allowed, client) is None
    assert _handle(setup, allowed, client).outcome is Outcome.FORWARDED
    banned = ask("x.newly.example")
    assert setup.fast.answer(banned, client) is None
    assert _handle(setup, banned, client).outcome is Outcome.BLOCKED
    assert setup.fast_audit == []
    # A client learnt afterwards starts the tables again, under the new policy.
    setup.know(CLIENTS["sinkhole"])
    assert setup.fast.answer(allowed, CLIENTS["sinkhole"]) is None
    assert setup.fast.answer(ask("y.newly.example"), CLIENTS["sinkhole"]) is not None
    assert setup.fast.answer(ask("z.newly.example"), client) is None  # forgotten


def _temporary(first: ClientGroups, then: ClientGroups, until: float) -> ClientGroups:
    first.valid_until = until
    first.successor = then
    return first


@pytest.mark.parametrize("wired", [True, False])
def test_a_temporary_rule_running_out_hands_over_to_the_next_version(
    tmp_path: Path, wired: bool
) -> None:
    """``wired``: the data plane's expiry callback clears the fast path; without it, the
    policy check alone keeps the old version's group out."""
    setup = Setup(tmp_path)
    client = CLIENTS["nxdomain"]
    later = _swapped({"chat.deepseek.com": ALLOWED, "newly.example": DEEPSEEK})
    now = _temporary(_swapped({}), later, time.time() + 3600)
    blocking = setup.pipeline.blocking
    blocking.replace_groups(now)
    if wired:
        blocking.on_expiry = lambda groups: setup.fast.clear()
    setup.know(client)
    assert setup.fast.answer(ask("a.chat.deepseek.com"), client) is not None  # banned for now
    now.valid_until = time.time() - 1  # the temporary rule ran out
    allowed = ask("b.chat.deepseek.com")
    assert setup.fast.answer(allowed, client) is None
    assert blocking.groups is later
    assert _handle(setup, allowed, client).outcome is Outcome.FORWARDED
    setup.know(client)
    assert setup.fast.answer(allowed, client) is None
    newly = ask("x.newly.example")
    expected = Setup(tmp_path)
    expected.pipeline.blocking.replace_groups(later)
    assert setup.fast.answer(newly, client) == expected.through_pipeline(newly, client)


def test_a_reload_with_another_response_mode_and_ttl_makes_its_own_answers(
    tmp_path: Path,
) -> None:
    setup, expected = Setup(tmp_path), Setup(tmp_path)
    client = CLIENTS["nxdomain"]
    setup.know(client)
    first = ask("first.chat.deepseek.com")
    assert dns.message.from_wire(setup.fast.answer(first, client) or b"").rcode() == 3
    for sinkhole in (setup, expected):
        sinkhole.pipeline.blocking.replace_groups(_swapped({}, "sinkhole", 30))
        sinkhole.fast.clear()  # as the data plane does on a reload
        sinkhole.know(client)
    for name in ("second.chat.deepseek.com", "long.example", "use-application-dns.net"):
        data = ask(name)
        assert setup.fast.answer(data, client) == expected.through_pipeline(data, client)
    answer = dns.message.from_wire(setup.fast.answer(ask("third.deepseek.com"), client) or b"")
    assert answer.answer[0].ttl == 30
    assert answer.answer[0][0].address == "192.0.2.7"


def test_groups_keep_their_own_modes_when_one_client_of_each_asks_in_turn(
    tmp_path: Path,
) -> None:
    setup, expected = Setup(tmp_path), Setup(tmp_path)
    for client in CLIENTS.values():
        setup.know(client)
        expected.know(client)
    for index in range(3):
        for client in CLIENTS.values():
            data = ask(f"n{index}.chat.deepseek.com", "AAAA")
            assert setup.fast.answer(data, client) == expected.through_pipeline(data, client)


def test_rules_with_another_text_get_their_own_ede(tmp_path: Path) -> None:
    """The plan is chosen by the rule's text too: the canary's, a list's (long, cut to
    200 bytes) and a service's differ in one group."""
    setup = Setup(tmp_path)
    client = CLIENTS["nodata"]
    setup.know(client)
    texts = {}
    for name, rule in (
        ("a.deepseek.com", DEEPSEEK),
        ("use-application-dns.net", CANARY),
        ("a.long.example", LONG),
    ):
        answer = setup.fast.answer(ask(name), client)
        assert answer is not None
        options = dns.message.from_wire(answer).options
        texts[rule.description[:200]] = options[0].text
    assert texts == {text: text for text in texts}


def _counts(data: bytes, additional: int) -> bytes:
    return data[:10] + additional.to_bytes(2, "big") + data[12:]


def test_the_bytes_after_a_name_read_before_are_read_with_the_count_they_came_with(
    tmp_path: Path,
) -> None:
    """``codec.plain_question`` keeps what follows the name (type, class, OPT) by its
    bytes; the additional count they came with is part of what is kept."""
    setup = Setup(tmp_path)
    client = CLIENTS["nxdomain"]
    setup.know(client)
    with_opt, without = ask("a.deepseek.com"), ask("b.deepseek.com", edns=False)
    assert setup.fast.answer(with_opt, client) is not None
    assert setup.fast.answer(without, client) is not None
    # The same bytes after the name, the other count: not plain.
    for declined in (
        _counts(ask("c.deepseek.com"), 0),
        _counts(ask("d.deepseek.com", edns=False), 1),
    ):
        assert setup.fast.answer(declined, client) is None
    assert len(setup.fast_audit) == 2


def test_many_kinds_of_bytes_after_the_name_are_each_answered_as_the_pipeline(
    tmp_path: Path,
) -> None:
    """More kinds than are kept (the table starts again), and options too big to be kept
    (a padding option): each still read as the pipeline reads it."""
    client = CLIENTS["sinkhole"]
    expected, lane = Setup(tmp_path), Setup(tmp_path)
    expected.know(client)
    lane.know(client)
    asked = [ask(f"n{size}.deepseek.com", payload=600 + size) for size in range(300)]
    padding = dns.edns.GenericOption(dns.edns.OptionType.PADDING, b"\x00" * 80)
    asked += [ask(f"p{i}.deepseek.com", options=[padding]) for i in range(3)]
    for data in asked:
        assert lane.fast.answer(data, client) == expected.through_pipeline(data, client)


def test_a_names_first_answer_and_its_kept_answers_are_one_attempt_where_it_answers(
    tmp_path: Path,
) -> None:
    """The first answer and the kept ones record the question in the same form, so the
    answering process holds one attempt per name, not two (its cap is in attempts)."""
    setup = Setup(tmp_path)
    client = CLIENTS["nxdomain"]
    setup.know(client)
    batcher = AttemptBatcher(bounded=True)
    setup.fast._audit = batcher.record
    for ident in (1, 2, 3):
        data = ident.to_bytes(2, "big") + ask("again.deepseek.com")[2:]
        assert setup.fast.answer(data, client) is not None
    assert len(batcher) == 1
    assert batcher.count == 3
