"""The audit trail in PostgreSQL: one trail for every replica (``audit.postgres``).

The sink lives in the writer process (``audit.writer``), like the others, and never
makes it hang on a database that is gone: libpq's connect timeout, a server-side
statement timeout and a TCP user timeout bound every call, and after a failure it
waits (0.5 s, doubling up to 8 s) before it tries again while the other sinks go on.
Rows wait in its backlog meanwhile, up to ``audit.postgres_queue``; beyond, the
oldest are dropped and counted.

Every row carries an identity: the replica, a random id of this writer process and
the row's sequence number in it, under a UNIQUE constraint. A row keeps its number
until it is written, so a write retried after a commit whose acknowledgement was lost
finds the rows already there and inserts nothing (``ON CONFLICT DO NOTHING``): no row
is written twice, and a catching-up flush never adds a count twice.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from resolver.audit.schema import SchemaError, migrate
from resolver.audit.sinks import Attempt, Sink
from resolver.config import AuditConfig, ConfigError

# Bounds on every call, so that a dead database never holds the writer for long.
CONNECT_TIMEOUT = 5  # seconds (libpq connect_timeout)
STATEMENT_TIMEOUT_MS = 15_000  # server side: a statement stuck on a lock
TCP_USER_TIMEOUT_MS = 15_000  # client side: a server gone without a word
RETRY_FIRST = 0.5
RETRY_MAX = 8.0
# Rows per INSERT (and per transaction) while catching up.
CHUNK = 5000
_HIDDEN = "********"

_INSERT = """
INSERT INTO aiwall_attempts
    (time, client, client_group, name, qtype, service, category, action, count,
     replica, writer, seq)
SELECT t.time, t.client, t.client_group, t.name, t.qtype, t.service, t.category,
       t.action, t.count, %(replica)s, %(writer)s, %(first)s + t.n - 1
FROM unnest(%(time)s::float8[], %(client)s::text[], %(group)s::text[], %(name)s::text[],
            %(qtype)s::text[], %(service)s::text[], %(category)s::text[],
            %(action)s::text[], %(count)s::int[]) WITH ORDINALITY
     AS t(time, client, client_group, name, qtype, service, category, action, count, n)
ON CONFLICT (replica, writer, seq) DO NOTHING
"""


class DatabaseDown(OSError):
    """PostgreSQL cannot be reached or refused a write; the message is safe to log."""


def redact(dsn: str) -> str:
    """``dsn`` with its password hidden, for logs and errors."""
    try:
        fields = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "(a connection string that cannot be parsed)"
    if "password" in fields:
        fields["password"] = _HIDDEN
    return make_conninfo("", **fields)


def _scrub(text: str, secrets_: Sequence[str | None]) -> str:
    for secret in secrets_:
        if secret:
            text = text.replace(secret, _HIDDEN)
    return " ".join(text.split())  # libpq's messages run over several lines


def connect(
    dsn: str, password: str | None = None, *, autocommit: bool = True
) -> psycopg.Connection[Any]:
    """A connection with every wait bounded; raises DatabaseDown with a message that
    names neither the password in ``dsn`` nor ``password``."""
    fields: dict[str, Any] = dict(conninfo_to_dict(dsn))
    fields.setdefault("connect_timeout", CONNECT_TIMEOUT)
    fields.setdefault("tcp_user_timeout", TCP_USER_TIMEOUT_MS)
    fields.setdefault("application_name", "aiwall")
    # Added to the DSN's own options, not in their place.
    options = str(fields.get("options", ""))
    fields["options"] = f"{options} -c statement_timeout={STATEMENT_TIMEOUT_MS}".strip()
    if password is not None:
        fields["password"] = password
    try:
        return psycopg.connect(make_conninfo("", **fields), autocommit=autocommit)
    except psycopg.Error as error:
        raise DatabaseDown(_scrub(str(error), [password, fields.get("password")])) from None


@contextmanager
def database_errors(*secrets_: str | None) -> Iterator[None]:
    """psycopg's errors as DatabaseDown, with the secrets hidden."""
    try:
        yield
    except DatabaseDown:
        raise
    except (psycopg.Error, SchemaError) as error:
        raise DatabaseDown(_scrub(str(error), secrets_)) from None


def password_for(config: AuditConfig, base_dir: Path) -> str | None:
    try:
        return config.postgres_password(base_dir)
    except ConfigError as error:
        raise DatabaseDown(str(error)) from None


def migrate_command(dsn: str, password: str | None) -> str:
    """``aiwall audit migrate``: what it did, in one line."""
    with connect(dsn, password) as connection, database_errors(password):
        before, after = migrate(connection)
    where = redact(dsn)
    if before == after:
        return f"{where}: the audit tables are at schema version {after}; nothing to do"
    return f"{where}: the audit tables migrated from schema version {before} to {after}"


class PostgresSink(Sink):
    name = "postgres"

    def __init__(self, config: AuditConfig, base_dir: Path, replica: str) -> None:
        super().__init__()
        self.limit = config.postgres_queue
        self.replica = replica
        # Sequence numbers start again with each writer process: its own id keeps
        # them apart from the last one's.
        self.writer_id = f"{int(time.time()):x}-{secrets.token_hex(6)}"
        self._config = config
        self._base_dir = base_dir
        self._first = 0  # sequence number of backlog[0]
        self._connection: psycopg.Connection[Any] | None = None
        self._ready = False
        self._retry_at = 0.0
        self._retry_delay = RETRY_FIRST
        # What an error message must never show: the DSN's password, the file's.
        dsn_password = conninfo_to_dict(config.postgres).get("password")
        self._secrets: list[str | None] = [str(dsn_password or "") or None, None]

    def prepare(self) -> None:
        """Connect and migrate the schema (the writer does it at start)."""
        with self._guard():
            self._connect()

    def retry_now(self) -> None:
        self._retry_at = 0.0

    def trim(self) -> int:
        before = len(self.backlog)
        lost = super().trim()
        self._first += before - len(self.backlog)
        return lost

    def done(self) -> None:
        self._first += len(self.backlog)
        super().done()

    def write(self, rows: Sequence[Attempt]) -> None:
        with self._guard() as connection:
            for start in range(0, len(rows), CHUNK):
                chunk = rows[start : start + CHUNK]
                with connection.transaction():
                    connection.execute(_INSERT, self._arrays(chunk, self._first + start))

    def apply_retention(self, now: float, config: AuditConfig) -> None:
        if not self._ready or self.failing:
            return
        with self._guard() as connection, connection.transaction():
            connection.execute(
                "DELETE FROM aiwall_attempts WHERE time < %s",
                (now - config.retention_days * 86400,),
            )
            # One trail: the row limit counts every replica's rows.
            connection.execute(
                "DELETE FROM aiwall_attempts WHERE id IN (SELECT id FROM aiwall_attempts "
                "ORDER BY time DESC, id DESC OFFSET %s)",
                (config.max_rows,),
            )

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    # --- inside -----------------------------------------------------------------------

    def _arrays(self, rows: Sequence[Attempt], first: int) -> dict[str, Any]:
        return {
            "replica": self.replica,
            "writer": self.writer_id,
            "first": first,
            "time": [r.time for r in rows],
            "client": [r.client for r in rows],
            "group": [r.group for r in rows],
            "name": [r.name for r in rows],
            "qtype": [r.qtype for r in rows],
            "service": [r.service for r in rows],
            "category": [r.category for r in rows],
            "action": [r.action for r in rows],
            "count": [r.count for r in rows],
        }

    def _connect(self) -> psycopg.Connection[Any]:
        if self._connection is None or self._connection.closed:
            password = password_for(self._config, self._base_dir)
            self._secrets[1] = password
            self._connection = connect(self._config.postgres, password)
            self._ready = False
        if not self._ready:
            migrate(self._connection)
            self._ready = True
        return self._connection

    @contextmanager
    def _guard(self) -> Iterator[psycopg.Connection[Any]]:
        """The connection, made or remade as needed; any failure closes it, raises
        DatabaseDown, and holds the next try back a while (doubling)."""
        now = time.monotonic()
        if now < self._retry_at:
            raise DatabaseDown(self.failing or "waiting to reconnect")
        try:
            with database_errors(*self._secrets):
                yield self._connect()
        except DatabaseDown:
            self.close()
            self._retry_at = now + self._retry_delay
            self._retry_delay = min(self._retry_delay * 2, RETRY_MAX)
            raise
        self._retry_delay = RETRY_FIRST
