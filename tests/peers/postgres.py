"""A real PostgreSQL 15 for the tests: ``initdb`` in a folder of its own, run by an
unprivileged user (PostgreSQL refuses root), on a free loopback port with its socket
in that folder; stopped with ``pg_ctl`` (or, failing that, its postmaster's own PID),
and never anything the tests did not start.

TCP connections need the password (scram-sha-256), so the tests go the way a
deployment does: a password file or libpq's environment, never the DSN itself.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.peers.ports import free_port

BIN = Path("/usr/lib/postgresql/15/bin")
USER = "nobody"  # who runs it; it owns nothing else
ROLE = "aiwall"


def _as_user(argv: list[str], log: Path | None = None, timeout: float = 60) -> None:
    command = ["runuser", "-u", USER, "--", *argv] if os.geteuid() == 0 else argv
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, cwd="/", check=False
    )
    if result.returncode != 0:
        extra = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
        raise RuntimeError(f"{argv[0]} failed: {result.stdout}{result.stderr}{extra}")


class Postgres:
    """One cluster: ``start``, ``stop(mode)``, ``dsn`` (no password) and ``password``."""

    def __init__(self) -> None:
        # Not pytest's tmp_path: its folders are root's alone, and the server runs as
        # another user that must own its data directory.
        self.root = Path(tempfile.mkdtemp(prefix="aiwall-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        self.password = secrets.token_hex(16)
        self.password_file = self.root / "password"
        self.password_file.write_text(self.password + "\n", encoding="utf-8")
        if os.geteuid() == 0:
            user = pwd.getpwnam(USER)
            os.chown(self.root, user.pw_uid, user.pw_gid)
            os.chown(self.password_file, user.pw_uid, user.pw_gid)
        self.password_file.chmod(0o600)
        _as_user(
            [
                str(BIN / "initdb"),
                "-D",
                str(self.data),
                "-U",
                ROLE,
                f"--pwfile={self.password_file}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--no-sync",
                "-E",
                "UTF8",
            ]
        )
        # The tests read it as root; aiwall as root too (the server need not).
        os.chmod(self.password_file, 0o644)

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user={ROLE} dbname=postgres"

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c max_connections=40 -c shared_buffers=16MB"
        )
        _as_user(
            [
                str(BIN / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            ],
            self.log,
            timeout=90,
        )

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m fast`` (or ``immediate``): what an outage looks like."""
        _as_user([str(BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"], self.log)

    @property
    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def connect(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.dsn, password=self.password, autocommit=True)

    def close(self) -> None:
        if self.running:
            try:
                self.stop("immediate")
            except (RuntimeError, subprocess.TimeoutExpired):
                self._kill_postmaster()
        shutil.rmtree(self.root, ignore_errors=True)

    def _kill_postmaster(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
            os.kill(pid, signal.SIGQUIT)  # immediate shutdown: it stops its children
            for _ in range(100):
                os.kill(pid, 0)
                time.sleep(0.05)


@contextlib.contextmanager
def running_postgres() -> Iterator[Postgres]:
    if not (BIN / "postgres").exists():
        pytest.skip(f"PostgreSQL 15 is not installed in {BIN}")
    server = Postgres()
    try:
        server.start()
        yield server
    finally:
        server.close()
