"""aiwall in the sandbox of the shipped systemd unit, as the unit's own config runs it
(deploy/systemd/aiwall.yaml: the default workers, the whole catalog, the audit trail
on), moved to loopback ports and a fake upstream. systemd is not here to build the
sandbox, so the test builds the parts that could break aiwall:
- the system-call filter: every call the unit's ``SystemCallFilter=`` lines deny (as
  ``systemd-analyze`` expands them) fails with EPERM, as ``SystemCallErrorNumber=EPERM``
  makes it, by strace's fault injection;
- ``ProtectSystem=strict``: every file system read-only but the API ones and one
  writable folder (standing for ``StateDirectory=`` and ``PrivateTmp=``, which hold the
  state directory and /tmp);
- ``ProtectProc=invisible`` and ``ProcSubset=pid``: a /proc of its own processes only
  (no /proc/net, no /proc/meminfo), in a PID namespace of its own;
- ``PrivateDevices=``: a /dev of its own with null, zero, full, random, urandom, tty and
  /dev/shm; ``ProtectKernelTunables=``, ``ProtectControlGroups=``: /sys read-only.
The server must then do what it does in an office: block, forward, write the audit
trail, reload on SIGHUP, serve its metrics and stop cleanly. A denied call it makes
shows in the failure messages. (Run as root, as here, SQLite also hands its journal files to the
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
from tests.integration.test_deploy_files import DEPLOY, allowed_by_the_unit, tool
from tests.integration.test_one_server import ask
from tests.integration.test_sandboxed_scheduling import attempts_written
from tests.peers.aiwall import ROOT, Aiwall
from tests.peers.ports import free_port
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
    return sorted(known - allowed_by_the_unit(analyze))


# Run inside new mount and PID namespaces: /proc of this PID namespace's processes only;
# a /dev of its own with the basic devices and /dev/shm; then every mount read-only but
# /proc, /dev and $WRITABLE (/sys included).
SANDBOX = """set -e
mount --make-rprivate /
mount --bind "$WRITABLE" "$WRITABLE"
mount -t proc -o subset=pid,hidepid=invisible proc /proc
host_dev="$WRITABLE/.host-dev"
mkdir -p "$host_dev"
mount --rbind /dev "$host_dev"
mount -t tmpfs -o mode=0755,nosuid,noexec tmpfs /dev
for node in null zero full random urandom tty; do
  touch "/dev/$node"
  mount --bind "$host_dev/$node" "/dev/$node"
done
mkdir /dev/shm
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm
umount -l "$host_dev"
rmdir "$host_dev"
for m in $(awk '{print $5}' /proc/self/mountinfo | sort -u); do
  case "$m" in /proc|/proc/*|/dev|/dev/*|"$WRITABLE") ;;
  *) mount -o remount,bind,ro "$m" ;; esac
done
exec "$@"
"""


def sandbox_prefix(writable: Path) -> list[str]:
    unshare = tool("unshare", "/usr/bin/unshare")
    command = [unshare, "--mount", "--pid", "--fork", "--kill-child", "sh", "-c", SANDBOX]
    return [*command, "sandbox"]  # $0 of the script; the rest is "$@"


def injected(trace: Path) -> list[str]:
    return [line for line in trace.read_text().splitlines() if "INJECTED" in line]


# The unit's config as shipped (its default workers), and with the supervisor and two
# workers (SO_REUSEPORT steering, a channel per worker).
@pytest.fixture(params=[None, 2], ids=["shipped-workers", "two-workers"])
def filtered(
    request: pytest.FixtureRequest,
    upstream: FakeUpstream,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
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
    if request.param is not None:
        config["workers"] = request.param
    config["audit"] = {"flush_interval": 0.1}
    # The unit's Environment= lines, pointed at this checkout's catalog.
    monkeypatch.setenv("AIWALL_PROTECTED_PATH", str(ROOT / "blocklists" / "protected.txt"))
    if os.geteuid() != 0:
        pytest.skip("building the sandbox (mount namespaces) needs root")
    monkeypatch.setenv("WRITABLE", str(tmp_path))
    trace = tmp_path / "strace.out"
    prefix = [*sandbox_prefix(tmp_path), strace, "-f", "-qq", "--seccomp-bpf", "-o", str(trace)]
    prefix += ["-e", f"trace={denied}", "-e", f"inject={denied}:error=EPERM"]
    server = Aiwall(config, tmp_path, catalog_dir=ROOT / "blocklists" / "catalog", prefix=prefix)
    try:
        server.wait_serving(120)
        yield server, listed, tmp_path / "state", trace
    finally:
        # strace holds back the signals sent to it: aiwall itself is told to stop.
        if server.alive and server.server_pid != server.pid:
            os.kill(server.server_pid, signal.SIGTERM)
        server.stop()


def test_the_units_own_config_works_in_its_sandbox(
    filtered: tuple[Aiwall, Path, Path, Path],
) -> None:
    server, listed, state, trace = filtered
    aiwall = server.server_pid
    said = lambda: f"denied calls made: {injected(trace)[:20]}\n{server.tail(40)}"  # noqa: E731

    # The sandbox is in place around the server.
    mounts = [line.split() for line in Path(f"/proc/{aiwall}/mountinfo").read_text().splitlines()]
    assert "ro" in next(m for m in mounts if m[4] == "/")[5].split(","), mounts
    assert any(m[4] == "/proc" and "subset=pid" in m[-1] for m in mounts), mounts
    assert any(m[4] == "/dev" and m[m.index("-") + 1] == "tmpfs" for m in mounts), mounts
    assert "ro" in next(m for m in mounts if m[4] == "/sys")[5].split(","), mounts

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
