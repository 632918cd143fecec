"""The signed catalog feed (issue 14, part 2), as an attacker who controls the mirror
would try it: a bundle signed by the configured key is verified and applied; a tampered,
unsigned, wrongly signed, rolled-back, replayed or shrunken one is rejected (counted by
reason, logged), and the last good bundle's policy keeps blocking, across a restart
with the mirror down too. In one process and in a server of two workers."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import dns.rcode
import pytest

from tests.peers.aiwall import Aiwall, query, two_worker_config
from tests.peers.catalogfeed import BUNDLE_PATH, FeedServer, Publisher
from tests.peers.wait import wait_until
from tests.support import ask

LABEL = "mirror"
# The shipped catalog of these tests (conftest's catalog_dir) has DeepSeek only.
FIRST = {
    "deepseek": ["deepseek.com", "api.deepseek.com"],
    "newai": ["newai.example", "api.newai.example"],
    "alpha": ["alpha-ai.example"],
    "beta": ["beta-ai.example"],
    "gamma": ["gamma-ai.example"],
}
LATER = {**FIRST, "otherai": ["otherai.example"]}


@pytest.fixture
def publisher(tmp_path) -> Publisher:
    return Publisher(tmp_path / "publisher")


@pytest.fixture
def mirror() -> Iterator[FeedServer]:
    with FeedServer() as server:
        yield server


def catalog_section(mirror: FeedServer, publisher: Publisher) -> dict[str, object]:
    source = {
        "url": mirror.bundle_url,
        "public_key": publisher.public_key,
        "name": LABEL,
        "refresh": 1,
        "timeout": 2,
    }
    return {"sources": [source]}


def blocked(rcode: int) -> bool:
    return rcode == dns.rcode.NXDOMAIN


def failures(server, reason: str) -> float:
    return float(
        server.metric("aiwall_catalog_refresh_failures_total", source=LABEL, reason=reason)
    )


def test_a_signed_bundle_is_applied_and_every_bad_one_rejected(
    start_server, publisher, mirror, tmp_path, caplog
):
    mirror.serve(*publisher.build(FIRST, serial=100))
    server = start_server(catalog=catalog_section(mirror, publisher))
    # Fetched and verified before the ports opened: no moment without it.
    assert blocked(ask(server, "chat.newai.example").rcode())
    assert blocked(ask(server, "deepseek.com").rcode())
    assert server.metric("aiwall_catalog_serial", source=LABEL) == 100
    assert ask(server, "otherai.example").rcode() == dns.rcode.NOERROR

    good, signature = publisher.build(FIRST, serial=101)
    tampered = good.replace('"serial": 101', '"serial": 900')
    assert tampered != good
    other_key = Publisher(tmp_path / "impostor")
    cases = [
        # The content changed after signing (here: its serial).
        ("tampered", (tampered, signature), "signature"),
        ("unsigned", (good, None), "unsigned"),
        ("signed by another key", other_key.build(FIRST, serial=102), "signature"),
        ("not a signature", (good, "c2lnbmF0dXJl\n"), "signature"),
        ("rolled back", publisher.build(FIRST, serial=50), "rollback"),
        ("same serial, other content", publisher.build(LATER, serial=100), "rollback"),
        ("shrunken", publisher.build({"deepseek": FIRST["deepseek"]}, serial=103), "shrink"),
    ]
    for what, served, reason in cases:
        before = failures(server, reason)
        mirror.serve(*served)
        # Twice: a refresh in flight while the files were swapped may have mixed them.
        wait_until(
            lambda reason=reason, before=before: failures(server, reason) >= before + 2,
            what=f"the {what} bundle to be rejected as {reason}",
        )
        assert blocked(ask(server, "chat.newai.example").rcode()), what
        assert blocked(ask(server, "alpha-ai.example").rcode()), what
        assert ask(server, "otherai.example").rcode() == dns.rcode.NOERROR, what
        assert server.metric("aiwall_catalog_serial", source=LABEL) == 100, what
        assert f"catalog {LABEL}: refresh rejected ({reason}), keeping bundle 100" in caplog.text

    # The feed still works: a newer, good bundle goes through.
    mirror.serve(*publisher.build(LATER, serial=104))
    wait_until(lambda: blocked(ask(server, "otherai.example").rcode()), what="bundle 104")
    assert server.metric("aiwall_catalog_serial", source=LABEL) == 104
    assert blocked(ask(server, "chat.newai.example").rcode())


def test_a_restart_with_the_mirror_down_keeps_the_last_good_bundle(
    start_server, publisher, mirror, caplog
):
    caplog.set_level(logging.INFO)
    mirror.serve(*publisher.build(FIRST, serial=7))
    section = catalog_section(mirror, publisher)
    first = start_server(catalog=section)
    assert blocked(ask(first, "newai.example").rcode())
    first.stop()
    mirror.stop()

    second = start_server(catalog=section)  # the same state folder
    assert blocked(ask(second, "newai.example").rcode())
    assert blocked(ask(second, "deepseek.com").rcode())
    assert second.metric("aiwall_catalog_serial", source=LABEL) == 7
    wait_until(lambda: failures(second, "network") >= 1, what="a failed refresh")
    assert blocked(ask(second, "newai.example").rcode())


def test_with_no_bundle_yet_and_the_mirror_down_the_shipped_catalog_is_used(
    start_server, publisher, mirror
):
    mirror.stop()
    server = start_server(catalog=catalog_section(mirror, publisher))
    assert blocked(ask(server, "deepseek.com").rcode())
    assert ask(server, "newai.example").rcode() == dns.rcode.NOERROR
    assert server.metric("aiwall_catalog_serial", source=LABEL) == 0
    assert failures(server, "network") >= 1


def test_the_supervisor_fetches_and_every_worker_switches(
    upstream, catalog_dir, publisher, mirror, tmp_path
):
    mirror.serve(*publisher.build(FIRST, serial=100))
    config = two_worker_config(
        upstream.server_spec, tmp_path, catalog=catalog_section(mirror, publisher)
    )
    port = int(config["listen"]["dns"][0].rpartition(":")[2])
    started = time.monotonic()
    with Aiwall(config, tmp_path, catalog_dir=catalog_dir) as server:
        server.wait_serving()
        # Names hash to either worker: several of them reach both.
        names = [f"host{i}.newai.example" for i in range(8)]
        assert all(blocked(query("127.0.0.1", port, name).rcode()) for name in names)
        assert server.metric("aiwall_catalog_serial", source=LABEL) == 100
        # One fetcher for the server, the supervisor: about one request a second (its
        # refresh), not one per process.
        time.sleep(2)
        fetches = sum(1 for path, _ in mirror.requests if path == BUNDLE_PATH)
        assert 1 <= fetches <= time.monotonic() - started + 2

        good, signature = publisher.build(LATER, serial=101)
        mirror.serve(good.replace("otherai.example", "otherai.example.evil"), signature)
        wait_until(
            lambda: failures(server, "signature") >= 1, what="the tampered bundle to be rejected"
        )
        assert "refresh rejected (signature)" in server.log
        mirror.serve(good, signature)
        wait_until(
            lambda: all(
                blocked(query("127.0.0.1", port, f"x{i}.otherai.example").rcode()) for i in range(8)
            ),
            what="bundle 101 on every worker",
        )
        assert server.metric("aiwall_catalog_serial", source=LABEL) == 101
        assert all(blocked(query("127.0.0.1", port, name).rcode()) for name in names)
