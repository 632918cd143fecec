"""The HTTP listener: metrics that move, health and readiness."""

import re
import urllib.error
import urllib.request

from tests.support import ask


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_counters_move_with_traffic(start_server):
    server = start_server()
    before = server.metric("aiwall_queries_total", protocol="udp", qtype="A")
    ask(server, "www.example.test")
    ask(server, "www.example.test")
    ask(server, "chat.deepseek.com", tcp=True)
    assert server.metric("aiwall_queries_total", protocol="udp", qtype="A") == before + 2
    assert server.metric("aiwall_queries_total", protocol="tcp", qtype="A") == 1
    assert server.metric("aiwall_responses_total", outcome="forwarded", rcode="NOERROR") == 1
    assert server.metric("aiwall_responses_total", outcome="cached", rcode="NOERROR") == 1
    assert server.metric("aiwall_cache_hits_total") == 1
    assert server.metric("aiwall_upstream_request_duration_seconds_count") == 1
    assert server.metric("aiwall_list_entries", source="catalog") == 2


def test_no_label_ever_carries_a_client_address_or_a_name(start_server):
    server = start_server()
    ask(server, "secret-project.example.test")
    text = server.metrics_text()
    assert "secret-project" not in text
    assert not re.search(r'\{[^}]*"127\.0\.0\.1"', text)


def test_health_and_readiness(start_server, upstream):
    server = start_server()
    assert get(server.http_url + "/healthz") == (200, "ok\n")
    assert get(server.http_url + "/readyz")[0] == 200
    assert get(server.http_url + "/nothing")[0] == 404


def test_not_ready_when_no_upstream_answers(start_server, upstream):
    upstream.set_silent()
    server = start_server()
    status, body = get(server.http_url + "/readyz")
    assert status == 503
    assert "upstream" in body
    # Alive all the same: a liveness probe must not restart a server whose upstream is down.
    assert get(server.http_url + "/healthz")[0] == 200


def test_counters_with_known_labels_start_at_zero(start_server, tmp_path):
    # A healthy server shows 0, not "No data", on the error panels of the dashboard.
    listed = tmp_path / "extra.txt"
    listed.write_text("listed.test\n")
    server = start_server(
        blocking={
            "lists": [str(listed)],
            "remote_lists": [{"url": "http://127.0.0.1:9/ai.txt", "name": "ai", "timeout": 0.2}],
        }
    )
    text = server.metrics_text()
    upstream = server.server.pipeline.forwarder.servers[0].label
    for reason in ("timeout", "network", "refused", "servfail"):
        assert (
            f'aiwall_upstream_errors_total{{reason="{reason}",upstream="{upstream}"}} 0.0' in text
        )
    rejected = "aiwall_upstream_rejected_responses_total"
    for reason in ("wrong_id", "wrong_question", "malformed", "truncated"):
        assert f'{rejected}{{reason="{reason}",upstream="{upstream}"}} 0.0' in text
    for reason in ("shrink", "parse", "http_status", "too_large", "timeout"):
        assert f'aiwall_list_refresh_failures_total{{reason="{reason}",source="remote:ai"}}' in text
    for reason in ("shrink", "parse", "unreadable"):
        assert (
            f'aiwall_list_refresh_failures_total{{reason="{reason}",source="list:extra.txt"}} 0.0'
            in text
        )


def test_a_ttl_with_the_top_bit_set_is_relayed_as_zero_and_not_cached(start_server, upstream):
    # RFC 2181 8: such a TTL means 0, on the first answer as on any other.
    upstream.set_records("huge-ttl.example.test", "A", ["192.0.2.9"], ttl=2**31 + 5)
    server = start_server()
    first = ask(server, "huge-ttl.example.test")
    assert [rrset.ttl for rrset in first.answer] == [0]
    second = ask(server, "huge-ttl.example.test")
    assert [rrset.ttl for rrset in second.answer] == [0]
    assert upstream.answer_count("huge-ttl.example.test") == 2
