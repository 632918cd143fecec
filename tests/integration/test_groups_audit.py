"""Per-group policies, report-only, expiring exceptions and the audit trail, end to end."""

from __future__ import annotations

import contextlib
import datetime
import os
import sqlite3
import subprocess
import sys
import time

import dns.rcode
import pytest

from tests.peers.wait import wait_until
from tests.support import ask

LAB = {
    "name": "lab",
    "clients": ["127.0.0.3/32"],
    "catalog": {"block": {"all": True}, "allow": {"services": ["deepseek"]}},
}


def test_two_clients_in_different_groups_get_different_answers(start_server, upstream):
    server = start_server(
        groups=[LAB, {"name": "plant", "clients": ["127.0.0.4/32"], "response": "refused"}]
    )
    assert ask(server, "chat.deepseek.com", source="127.0.0.2").rcode() == dns.rcode.NXDOMAIN
    assert (
        ask(server, "chat.deepseek.com", source="127.0.0.3").answer[0][0].to_text()
        == "198.51.100.7"
    )
    assert ask(server, "chat.deepseek.com", source="127.0.0.4").rcode() == dns.rcode.REFUSED
    assert server.metric("aiwall_blocked_queries_total", service="deepseek", group="default") == 1
    assert server.metric("aiwall_blocked_queries_total", service="deepseek", group="plant") == 1


def test_an_exception_stops_applying_when_it_expires_without_a_restart(start_server):
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=2)
    until = soon.strftime("%Y-%m-%dT%H:%M:%SZ")
    server = start_server(
        blocking={
            "catalog": {"block": {"all": True}, "allow": {"services": ["deepseek"], "until": until}}
        }
    )
    assert ask(server, "chat.deepseek.com").rcode() == dns.rcode.NOERROR
    deadline = time.monotonic() + 10
    while ask(server, "x.chat.deepseek.com").rcode() != dns.rcode.NXDOMAIN:
        assert time.monotonic() < deadline, "the expired exception still applies"
        time.sleep(0.3)


def test_an_expired_exception_does_not_apply_at_start(start_server):
    server = start_server(
        blocking={
            "catalog": {
                "block": {"all": True},
                "allow": {"services": ["deepseek"], "until": "2020-01-01"},
            }
        }
    )
    assert ask(server, "chat.deepseek.com").rcode() == dns.rcode.NXDOMAIN


def test_report_only_is_counted_and_audited_but_not_blocked(start_server, tmp_path):
    server = start_server(
        blocking={"catalog": {"block": {"all": True}, "report": {"services": ["deepseek"]}}}
    )
    reply = ask(server, "chat.deepseek.com")
    assert reply.answer[0][0].to_text() == "198.51.100.7"
    assert server.metric("aiwall_reported_queries_total", service="deepseek", action="report") == 1
    assert server.metric("aiwall_blocked_queries_total", service="deepseek") == 0
    server.stop()
    rows = (
        sqlite3.connect(tmp_path / "state" / "audit.db")
        .execute("SELECT name, action FROM attempts")
        .fetchall()
    )
    assert rows == [("chat.deepseek.com", "report")]


def test_report_command_by_service_and_group_pseudonymised(start_server, tmp_path, catalog_dir):
    server = start_server(
        groups=[{"name": "lab", "clients": ["127.0.0.3/32"]}], privacy={"pseudonymize": True}
    )
    for source in ("127.0.0.2", "127.0.0.2", "127.0.0.3"):
        ask(server, "chat.deepseek.com", source=source)
    server.stop()  # a clean shutdown writes the queue out
    config = tmp_path / "report.yaml"
    config.write_text(
        f"state: {{directory: {tmp_path / 'state'}}}\nprivacy: {{pseudonymize: true}}\n"
    )
    by_service = subprocess.run(
        [sys.executable, "-m", "resolver", "report", "--by", "service", "-c", str(config)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "deepseek" in by_service
    assert "3 blocked" in by_service
    by_group = subprocess.run(
        [
            sys.executable,
            "-m",
            "resolver",
            "report",
            "--by",
            "group",
            "--format",
            "csv",
            "-c",
            str(config),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert by_group[0].startswith("client_group,blocked")
    assert {line.split(",")[0]: line.split(",")[1] for line in by_group[1:]} == {
        "default": "2",
        "lab": "1",
    }
    by_client = subprocess.run(
        [sys.executable, "-m", "resolver", "report", "--by", "client", "-c", str(config)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "127.0.0" not in by_client
    assert by_client.count("client-") == 2


def test_check_explains_per_client(tmp_path, catalog_dir):
    config = tmp_path / "aiwall.yaml"
    config.write_text(
        "groups:\n  - name: lab\n    clients: ['10.1.0.0/16']\n"
        "    catalog: {block: {all: true}, allow: {services: [deepseek]}}\n"
    )
    env = {"AIWALL_CATALOG_DIR": str(catalog_dir), "PATH": "/usr/bin:/bin"}
    lab = subprocess.run(
        [
            sys.executable,
            "-m",
            "resolver",
            "check",
            "chat.deepseek.com",
            "--client",
            "10.1.2.3",
            "-c",
            str(config),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    assert "group lab" in lab
    assert "allowed" in lab
    assert "groups[0].catalog.allow.services: deepseek" in lab
    office = subprocess.run(
        [
            sys.executable,
            "-m",
            "resolver",
            "check",
            "chat.deepseek.com",
            "--client",
            "10.2.0.1",
            "-c",
            str(config),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    assert "group default" in office
    assert "BLOCKED" in office


@pytest.fixture
def full_disk(tmp_path):
    """A 256 KiB tmpfs, filled up: the state folder on a disk with no space left."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI has it)")
    mount = tmp_path / "state"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], check=True)
    filler = mount / "filler"
    try:
        descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT)
        with contextlib.suppress(OSError):
            while True:
                os.write(descriptor, b"\0" * 1024)
        os.close(descriptor)
        yield mount, filler
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_state_disk_degrades_the_audit_trail_never_dns(start_server, full_disk):
    mount, filler = full_disk
    server = start_server(state={"directory": str(mount)}, audit={"flush_interval": 0.1})
    assert ask(server, "chat.deepseek.com").rcode() == dns.rcode.NXDOMAIN
    assert ask(server, "www.example.test").rcode() == dns.rcode.NOERROR
    wait_until(lambda: server.metric("aiwall_audit_degraded", sink="sqlite") == 1)
    assert server.call(server.server.ready())[0]
    # Space comes back: the attempts waiting in memory are written.
    filler.unlink()
    wait_until(lambda: server.metric("aiwall_audit_degraded", sink="sqlite") == 0)
    wait_until(lambda: server.metric("aiwall_audit_written_total", sink="sqlite") == 1)
    rows = sqlite3.connect(mount / "audit.db").execute("SELECT name FROM attempts").fetchall()
    assert rows == [("chat.deepseek.com",)]
