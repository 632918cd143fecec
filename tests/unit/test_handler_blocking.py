import dns.edns
import dns.rcode
import dns.rdatatype
import pytest

from resolver.dns import responses, wire
from resolver.dns.model import Answer, Outcome
from resolver.handlers.blocking import BlockingHandler
from resolver.policy.blocklist import Blocklist
from resolver.policy.groups import ClientGroups, Group
from resolver.policy.rules import Rule
from tests.unit.handler_support import FakeNext, decode, make_query, resolve

DEEPSEEK = Rule(
    "block", "catalog", "deepseek", "chat_assistant", "DeepSeek (Hangzhou DeepSeek, CN)"
)


def blocklist(entries: dict[str, Rule] | None = None) -> Blocklist:
    result = Blocklist()
    for name, rule in (entries or {}).items():
        result.names.add(wire.text_to_name(name), rule)
    return result


def groups_of(policy: Blocklist, mode: str = "nxdomain", group_mode: str = "enforce"):
    answers = responses.BlockAnswers(mode, 120, "0.0.0.0", "::")
    return ClientGroups(Group("default", policy, answers, group_mode))


def handler(policy: Blocklist, mode: str = "nxdomain", following: FakeNext | None = None):
    following = following or FakeNext()
    return BlockingHandler(groups_of(policy, mode), following), following


@pytest.mark.parametrize("rdtype", ["A", "AAAA", "HTTPS", "SVCB", "MX", "TXT", "ANY", "CNAME"])
def test_every_query_type_of_a_blocked_name_is_answered_here(rdtype):
    block, following = handler(blocklist({"deepseek.com": DEEPSEEK}))
    query = make_query("Chat.DeepSeek.com", rdtype)
    answer = block.handle(query)
    assert following.seen == []
    assert isinstance(answer, Answer)
    assert answer.outcome is Outcome.BLOCKED
    assert (answer.service, answer.category) == ("deepseek", "chat_assistant")
    reply = decode(query, answer)
    assert reply.rcode() == dns.rcode.NXDOMAIN
    soa = reply.authority[0]
    # The SOA is owned by the matched entry and its MINIMUM is the block TTL (RFC 2308).
    assert soa.name.to_text() == "DeepSeek.com."
    assert soa.ttl == 120
    assert soa[0].minimum == 120
    (ede,) = reply.extended_errors()
    assert ede.code == dns.edns.EDECode.BLOCKED
    assert "DeepSeek" in ede.text


def test_unlisted_names_and_siblings_go_on():
    block, following = handler(blocklist({"deepseek.com": DEEPSEEK}))
    block.handle(make_query("notdeepseek.com"))
    block.handle(make_query("deepseek.com.evil.test"))
    assert len(following.seen) == 2


def test_sinkhole_mode_answers_addresses_and_nodata_for_other_types():
    block, _ = handler(blocklist({"deepseek.com": DEEPSEEK}), mode="sinkhole")
    a = make_query("chat.deepseek.com", "A")
    aaaa = make_query("chat.deepseek.com", "AAAA")
    mx = make_query("chat.deepseek.com", "MX")
    assert decode(a, block.handle(a)).answer[0][0].to_text() == "0.0.0.0"
    assert decode(aaaa, block.handle(aaaa)).answer[0][0].to_text() == "::"
    reply = decode(mx, block.handle(mx))
    assert reply.rcode() == dns.rcode.NOERROR
    assert not reply.answer
    assert reply.authority


def test_canaries_get_nxdomain_even_in_sinkhole_mode():
    canary = Rule("canary", "config", "canary", "bypass", "browser DNS-over-HTTPS canary")
    block, _ = handler(blocklist({"use-application-dns.net": canary}), mode="sinkhole")
    query = make_query("use-application-dns.net")
    assert decode(query, block.handle(query)).rcode() == dns.rcode.NXDOMAIN


def test_allow_entry_more_specific_than_the_block_wins():
    allow = Rule("allow", "config", "allow", "allowlist", "allow list")
    block, following = handler(
        blocklist({"deepseek.com": DEEPSEEK, "platform.deepseek.com": allow})
    )
    block.handle(make_query("api.platform.deepseek.com"))
    assert len(following.seen) == 1
    query = make_query("chat.deepseek.com")
    assert block.handle(query).outcome is Outcome.BLOCKED


def upstream_answer_with_cname(query, target: str) -> Answer:
    answer = responses.error(query, wire.NOERROR, Outcome.FORWARDED)
    answer.cnames = (wire.text_to_name(target),)
    return answer


@pytest.mark.parametrize("delayed", [False, True])
def test_an_answer_whose_cname_leads_to_a_blocked_name_is_blocked(delayed):
    query = make_query("tracker.cloak.test")
    following = FakeNext(
        delayed=delayed, answer=upstream_answer_with_cname(query, "chat.deepseek.com")
    )
    block, _ = handler(blocklist({"deepseek.com": DEEPSEEK}), following=following)
    answer = resolve(block.handle(query))
    assert answer.outcome is Outcome.BLOCKED
    reply = decode(query, answer)
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert "via CNAME chat.deepseek.com" in reply.extended_errors()[0].text


def test_cname_to_an_unlisted_name_is_relayed_untouched():
    query = make_query("www.example.test")
    relayed = upstream_answer_with_cname(query, "cdn.example.net")
    block, _ = handler(blocklist({"deepseek.com": DEEPSEEK}), following=FakeNext(answer=relayed))
    assert block.handle(query) is relayed


def test_replacing_the_blocklist_takes_effect_for_the_next_query():
    block, following = handler(blocklist())
    block.handle(make_query("chat.deepseek.com"))
    block.replace_groups(groups_of(blocklist({"deepseek.com": DEEPSEEK})))
    assert block.handle(make_query("chat.deepseek.com")).outcome is Outcome.BLOCKED
    assert len(following.seen) == 1


def test_sinkhole_types_are_exactly_a_and_aaaa():
    block, _ = handler(blocklist({"deepseek.com": DEEPSEEK}), mode="sinkhole")
    query = make_query("deepseek.com", "HTTPS")
    reply = decode(query, block.handle(query))
    assert not reply.answer
    assert reply.authority[0].rdtype == dns.rdatatype.SOA
