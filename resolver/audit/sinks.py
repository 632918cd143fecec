"""Where the audit trail's rows go: the SQLite table (what ``aiwall report`` reads) and
JSON lines for a SIEM, each a ``Sink`` with a backlog of its own; the row itself
(``Attempt``); and how the writer's work on them is cut into pieces (``WRITE_PIECE``).
PostgreSQL's sink is in ``postgres``; ``trail`` runs them all at each flush.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Callable, Iterable, Sequence
from operator import attrgetter
from pathlib import Path
from typing import NamedTuple, TextIO

from resolver.audit.attempts import QUEUE_LIMIT
from resolver.background import give_way
from resolver.config import AuditConfig

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


class Attempt(NamedTuple):
    """One row of the trail. A tuple, in the table's column order: SQLite takes it as it
    is, and the writer process makes tens of thousands a second at idle priority."""

    time: float
    client: str
    group: str
    name: str
    qtype: str
    service: str
    category: str
    action: str  # "blocked", "report" (would have been blocked), "paused"
    # Attempts alike within one flush interval. The field hides tuple.count, which
    # nothing here calls.
    count: int = 1  # type: ignore[assignment]


_COUNT: Callable[[Attempt], int] = attrgetter("count")
# json.dumps would make a new encoder for every row.
_JSON_LINE = json.JSONEncoder(ensure_ascii=False).encode
INSERT = "INSERT INTO attempts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
# Rows made, and written, per piece of the writer's work (``give_way`` between pieces):
# 100 rows are about 0.35 ms of an INSERT (development VM, 2026-12-01).
WRITE_PIECE = 100


def attempts_in(rows: Iterable[Attempt]) -> int:
    """How many attempts ``rows`` hold (a row counts its repeats)."""
    return sum(map(_COUNT, rows))


class Sink:
    """One destination of the trail with rows of its own still to write: a sink that
    fails keeps its backlog and tries again at the next flush, while the others go on,
    so nothing is lost and nothing is written twice."""

    name = "sink"

    def __init__(self) -> None:
        self.backlog: list[Attempt] = []
        self.limit = QUEUE_LIMIT  # rows the backlog may hold
        self.failing = ""  # why the last write failed ("" while it works)
        self.written = 0  # attempts written (a row counts its repeats)
        self.dropped = 0  # attempts dropped from the backlog in this outage

    def prepare(self) -> None:
        """Make what the sink writes to (a table); raise if it cannot."""

    def retry_now(self) -> None:
        """Forget any wait before the next try (the last flush, at close)."""

    def write(self, rows: Sequence[Attempt]) -> None:
        raise NotImplementedError

    def trim(self) -> int:
        """Drop the oldest rows past ``limit``; returns how many attempts they held."""
        excess = len(self.backlog) - self.limit
        if excess <= 0:
            return 0
        lost = attempts_in(self.backlog[:excess])
        del self.backlog[:excess]
        return lost

    def done(self) -> None:
        """The backlog is written."""
        self.backlog = []

    def apply_retention(self, now: float, config: AuditConfig) -> None:
        """Drop rows past ``retention_days``, then the oldest past ``max_rows``."""


class SqliteSink(Sink):
    name = "sqlite"

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self._ready = False

    def prepare(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(self.path) as db:
            db.executescript(SCHEMA)
        self._ready = True

    def write(self, rows: Sequence[Attempt]) -> None:
        if not self._ready:
            self.prepare()
        with sqlite3.connect(self.path) as db:
            # In pieces, the core given way between them (``give_way``): one statement
            # over a whole flush held the core for milliseconds.
            for start in range(0, len(rows), WRITE_PIECE):
                db.executemany(INSERT, rows[start : start + WRITE_PIECE])
                give_way()

    def apply_retention(self, now: float, config: AuditConfig) -> None:
        if not self._ready:
            return
        with sqlite3.connect(self.path) as db:
            db.execute(
                "DELETE FROM attempts WHERE time < ?", (now - config.retention_days * 86400,)
            )
            db.execute(
                "DELETE FROM attempts WHERE rowid IN (SELECT rowid FROM attempts "
                "ORDER BY time DESC LIMIT -1 OFFSET ?)",
                (config.max_rows,),
            )


class JsonLinesSink(Sink):
    name = "jsonl"

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target

    def write(self, rows: Sequence[Attempt]) -> None:
        lines = "".join(_JSON_LINE(r._asdict()) + "\n" for r in rows)
        if self.target == "-":
            _write_stdout(sys.stdout, lines)
        else:
            with open(self.target, "a", encoding="utf-8") as stream:
                stream.write(lines)


def _write_stdout(stream: TextIO, text: str) -> None:
    stream.write(text)
    stream.flush()
