"""The audit trail's tables in PostgreSQL, created and migrated by aiwall itself.

``aiwall_schema_version`` holds one row per migration applied. Migrating runs in one
transaction that first takes a transaction-level advisory lock, so replicas starting
at once take turns: the first applies what is missing, the others then find nothing
to do. Each step is applied at most once (its version row is written in the same
transaction), so migrating again is a no-op.
"""

from __future__ import annotations

import time
from typing import Any, LiteralString

import psycopg

# pg_advisory_xact_lock key: "aiwall" in ASCII, so it is recognisable in pg_locks.
LOCK_KEY = 0x616977616C6C

# (version, statements): append only; a released step is never changed.
MIGRATIONS: tuple[tuple[int, tuple[LiteralString, ...]], ...] = (
    (
        1,
        (
            # The SQLite table's fields (sinks.SCHEMA), written out here rather than
            # shared: a released step must never change with it.
            """CREATE TABLE aiwall_attempts (
                id BIGSERIAL PRIMARY KEY, time DOUBLE PRECISION NOT NULL,
                client TEXT NOT NULL, client_group TEXT NOT NULL, name TEXT NOT NULL,
                qtype TEXT NOT NULL, service TEXT NOT NULL, category TEXT NOT NULL,
                action TEXT NOT NULL, count INTEGER NOT NULL,
                -- who wrote the row: the replica, its writer process, the row's number
                replica TEXT NOT NULL, writer TEXT NOT NULL, seq BIGINT NOT NULL,
                -- A row's identity: a flush retried after a lost commit
                -- acknowledgement finds its rows there and writes nothing twice.
                UNIQUE (replica, writer, seq)
            )""",
            "CREATE INDEX aiwall_attempts_time ON aiwall_attempts (time)",
        ),
    ),
    # Reports by replica, and retention, without a full scan.
    (2, ("CREATE INDEX aiwall_attempts_replica_time ON aiwall_attempts (replica, time)",)),
)
LATEST = MIGRATIONS[-1][0]


class SchemaError(Exception):
    """The database holds a schema this aiwall does not know (a newer release's)."""


def migrate(connection: psycopg.Connection[Any], target: int = LATEST) -> tuple[int, int]:
    """Bring the schema up to ``target``; returns the version before and after."""
    with connection.transaction():
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        connection.execute(
            "CREATE TABLE IF NOT EXISTS aiwall_schema_version ("
            "version INTEGER PRIMARY KEY, applied DOUBLE PRECISION NOT NULL)"
        )
        row = connection.execute(
            "SELECT COALESCE(MAX(version), 0) FROM aiwall_schema_version"
        ).fetchone()
        current = int(row[0]) if row else 0
        if current > LATEST:
            raise SchemaError(
                f"the audit tables are at schema version {current}, newer than this "
                f"aiwall knows ({LATEST}): upgrade aiwall"
            )
        for version, statements in MIGRATIONS:
            if current < version <= target:
                for statement in statements:
                    connection.execute(statement)
                connection.execute(
                    "INSERT INTO aiwall_schema_version VALUES (%s, %s)", (version, time.time())
                )
    return current, max(current, min(target, LATEST))
