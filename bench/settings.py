"""What a benchmark run measures: the servers, the query mixes, dnsperf's shape, the
synthetic names, and the settings taken from the command line (bench/cli.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# aiwall as configured by default (audit trail on), and variants of it: what the audit
# trail costs, and what client groups cost (issue 13 wants the same figures with three).
AIWALL_VARIANTS: dict[str, dict[str, Any]] = {
    "aiwall": {},
    "aiwall-noaudit": {"audit": {"enabled": False}},
    "aiwall-groups": {
        "groups": [
            {
                "name": "research",
                "clients": ["10.20.0.0/16"],
                "catalog": {"block": {"categories": ["chat_assistant"]}},
            },
            {"name": "plant", "clients": ["10.99.0.0/16"], "response": "refused"},
            # The load generator's own group: it asks from 127.0.0.1.
            {"name": "office", "clients": ["127.0.0.0/8"], "response": "nxdomain"},
        ]
    },
}
# "bare": bench/bare.py, the ceiling of a pure-Python server (a dict of ready answers).
# Encrypted transports (issue 16): aiwall and Unbound answering DoT or DoH (dnsperf -m dot,
# -m doh) with a certificate the run makes; the plain port stays for the start probes.
ENCRYPTED = {"aiwall-dot": "dot", "aiwall-doh": "doh", "unbound-dot": "dot", "unbound-doh": "doh"}
AIWALL_VARIANTS["aiwall-dot"] = AIWALL_VARIANTS["aiwall-doh"] = {}
# "unbound-rpz": Unbound enforcing aiwall's policy as an RPZ zone (aiwall export --format rpz).
ALL_SERVERS = (*AIWALL_VARIANTS, "bare", "dnsmasq", "unbound", "unbound-rpz", "unbound-dot")
ALL_SERVERS += ("unbound-doh",)
# The peer aiwall's targets are set against (issue 13: per core, within reach of it).
REFERENCE = "unbound"
ALL_MIXES = ("blocked", "cached", "miss")
# The NXDOMAIN every blocked name gets, and NOERROR for every name the wildcard answers.
EXPECTED_RCODE = {"blocked": "NXDOMAIN", "cached": "NOERROR", "miss": "NOERROR"}
# Other processes' CPU during a run above this (in cores) makes the run suspect: the
# machine has 2 cores and the run itself needs both.
OTHER_LOAD_WARNING = 0.15
# Before a run, the machine counts as quiet below this load (cores); the servers idle.
QUIET_LOAD = 0.10
RCODE_NAMES = {0: "NOERROR", 2: "SERVFAIL", 3: "NXDOMAIN", 5: "REFUSED"}

# dnsperf shape from test-bed.md, so numbers compare with the ones measured there. One
# client thread: the load generator shares the machine's 2 cores with the server.
DNSPERF_CLIENTS = 4
DNSPERF_OUTSTANDING = 200

# Names that the synthetic parts of the benchmark use. None of their parents exists in
# the upstream zone, so the root wildcard covers them all (RFC 4592 4.1: a wildcard
# only answers below its closest encloser).
CACHED_SUFFIX = "bench-cached."
MISS_SUFFIX = "bench-miss."
PROBE_ALLOWED = "ready.bench-probe."


class BenchError(Exception):
    """The benchmark cannot go on; the message says why."""


def blocked_name(index: int) -> str:
    # Seven digits keep 1M names the same length as 200k names, so packets are alike.
    return f"blocked{index:07d}.example-ai.net"


@dataclass
class Settings:
    names: int
    duration: float
    latency_duration: float
    rounds: int
    mixes: tuple[str, ...]
    servers: tuple[str, ...]
    output_dir: Path
    scale_sizes: tuple[int, ...]
    miss_queries: int
    blocked_queries: int
    cached_names: int
    aiwall_workers: int | None
    aiwall_set: tuple[tuple[str, Any], ...]
    pin: tuple[str, str] | None
    timeout: float
    quiet_wait: float
    aiwall_ref: str
    retries: int
    unbound_threads: int
    keep_workdir: bool
    smoke: bool
    # The workers phase: aiwall with each of these worker counts, and this many names.
    worker_counts: tuple[int, ...] = (1, 2)
    workers_names: int = 1_000_000
    # The pauses phase (bench/pauses.py): aiwall with this many names under this many
    # queries a second; 0 names: no such phase.
    pause_names: int = 1_000_000
    pause_rate: int = 5_000
