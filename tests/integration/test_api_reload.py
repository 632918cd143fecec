"""POST /api/reload: only with the configured bearer token; the token is rotatable."""

from __future__ import annotations

import socket

import dns.rcode
import pytest
import yaml

from resolver.config import Config
from tests.support import ask

TOKEN = "test-token-0123456789abcdef"


def test_the_http_listener_is_on_loopback_by_default():
    http = Config().listen.http
    assert http is not None
    assert http.host == "127.0.0.1"


def test_reload_is_disabled_without_a_token(start_server):
    server = start_server()
    status, body = server.post("/api/reload", token="anything-at-all-0123")
    assert status == 403
    assert "api.token" in body
    assert server.metric("aiwall_reloads_total", result="success") == 0


@pytest.mark.parametrize("token", [None, "wrong-token-0123456789abcde", TOKEN[:-1], ""])
def test_reload_without_the_right_token_is_unauthorized(start_server, token):
    server = start_server(api={"token": TOKEN})
    status, _ = server.post("/api/reload", token=token)
    assert status == 401
    assert server.metric("aiwall_reloads_total", result="success") == 0


def test_a_401_names_the_scheme(start_server):
    server = start_server(api={"token": TOKEN})
    endpoint = server.server.http_endpoint
    with socket.create_connection((endpoint.host, endpoint.port), timeout=5) as sock:
        sock.sendall(b"POST /api/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        head = sock.recv(4096).decode()
    assert head.startswith("HTTP/1.1 401")
    assert 'WWW-Authenticate: Bearer realm="aiwall"' in head


def test_reload_with_the_token_applies_a_changed_list(start_server, tmp_path):
    extra = tmp_path / "extra.txt"
    extra.write_text("first.test\n")
    server = start_server(api={"token": TOKEN}, blocking={"lists": [str(extra)]})
    assert ask(server, "second.test").rcode() == dns.rcode.NOERROR
    extra.write_text("first.test\nsecond.test\n")
    status, body = server.post("/api/reload", token=TOKEN)
    assert (status, body.split(":")[0]) == (200, "reloaded")
    assert ask(server, "second.test").rcode() == dns.rcode.NXDOMAIN
    assert server.metric("aiwall_reloads_total", result="success") == 1


def test_a_rejected_reload_answers_422_with_the_reason(start_server, tmp_path):
    extra = tmp_path / "extra.txt"
    extra.write_text("first.test\n")
    server = start_server(api={"token": TOKEN}, blocking={"lists": [str(extra)]})
    extra.write_text("/^regex-only$/\n")
    status, body = server.post("/api/reload", token=TOKEN)
    assert status == 422
    assert body.startswith("reload rejected: ")
    assert "extra.txt" in body
    assert ask(server, "first.test").rcode() == dns.rcode.NXDOMAIN
    assert server.metric("aiwall_reloads_total", result="rejected") == 1


def test_reload_only_by_post(start_server):
    server = start_server(api={"token": TOKEN})
    endpoint = server.server.http_endpoint
    with socket.create_connection((endpoint.host, endpoint.port), timeout=5) as sock:
        sock.sendall(b"GET /api/reload HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 405")


def test_a_request_body_is_bounded(start_server):
    server = start_server(api={"token": TOKEN})
    status, _ = server.post("/api/reload", token=TOKEN, body=b"x" * 100_000)
    assert status == 413
    assert server.metric("aiwall_reloads_total", result="success") == 0


def test_token_file_and_rotation_on_reload(start_from_file, tmp_path):
    token_file = tmp_path / "api.token"
    token_file.write_text(TOKEN + "\n")
    server, config_path = start_from_file(api={"token_file": str(token_file)})
    assert server.post("/api/reload", token=TOKEN)[0] == 200
    rotated = "rotated-token-abcdefghijklmnop"
    token_file.write_text(rotated + "\n")
    assert server.post("/api/reload", token=TOKEN)[0] == 200  # the reload that reads it
    assert server.post("/api/reload", token=TOKEN)[0] == 401
    assert server.post("/api/reload", token=rotated)[0] == 200
    # A token file gone bad is a rejected reload; the token in force stays.
    token_file.write_text("short\n")
    status, body = server.post("/api/reload", token=rotated)
    assert status == 422
    assert "api.token_file" in body
    assert server.post("/api/reload", token=TOKEN)[0] == 401
    assert yaml.safe_load(config_path.read_text())["api"]["token_file"] == str(token_file)
