#!/usr/bin/env python3
"""Overload aiwall on purpose and check that it degrades gracefully and recovers.

Starts ``aiwall serve`` (one worker) on loopback with an upstream (NSD when installed,
with a 2-second TTL so the "miss" share keeps reaching it), measures the capacity for a
mixed load (40 % blocked names, 40 % a few hot cached names, 20 % names no cache holds),
then sends that mix at ``--factor`` times the capacity for ``--duration`` seconds, with
dnsperf when installed, else a Python load generator. Meanwhile it samples the server's
resident memory and times a probe query every half second. When the load stops it asks
again at once.

It passes when the server answered a share of the load all along (no second without
answers), memory stayed within ``--rss-growth-mb`` of the start, the first queries after
the flood are all answered within a second, the log shows no pipeline failure and
SIGTERM still ends the server with status 0. Speed is reported, never judged: the
figures depend on the machine. ``make soak`` runs 3 minutes at twice the capacity; the
test suite runs a short version (tests/integration/test_soak_smoke.py).
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.peers.dnsperf import DnsperfError, percentile
from tests.peers.dnsperf import parse as parse_dnsperf
from tests.peers.probe import probe
from tests.tools.harness import (
    BLOCKED,
    LISTED,
    ServerProcess,
    environment,
    run_command,
    start_upstream,
    workdir,
)

BLOCKED_NAMES = [
    BLOCKED,
    LISTED,
    "api.deepseek.com",
    "chatgpt.com",
    "claude.ai",
    "gemini.google.com",
]
HOT = 200
MISSES = 60_000
QUERY_TIMEOUT = 1.0  # the load generators' client timeout


def write_queries(path: Path, seed: int) -> list[tuple[str, str]]:
    """The mix, in the order sent: blocked, hot, blocked, hot, miss, ..."""
    rng = random.Random(seed)
    lines: list[tuple[str, str]] = []
    for index in range(MISSES):
        kind = rng.choice(["A", "A", "A", "AAAA"])
        lines.append((rng.choice(BLOCKED_NAMES), kind))
        lines.append((f"h{rng.randrange(HOT)}.hot.soak.test", kind))
        lines.append((f"sub{index}.{rng.choice(BLOCKED_NAMES)}", kind))
        lines.append((f"h{rng.randrange(HOT)}.hot.soak.test", kind))
        lines.append((f"m{index}.miss.soak.test", kind))
    path.write_text("".join(f"{name} {kind}\n" for name, kind in lines))
    return lines


@dataclass
class LoadResult:
    sent: int = 0
    completed: int = 0
    lost: int = 0
    seconds: float = 0.0
    latency_avg_ms: float = 0.0
    latency_max_ms: float = 0.0
    per_second: list[float] = field(default_factory=list)

    @property
    def qps(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0


def dnsperf(address: tuple[str, int], data: Path, seconds: float, rate: float | None) -> LoadResult:
    command = [
        "dnsperf",
        "-s",
        address[0],
        "-p",
        str(address[1]),
        "-d",
        str(data),
        "-l",
        str(seconds),
        "-t",
        str(QUERY_TIMEOUT),
        "-c",
        "8",
        "-S",
        "1",
    ]
    # Self-paced (capacity) with a modest window; paced (overload) with a window wide
    # enough that timeouts, not the window, limit what is sent.
    command += ["-q", "200"] if rate is None else ["-q", "50000", "-Q", str(int(rate))]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    try:
        report = parse_dnsperf(done.stdout)
    except DnsperfError:
        return LoadResult()  # dnsperf failed: no answers, which the checks report
    return LoadResult(
        sent=report.sent,
        completed=report.completed,
        lost=report.lost,
        seconds=report.run_time,
        latency_avg_ms=report.avg_latency_ms,
        latency_max_ms=report.max_latency_ms,
        per_second=report.per_second,
    )


def _python_worker(
    address: tuple[str, int],
    queries: list[bytes],
    rate: float | None,
    seconds: float,
    out: multiprocessing.Queue,  # type: ignore[type-arg]
) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.setblocking(False)
    pending: dict[int, float] = {}
    sent = completed = 0
    latency_sum = latency_max = 0.0
    per_second: dict[int, int] = {}
    started = time.monotonic()
    ident = 0
    position = 0
    window = 1000 if rate is None else 60_000
    while True:
        now = time.monotonic()
        if now - started >= seconds:
            break
        due = sent if rate is None else int((now - started) * rate) - sent
        budget = min(max(due, 0), 64, window - len(pending)) if rate else window - len(pending)
        for _ in range(max(budget, 0)):
            ident = (ident + 1) & 0xFFFF
            data = struct.pack("!H", ident) + queries[position][2:]
            position = (position + 1) % len(queries)
            try:
                sock.sendto(data, address)
            except BlockingIOError:
                break
            pending[ident] = now
            sent += 1
        received = 0
        for _ in range(256):
            try:
                answer = sock.recv(4096)
            except BlockingIOError:
                break
            received += 1
            sent_at = pending.pop(struct.unpack_from("!H", answer)[0], None)
            if sent_at is not None:
                latency = time.monotonic() - sent_at
                latency_sum += latency
                latency_max = max(latency_max, latency)
                completed += 1
                second = int(time.monotonic() - started)
                per_second[second] = per_second.get(second, 0) + 1
        expired = [i for i, t in pending.items() if now - t > QUERY_TIMEOUT]
        for key in expired:
            del pending[key]
        if not received:
            time.sleep(0.0005)
    out.put((sent, completed, latency_sum, latency_max, per_second))


def python_load(
    address: tuple[str, int], lines: list[tuple[str, str]], seconds: float, rate: float | None
) -> LoadResult:
    import dns.message

    queries = [dns.message.make_query(n, t).to_wire() for n, t in lines[:20_000]]
    processes = 2
    out: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    workers = [
        multiprocessing.Process(
            target=_python_worker,
            args=(address, queries[i::processes], rate / processes if rate else None, seconds, out),
        )
        for i in range(processes)
    ]
    for worker in workers:
        worker.start()
    results = [out.get(timeout=seconds + 30) for _ in workers]
    for worker in workers:
        worker.join(10)
    sent = sum(r[0] for r in results)
    completed = sum(r[1] for r in results)
    per_second: dict[int, int] = {}
    for r in results:
        for second, count in r[4].items():
            per_second[second] = per_second.get(second, 0) + count
    return LoadResult(
        sent=sent,
        completed=completed,
        lost=sent - completed,
        seconds=seconds,
        latency_avg_ms=1000 * sum(r[2] for r in results) / max(completed, 1),
        latency_max_ms=1000 * max(r[3] for r in results),
        per_second=[float(per_second.get(s, 0)) for s in range(int(seconds))],
    )


class Monitor(threading.Thread):
    """Samples the server's memory and times one probe query every half second."""

    def __init__(self, server: ServerProcess) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.rss: list[int] = []
        self.probes: list[float | None] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.is_set():
            if self.server.alive:
                self.rss.append(self.server.rss())
            got = probe(self.server.address, "h1.hot.soak.test", timeout=QUERY_TIMEOUT)
            self.probes.append(got.seconds if got is not None else None)
            self.stop_event.wait(0.5)


def recovery(server: ServerProcess, count: int = 50) -> dict[str, float]:
    """Ask at once after the flood: how soon the first answer, and did all come back."""
    started = time.monotonic()
    first: float | None = None
    answered = 0
    slowest = 0.0
    for index in range(count):
        got = probe(server.address, f"after{index}.hot.soak.test", timeout=QUERY_TIMEOUT)
        if got is not None:
            answered += 1
            slowest = max(slowest, got.seconds)
            if first is None:
                first = time.monotonic() - started
    return {
        "queries": count,
        "answered": answered,
        "first_answer_s": round(first, 3) if first is not None else -1.0,
        "slowest_s": round(slowest, 3),
    }


def udp_receive_buffer_errors() -> int:
    """Datagrams the kernel dropped because a socket's buffer was full (all sockets)."""
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()]
    udp = [line for line in lines if line and line[0] == "Udp:"]
    if len(udp) < 2 or "RcvbufErrors" not in udp[0]:
        return 0
    return int(udp[1][udp[0].index("RcvbufErrors")])


def run(args: argparse.Namespace) -> dict[str, object]:
    report: dict[str, object] = {**environment()}
    problems: list[str] = []
    generator = args.generator
    if generator == "auto":
        generator = "dnsperf" if shutil.which("dnsperf") else "python"
    report["generator"] = generator
    with workdir(keep=args.keep) as directory:
        upstream = start_upstream(directory, prefer_nsd=not args.fake_upstream, ttl=2)
        server = ServerProcess(directory, upstream)
        report["upstream"] = upstream.kind
        data = directory / "queries.txt"
        lines = write_queries(data, args.seed)

        def load(seconds: float, rate: float | None) -> LoadResult:
            if generator == "dnsperf":
                return dnsperf(server.address, data, seconds, rate)
            return python_load(server.address, lines, seconds, rate)

        try:
            capacity = load(args.measure, None)  # doubles as the warm-up
            report["capacity_qps"] = round(capacity.qps)
            target = max(capacity.qps * args.factor, 1000)
            time.sleep(1)
            baseline = server.rss()
            monitor = Monitor(server)
            monitor.start()
            buffer_errors = udp_receive_buffer_errors()
            flood = load(args.duration, target)
            buffer_errors = udp_receive_buffer_errors() - buffer_errors
            monitor.stop_event.set()
            monitor.join(10)
            after = recovery(server)
            time.sleep(2)
            final = server.rss() if server.alive else 0
            answered = [p for p in monitor.probes if p is not None]
            peak = max([baseline, *monitor.rss])
            seconds_without_answers = sum(1 for q in flood.per_second if q == 0)
            report.update(
                target_qps=round(target),
                sent=flood.sent,
                completed=flood.completed,
                lost=flood.lost,
                lost_share=round(flood.lost / max(flood.sent, 1), 3),
                # Where the lost ones went: the kernel's drops at full socket buffers
                # (system-wide, so the generator's own buffer counts too).
                kernel_udp_buffer_drops=buffer_errors,
                answered_qps=round(flood.qps),
                answered_qps_by_second=[round(q) for q in flood.per_second],
                latency_avg_ms=round(flood.latency_avg_ms, 2),
                latency_max_ms=round(flood.latency_max_ms, 1),
                probes=len(monitor.probes),
                probes_answered=len(answered),
                probe_p50_ms=round(percentile(answered, 0.5) * 1000, 1),
                probe_p95_ms=round(percentile(answered, 0.95) * 1000, 1),
                probe_max_ms=round(max(answered, default=0) * 1000, 1),
                recovery=after,
                rss_baseline_mib=round(baseline / 2**20, 1),
                rss_peak_mib=round(peak / 2**20, 1),
                rss_final_mib=round(final / 2**20, 1),
                seconds=args.duration,
            )
            if not server.alive:
                problems.append("the server died under load")
            if not flood.per_second:
                problems.append("no per-second figures from the load generator")
            if flood.completed == 0 or seconds_without_answers > 0:
                problems.append(f"{seconds_without_answers} seconds without a single answer")
            if after["answered"] < after["queries"] or not 0 <= after["first_answer_s"] < 1.0:
                problems.append(f"slow recovery after the flood: {after}")
            for label, value in (("peak", peak), ("final", final)):
                growth = (value - baseline) / 2**20
                if growth > args.rss_growth_mb:
                    problems.append(f"{label} memory {growth:.1f} MiB over the start")
            problems += [f"log: {line}" for line in server.log_problems()]
        finally:
            code = server.stop()
            upstream.stop()
            if code != 0:
                problems.append(f"the server exited with {code} on SIGTERM")
    report["problems"] = problems
    report["ok"] = not problems
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=180, help="seconds of overload")
    parser.add_argument("--measure", type=float, default=10, help="seconds to find capacity")
    parser.add_argument("--factor", type=float, default=2.0, help="load as a multiple of it")
    parser.add_argument("--generator", choices=["auto", "dnsperf", "python"], default="auto")
    parser.add_argument("--rss-growth-mb", type=float, default=64)
    parser.add_argument("--seed", type=int, default=20261122)
    return run_command(parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
