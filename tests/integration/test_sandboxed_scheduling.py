"""aiwall under the shipped systemd unit's system-call filter: its background processes
(the audit trail's writer, the reload builders' forker) lower their own scheduling
priority, and the unit refuses the calls that do it with EPERM (``@resources``). A
refusal must cost only the priority: the audit trail is still written and reloads still
apply.

The kernel's refusal is made by strace's fault injection (``inject=...:error=EPERM``),
which fails exactly those calls as the unit's seccomp filter does; the real server is
asked by dnspython."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.rcode
import pytest

from resolver.background import SYSCALLS, YIELD_SYSCALL
from tests.fakes.upstream import FakeUpstream
from tests.integration.test_one_server import ask, config_for
from tests.peers.aiwall import Aiwall
from tests.peers.wait import wait_until

# What a sandbox refuses: what the unit's @resources filter did (the calls that change a
# priority: met when the helpers step aside), and everything the helpers call about
# priorities (the readers too: sched_getscheduler is met when the writer steps back).
# And the call the writer makes between pieces of its work (``give_way``).
REFUSALS = [("setpriority", "sched_setscheduler"), SYSCALLS, (YIELD_SYSCALL,)]
MET = {
    REFUSALS[0]: {"setpriority", "sched_setscheduler"},
    SYSCALLS: {"sched_getscheduler"},
    REFUSALS[2]: {YIELD_SYSCALL},
}


def strace_prefix(trace: Path, refused: str) -> list[str]:
    strace = shutil.which("strace")
    assert strace, "strace is installed by tests/tools/install-system-deps.sh"
    return [
        strace,
        "-f",
        "-qq",
        "--seccomp-bpf",  # only the refused calls stop the processes
        "-o",
        str(trace),
        "-e",
        f"trace={refused}",
        "-e",
        f"inject={refused}:error=EPERM",
    ]


def attempts_written(state: Path) -> int:
    database = state / "audit.db"
    if not database.exists():
        return 0
    with sqlite3.connect(database) as db:
        try:
            return int(db.execute("SELECT COALESCE(SUM(count), 0) FROM attempts").fetchone()[0])
        except sqlite3.OperationalError:  # the table is not there yet
            return 0


@pytest.fixture(params=REFUSALS, ids=lambda calls: "+".join(calls))
def refused(
    request: pytest.FixtureRequest, upstream: FakeUpstream, catalog_dir: Path, tmp_path: Path
) -> Iterator[Any]:
    """The server of one process, its scheduling calls refused; its list and state."""
    listed = tmp_path / "list.txt"
    listed.write_text("banned.example\n")
    state = tmp_path / "state"
    config = config_for(
        [upstream.server_spec],
        1,
        blocking={"lists": [str(listed)]},
        audit={"flush_interval": 0.1},
        state={"directory": str(state)},
    )
    trace = tmp_path / "strace.out"
    calls = ",".join(request.param)
    server = Aiwall(config, tmp_path, catalog_dir=catalog_dir, prefix=strace_prefix(trace, calls))
    try:
        server.wait_serving(60)
        yield server, listed, state, trace, request.param
    finally:
        # strace holds back the signals sent to it: aiwall itself is told to stop.
        if server.alive and server.server_pid != server.pid:
            os.kill(server.server_pid, signal.SIGTERM)
        server.stop()


def test_refused_priority_calls_cost_neither_the_audit_trail_nor_reloads(refused: Any) -> None:
    server, listed, state, trace, calls = refused
    assert ask(server, "banned.example").rcode() == dns.rcode.NXDOMAIN
    wait_until(lambda: attempts_written(state) >= 1, 20, "the attempt in the audit trail")

    listed.write_text("banned.example\nsecond.example\n")
    before = server.metric("aiwall_reloads_total", result="success")
    os.kill(server.server_pid, signal.SIGHUP)
    wait_until(
        lambda: server.metric("aiwall_reloads_total", result="success") > before,
        60,
        "the reload",
    )
    assert ask(server, "second.example").rcode() == dns.rcode.NXDOMAIN
    wait_until(lambda: attempts_written(state) >= 2, 20, "the second attempt written")

    assert server.metric("aiwall_audit_degraded") == 0

    # The stop: the writer cannot take back a priority either, and still writes its
    # last flush before the server exits 0.
    assert ask(server, "banned.example", "AAAA").rcode() == dns.rcode.NXDOMAIN
    os.kill(server.server_pid, signal.SIGTERM)
    assert server.proc.wait(30) == 0, server.log
    assert attempts_written(state) == 3, server.log

    # The calls were made and refused (the test exercised the path it is about), and
    # nothing failed for it.
    refused = {
        line.split()[1].partition("(")[0]
        for line in trace.read_text().splitlines()
        if "INJECTED" in line
    }
    assert MET[calls] <= refused, trace.read_text()
    assert "Traceback" not in server.log, server.log
