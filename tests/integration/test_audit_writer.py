"""The audit trail's writer process (``audit.writer``): attempts handed over a pipe are
written once, its reports drive the metrics, and its death loses nothing uncounted."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

from resolver.audit.writer import AuditWriter
from resolver.config import AuditConfig, PrivacyConfig
from resolver.metrics import Metrics
from tests.peers.wait import wait_until


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
    writer.start()
    process = writer._process
    assert process is not None
    assert process.pid != os.getpid()
    record(writer, 0, 1200)  # more than one chunk
    wait_until(lambda: metrics.audit_written.labels("sqlite")._value.get() == 1200)
    assert rows(tmp_path) == 1200
    record(writer, 5000, 7)
    writer.close()  # what is left is written before close returns
    assert rows(tmp_path) == 1207
    assert process.poll() == 0


def test_the_writer_only_runs_when_the_server_leaves_the_core_idle(tmp_path: Path) -> None:
    """On a one-core gateway the writer must never take the core from a query: it runs
    under SCHED_IDLE (a waking server preempts it at once), at nice 19."""
    writer = AuditWriter(AuditConfig(flush_interval=0.05), PrivacyConfig(), tmp_path, Metrics())
    writer.start()
    try:
        process = writer._process
        assert process is not None
        record(writer, 0, 3)
        wait_until(lambda: rows(tmp_path) == 3)  # set up and writing
        assert os.sched_getscheduler(process.pid) == os.SCHED_IDLE
        assert os.getpriority(os.PRIO_PROCESS, process.pid) == 19
        assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the server's own is unchanged
    finally:
        writer.close()


def test_a_dead_writer_is_replaced_and_what_it_lost_is_counted(tmp_path: Path) -> None:
    metrics = Metrics()
    writer = AuditWriter(AuditConfig(flush_interval=0.05), PrivacyConfig(), tmp_path, metrics)
    writer.start()
    record(writer, 0, 50)
    wait_until(lambda: writer.written == 50)
    first = writer._process
    assert first is not None
    # Stopped, so it cannot confirm what it is sent next; then killed.
    first.send_signal(signal.SIGSTOP)
    record(writer, 100, 30)
    wait_until(lambda: sum(writer._in_flight) == 30)
    first.kill()
    wait_until(lambda: writer._process is not None and writer._process is not first)
    record(writer, 200, 20)
    wait_until(lambda: writer.written >= 70)
    writer.close()
    dropped = metrics.audit_dropped._value.get()
    assert rows(tmp_path) + dropped == 100
    assert dropped == 30
    assert rows(tmp_path) == 70


def test_jsonl_to_stdout_still_reaches_the_servers_stdout(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from resolver.audit.writer import AuditWriter
        from resolver.config import AuditConfig, PrivacyConfig
        config = AuditConfig(sqlite="", jsonl="-")
        writer = AuditWriter(config, PrivacyConfig(), Path({str(tmp_path)!r}))
        writer.start()
        writer.record("192.0.2.1", "default", "chat.deepseek.com", 1, "deepseek", "chat", "blocked")
        writer.close()
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert '"name": "chat.deepseek.com"' in done.stdout
    assert '"action": "blocked"' in done.stdout
