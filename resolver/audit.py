"""The audit trail of blocked (and report-only) attempts, written off the answer path.

A query thread only appends a tuple to a deque. A background thread drains it every
``flush_interval`` seconds into the sinks: an SQLite table (what ``aiwall report`` reads)
and/or JSON lines for a SIEM. Client addresses can be replaced by a keyed HMAC, so the
security team can count distinct clients without the log naming anyone. Closing the log
writes out everything queued, so a clean shutdown loses no record.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import sqlite3
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from resolver import wire
from resolver.config import AuditConfig, PrivacyConfig
from resolver.metrics import QTYPE_LABELS

log = logging.getLogger(__name__)

# Records waiting for the writer; beyond this (a writer stuck on a full disk) the oldest
# are dropped and counted rather than letting memory grow without bound.
QUEUE_LIMIT = 200_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS attempts (
    time REAL NOT NULL,
    client TEXT NOT NULL,
    client_group TEXT NOT NULL,
    name TEXT NOT NULL,
    qtype TEXT NOT NULL,
    service TEXT NOT NULL,
    category TEXT NOT NULL,
    action TEXT NOT NULL,
    count INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS attempts_time ON attempts (time);
"""
# (client, group, name, qtype, service, category, action): attempts alike within one
# flush interval are one row with a count, so a client retrying a banned name a thousand
# times a second costs one row, not a thousand.
AttemptKey = tuple[str, str, bytes | str, int | str, str, str, str]
FIELDS = ("time", "client", "group", "name", "qtype", "service", "category", "action", "count")


@dataclass(frozen=True, slots=True)
class Attempt:
    time: float
    client: str
    group: str
    name: str
    qtype: str
    service: str
    category: str
    action: str  # "blocked", "report" (would have been blocked), "paused"
    count: int = 1  # attempts alike within one flush interval

    def as_dict(self) -> dict[str, object]:
        return dict(zip(FIELDS, self.row(), strict=True))

    def row(self) -> tuple[float, str, str, str, str, str, str, str, int]:
        return (
            self.time,
            self.client,
            self.group,
            self.name,
            self.qtype,
            self.service,
            self.category,
            self.action,
            self.count,
        )


def load_or_create_key(path: Path) -> bytes:
    """The HMAC key for pseudonyms, created on first use. It must outlive restarts, or
    the same client would get a new pseudonym every day and reports could not count."""
    try:
        key = path.read_bytes().strip()
        if len(key) >= 32:
            return key
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32).encode()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as stream:
        stream.write(key)
    return key


class Pseudonymizer:
    def __init__(self, key: bytes | None) -> None:
        self._key = key

    def __call__(self, client: str) -> str:
        if self._key is None:
            return client
        digest = hmac.new(self._key, client.encode(), hashlib.sha256).hexdigest()
        return f"client-{digest[:16]}"


class AuditLog:
    def __init__(self, config: AuditConfig, privacy: PrivacyConfig, state_dir: Path) -> None:
        self.config = config
        # Attempts since the last flush: key -> [first seen, count].
        self._pending: dict[AttemptKey, list[float]] = {}
        self._pending_lock = threading.Lock()
        self.dropped = 0
        self.written = 0
        key = None
        if privacy.pseudonymize:
            key_path = Path(privacy.key_file) if privacy.key_file else state_dir / "audit.key"
            key = load_or_create_key(key_path)
        self._pseudonym = Pseudonymizer(key)
        self.sqlite_path = state_dir / config.sqlite if config.sqlite else None
        self._jsonl_target = config.jsonl
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_retention = 0.0

    @property
    def enabled(self) -> bool:
        return self.config.enabled and bool(self.sqlite_path or self._jsonl_target)

    def record(
        self,
        client: str,
        group: str,
        name: bytes | str,
        qtype: int | str,
        service: str,
        category: str,
        action: str,
    ) -> None:
        """Count one attempt; called on the answer path, so it only bumps a counter (a
        wire-form name and a numeric type are turned into text by the writer)."""
        key = (client, group, name, qtype, service, category, action)
        with self._pending_lock:
            seen = self._pending.get(key)
            if seen is not None:
                seen[1] += 1
            elif len(self._pending) < QUEUE_LIMIT:
                self._pending[key] = [time.time(), 1]
            else:
                self.dropped += 1

    def start(self) -> None:
        if not self.enabled:
            return
        if self.sqlite_path is not None:
            self.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
            with sqlite3.connect(self.sqlite_path) as db:
                db.executescript(SCHEMA)
        self._thread = threading.Thread(target=self._run, name="aiwall-audit", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Write out everything queued, then stop."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None
        elif self.enabled:
            self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.config.flush_interval):
            self._flush_logged()
        self._flush_logged()

    def _flush_logged(self) -> None:
        try:
            self.flush()
        except (OSError, sqlite3.Error) as error:
            # The records stay queued for the next attempt.
            log.error("audit log: cannot write: %s", error)

    def flush(self) -> None:
        with self._pending_lock:
            batch, self._pending = self._pending, {}
        if not batch:
            self._apply_retention()
            return
        rows = [
            Attempt(
                first,
                self._pseudonym(client),
                group,
                wire.name_to_text(name) if isinstance(name, bytes) else name,
                QTYPE_LABELS.get(qtype, str(qtype)) if isinstance(qtype, int) else qtype,
                service,
                category,
                action,
                int(count),
            )
            for (client, group, name, qtype, service, category, action), (first, count) in (
                batch.items()
            )
        ]
        try:
            self._write(rows)
        except BaseException:
            # Put them back, so a transient failure loses nothing.
            with self._pending_lock:
                for key, (first, count) in batch.items():
                    seen = self._pending.setdefault(key, [first, 0])
                    seen[0], seen[1] = min(seen[0], first), seen[1] + count
            raise
        self.written += sum(row.count for row in rows)
        self._apply_retention()

    def _write(self, rows: Sequence[Attempt]) -> None:
        if self.sqlite_path is not None:
            with sqlite3.connect(self.sqlite_path) as db:
                db.executemany(
                    "INSERT INTO attempts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [r.row() for r in rows],
                )
        if self._jsonl_target:
            lines = "".join(json.dumps(r.as_dict(), ensure_ascii=False) + "\n" for r in rows)
            if self._jsonl_target == "-":
                _write_stdout(sys.stdout, lines)
            else:
                with open(self._jsonl_target, "a", encoding="utf-8") as stream:
                    stream.write(lines)

    def _apply_retention(self) -> None:
        """Drop rows past the age limit, then the oldest past the row limit (once a minute)."""
        now = time.time()
        if self.sqlite_path is None or now - self._last_retention < 60:
            return
        self._last_retention = now
        with sqlite3.connect(self.sqlite_path) as db:
            db.execute(
                "DELETE FROM attempts WHERE time < ?", (now - self.config.retention_days * 86400,)
            )
            db.execute(
                "DELETE FROM attempts WHERE rowid IN (SELECT rowid FROM attempts "
                "ORDER BY time DESC LIMIT -1 OFFSET ?)",
                (self.config.max_rows,),
            )


def _write_stdout(stream: TextIO, text: str) -> None:
    stream.write(text)
    stream.flush()
