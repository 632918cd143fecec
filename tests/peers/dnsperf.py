"""dnsperf (Debian package ``dnsperf``), the load generator of the benchmark and of the soak
run: its report read into numbers, and the percentile the reports give."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any


class DnsperfError(ValueError):
    """dnsperf's output has no statistics (it failed, or was stopped)."""


@dataclass
class DnsperfTotals:
    """The statistics dnsperf prints at the end of a run."""

    qps: float
    sent: int
    completed: int
    lost: int
    run_time: float
    avg_latency_ms: float
    rcodes: dict[str, int]


@dataclass
class DnsperfReport(DnsperfTotals):
    max_latency_ms: float = 0.0  # 0 when dnsperf did not print it
    per_second: list[float] = field(default_factory=list)  # -S 1: answers in each second
    answered: list[float] = field(default_factory=list)  # -v: each answer's latency (s)
    timed_out: int = 0  # -v: the queries that got no answer in time

    def totals(self) -> dict[str, Any]:
        """The fields of ``DnsperfTotals``, by name."""
        return {name.name: getattr(self, name.name) for name in fields(DnsperfTotals)}


def _number(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    if match is None:
        raise DnsperfError(f"dnsperf output without {pattern!r}:\n{text[-2000:]}")
    return float(match.group(1))


def parse(text: str) -> DnsperfReport:
    """Read dnsperf's output: the final statistics, and the lines -S 1 and -v add."""
    # The last "Statistics:" heading at a line's start: over TCP, DoT and DoH a
    # "Connection Statistics:" section follows it.
    starts = [found.start() for found in re.finditer(r"^Statistics:", text, re.MULTILINE)]
    stats = text[starts[-1] :] if starts else text
    codes_line = re.search(r"Response codes:\s*(.*)", stats)
    rcodes = {
        code: int(count)
        for code, count in re.findall(
            r"([A-Z]+) (\d+) \(", codes_line.group(1) if codes_line else ""
        )
    }
    latency_max = re.search(r"Average Latency \(s\):\s+[\d.]+ \(min [\d.]+, max ([\d.]+)\)", stats)
    # -v prints "> RCODE name type latency" per answer and "> T name type" per loss.
    verbose = [line.split() for line in text.splitlines() if line.startswith("> ")]
    return DnsperfReport(
        qps=_number(r"Queries per second:\s+([\d.]+)", stats),
        sent=int(_number(r"Queries sent:\s+(\d+)", stats)),
        completed=int(_number(r"Queries completed:\s+(\d+)", stats)),
        lost=int(_number(r"Queries lost:\s+(\d+)", stats)),
        run_time=_number(r"Run time \(s\):\s+([\d.]+)", stats),
        avg_latency_ms=_number(r"Average Latency \(s\):\s+([\d.]+)", stats) * 1000,
        max_latency_ms=float(latency_max.group(1)) * 1000 if latency_max else 0.0,
        rcodes=rcodes,
        # -S 1 prints "<unix time>: <answers per second>" once a second.
        per_second=[float(q) for q in re.findall(r"^\d+\.\d+: ([\d.]+)$", text, re.MULTILINE)],
        answered=[float(parts[-1]) for parts in verbose if parts[1] != "T"],
        timed_out=sum(1 for parts in verbose if parts[1] == "T"),
    )


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile, a value that was really measured (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]
