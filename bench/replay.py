"""A fixed replay through the real server in one process: for the CI's instruction-count
guard (callgrind) and for the README's per-stage breakdown of a query's time.

The server is started as ``aiwall serve`` would (Server.start: policy, audit trail, UDP
listener), with a 20,000-name list and an upstream that answers in the same event loop.
Each question goes over a real loopback socket and is read by the listener's own
``_on_readable``; nothing else runs meanwhile (the audit writer's interval is longer
than the replay), so the work per question is the same from run to run.

The phases, in order, each over the same fixed names:
- ``miss``: names the upstream answers (the cache is empty);
- ``cached``: the same names again, answered by the cache through the pipeline;
- ``cached-fast``: once more, answered from the fast path;
- ``blocked``: names on the list, first seen, through the pipeline (the fast path's
  first answers off, as for a client it does not know yet);
- ``blocked-first``: other names on the list, first seen, answered by the fast path's
  first-answer path (``FastPath._first_block``), as for a known client;
- ``blocked-fast``: the ``blocked`` names again, from the fast path.

    python bench/replay.py --stages            # microseconds per stage, per phase
    python bench/replay.py --marks             # for callgrind (tests/perf)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.settings import blocked_name
from resolver import compiled
from resolver.config import config_from_mapping
from resolver.dns import responses
from resolver.serve import fastpath, transport
from resolver.serve.server import Server
from resolver.serve.transport import UdpListener

LIST_NAMES = 20_000
PHASES = ("miss", "cached", "cached-fast", "blocked", "blocked-first", "blocked-fast")
_A_RECORD = struct.pack("!HHHIH4s", 0xC00C, 1, 1, 300, 4, bytes([192, 0, 2, 1]))


_CATALOG = """\
id: replay
name: Replay
vendor: Replay
vendor_country: US
data_location: {country: US, source: "https://replay.example/privacy"}
categories: [chat_assistant]
domains:
  - {name: replay-ai.example, role: ui}
sources: ["https://replay.example/"]
verified: 2026-11-29
"""


def _query(name: str, query_id: int) -> bytes:
    header = struct.pack("!HHHHHH", query_id, 0x0100, 1, 0, 0, 1)
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    opt = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"  # EDNS0, 1232 bytes
    return header + labels + b"\x00\x00\x01\x00\x01" + opt


class _Upstream(asyncio.DatagramProtocol):
    """Answers every question with one A record at once (no EDNS, no checks)."""

    transport: asyncio.DatagramTransport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        end = data.index(b"\x00", 12) + 5
        header = data[:2] + b"\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00"
        self.transport.sendto(header + data[12:end] + _A_RECORD, addr)


class Replay:
    def __init__(self, workdir: Path, count: int) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.count = count
        self.loop = asyncio.new_event_loop()
        # The listener is driven from outside the loop: what it schedules (a miss's
        # upstream exchange) must land on this loop.
        asyncio.set_event_loop(self.loop)
        self.client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.client.bind(("127.0.0.1", 0))
        self.client.setblocking(False)

    def start(self) -> UdpListener:
        lists = self.workdir / "names.txt"
        lists.write_text("".join(blocked_name(i) + "\n" for i in range(LIST_NAMES)))
        upstream_transport, _ = self.loop.run_until_complete(
            self.loop.create_datagram_endpoint(_Upstream, local_addr=("127.0.0.1", 0))
        )
        host, port = upstream_transport.get_extra_info("sockname")[:2]
        raw = {
            "listen": {"dns": ["127.0.0.1:0"]},
            "upstream": {"servers": [f"{host}:{port}"]},
            "blocking": {"lists": [{"path": str(lists)}]},
            "audit": {"flush_interval": 60},
            "state": {"directory": str(self.workdir / "state")},
            "logging": {"level": "warning"},
        }
        # One catalog service: start-up stays short under callgrind, and the work per
        # question does not depend on the catalog's size (hash lookups per label).
        catalog = self.workdir / "catalog"
        catalog.mkdir()
        (catalog / "replay.yaml").write_text(_CATALOG, encoding="utf-8")
        config = config_from_mapping(raw, base_dir=self.workdir)
        self.server = Server(config, catalog_dir=catalog)
        self.loop.run_until_complete(self.server.start())
        listener = self.server.data._listeners.udp[0]
        self.target = self.server.dns_endpoints[0]
        return listener

    def names(self, phase: str) -> list[str]:
        if phase.startswith("blocked"):
            # A quarter asked below the listed name, as in the benchmark's blocked mix.
            step = LIST_NAMES // self.count
            other = 1 if phase == "blocked-first" else 0
            return [
                ("www." if i % 4 == 0 else "") + blocked_name(i * step + other)
                for i in range(self.count)
            ]
        return [f"www.host{i}.replay-cached.test" for i in range(self.count)]

    def questions(self, phase: str) -> list[bytes]:
        return [_query(name, i & 0xFFFF) for i, name in enumerate(self.names(phase))]

    def ask(self, listener: UdpListener, data: bytes, wait: bool) -> bytes:
        address = (self.target.host, self.target.port)
        self.client.sendto(data, address)
        if wait:
            # A miss asks the upstream from the listener's callback: run it in the loop,
            # as the selector would.
            self.loop.call_soon(listener._on_readable)
            return self.loop.run_until_complete(self.loop.sock_recv(self.client, 65535))
        listener._on_readable()
        return self.client.recv(65535)

    def run(
        self, listener: UdpListener, phase: str, on_each: Callable[[], None] | None = None
    ) -> None:
        wait = phase == "miss"
        fast = self.server.data.fast
        # The pipeline's own first answers: the fast path's first-answer path off.
        blocker, fast.blocker = fast.blocker, None if phase == "blocked" else fast.blocker
        try:
            self._ask_all(listener, phase, wait, on_each)
        finally:
            fast.blocker = blocker

    def _ask_all(
        self, listener: UdpListener, phase: str, wait: bool, on_each: Callable[[], None] | None
    ) -> None:
        for data in self.questions(phase):
            answer = self.ask(listener, data, wait)
            if answer[:2] != data[:2]:
                raise RuntimeError(f"{phase}: an answer to another question")
            if on_each is not None:
                on_each()

    def stop(self) -> None:
        self.loop.run_until_complete(self.server.stop())
        self.client.close()
        self.loop.close()


# --- stage timing ------------------------------------------------------------------


class _Totals(dict[str, float]):
    def timed(self, key: str, function: Callable[..., Any]) -> Callable[..., Any]:
        self.setdefault(key, 0.0)

        def run(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self[key] = self.get(key, 0.0) + time.perf_counter() - start

        return run


class _TimedStage:
    """Stands in front of a pipeline stage and times it, what follows it included."""

    def __init__(self, inner: Any, totals: _Totals) -> None:
        self.name = inner.name
        self.handle = totals.timed(self.name, inner.handle)


class _TimedSocket:
    def __init__(self, sock: socket.socket, totals: _Totals) -> None:
        self.recvfrom = totals.timed("socket: read the question", sock.recvfrom)
        self.recvmsg = totals.timed("socket: read the question", sock.recvmsg)
        self.sendto = totals.timed("socket: send the answer", sock.sendto)
        self.sendmsg = totals.timed("socket: send the answer", sock.sendmsg)
        self.fileno = sock.fileno
        self.close = sock.close


def _instrument(replay: Replay, listener: UdpListener) -> tuple[_Totals, list[str]]:
    """Time every stage of this server's path; returns the totals and the pipeline's
    stage names, outermost first."""
    totals = _Totals()
    pipeline = replay.server.data.pipeline
    runner = replay.server.data.runner
    assert pipeline is not None
    assert runner is not None
    names = []
    stage: Any = pipeline.head
    runner.head = _TimedStage(stage, totals)  # type: ignore[assignment]
    while stage is not None:
        names.append(stage.name)
        following = getattr(stage, "_next", None)
        if following is not None:
            stage._next = _TimedStage(following, totals)
        stage = following
    blocking = pipeline.blocking
    blocking._attempts = totals.timed(_AUDIT_IN_PIPELINE, blocking._attempts)
    fast = replay.server.data.fast
    fast.answer = totals.timed(_LOOKUP, fast.answer)  # type: ignore[method-assign]
    # The first-answer path, inside the look-up: its parts, taken out of the look-up.
    fastpath.plain_question = totals.timed(_PLAIN, _PLAIN_QUESTION)
    assert fast.blocker is not None
    fast.blocker.blocks = totals.timed(_DECIDE, fast.blocker.blocks)  # type: ignore[method-assign]
    responses.BlockAnswers.plain = totals.timed(_WRITE, _WRITE_PLAIN)  # type: ignore[method-assign]
    fast.keep = totals.timed("fast path: keep", fast.keep)  # type: ignore[method-assign]
    if fast._audit is not None:
        fast._audit = totals.timed(_AUDIT, fast._audit)
    listener._sock = _TimedSocket(listener._sock, totals)  # type: ignore[assignment]
    transport.parse_query = totals.timed("parse the question", _PARSE)
    transport.encode_answer = totals.timed("encode the answer", _ENCODE)
    return totals, names


_AUDIT = "audit: record the attempt"
_LOOKUP = "fast path: look up"
_PLAIN = "fast path: read a plain question"
_DECIDE = "fast path: blocking decision (policy lookup, verdict)"
_WRITE = "fast path: write the block answer"
_INSIDE_LOOKUP = (_AUDIT, _PLAIN, _DECIDE, _WRITE)
_PLAIN_QUESTION = fastpath.plain_question
_WRITE_PLAIN = responses.BlockAnswers.plain
# Called by the blocking stage: taken out of its time, shown with the fast path's own.
_AUDIT_IN_PIPELINE = "audit (from the blocking stage)"
_PARSE = transport.parse_query
_ENCODE = transport.encode_answer


def _per_question(totals: _Totals, names: list[str], wall: float, count: int) -> dict[str, float]:
    """Microseconds per question: each pipeline stage without the stages after it."""
    split: dict[str, float] = {}
    for outer, inner in zip(names, [*names[1:], None], strict=True):
        own = totals.get(outer, 0.0) - (totals.get(inner, 0.0) if inner else 0.0)
        if totals.get(outer):
            split[f"pipeline: {outer}"] = own
    in_pipeline = totals.get(_AUDIT_IN_PIPELINE, 0.0)
    if in_pipeline:
        split["pipeline: blocking"] -= in_pipeline
        split[_AUDIT] = split.get(_AUDIT, 0.0) + in_pipeline
    for key, value in totals.items():
        if key not in names and key != _AUDIT_IN_PIPELINE:
            split[key] = split.get(key, 0.0) + value if key == _AUDIT else value
    # The fast path's own audit record and first-answer parts are called from its
    # look-up: counted once.
    for inside in _INSIDE_LOOKUP:
        if totals.get(inside):
            split[_LOOKUP] -= totals[inside]
    split["everything else (client, kernel, event loop, timers)"] = wall - sum(split.values())
    return {key: round(value / count * 1e6, 2) for key, value in split.items() if value}


def stages(workdir: Path, count: int) -> dict[str, dict[str, float]]:
    """Per phase: microseconds per question, end to end in this process (``total``,
    nothing timed inside), then split by stage on a second, identical server."""
    plain = Replay(workdir / "plain", count)
    listener = plain.start()
    totals_by_phase = {}
    for phase in PHASES:
        start = time.perf_counter()
        plain.run(listener, phase)
        totals_by_phase[phase] = (time.perf_counter() - start) / count * 1e6
    plain.stop()
    timed = Replay(workdir / "timed", count)
    listener = timed.start()
    totals, names = _instrument(timed, listener)
    results = {}
    for phase in PHASES:
        totals.clear()
        start = time.perf_counter()
        timed.run(listener, phase)
        wall = time.perf_counter() - start
        split = _per_question(totals, names, wall, count)
        results[phase] = {"total, untimed": round(totals_by_phase[phase], 2), **split}
    timed.stop()
    transport.parse_query, transport.encode_answer = _PARSE, _ENCODE
    fastpath.plain_question = _PLAIN_QUESTION
    responses.BlockAnswers.plain = _WRITE_PLAIN  # type: ignore[method-assign]
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="questions per phase")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--marks", action="store_true", help="call getppid() after each phase")
    mode.add_argument("--stages", action="store_true", help="time each stage (JSON)")
    args = parser.parse_args()
    if args.stages and compiled.COMPILED:
        # Each stage is timed by a wrapper put in front of it, which compiled code, calling
        # its stages directly, would never go through: the stages are timed on the source
        # modules (the same code, run by the interpreter).
        environ = dict(os.environ, AIWALL_PURE="1")
        os.execve(sys.executable, [sys.executable, *sys.argv], environ)
    with tempfile.TemporaryDirectory(prefix="aiwall-replay-") as directory:
        if args.stages:
            print(json.dumps(stages(Path(directory), args.count), indent=2))
            return 0
        # One instant for the whole replay: under callgrind a phase takes longer than a
        # second, which would send cached answers back through the pipeline at random
        # moments; frozen, every run does the same work (no timer fires either).
        frozen = time.monotonic()
        time.monotonic = lambda: frozen
        replay = Replay(Path(directory), args.count)
        listener = replay.start()
        os.getppid()  # the end of start-up: callgrind dumps what came before
        for phase in PHASES:
            replay.run(listener, phase)
            os.getppid()
        replay.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
