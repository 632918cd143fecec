"""The HTTP API: check and stats for anyone on the management network, pause with a token."""

import json
import urllib.error
import urllib.request

import dns.rcode

from tests.support import ask

TOKEN = "s3cret-token-for-tests-0123456789"


def call(server, path: str, method: str = "GET", token: str | None = None):
    request = urllib.request.Request(
        server.http_url + path, method=method, data=b"" if method == "POST" else None
    )
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_check_gives_the_cli_explanation_per_client(start_server):
    server = start_server(
        groups=[
            {
                "name": "lab",
                "clients": ["10.1.0.0/16"],
                "catalog": {"allow": {"services": ["deepseek"]}},
            }
        ]
    )
    status, body = call(server, "/api/check?name=chat.deepseek.com&client=10.2.0.1")
    assert status == 200
    office = json.loads(body)
    assert office["decision"] == "blocked"
    assert office["service"] == "deepseek"
    assert office["vendor_country"] == "CN"
    lab = json.loads(call(server, "/api/check?name=chat.deepseek.com&client=10.1.2.3")[1])
    assert (lab["group"], lab["decision"]) == ("lab", "allowed")
    assert call(server, "/api/check?name=not..a..name")[0] == 400


def test_stats_count_blocked_attempts_by_service(start_server):
    server = start_server()
    ask(server, "chat.deepseek.com")
    ask(server, "www.example.test")
    stats = json.loads(call(server, "/api/stats")[1])
    assert stats["queries"] == 2
    assert stats["blocked_by_service"] == {"deepseek": 1}


def test_pause_needs_the_token_is_bounded_and_audited(start_server, tmp_path):
    server = start_server(api={"token": TOKEN, "max_pause_minutes": 10})
    assert call(server, "/api/pause?minutes=5", "POST")[0] == 401
    assert call(server, "/api/pause?minutes=5", "POST", token="wrong")[0] == 401
    assert call(server, "/api/pause?minutes=600", "POST", token=TOKEN)[0] == 422
    assert ask(server, "chat.deepseek.com").rcode() == dns.rcode.NXDOMAIN
    assert call(server, "/api/pause?minutes=5", "POST", token=TOKEN)[0] == 200
    assert ask(server, "chat.deepseek.com").rcode() == dns.rcode.NOERROR
    assert server.metric("aiwall_reported_queries_total", service="deepseek", action="paused") == 1
    assert call(server, "/api/pause?minutes=0", "POST", token=TOKEN)[0] == 200
    assert ask(server, "chat.deepseek.com").rcode() == dns.rcode.NXDOMAIN
    server.stop()
    import sqlite3

    actions = [
        a
        for (a,) in sqlite3.connect(tmp_path / "state" / "audit.db").execute(
            "SELECT action FROM attempts"
        )
    ]
    assert actions.count("pause") == 2
    assert "paused" in actions
