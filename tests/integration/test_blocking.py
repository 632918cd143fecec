"""Blocking as a client sees it: the real server, a fake upstream, dnspython."""

import dns.edns
import dns.rcode
import pytest

from tests.support import ask


@pytest.mark.parametrize("rdtype", ["A", "AAAA", "HTTPS", "MX", "TXT"])
def test_catalog_names_are_blocked_for_every_type_and_never_reach_upstream(
    start_server, upstream, rdtype
):
    server = start_server()
    reply = ask(server, "chat.deepseek.com", rdtype)
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert reply.authority[0][0].minimum == 300
    (ede,) = reply.extended_errors()
    assert ede.code == dns.edns.EDECode.BLOCKED
    assert "DeepSeek" in ede.text
    assert upstream.answer_count("chat.deepseek.com") == 0


def test_without_edns_the_block_answer_has_no_opt(start_server):
    reply = ask(start_server(), "api.deepseek.com", edns=False)
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert reply.edns == -1


def test_sinkhole_mode(start_server):
    server = start_server(blocking={"response": "sinkhole", "sinkhole_ipv4": "192.0.2.53"})
    assert ask(server, "deepseek.com", "A").answer[0][0].to_text() == "192.0.2.53"
    assert ask(server, "deepseek.com", "AAAA").answer[0][0].to_text() == "::"
    mx = ask(server, "deepseek.com", "MX")
    assert mx.rcode() == dns.rcode.NOERROR
    assert not mx.answer
    # A sinkhole address does not switch browser DNS-over-HTTPS off; NXDOMAIN does.
    assert ask(server, "use-application-dns.net").rcode() == dns.rcode.NXDOMAIN


@pytest.mark.parametrize(
    ("mode", "rcode"), [("nodata", dns.rcode.NOERROR), ("refused", dns.rcode.REFUSED)]
)
def test_other_modes(start_server, mode, rcode):
    reply = ask(start_server(blocking={"response": mode}), "chat.deepseek.com")
    assert reply.rcode() == rcode
    assert not reply.answer


def test_cname_into_a_blocked_name_is_blocked(start_server, upstream):
    upstream.set_records("tracker.cloak.test", "CNAME", ["chat.deepseek.com."])
    server = start_server()
    for _ in range(2):  # from upstream, then from the cache
        reply = ask(server, "tracker.cloak.test")
        assert reply.rcode() == dns.rcode.NXDOMAIN
        assert not reply.answer
        assert "via CNAME chat.deepseek.com" in reply.extended_errors()[0].text


def test_cname_inspection_can_be_turned_off(start_server, upstream):
    upstream.set_records("tracker.cloak.test", "CNAME", ["chat.deepseek.com."])
    server = start_server(blocking={"cname_inspection": False})
    assert ask(server, "tracker.cloak.test").answer


def test_lists_allow_and_most_specific_wins(start_server, upstream, tmp_path):
    (tmp_path / "extra.txt").write_text(
        "# office additions\n0.0.0.0 chat.example.test\n||bots.test^\n*.wild.test\n"
    )
    server = start_server(
        blocking={"lists": ["extra.txt"], "allow": ["platform.deepseek.com", "ok.bots.test"]}
    )
    assert ask(server, "chat.example.test").rcode() == dns.rcode.NXDOMAIN
    assert ask(server, "x.y.bots.test").rcode() == dns.rcode.NXDOMAIN
    assert ask(server, "a.wild.test").rcode() == dns.rcode.NXDOMAIN
    # "*.name" blocks below the name, not the name itself.
    assert ask(server, "wild.test").answer
    assert ask(server, "api.ok.bots.test").answer
    assert ask(server, "platform.deepseek.com").answer
    assert ask(server, "chat.deepseek.com").rcode() == dns.rcode.NXDOMAIN


def test_blocked_counter_is_labelled_by_service(start_server):
    server = start_server()
    for _ in range(3):
        ask(server, "chat.deepseek.com")
    assert (
        server.metric("aiwall_blocked_queries_total", service="deepseek", category="chat_assistant")
        == 3
    )
