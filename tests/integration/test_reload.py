"""Reloading the config and the lists: applied whole, or rejected with the running
config kept serving; never a half-read list."""

from __future__ import annotations

import logging
import subprocess
import sys
import time

import dns.rcode
import yaml

from tests.support import RunningServer, ask

TOKEN = "reload-token-0123456789abcdef"


def rewrite(path, **sections) -> None:
    raw = yaml.safe_load(path.read_text())
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    path.write_text(yaml.safe_dump(raw))


def reload(server: RunningServer) -> tuple[bool, str]:
    return server.call(server.server.reload(), timeout=60)


def test_a_changed_config_is_applied(start_from_file, upstream):
    server, path = start_from_file()
    assert ask(server, "chat.deepseek.com").rcode() == dns.rcode.NXDOMAIN
    rewrite(path, blocking={"response": "refused"}, upstream={"timeout": 0.7})
    assert reload(server)[0] is True
    assert ask(server, "chat.deepseek.com").rcode() == dns.rcode.REFUSED
    assert server.server.pipeline.forwarder.timeout == 0.7
    assert server.metric("aiwall_reloads_total", result="success") == 1


def test_the_cache_survives_a_config_reload_that_keeps_its_settings(start_from_file, upstream):
    server, path = start_from_file()
    ask(server, "kept.example.test")
    rewrite(path, blocking={"ttl": 60})
    assert reload(server)[0] is True
    ask(server, "kept.example.test")
    assert upstream.answer_count("kept.example.test") == 1


def test_an_invalid_config_is_rejected_and_the_running_one_keeps_serving(
    start_from_file, upstream, caplog
):
    server, path = start_from_file()
    good = path.read_text()
    path.write_text(good + "blocking:\n  response: blackhole\n")
    with caplog.at_level(logging.ERROR):
        accepted, detail = reload(server)
    assert accepted is False
    assert "blocking.response" in detail
    assert any(
        "reload rejected, keeping the running config" in r.getMessage()
        and "blocking.response" in r.getMessage()
        for r in caplog.records
    )
    assert server.metric("aiwall_reloads_total", result="rejected") == 1
    assert ask(server, "chat.deepseek.com").rcode() == dns.rcode.NXDOMAIN
    assert ask(server, "fine.example.test").rcode() == dns.rcode.NOERROR
    path.write_text("not: [valid yaml\n")
    assert reload(server)[0] is False
    assert server.metric("aiwall_reloads_total", result="rejected") == 2


def test_listen_and_workers_changes_need_a_restart(start_from_file):
    server, path = start_from_file()
    for section in ({"listen": {"tcp_max_connections": 7}}, {"workers": 3}):
        original = path.read_text()
        raw = yaml.safe_load(original)
        raw.update(
            {k: {**raw.get(k, {}), **v} if isinstance(v, dict) else v for k, v in section.items()}
        )
        path.write_text(yaml.safe_dump(raw))
        accepted, detail = reload(server)
        assert accepted is False
        assert "takes a restart" in detail
        path.write_text(original)
    assert server.server.config.listen.tcp_max_connections == 512


def test_a_broken_list_is_rejected_with_the_config_change_it_came_with(start_from_file, tmp_path):
    extra = tmp_path / "extra.txt"
    extra.write_text("first.test\n")
    server, path = start_from_file(blocking={"lists": [str(extra)]})
    missing = str(tmp_path / "missing.txt")
    rewrite(path, blocking={"lists": [str(extra), missing], "response": "refused"})
    accepted, detail = reload(server)
    assert accepted is False
    assert "missing.txt" in detail
    # Nothing of the rejected reload applies: still NXDOMAIN, not REFUSED.
    assert ask(server, "first.test").rcode() == dns.rcode.NXDOMAIN


def test_remote_lists_added_by_a_reload_are_fetched_without_hammering(start_from_file):
    # A remote list configured by a reload gets its own refresher. Its server is down
    # (nothing listens on port 9): the server goes on without it, and retries calmly.
    server, path = start_from_file()
    remote = {"url": "http://127.0.0.1:9/x.txt", "name": "x", "refresh": 1, "timeout": 1}
    rewrite(path, blocking={"remote_lists": [remote]})
    assert reload(server)[0] is True
    assert [r.label for r in server.server.source.remote] == ["x"]
    time.sleep(1.5)
    failures = server.metric("aiwall_list_refresh_failures_total", source="remote:x")
    # One attempt at once and one a refresh period later, not one per event loop turn.
    assert 1 <= failures <= 3


# --- a list rewritten in place while it is read ------------------------------------------

NAMES = 20_000

# A separate process, as an administrator's script would be: truncate, write in pieces,
# pause, again, alternating between two versions of the same length.
WRITER = """
import random, sys, time
path, names = sys.argv[1], int(sys.argv[2])
versions = ["".join(f"{tag}{i}.race.test\\n" for i in range(names)) for tag in "ba"]
rng = random.Random(7)
for turn in range(1_000_000):
    text = versions[turn % 2]
    size = len(text) // 4 + 1
    with open(path, "w") as stream:
        for start in range(0, len(text), size):
            stream.write(text[start : start + size])
            stream.flush()
            time.sleep(0.005)
    time.sleep(rng.uniform(0, 0.4))
"""


def version(tag: str) -> str:
    return "".join(f"{tag}{index}.race.test\n" for index in range(NAMES))


def served_versions(server: RunningServer) -> set[str]:
    """Which versions the served policy holds, judged by first, middle and last names."""
    found = set()
    for tag in "ab":
        blocked = [
            ask(server, f"{tag}{index}.race.test").rcode() == dns.rcode.NXDOMAIN
            for index in (0, NAMES // 2, NAMES - 1)
        ]
        assert blocked in ([True] * 3, [False] * 3), f"partial list {tag}: {blocked}"
        if all(blocked):
            found.add(tag)
    return found


def test_a_list_rewritten_in_place_is_never_served_half_loaded(start_server, tmp_path):
    listed = tmp_path / "race.txt"
    listed.write_text(version("a"))
    server = start_server(blocking={"lists": [str(listed)]})
    assert served_versions(server) == {"a"}
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(listed), str(NAMES)])
    outcomes = []
    seen: list[set[str]] = []
    try:
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            outcomes.append(reload(server)[0])
            # Exactly one whole version, whatever the reload's fate.
            seen.append(served_versions(server))
            assert len(seen[-1]) == 1, f"after reload {len(outcomes)}: {seen[-1]}"
    finally:
        writer.kill()
        writer.wait()
    assert outcomes.count(True) >= 2
