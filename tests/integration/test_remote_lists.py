"""Remote lists: conditional GET, last good copy on disk, rejected refreshes keep it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import dns.rcode
import pytest

from resolver.config import RemoteListConfig
from resolver.metrics import Metrics
from resolver.policy.remote import RemoteList
from tests.peers.listserver import ListServer
from tests.support import RunningServer, ask, make_config

PATH = "/ai.txt"


@pytest.fixture
def lists() -> Iterator[ListServer]:
    with ListServer({PATH: "ai.example.test\n"}) as server:
        yield server


def source(lists: ListServer, state: Path, metrics: Metrics, **options: float) -> RemoteList:
    return RemoteList(RemoteListConfig(url=lists.url(PATH), name="ai", **options), state, metrics)


def test_conditional_get_and_last_good_copy(lists, tmp_path):
    metrics = Metrics()
    remote = source(lists, tmp_path, metrics)
    assert remote.last_good() is None
    assert remote.refresh() is True
    assert remote.last_good().text == "ai.example.test\n"
    assert remote.refresh() is False  # unchanged: answered 304
    assert lists.requests[-1][1].get("If-None-Match")
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
    lists.lists[PATH] = "".join(f"host{i}.ai.test\n" for i in range(10))
    assert remote.refresh() is True
    if "status" in breakage:
        lists.status[PATH] = breakage["status"]
    if "body" in breakage:
        lists.lists[PATH] = breakage["body"]
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
            "remote_lists": [
                {"url": lists.url(PATH), "name": "ai", "refresh": refresh, "timeout": 1}
            ]
        },
    )
    return RunningServer(config, catalog_dir=catalog_dir).start()


def test_server_blocks_remote_names_and_picks_up_changes(upstream, catalog_dir, tmp_path, lists):
    server = start(upstream, catalog_dir, tmp_path, lists, refresh=1)
    try:
        assert ask(server, "www.ai.example.test").rcode() == dns.rcode.NXDOMAIN
        assert ask(server, "new.example.test").rcode() == dns.rcode.NOERROR
        lists.lists[PATH] = "ai.example.test\nnew.example.test\n"
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
