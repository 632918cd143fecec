"""One dnsperf run's numbers as the benchmark keeps them: throughput, losses, rcodes,
latency percentiles (from -v) and, filled in by bench/load.py, who used the CPU. The
output itself is read by tests/peers/dnsperf.py, which the soak run uses too."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.settings import EXPECTED_RCODE, BenchError
from tests.peers.dnsperf import DnsperfError, DnsperfTotals, parse, percentile


@dataclass
class PerfResult(DnsperfTotals):
    p50_ms: float | None = None
    p99_ms: float | None = None
    p999_ms: float | None = None
    max_ms: float | None = None
    # CPU cores busy on average during the run: the server under test, dnsperf, and
    # everything else on the machine (other users' jobs, the hypervisor's steal).
    server_cores: float = 0.0
    # The server's CPU per answer (µs), in user space and in the kernel.
    user_us: float | None = None
    kernel_us: float | None = None
    waited_for_quiet: float = 0.0
    load_before: float = 0.0
    dnsperf_cores: float = 0.0
    upstream_cores: float = 0.0
    other_cores: float = 0.0

    def expected_share(self, mix: str) -> float:
        answered = sum(self.rcodes.values())
        return self.rcodes.get(EXPECTED_RCODE[mix], 0) / answered if answered else 0.0


def parse_dnsperf(path: Path, verbose: bool, timeout: float) -> PerfResult:
    try:
        report = parse(path.read_text(errors="replace"))
    except DnsperfError as error:
        raise BenchError(str(error)) from None
    result = PerfResult(**report.totals())
    if verbose:
        # A lost query counts as the timeout: the client waited that long for nothing.
        latencies = sorted([*report.answered, *[timeout] * report.timed_out])
        if latencies:
            result.p50_ms = percentile(latencies, 0.50) * 1000
            result.p99_ms = percentile(latencies, 0.99) * 1000
            result.p999_ms = percentile(latencies, 0.999) * 1000
            result.max_ms = latencies[-1] * 1000
    return result
