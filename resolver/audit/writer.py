"""The audit trail written by a process of its own, so DNS never waits for it.

Turning a second's attempts into rows (names to text, pseudonyms, JSON) and handing them
to SQLite is Python work: in a thread of the answering process it held the interpreter
lock for up to ~100 ms per flush under load, and every query in that time waited (a p99
of 67 ms at half load, against 0.3 ms with the trail off; ``make bench``, issue 13). So
the answering process only gathers attempts (``attempts.AttemptBatcher``) and, once per
``flush_interval``, its event loop hands them over a pipe, in small pickled chunks and
never for more than half a millisecond at a time (``handover``), to a writer process
(``python -m resolver.audit.writer``) that owns the sinks (``trail``).

Nothing is lost without being counted: the writer reports after every flush what each
sink has written and why it fails, if it does (the ``aiwall_audit_*`` metrics come from
there); if the writer dies, attempts it had not confirmed are counted as dropped, the
trail reports itself degraded, and a new writer is started at the next interval.
Closing sends what is left and waits for the writer to write it out.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import select
import signal
import subprocess
import sys
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from resolver.audit.attempts import AttemptBatcher, AttemptKey, Seen
from resolver.audit.handover import Handover, frame, messages, receive
from resolver.audit.trail import AuditLog, sink_names
from resolver.background import (
    give_way,
    lower_priority,
    restore_priority,
    step_aside,
    step_back,
)
from resolver.config import AuditConfig, Config, LoggingConfig, PrivacyConfig
from resolver.logs import setup_logging
from resolver.metrics import Metrics

log = logging.getLogger(__name__)

# How long closing waits for the writer to write out what it was sent.
CLOSE_TIMEOUT = 30.0
# The writer's priority where SCHED_IDLE is refused (``background.step_aside``).
WRITER_NICE = 19


class AuditWriter:
    """The answering process's side of the audit trail: what the server and the
    supervisor use (``record``, ``absorb``, ``degraded``, ``start``, ``close``). It runs
    on the event loop that ``start`` is called from."""

    def __init__(
        self,
        config: AuditConfig,
        privacy: PrivacyConfig,
        state_dir: Path,
        metrics: Metrics | None = None,
        base_dir: Path = Path("."),
        logging_config: LoggingConfig | None = None,
    ) -> None:
        # Built here too, unstarted: a bad key file is a config error at start, not a
        # writer that keeps dying.
        self._trail = AuditLog(config, privacy, state_dir, None, base_dir)
        self.config = config
        self._setup = (config, privacy, state_dir, base_dir, logging_config or LoggingConfig())
        self._metrics = metrics
        self.attempts = AttemptBatcher(bounded=True)
        self.record = self.attempts.record
        self.absorb = self.attempts.absorb
        self._sinks = sink_names(config)
        self.enabled = config.enabled and bool(self._sinks)
        self._failing: dict[str, str] = {}
        self._written: dict[str, int] = dict.fromkeys(self._sinks, 0)
        self._reported: dict[str, int] = {}  # the current writer's own totals
        self._writer_down = ""
        self._dropped_reported = 0  # the batcher's drops already counted
        self._process: subprocess.Popen[bytes] | None = None
        self._reports = -1  # the descriptor the writer reports on
        self._partial = b""  # a report not read whole yet
        self._in_flight: deque[int] = deque()  # attempts per flush not yet confirmed
        self._loop: asyncio.AbstractEventLoop | None = None  # None once closing
        self._timer: asyncio.TimerHandle | None = None
        self._handover: Handover | None = None  # the current writer's pipe, on the loop
        if metrics is not None:
            for sink in self._sinks:
                metrics.audit_degraded.labels(sink).set(0)
                metrics.audit_written.labels(sink)

    @classmethod
    def for_config(cls, config: Config, metrics: Metrics) -> AuditWriter:
        """The trail a server (or a supervisor) with this config keeps."""
        return cls(
            config.audit,
            config.privacy,
            config.state_dir,
            metrics,
            config.base_dir,
            config.logging,
        )

    # --- what the server reads ----------------------------------------------------

    @property
    def degraded(self) -> list[str]:
        """The sinks that cannot be written now, with why."""
        if self._writer_down:
            return [f"{sink}: {self._writer_down}" for sink in self._sinks]
        return [f"{sink}: {reason}" for sink, reason in self._failing.items() if reason]

    @property
    def written(self) -> int:
        """Attempts written to every sink, as the writer last reported."""
        return min(self._written.values(), default=0)

    # --- life ----------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer, and hand it what was gathered at every flush interval;
        called from the running event loop."""
        if not self.enabled:
            return
        # The table exists once the server answers, for ``aiwall report`` and the tests;
        # a sink that cannot be prepared is the writer's to report (degraded). The
        # writer process makes PostgreSQL's: DNS never waits for a database.
        self._trail.prepare(remote=False)
        self._loop = asyncio.get_running_loop()
        self._spawn()
        self._timer = self._loop.call_later(self.config.flush_interval, self._flush_due)

    async def close(self) -> None:
        """Hand over everything gathered, let the writer write it out, then stop it."""
        loop, self._loop = self._loop, None
        if loop is None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        unsent = self._detach(loop)
        # Blocking writes and a wait for the last report: in a thread, off the loop.
        await asyncio.to_thread(self._close, unsent)

    def _flush_due(self) -> None:
        assert self._loop is not None
        self._timer = self._loop.call_later(self.config.flush_interval, self._flush_due)
        if self._handover is not None and self._handover.busy:
            return  # the last batch is still going out (a slow writer): keep gathering
        batches, count = self._take()
        if self._process is None or self._process.poll() is not None:
            self._writer_died()
            if not self._respawn(count):
                return
        assert self._handover is not None
        # Unconfirmed until the writer reports the flush that follows them.
        self._in_flight.append(count)
        self._handover.send(messages(batches, ("flush",)))

    def _take(self) -> tuple[list[dict[AttemptKey, Seen]], int]:
        """What was gathered, and how many attempts that is."""
        count = self.attempts.count
        batches, dropped = self.attempts.take()
        self._count_dropped(dropped - self._dropped_reported)
        self._dropped_reported = dropped
        return batches, count

    def _respawn(self, count: int) -> bool:
        try:
            self._spawn()
        except OSError as error:
            log.error("audit log: cannot start the writer process: %s", error)
            self._count_dropped(count)
            return False
        return True

    def _spawn(self) -> None:
        # Reports come back on a pipe of their own: the writer's stdout stays the
        # server's, where ``audit.jsonl: "-"`` writes.
        reports, theirs = os.pipe()
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "resolver.audit.writer", str(theirs)],
                stdin=subprocess.PIPE,
                pass_fds=(theirs,),
            )
        finally:
            os.close(theirs)
        # At once, before its imports: it repeats this itself and logs a refusal.
        lower_priority(process.pid, WRITER_NICE, idle=True)
        self._process = process
        self._reports = reports
        self._partial = b""
        self._reported = {}
        assert process.stdin is not None
        process.stdin.write(frame(("setup", *self._setup)))  # a fresh pipe has room
        process.stdin.flush()
        if self._loop is not None:
            os.set_blocking(reports, False)
            self._loop.add_reader(reports, self._on_reports)
            self._handover = Handover(self._loop, process.stdin.fileno(), self._writer_died)

    def _detach(self, loop: asyncio.AbstractEventLoop) -> tuple[bytes, Iterator[bytes] | None]:
        """Take the writer's pipes off ``loop``; what had not been sent yet."""
        unsent: tuple[bytes, Iterator[bytes] | None] = (b"", None)
        if self._handover is not None:
            unsent = self._handover.detach()
            self._handover = None
        if self._reports >= 0:
            loop.remove_reader(self._reports)
        return unsent

    def _close(self, unsent: tuple[bytes, Iterator[bytes] | None]) -> None:
        rest, frames = unsent
        batches, count = self._take()
        if self._process is None or self._process.poll() is not None:
            self._writer_died()
            if not batches or not self._respawn(count):
                return
            rest, frames = b"", None
        process = self._process
        assert process is not None
        # The stop waits for its last flush: back to the normal priority at once, even
        # if it is still in its imports (a writer started on busy cores); it also steps
        # back itself once it reads the close.
        restore_priority(process.pid)
        assert process.stdin is not None
        os.set_blocking(process.stdin.fileno(), True)
        if self._reports >= 0:
            os.set_blocking(self._reports, True)
        self._in_flight.append(count)
        try:
            process.stdin.write(rest)
            for data in itertools.chain(frames or (), messages(batches, ("close",))):
                process.stdin.write(data)
            process.stdin.flush()
        except OSError:  # BrokenPipeError: the writer is gone
            self._writer_died()
            return
        self._read_reports(CLOSE_TIMEOUT)
        self._finish(process)

    # --- the writer's reports ------------------------------------------------------

    def _on_reports(self) -> None:
        """The reports pipe is readable (on the loop)."""
        try:
            data = os.read(self._reports, 65536)
        except BlockingIOError:
            return
        if not data:
            self._writer_died()
            return
        self._partial += data
        self._apply_lines()

    def _apply_lines(self) -> bool:
        """Apply every whole report received; True once the last one is among them."""
        while True:
            line, newline, rest = self._partial.partition(b"\n")
            if not newline:
                return False
            self._partial = rest
            report = json.loads(line)
            self._apply(report)
            if report["last"]:
                return True

    def _read_reports(self, wait: float) -> None:
        """When closing: wait up to ``wait`` seconds for the writer's last report."""
        fd = self._reports
        while not self._apply_lines():
            ready, _, _ = select.select([fd], [], [], wait)
            if not ready:
                return
            data = os.read(fd, 65536)
            if not data:
                self._writer_died()
                return
            self._partial += data

    def _apply(self, report: dict[str, Any]) -> None:
        if self._in_flight:
            self._in_flight.popleft()
        self._writer_down = ""
        metrics = self._metrics
        for sink, written in report["written"].items():
            # A writer reports its own totals; a new one starts again from 0.
            new = written - self._reported.get(sink, 0)
            self._reported[sink] = written
            self._written[sink] = self._written.get(sink, 0) + new
            if metrics is not None and new > 0:
                metrics.audit_written.labels(sink).inc(new)
        for sink, reason in report["failing"].items():
            self._failing[sink] = reason
            if metrics is not None:
                metrics.audit_degraded.labels(sink).set(1 if reason else 0)
        self._count_dropped(report["dropped"])

    def _writer_died(self) -> None:
        process = self._process
        if process is not None:
            code = process.poll()
            log.error("audit log: the writer process exited (code %s); a new one follows", code)
            self._writer_down = f"the writer process exited (code {code})"
            if self._loop is not None:
                self._detach(self._loop)
            self._process = None
            if process.stdin is not None:
                with contextlib.suppress(OSError):
                    process.stdin.close()
            os.close(self._reports)
            self._reports = -1
            self._partial = b""
            for sink in self._sinks:
                if self._metrics is not None:
                    self._metrics.audit_degraded.labels(sink).set(1)
        # What it had been sent but not confirmed is lost with it: counted, not hidden.
        self._count_dropped(sum(self._in_flight))
        self._in_flight.clear()

    def _finish(self, process: subprocess.Popen[bytes]) -> None:
        try:
            process.wait(CLOSE_TIMEOUT)
        except subprocess.TimeoutExpired:
            log.error("audit log: the writer did not finish in %g s; stopped", CLOSE_TIMEOUT)
            process.kill()
            process.wait()
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        if self._reports >= 0:
            os.close(self._reports)
            self._reports = -1
        self._process = None

    def _count_dropped(self, count: int) -> None:
        if count <= 0:
            return
        log.error("audit log: %d attempts not recorded", count)
        if self._metrics is not None:
            self._metrics.audit_dropped.inc(count)


# --- the writer process ---------------------------------------------------------------


def _report(trail: AuditLog, last: bool = False) -> str:
    dropped = trail.take_dropped()
    report = {
        "written": {sink.name: sink.written for sink in trail.sinks},
        "failing": {sink.name: sink.failing for sink in trail.sinks},
        "dropped": dropped,
        "last": last,
    }
    return json.dumps(report) + "\n"


def child_main(commands: IO[bytes], reports: IO[str]) -> int:
    """Read attempts from ``commands`` and write them to the sinks at each "flush";
    report to ``reports`` after each. Ends at "close" or when the server is gone."""
    # The server decides when the trail ends ("close", or its end of the pipe closing):
    # a Ctrl-C or a service manager's SIGTERM reaches the whole process group, and the
    # writer must still write out what the server hands over while it stops.
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, signal.SIG_IGN)
    setup = receive(commands)
    if setup is None or setup[0] != "setup":
        return 2
    _, config, privacy, state_dir, base_dir, logging_config = setup
    setup_logging(logging_config)
    # Background work: on a small gateway it shares a core with the answering process,
    # which must win every time it has a query. SCHED_IDLE (Linux) runs it only when
    # nothing else wants the core (not always: see ``give_way``, between its pieces of
    # work); nice 19 is what is left where SCHED_IDLE is refused.
    step_aside("audit log writer", WRITER_NICE, idle=True)
    trail = AuditLog(config, privacy, state_dir, None, base_dir)
    trail.prepare()
    while True:
        message = receive(commands)
        if message is not None and message[0] == "attempts":
            trail.absorb(message[1])
            give_way()  # each message is about a millisecond of the server's pickling
            continue
        last = message is None or message[0] == "close"
        if last:
            # The server's stop now waits for this flush: no longer background work.
            step_back("audit log writer")
        trail.flush(last=last)
        try:
            reports.write(_report(trail, last=last))
            reports.flush()
        except BrokenPipeError:
            return 0  # the server is gone: what it sent is written, nobody to tell
        if last:
            return 0


if __name__ == "__main__":
    # stdin: the server's pickled commands; the descriptor named: a JSON report per flush.
    report_stream = os.fdopen(int(sys.argv[1]), "w", encoding="utf-8")
    code = child_main(sys.stdin.buffer, report_stream)
    with contextlib.suppress(BrokenPipeError):
        report_stream.close()
    sys.exit(code)
