"""The load of a run: the query files of each mix, dnsperf against one server with the
CPU of everyone on the machine accounted for, and runs measured again when other jobs
took the CPU."""

from __future__ import annotations

import random
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.dnsperf import PerfResult, parse_dnsperf
from bench.report import Journal
from bench.servers import Running, Servers, stall_buckets, worst_stall_between, write_lines
from bench.settings import (
    CACHED_SUFFIX,
    DNSPERF_CLIENTS,
    DNSPERF_OUTSTANDING,
    EXPECTED_RCODE,
    MISS_SUFFIX,
    OTHER_LOAD_WARNING,
    QUIET_LOAD,
    BenchError,
    Settings,
    blocked_name,
)
from bench.system import (
    children_cpu_seconds,
    find_binary,
    machine_busy_seconds,
    pinned,
    process_cpu_seconds,
    process_cpu_split,
)
from tests.peers.process import tail


class Load:
    """dnsperf runs against the servers of a run; every run lands in ``journal``."""

    def __init__(
        self, settings: Settings, workdir: Path, servers: Servers, journal: Journal
    ) -> None:
        self.settings = settings
        self.workdir = workdir
        self.servers = servers
        self.journal = journal

    # -- query files --

    def blocked_queries(self, synthetic: int, path: Path) -> Path:
        rng = random.Random(synthetic)  # the same file for the same list size
        catalog = self.servers.catalog

        def lines() -> Iterator[str]:
            for _ in range(self.settings.blocked_queries):
                # Mostly the big synthetic set, some catalog names; a quarter are
                # subdomains, which need a lookup per label on the way up.
                if synthetic == 0 or rng.random() < 0.05:
                    name = rng.choice(catalog)
                else:
                    name = blocked_name(rng.randrange(synthetic))
                if rng.random() < 0.25:
                    name = "www." + name
                yield f"{name} A"

        return write_lines(path, lines())

    def cached_queries(self, path: Path) -> Path:
        return write_lines(
            path, (f"www.host{i}.{CACHED_SUFFIX} A" for i in range(self.settings.cached_names))
        )

    def miss_queries(self, tag: str, count: int) -> Path:
        path = self.workdir / f"miss-{tag}.txt"
        return write_lines(path, (f"q{i}.{tag}.{MISS_SUFFIX} A" for i in range(count)))

    # -- dnsperf --

    def dnsperf(
        self,
        server: Running,
        queries: Path,
        duration: float,
        *,
        rate: float | None = None,
        once: bool = False,
        verbose: bool = False,
    ) -> PerfResult:
        binary = find_binary("dnsperf")
        assert binary is not None
        command = [binary, "-s", "127.0.0.1", "-p", str(server.load_port), "-d", str(queries)]
        if server.mode != "udp":
            command += ["-m", server.mode]
        if server.mode == "doh":
            command += ["-O", f"doh-uri=https://127.0.0.1:{server.load_port}/dns-query"]
            command += ["-O", "doh-method=POST"]
        command += ["-l", f"{duration:g}", "-c", str(DNSPERF_CLIENTS), "-T", "1"]
        command += ["-q", str(DNSPERF_OUTSTANDING), "-t", f"{self.settings.timeout:g}"]
        if once:
            command += ["-n", "1"]
        if rate is not None:
            command += ["-Q", str(max(1, round(rate)))]
        if verbose:
            command.append("-v")
        waited, quiet = self.wait_quiet()
        out = self.workdir / "dnsperf.out"
        with out.open("wb") as sink:
            # Into a file, not a pipe we would read: reading it live would steal CPU from
            # the run being measured.
            before = self.cpu_counters(server)
            try:
                done = subprocess.run(
                    pinned(self.settings, command, "load"),
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    timeout=duration + self.settings.timeout + 60,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise BenchError(f"dnsperf against {server.name} hung") from None
            after = self.cpu_counters(server)
        if done.returncode != 0:
            raise BenchError(f"dnsperf failed against {server.name}:\n{tail(out)}")
        if not server.proc.alive:
            raise BenchError(f"{server.name} died during the run:\n{server.proc.tail()}")
        result = parse_dnsperf(out, verbose, self.settings.timeout)
        wall, machine, server_user, server_kernel, upstream_cpu, dnsperf_cpu = (
            b - a for a, b in zip(before, after, strict=True)
        )
        server_cpu = server_user + server_kernel
        result.server_cores = server_cpu / wall
        if result.completed:
            # Where a server's time per answer goes: its own code, or the kernel's work
            # for its system calls (the same for every server making the same calls).
            result.user_us = server_user / result.completed * 1e6
            result.kernel_us = server_kernel / result.completed * 1e6
        result.upstream_cores = upstream_cpu / wall
        result.dnsperf_cores = dnsperf_cpu / wall
        result.other_cores = max(0.0, machine - server_cpu - upstream_cpu - dnsperf_cpu) / wall
        result.waited_for_quiet = waited
        result.load_before = quiet
        return result

    def wait_quiet(self) -> tuple[float, float]:
        """Wait (bounded) until other jobs leave the CPUs: on a shared 2-core machine a
        test suite running next to the benchmark would land in the measurement.
        Returns the seconds waited and the load measured last."""
        started = time.monotonic()
        load = 0.0
        while self.settings.quiet_wait > 0:
            before, then = machine_busy_seconds(), time.monotonic()
            time.sleep(0.5)
            load = (machine_busy_seconds() - before) / (time.monotonic() - then)
            waited = time.monotonic() - started
            if load < QUIET_LOAD:
                break
            if waited > self.settings.quiet_wait:
                self.journal.busy_starts.append(load)
                break
        return time.monotonic() - started, load

    def cpu_counters(self, server: Running) -> tuple[float, ...]:
        return (
            time.monotonic(),
            machine_busy_seconds(),
            *process_cpu_split(server.proc.pid),
            process_cpu_seconds(self.servers.upstream_pid),
            children_cpu_seconds(),  # dnsperf, once reaped
        )

    def warm(self, server: Running, queries: Path) -> None:
        # Ask every cached-mix name once, right before the run: the miss mix may have
        # evicted them, and TTL 300 may have run out during a long benchmark.
        result = self.dnsperf(server, queries, 30, once=True)
        # A few losses are dnsperf's end-of-run count; those names get cached by the run.
        if result.lost > result.sent * 0.05:
            self.journal.warn(f"{server.name}: {result.lost} of the warm-up queries were lost")

    def record(
        self,
        round_: int,
        server: str,
        mix: str,
        kind: str,
        result: PerfResult,
        discarded: bool = False,
        **extra: Any,
    ) -> dict[str, Any]:
        run = {"round": round_, "server": server, "mix": mix, "kind": kind, **extra}
        run["discarded"] = discarded
        run.update(result.__dict__)
        run["expected_rcode_share"] = round(result.expected_share(mix), 4)
        if run["expected_rcode_share"] < 0.99:
            self.journal.warn(
                f"{server} {mix} round {round_}: only {run['expected_rcode_share']:.1%} "
                f"{EXPECTED_RCODE[mix]} ({result.rcodes})"
            )
        if result.other_cores > OTHER_LOAD_WARNING and not discarded:
            self.journal.warn(
                f"{server} {mix} {kind} round {round_}: other processes used"
                f" {result.other_cores:.2f} cores during the run; its numbers are noisy"
            )
        self.journal.runs.append(run)
        latency = (
            f"p50 {result.p50_ms:.2f} ms p99 {result.p99_ms:.2f} ms"
            if result.p99_ms is not None
            else f"avg {result.avg_latency_ms:.2f} ms"
        )
        print(
            f"  round {round_} {mix:7} {kind:4} {server:8} {result.qps:9.0f} qps  {latency}"
            f"  lost {result.lost}  cores: server {result.server_cores:.2f}"
            + (
                f" ({result.user_us:.1f} µs user + {result.kernel_us:.1f} µs kernel an answer)"
                if result.user_us is not None and result.kernel_us is not None
                else ""
            )
            + f" dnsperf {result.dnsperf_cores:.2f} other {result.other_cores:.2f}"
            + (f"  (waited {result.waited_for_quiet:.0f} s)" if result.waited_for_quiet > 1 else "")
            + ("  NOISY: again" if discarded else ""),
            flush=True,
        )
        return run

    def measure(
        self,
        round_: int,
        server: Running,
        mix: str,
        kind: str,
        queries: Path | None,
        duration: float,
        rate: float | None = None,
    ) -> PerfResult:
        """One run, measured again (up to --retries times) when other jobs took the CPU.

        Interference only ever slows a run, so a quiet repeat is the better sample; the
        noisy attempts stay in the JSON, marked discarded. ``queries=None`` means the miss
        mix: a fresh file of never-asked names for every attempt, read once.
        """
        attempts = self.settings.retries + 1
        for attempt in range(attempts):
            path, count = queries, 0
            if path is None:
                count = self.settings.miss_queries
                if rate is not None:
                    count = min(count, int(rate * duration * 1.2) + 1000)
                path = self.miss_queries(f"r{round_}-{server.name}-{kind}-{attempt}", count)
            if mix == "cached":
                self.warm(server, path)
            # The loop's stalls in this run alone (issue 13: none over 5 ms at half load;
            # at the peak they are mostly the queue, not a pause).
            before = stall_buckets(server.http) if server.http else None
            try:
                result = self.dnsperf(
                    server,
                    path,
                    duration,
                    rate=rate,
                    once=queries is None,
                    verbose=rate is not None,
                )
            finally:
                if queries is None:
                    path.unlink()
            extra: dict[str, Any] = {} if rate is None else {"target_qps": rate}
            if before is not None:
                extra["stall_max_le_ms"] = worst_stall_between(before, stall_buckets(server.http))
            if count and result.sent >= count and rate is None:
                self.journal.warn(f"{server.name} used up the miss file: raise --miss-queries")
            retry = result.other_cores > OTHER_LOAD_WARNING and attempt < attempts - 1
            self.record(round_, server.name, mix, kind, result, discarded=retry, **extra)
            if not retry:
                return result
        raise AssertionError("the last attempt always returns")

    # -- the comparison --
