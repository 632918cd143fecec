"""aiwall under the system-call filter of the shipped systemd unit, as the unit's own
config runs it (deploy/systemd/aiwall.yaml: the default workers, the whole catalog,
the audit trail on), moved to loopback ports and a fake upstream.

Every system call the unit's ``SystemCallFilter=`` lines deny (as ``systemd-analyze``
expands them) fails with EPERM, as ``SystemCallErrorNumber=EPERM`` makes it: strace's
fault injection stands in for the seccomp filter, which needs systemd to install. The
server must then do what it does in an office: block, forward, write the audit trail,
reload on SIGHUP, serve its metrics and stop cleanly. A denied call it makes shows in
the failure messages. (Run as root, as here, SQLite also hands its journal files to the
database's owner, ``fchown``, which ``@privileged`` denies; it goes on without, and does
that only as root: the unit's dynamic user never makes the call.)

With the filter of the unit before it let ``setpriority`` back in, and the helpers'
priority calls unguarded, this fails: the audit writer dies at every start."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.rcode
import pytest
import yaml

from tests.fakes.upstream import DEFAULT_A, FakeUpstream
from tests.integration.test_deploy_files import DEPLOY, syscalls, tool, unit_settings
from tests.integration.test_one_server import ask
from tests.integration.test_sandboxed_scheduling import attempts_written
from tests.peers.aiwall import ROOT, Aiwall
from tests.peers.ports import free_port
from tests.peers.process import descendants
from tests.peers.wait import wait_until


def denied_by_the_unit() -> list[str]:
    """The system calls the unit's filter denies: every call systemd-analyze knows of
    (its groups, and the kernel's calls in none of them), less what the lines allow."""
    analyze = tool("systemd-analyze", "/usr/bin/systemd-analyze")
    listing = subprocess.run(
        [analyze, "syscall-filter"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    # Members are indented names; the calls in no group are listed as "#   name".
    known = {line.strip().lstrip("#").strip() for line in listing.splitlines()}
    known = {name for name in known if name and " " not in name and not name.startswith("@")}
    allowed: set[str] = set()
    for value in unit_settings()["SystemCallFilter"]:
        names = syscalls(analyze, value.removeprefix("~").split())
        allowed = allowed - names if value.startswith("~") else allowed | names
    return sorted(known - allowed)


def injected(trace: Path) -> list[str]:
    return [line for line in trace.read_text().splitlines() if "INJECTED" in line]


@pytest.fixture
def filtered(
    upstream: FakeUpstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Aiwall, Path, Path, Path]]:
    strace = shutil.which("strace")
    assert strace, "strace is installed by tests/tools/install-system-deps.sh"
    # "?": a name this strace does not know (another architecture's) is no error.
    denied = ",".join(f"?{name}" for name in denied_by_the_unit())
    config: dict[str, Any] = yaml.safe_load((DEPLOY / "systemd" / "aiwall.yaml").read_text())
    listed = tmp_path / "office.txt"
    listed.write_text("banned.example\n")
    config["listen"] = {"dns": [f"127.0.0.1:{free_port()}"], "http": f"127.0.0.1:{free_port()}"}
    config["upstream"]["servers"] = [upstream.server_spec]
    config["blocking"]["lists"] = [str(listed)]
    config["state"]["directory"] = str(tmp_path / "state")
    config["audit"] = {"flush_interval": 0.1}
    # The unit's Environment= lines, pointed at this checkout's catalog.
    monkeypatch.setenv("AIWALL_PROTECTED_PATH", str(ROOT / "blocklists" / "protected.txt"))
    trace = tmp_path / "strace.out"
    prefix = [strace, "-f", "-qq", "--seccomp-bpf", "-o", str(trace)]
    prefix += ["-e", f"trace={denied}", "-e", f"inject={denied}:error=EPERM"]
    server = Aiwall(config, tmp_path, catalog_dir=ROOT / "blocklists" / "catalog", prefix=prefix)
    try:
        server.wait_serving(120)
        yield server, listed, tmp_path / "state", trace
    finally:
        # strace holds back the signals sent to it: aiwall itself is told to stop.
        if server.alive and len(descendants(server.pid)) > 1:
            os.kill(descendants(server.pid)[1], signal.SIGTERM)
        server.stop()


def test_the_units_own_config_works_under_its_system_call_filter(
    filtered: tuple[Aiwall, Path, Path, Path],
) -> None:
    server, listed, state, trace = filtered
    aiwall = descendants(server.pid)[1]  # strace's child
    said = lambda: f"denied calls made: {injected(trace)[:20]}\n{server.tail(40)}"  # noqa: E731

    assert ask(server, "chat.deepseek.com").rcode() == dns.rcode.NXDOMAIN, said()
    assert ask(server, "banned.example").rcode() == dns.rcode.NXDOMAIN, said()
    forwarded = ask(server, "www.python.org")
    assert [str(r) for rrset in forwarded.answer for r in rrset] == [DEFAULT_A], said()
    wait_until(lambda: attempts_written(state) >= 2, 30, "the attempts in the audit trail")

    listed.write_text("banned.example\nsecond.example\n")
    before = server.metric("aiwall_reloads_total", result="success")
    os.kill(aiwall, signal.SIGHUP)
    wait_until(
        lambda: server.metric("aiwall_reloads_total", result="success") > before,
        60,
        "the reload",
    )
    assert ask(server, "second.example").rcode() == dns.rcode.NXDOMAIN, said()
    assert server.metric("aiwall_audit_degraded") == 0, said()

    os.kill(aiwall, signal.SIGTERM)
    assert server.proc.wait(30) == 0, said()
    assert attempts_written(state) == 3, said()
    assert "Traceback" not in server.log, said()
    assert '"level": "error"' not in server.log, said()
