"""The audit trail's writer process (``audit.writer``): attempts handed over a pipe are
written once, its reports drive the metrics, and its death loses nothing uncounted. The
hand-over runs on the event loop (``audit.handover``), so each test runs in one."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path

from resolver.audit.writer import AuditWriter
from resolver.config import AuditConfig, PrivacyConfig
from resolver.metrics import Metrics


async def until(check: Callable[[], bool], within: float = 10.0) -> None:
    """Let the event loop run until ``check()`` holds."""
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "gave up waiting"
        await asyncio.sleep(0.02)


def run(body: Callable[[], Coroutine[None, None, None]]) -> None:
    asyncio.run(body())


def rows(state: Path) -> int:
    with sqlite3.connect(state / "audit.db") as db:
        return int(db.execute("SELECT COALESCE(SUM(count), 0) FROM attempts").fetchone()[0])


def record(writer: AuditWriter, first: int, count: int) -> None:
    for i in range(first, first + count):
        name = f"n{i}.deepseek.com"
        writer.record("192.0.2.1", "default", name, 1, "deepseek", "chat", "blocked")


def test_attempts_are_written_by_another_process_and_counted(tmp_path: Path) -> None:
    metrics = Metrics()
    writer = AuditWriter(AuditConfig(flush_interval=0.05), PrivacyConfig(), tmp_path, metrics)

    async def body() -> None:
        writer.start()
        process = writer._process
        assert process is not None
        assert process.pid != os.getpid()
        record(writer, 0, 1200)  # more than one chunk
        await until(lambda: metrics.audit_written.labels("sqlite")._value.get() == 1200)
        assert rows(tmp_path) == 1200
        record(writer, 5000, 7)
        await writer.close()  # what is left is written before close returns
        assert rows(tmp_path) == 1207
        assert process.poll() == 0

    run(body)


def test_the_hand_over_runs_on_the_event_loop_a_slice_at_a_time(tmp_path: Path) -> None:
    """No second thread runs Python in the answering process (it would make the loop
    wait for the interpreter lock after its system calls), and a large batch goes out
    over many turns of the loop, not in one callback that keeps it."""
    writer = AuditWriter(AuditConfig(flush_interval=0.05), PrivacyConfig(), tmp_path, Metrics())

    async def body() -> None:
        writer.start()
        turns = 0
        busy_turns = 0

        async def count_turns() -> None:
            nonlocal turns, busy_turns
            while True:
                await asyncio.sleep(0)
                turns += 1
                if writer._handover is not None and writer._handover.busy:
                    busy_turns += 1

        counter = asyncio.create_task(count_turns())
        record(writer, 0, 20_000)
        await until(lambda: writer.written == 20_000, within=60)
        assert threading.active_count() == 1
        counter.cancel()
        assert busy_turns > 5  # the batch of 100 chunks went out between other work
        await writer.close()
        assert rows(tmp_path) == 20_000

    run(body)


def test_a_stopped_writer_fills_the_pipe_without_holding_the_loop_or_losing_a_row(
    tmp_path: Path,
) -> None:
    """A writer that does not read (stopped, or starved of CPU): the pipe fills, the
    loop waits for it to drain as for any socket, attempts keep being gathered, and once
    the writer reads again every one is written."""
    writer = AuditWriter(AuditConfig(flush_interval=0.05), PrivacyConfig(), tmp_path, Metrics())

    async def body() -> None:
        writer.start()
        process = writer._process
        assert process is not None
        record(writer, 0, 3)
        await until(lambda: writer.written == 3)
        process.send_signal(signal.SIGSTOP)
        try:
            record(writer, 100, 30_000)  # far more than a pipe holds
            await until(lambda: writer._handover is not None and writer._handover._waiting)
            started = time.monotonic()
            await asyncio.sleep(0.2)  # the loop runs: several flush intervals pass
            assert time.monotonic() - started < 1.0
            record(writer, 50_000, 10)  # gathered while the last batch waits
        finally:
            process.send_signal(signal.SIGCONT)
        await until(lambda: writer.written == 30_013, within=60)
        await writer.close()
        assert rows(tmp_path) == 30_013

    run(body)


def test_the_writer_only_runs_when_the_server_leaves_the_core_idle(tmp_path: Path) -> None:
    """On a one-core gateway the writer must never take the core from a query: it runs
    under SCHED_IDLE (a waking server preempts it at once), at nice 19. From the
    start: its imports cost about 0.3 s of CPU, which at the server's priority took
    the server's core for tens of milliseconds at every start, so the server lowers it
    the moment it exists, while the new interpreter is still starting (the writer's
    own step aside comes only after its imports)."""
    writer = AuditWriter(AuditConfig(flush_interval=0.05), PrivacyConfig(), tmp_path, Metrics())

    async def body() -> None:
        writer.start()
        try:
            process = writer._process
            assert process is not None
            assert os.sched_getscheduler(process.pid) == os.SCHED_IDLE
            assert os.getpriority(os.PRIO_PROCESS, process.pid) == 19
            record(writer, 0, 3)
            await until(lambda: rows(tmp_path) == 3)  # set up and writing
            assert os.sched_getscheduler(process.pid) == os.SCHED_IDLE
            assert os.getpriority(os.PRIO_PROCESS, process.pid) == 19
            assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the server's is unchanged
        finally:
            await writer.close()

    run(body)


def test_a_dead_writer_is_replaced_and_what_it_lost_is_counted(tmp_path: Path) -> None:
    metrics = Metrics()
    writer = AuditWriter(AuditConfig(flush_interval=0.05), PrivacyConfig(), tmp_path, metrics)

    async def body() -> None:
        writer.start()
        record(writer, 0, 50)
        await until(lambda: writer.written == 50)
        first = writer._process
        assert first is not None
        # Stopped, so it cannot confirm what it is sent next; then killed.
        first.send_signal(signal.SIGSTOP)
        record(writer, 100, 30)
        await until(lambda: sum(writer._in_flight) == 30)
        first.kill()
        await until(lambda: writer._process is not None and writer._process is not first)
        record(writer, 200, 20)
        await until(lambda: writer.written >= 70)
        await writer.close()

    run(body)
    dropped = metrics.audit_dropped._value.get()
    assert rows(tmp_path) + dropped == 100
    assert dropped == 30
    assert rows(tmp_path) == 70


def test_jsonl_to_stdout_still_reaches_the_servers_stdout(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio
        from pathlib import Path
        from resolver.audit.writer import AuditWriter
        from resolver.config import AuditConfig, PrivacyConfig
        config = AuditConfig(sqlite="", jsonl="-")
        writer = AuditWriter(config, PrivacyConfig(), Path({str(tmp_path)!r}))
        async def main():
            writer.start()
            writer.record(
                "192.0.2.1", "default", "chat.deepseek.com", 1, "deepseek", "chat", "blocked"
            )
            await writer.close()
        asyncio.run(main())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert '"name": "chat.deepseek.com"' in done.stdout
    assert '"action": "blocked"' in done.stdout
