"""Where aiwall's CPU goes per answer, stage by stage, on the real server under the
bench's load: the figures of the README's "Where a query's time goes".

aiwall runs as the bench runs it (the build of ``--aiwall-ref``, compiled where it can
be, pinned to the server's core, NSD and dnsperf on the other), and for each mix
dnsperf puts it under full load while ``perf record`` samples its processes (the
``cpu-clock`` event, which every VM has; call chains unwound from DWARF, since neither
CPython nor mypyc's code keeps frame pointers). Each sample goes to the stage of its
innermost compiled function (``STAGES``); a stage's share of the samples times the CPU
the run measured per answer (user and kernel, from the process's own counters) is its
microseconds per answer. Time in the interpreter or the kernel counts for the compiled
function that called it: a ``sendto`` for the stage that sends, a dict look-up for the
stage that made it. What no compiled function called is the event loop's own Python
(asyncio's ``_run_once``, its selector) and ``epoll_wait``.

    python bench/stages.py                             # blocked, cached, miss; 8 s each
    python bench/stages.py --mixes miss --seconds 10 --aiwall-ref worktree

Needs perf (Debian's linux-perf) and root, or perf_event_paranoid at 1 or below.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cli import parse_args
from bench.rounds import Bench
from bench.settings import BenchError
from tests.peers.process import descendants

# (stage, the compiled functions it holds, by the start of their name after mypyc's
# "CPyDef_" prefix: module, then class and function). The first that matches a
# sample's innermost compiled function (past the helpers of HELPERS) takes the sample.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("read the questions (recvfrom)", ("transport___UdpListener____on_readable",)),
    ("send the answer (sendto)", ("transport___UdpListener____send",)),
    ("fast path: look up, first blocked answers, keep", ("fastpath___", "kept___")),
    ("parse the question", ("codec___plain_", "codec___parse_", "edns___")),
    (
        "handlers: metrics, sanity, access, DDR, minimal ANY",
        ("metrics___", "sanity___", "access___", "ddr___", "minimal_any___", "clients___"),
    ),
    ("blocking: the policy's look-up and verdict", ("blocking___", "nametable___")),
    ("cache: look up, store", ("cache___", "cache_entry___")),
    (
        "upstream: the socket (reused, opened, closed)",
        (
            "udp___UdpSockets",
            "udp___UdpSocket_____init__",
            "udp___UdpSocket___close",
            "udp___UdpSocket___finish",
        ),
    ),
    ("upstream: send the query (send)", ("udp___UdpSocket___ask", "deadlines___")),
    (
        "upstream: read and check the answer (recv)",
        ("udp___UdpSocket____readable", "udp___check", "udp___UdpSocket____tell"),
    ),
    ("upstream: walk the answer", ("wire___scan_response",)),
    (
        "upstream: the query made, the answer taken",
        ("forwarding___", "forwarder___", "messages___", "idents___", "exchanges___", "health___"),
    ),
    ("answers to come (Pending, their callbacks)", ("pending___", "transport___QueryRunner")),
    ("encode the answer", ("codec___encode_answer",)),
    ("counters", ("collectors___",)),
)
# Small helpers of every stage: a sample in one counts for the stage that called it.
HELPERS = ("model___", "wire___", "responses___")
COLLECTOR = "the garbage collector"
LOOP = "the event loop (asyncio's Python, epoll_wait)"
OTHER = "other compiled code"
ORDER = (*(name for name, _ in STAGES), COLLECTOR, LOOP, OTHER)


def parse_perf_script(lines: Iterable[str]) -> list[list[str]]:
    """``perf script -F tid,ip,sym`` output: each sample's functions, innermost first."""
    samples: list[list[str]] = []
    for line in lines:
        if not line.strip():
            continue
        if not line.startswith(("\t", " " * 8)):
            samples.append([])  # a sample's header line (its thread)
            continue
        fields = line.split(None, 1)
        if samples and len(fields) == 2:
            samples[-1].append(fields[1].strip())
    return samples


def stage_of(stack: Sequence[str]) -> str:
    """The stage a sample (its functions, innermost first) belongs to."""
    if any(frame.startswith("gc_collect") for frame in stack):
        return COLLECTOR
    for frame in stack:
        if not frame.startswith("CPyDef_"):
            continue
        name = frame.removeprefix("CPyDef_")
        if name.startswith(HELPERS) and not name.startswith("wire___scan_response"):
            continue
        for stage, prefixes in STAGES:
            if name.startswith(prefixes):
                return stage
        return OTHER
    return LOOP


def shares(samples: Sequence[Sequence[str]]) -> dict[str, float]:
    """Each stage's share of the samples (0-1), in ORDER."""
    counted = Counter(stage_of(stack) for stack in samples if stack)
    total = sum(counted.values())
    return {stage: counted[stage] / total for stage in ORDER} if total else {}


def table(results: dict[str, tuple[float, float, dict[str, float]]]) -> str:
    """Markdown: µs per answer by stage, a column per mix, from (user, kernel, shares)."""
    mixes = list(results)
    lines = [
        "| stage | " + " | ".join(mixes) + " |",
        "|---|" + "---:|" * len(mixes),
    ]
    for stage in ORDER:
        cells = []
        for mix in mixes:
            user, kernel, share = results[mix]
            cells.append(f"{(user + kernel) * share.get(stage, 0.0):.1f}")
        if any(cell != "0.0" for cell in cells):
            lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    totals = [f"**{results[m][0] + results[m][1]:.1f}**" for m in mixes]
    lines.append("| **CPU per answer (user + kernel)** | " + " | ".join(totals) + " |")
    return "\n".join(lines)


def _record(pids: list[int], out: Path) -> subprocess.Popen[bytes]:
    command = ["perf", "record", "-q", "-e", "cpu-clock", "-F", "499"]
    command += ["--call-graph", "dwarf,16384", "-o", str(out), "-p", ",".join(map(str, pids))]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _samples(data: Path) -> list[list[str]]:
    script = subprocess.run(
        ["perf", "script", "-i", str(data), "-F", "tid,ip,sym"],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return parse_perf_script(script.stdout.splitlines())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--mixes", default="blocked,cached,miss")
    parser.add_argument("--seconds", type=float, default=8.0, help="per mix (default 8)")
    parser.add_argument("--aiwall-ref", default="HEAD", help="a commit, or 'worktree'")
    args = parser.parse_args(argv)
    if shutil.which("perf") is None:
        print("error: perf not found (Debian: apt-get install linux-perf)", file=sys.stderr)
        return 1
    mixes = [mix for mix in args.mixes.split(",") if mix]
    settings = parse_args(["--servers", "aiwall", "--aiwall-ref", args.aiwall_ref])
    workdir = Path(tempfile.mkdtemp(prefix="aiwall-stages-"))
    (workdir / "logs").mkdir()
    bench = Bench(settings, workdir)
    results: dict[str, tuple[float, float, dict[str, float]]] = {}
    try:
        print(f"aiwall under test: {bench.servers.snapshot_aiwall()}", flush=True)
        bench.servers.load_catalog()
        bench.servers.start_upstream()
        server = bench.servers.start_server("aiwall", settings.names, "main")
        for mix in mixes:
            if mix == "blocked":
                queries = bench.load.blocked_queries(settings.names, workdir / "blocked.txt")
            elif mix == "cached":
                queries = bench.load.cached_queries(workdir / "cached.txt")
                bench.load.warm(server, queries)
            else:
                queries = bench.load.miss_queries("stages", settings.miss_queries)
            data = workdir / f"perf-{mix}.data"
            recorder = _record([server.proc.pid, *descendants(server.proc.pid)], data)
            result = bench.load.dnsperf(server, queries, args.seconds)
            recorder.send_signal(signal.SIGINT)
            recorder.wait(timeout=120)
            if result.user_us is None or result.kernel_us is None:
                raise BenchError(f"no answer in the {mix} run")
            results[mix] = (result.user_us, result.kernel_us, shares(_samples(data)))
            print(f"{mix}: {result.qps:,.0f} answers a second", flush=True)
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        bench.procs.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
