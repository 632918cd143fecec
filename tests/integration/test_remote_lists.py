"""Remote lists: conditional GET, last good copy on disk, rejected refreshes keep it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dns.rcode
import pytest

from resolver.config import RemoteListConfig
from resolver.metrics import Metrics
from resolver.policy.remote import RemoteList
from tests.support import RunningServer, ask, make_config


class ListServer:
    """A loopback HTTP server publishing one list, with ETag and 304 support."""

    def __init__(self) -> None:
        self.body = "ai.example.test\n"
        self.status = 200
        self.requests: list[dict[str, str]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests.append(dict(self.headers))
                etag = f'"{hash(owner.body) & 0xFFFFFFFF:x}"'
                if owner.status != 200:
                    self.send_error(owner.status)
                    return
                if self.headers.get("If-None-Match") == etag:
                    self.send_response(304)
                    self.end_headers()
                    return
                data = owner.body.encode()
                self.send_response(200)
                self.send_header("ETag", etag)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/ai.txt"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def lists() -> Iterator[ListServer]:
    server = ListServer()
    yield server
    server.stop()


def source(lists: ListServer, state: Path, metrics: Metrics, **options: float) -> RemoteList:
    return RemoteList(RemoteListConfig(url=lists.url, name="ai", **options), state, metrics)


def test_conditional_get_and_last_good_copy(lists, tmp_path):
    metrics = Metrics()
    remote = source(lists, tmp_path, metrics)
    assert remote.last_good() is None
    assert remote.refresh() is True
    assert remote.last_good().text == "ai.example.test\n"
    assert remote.refresh() is False  # unchanged: answered 304
    assert lists.requests[-1].get("If-None-Match")
    assert metrics.registry.get_sample_value(
        "aiwall_list_last_success_timestamp_seconds", {"source": "remote:ai"}
    ) == pytest.approx(time.time(), abs=5)


@pytest.mark.parametrize(
    ("breakage", "reason"),
    [
        ({"status": 500}, "http_status"),
        ({"body": "<html><body>Service unavailable</body></html>\n"}, "parse"),
        ({"body": "only.one.test\n"}, "shrink"),
    ],
)
def test_a_bad_refresh_is_rejected_and_the_last_good_copy_kept(lists, tmp_path, breakage, reason):
    metrics = Metrics()
    remote = source(lists, tmp_path, metrics)
    lists.body = "".join(f"host{i}.ai.test\n" for i in range(10))
    assert remote.refresh() is True
    for key, value in breakage.items():
        setattr(lists, key, value)
    assert remote.refresh() is False
    assert remote.last_good().entries == 10
    assert (
        metrics.registry.get_sample_value(
            "aiwall_list_refresh_failures_total", {"source": "remote:ai", "reason": reason}
        )
        == 1
    )


def test_an_unreachable_server_keeps_the_copy(lists, tmp_path):
    metrics = Metrics()
    remote = source(lists, tmp_path, metrics, timeout=1)
    remote.refresh()
    lists.stop()
    assert remote.refresh() is False
    assert remote.last_good().text == "ai.example.test\n"
    assert (
        metrics.registry.get_sample_value(
            "aiwall_list_refresh_failures_total", {"source": "remote:ai", "reason": "network"}
        )
        == 1
    )


def start(upstream, catalog_dir, tmp_path, lists, refresh: float = 3600) -> RunningServer:
    config = make_config(
        upstream.server_spec,
        base_dir=tmp_path,
        blocking={
            "remote_lists": [{"url": lists.url, "name": "ai", "refresh": refresh, "timeout": 1}]
        },
    )
    return RunningServer(config, catalog_dir=catalog_dir).start()


def test_server_blocks_remote_names_and_picks_up_changes(upstream, catalog_dir, tmp_path, lists):
    server = start(upstream, catalog_dir, tmp_path, lists, refresh=1)
    try:
        assert ask(server, "www.ai.example.test").rcode() == dns.rcode.NXDOMAIN
        assert ask(server, "new.example.test").rcode() == dns.rcode.NOERROR
        lists.body = "ai.example.test\nnew.example.test\n"
        deadline = time.monotonic() + 5
        while ask(server, "x.new.example.test").rcode() != dns.rcode.NXDOMAIN:
            assert time.monotonic() < deadline, "the refreshed list was not applied"
            time.sleep(0.2)
        assert server.metric("aiwall_list_entries", source="remote:ai") == 2
    finally:
        server.stop()


def test_restart_with_the_list_server_down_still_blocks(upstream, catalog_dir, tmp_path, lists):
    first = start(upstream, catalog_dir, tmp_path, lists)
    first.stop()
    lists.stop()
    # The download fails now; the copy on disk is loaded before the ports open.
    second = start(upstream, catalog_dir, tmp_path, lists)
    try:
        assert ask(second, "ai.example.test").rcode() == dns.rcode.NXDOMAIN
    finally:
        second.stop()
