"""``aiwall report``: who tried to reach which AI service, from the audit trail."""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GROUPINGS = {
    "service": ("service", "category"),
    "group": ("client_group",),
    "client": ("client",),
    "name": ("name",),
    # Only in the PostgreSQL trail, the one that every replica writes.
    "replica": ("replica",),
}
FORMATS = ("table", "csv", "json")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class ReportError(ValueError):
    pass


def parse_since(text: str) -> float:
    """``30m``, ``24h``, ``7d``, ``2w`` (or plain seconds) to seconds."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if not found:
        raise ReportError(f"--since: expected a duration like 24h or 7d, got {text!r}")
    return float(found.group(1)) * _UNITS[found.group(2) or "s"]


@dataclass(frozen=True, slots=True)
class Row:
    key: tuple[str, ...]
    blocked: int
    reported: int  # report-only attempts: would have been blocked
    clients: int  # distinct clients (or pseudonyms)
    first: float
    last: float


def _query(by: str, table: str, placeholder: str) -> str:
    """The summary in SQL that SQLite and PostgreSQL both read."""
    if by not in GROUPINGS:
        raise ReportError(f"--by: expected one of {', '.join(GROUPINGS)}, got {by!r}")
    columns = ", ".join(GROUPINGS[by])
    return (
        f"SELECT {columns}, "
        "SUM(CASE WHEN action = 'blocked' THEN count ELSE 0 END), "
        "SUM(CASE WHEN action = 'report' THEN count ELSE 0 END), "
        f"COUNT(DISTINCT client), MIN(time), MAX(time) FROM {table} WHERE time >= {placeholder} "
        f"GROUP BY {columns} ORDER BY SUM(count) DESC, {columns}"
    )


def summarise(database: Path, since_seconds: float, by: str, now: float | None = None) -> list[Row]:
    """The summary from the SQLite trail (``audit.sqlite``)."""
    query = _query(by, "attempts", "?")
    if by == "replica":
        raise ReportError("--by replica: only the PostgreSQL trail (audit.postgres) has replicas")
    if not database.exists():
        raise ReportError(f"{database}: no audit trail yet (audit.sqlite in the config)")
    cutoff = (now if now is not None else time.time()) - since_seconds
    # Read-only, so a report never locks out the server's writer.
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        rows = db.execute(query, (cutoff,)).fetchall()
    return _rows(rows, by)


def summarise_postgres(
    dsn: str, password: str | None, since_seconds: float, by: str, now: float | None = None
) -> list[Row]:
    """The summary from the PostgreSQL trail: every replica's rows."""
    # Imported here: a report from SQLite never loads libpq.
    from resolver.audit.postgres import DatabaseDown, connect, database_errors, redact

    query = _query(by, "aiwall_attempts", "%s")
    cutoff = (now if now is not None else time.time()) - since_seconds
    try:
        with connect(dsn, password) as db, database_errors(password):
            rows = db.execute(query.encode(), (cutoff,)).fetchall()
    except DatabaseDown as error:
        raise ReportError(f"{redact(dsn)}: {error}") from None
    return _rows(rows, by)


def _rows(rows: list[Any], by: str) -> list[Row]:
    width = len(GROUPINGS[by])
    return [
        Row(
            tuple(str(v) for v in row[:width]),
            int(row[width]),
            int(row[width + 1]),
            int(row[width + 2]),
            float(row[width + 3]),
            float(row[width + 4]),
        )
        for row in rows
    ]


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


def render(rows: list[Row], by: str, fmt: str) -> str:
    headers = [*GROUPINGS[by], "blocked", "report_only", "clients", "first", "last"]
    table = [
        [
            *row.key,
            str(row.blocked),
            str(row.reported),
            str(row.clients),
            _when(row.first),
            _when(row.last),
        ]
        for row in rows
    ]
    if fmt == "json":
        records = [
            dict(
                zip(
                    headers,
                    [*row.key, row.blocked, row.reported, row.clients, row.first, row.last],
                    strict=True,
                )
            )
            for row in rows
        ]
        return json.dumps(records, indent=2) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(headers)
        writer.writerows(table)
        return out.getvalue()
    if fmt != "table":
        raise ReportError(f"--format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    if not table:
        return "no blocked or report-only attempts in this period\n"
    widths = [max(len(line[i]) for line in [headers, *table]) for i in range(len(headers))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        for line in [headers, *table]
    ]
    total = sum(r.blocked for r in rows), sum(r.reported for r in rows)
    lines.append(f"{total[0]} blocked, {total[1]} report-only attempts")
    return "\n".join(lines) + "\n"
