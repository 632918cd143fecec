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
