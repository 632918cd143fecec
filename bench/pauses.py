"""The pauses phase: the event loop's worst stall while aiwall does each of the things
issue 13 names as a risk to its answers (audit flushes, metric scrapes, list refreshes,
reloads of a 1M-name list), under a steady load that leaves its core mostly free.

The half-load runs of the comparison measure a different thing. There the core is busy
most of the time (a cache miss costs aiwall nearly twice its full-load CPU at half
load), answers queue up, and a late tick of the loop is a turn spent answering that
queue; the p99 of those runs is where that shows. Here the load is fixed and modest
(``pause_rate`` queries a second, half of them banned so the audit trail has rows to
flush), so a late tick is the event's own work holding the loop.

Three windows, one after the other, with dnsperf running through all of them and the
phase reading ``/metrics`` once a second (the scrapes) in each:
- ``flushes and scrapes``: nothing else happens; the audit trail flushes every second;
- ``list refreshes``: a remote list (served on loopback, refreshed every second) changes
  ``PAUSE_EVENTS`` times, each change a new policy built and put in force;
- ``reloads``: ``PAUSE_EVENTS`` SIGHUPs, each a rebuild of the whole 1M-name policy.
Each window's worst stall is the highest bucket of ``aiwall_loop_stall_seconds`` it
reached (``worst_stall_between``).
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.phase import Phase
from bench.report import stall_text
from bench.servers import Running, metric, stall_buckets, worst_stall_between, write_lines
from bench.settings import CACHED_SUFFIX, MISS_SUFFIX, BenchError, blocked_name
from bench.system import find_binary, pinned
from tests.peers.listserver import ListServer

# Refreshes and reloads per window.
PAUSE_EVENTS = 3
# The remote list's names (each version a different set of this many).
REMOTE_NAMES = 10_000
# How long the window without refreshes or reloads lasts, and how long each event's
# aftermath is watched once its policy is in force (the old one freed, the next flushes).
QUIET_SECONDS = 10.0
SETTLE_SECONDS = 2.0
# A new policy of 1M names is built in seconds; past this the run is broken.
BUILD_TIMEOUT = 120.0
# Lines of the query file: dnsperf starts over at its end, so its misses become hits
# after this many (a quarter of them) have been asked.
QUERY_LINES = 1_000_000


def _remote_body(version: int) -> str:
    return "".join(f"r{index}.v{version}.refreshed.example\n" for index in range(REMOTE_NAMES))


class PausesPhase(Phase):
    def run(self) -> dict[str, Any]:
        variants = [v for v in ("aiwall", "aiwall-groups") if v in self.settings.servers]
        queries = self._queries()
        return {variant: self._one(variant, queries) for variant in variants}

    def _queries(self) -> Path:
        """Two banned names, a cached one and a miss in every four questions."""
        names = max(self.settings.pause_names, 1)
        lines = QUERY_LINES if not self.settings.smoke else 20_000

        def questions() -> Iterator[str]:
            for index in range(lines // 4):
                yield f"{blocked_name(index * 7919 % names)} A"
                yield f"{blocked_name(index * 104_729 % names)} AAAA"
                yield f"c{index % 1000}.{CACHED_SUFFIX} A"
                yield f"p{index}.pauses.{MISS_SUFFIX} A"

        return write_lines(self.workdir / "pauses.txt", questions())

    def _one(self, variant: str, queries: Path) -> dict[str, Any]:
        s = self.settings
        events = 1 if s.smoke else PAUSE_EVENTS
        with ListServer({"/refresh.txt": _remote_body(0)}) as lists:
            remote = {"url": lists.url("/refresh.txt"), "name": "refreshed", "refresh": 1}
            server = self.servers.start_server(
                variant, s.pause_names, "pauses", aiwall={"blocking": {"remote_lists": [remote]}}
            )
            print(f"  {variant}: {s.pause_rate:,} queries a second", flush=True)
            versions = iter(range(1, events + 1))

            def refresh() -> None:
                lists.lists["/refresh.txt"] = _remote_body(next(versions))

            def reload() -> None:
                server.proc.signal(signal.SIGHUP)

            perf = self._dnsperf(server, queries)
            try:
                windows = {
                    "flushes and scrapes": self._window(server, 0, lambda: None),
                    "list refreshes": self._window(server, events, refresh),
                    "reloads": self._window(server, events, reload),
                }
            finally:
                out = _stop_dnsperf(perf)
            self.procs.stop(server.proc)
        for name, window in windows.items():
            print(f"    {name}: worst stall {stall_text(window['stall_le_ms'])}", flush=True)
        return {"rate": s.pause_rate, "windows": windows, **_dnsperf_counts(out)}

    def _dnsperf(self, server: Running, queries: Path) -> subprocess.Popen[str]:
        binary = find_binary("dnsperf")
        if binary is None:
            raise BenchError("dnsperf is not installed")
        command = [binary, "-s", "127.0.0.1", "-p", str(server.port), "-d", str(queries)]
        command += ["-l", "3600", "-c", "4", "-T", "1", "-Q", str(self.settings.pause_rate)]
        command += ["-t", f"{self.settings.timeout:g}"]
        return subprocess.Popen(
            pinned(self.settings, command, "load"),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def _window(self, server: Running, events: int, cause: Callable[[], None]) -> dict[str, Any]:
        """``events`` times: ``cause`` a new policy, wait until it is in force, then
        ``SETTLE_SECONDS`` more; with none, ``QUIET_SECONDS`` of nothing but the load.
        Scraping once a second all along; the stalls the window saw."""
        before = stall_buckets(server.http)
        started = time.monotonic()
        if not events:
            _scrape_for(server.http, 2.0 if self.settings.smoke else QUIET_SECONDS)
        for _ in range(events):
            version = metric(server.http, "aiwall_policy_version")
            cause()
            deadline = time.monotonic() + BUILD_TIMEOUT
            while metric(server.http, "aiwall_policy_version") <= version:
                if time.monotonic() > deadline or not server.proc.alive:
                    raise BenchError(f"{server.name}: no new policy in {BUILD_TIMEOUT:g} s")
                time.sleep(0.5)
            _scrape_for(server.http, SETTLE_SECONDS)
        after = stall_buckets(server.http)
        if not server.proc.alive:
            raise BenchError(f"{server.name} died in the pauses phase:\n{server.proc.tail()}")
        return {
            "stall_le_ms": worst_stall_between(before, after),
            "events": events,
            "seconds": round(time.monotonic() - started, 1),
        }


def _stop_dnsperf(perf: subprocess.Popen[str]) -> str:
    """Stop the load (dnsperf prints its counts on SIGINT); its output."""
    perf.send_signal(signal.SIGINT)
    try:
        out, _ = perf.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        perf.kill()
        out, _ = perf.communicate()
    return out


def _scrape_for(http: str, seconds: float) -> None:
    """Read ``/metrics`` once a second for ``seconds``."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        metric(http, "aiwall_loop_stall_max_seconds")
        time.sleep(1.0)


def _dnsperf_counts(out: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for key, label in (("sent", "Queries sent"), ("lost", "Queries lost")):
        found = re.search(rf"{label}:\s+(\d+)", out)
        if found:
            counts[key] = int(found.group(1))
    return counts
