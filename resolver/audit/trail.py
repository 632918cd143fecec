"""The audit trail: its sinks (an SQLite table, JSON lines, PostgreSQL for every replica:
``sinks``, ``postgres``), each with its own backlog, written at every flush by the
writer process (``audit.writer``), never by the answering process. Client addresses
can be replaced by a keyed HMAC (``pseudonyms``).
"""

from __future__ import annotations

import logging
import socket
import sqlite3
import time
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import TypeVar

from resolver.audit.attempts import AttemptBatcher, AttemptKey, Seen
from resolver.audit.pseudonyms import Pseudonymizer, load_or_create_key
from resolver.audit.sinks import (
    WRITE_PIECE,
    Attempt,
    JsonLinesSink,
    Sink,
    SqliteSink,
    attempts_in,
)
from resolver.background import give_way
from resolver.config import AuditConfig, PrivacyConfig, read_key_file
from resolver.dns import wire
from resolver.metrics import QTYPE_LABELS, Metrics

log = logging.getLogger(__name__)

_K = TypeVar("_K", bound=Hashable)


class _Memo(dict[_K, str]):
    """``text(key)`` for each key, worked out once (for one flush)."""

    def __init__(self, text: Callable[[_K], str]) -> None:
        super().__init__()
        self._text = text

    def __missing__(self, key: _K) -> str:
        value = self[key] = self._text(key)
        return value


def _qtype_text(qtype: int | str) -> str:
    return QTYPE_LABELS.get(qtype, str(qtype)) if isinstance(qtype, int) else qtype


def sink_names(config: AuditConfig) -> list[str]:
    """The sinks a config writes to, in order."""
    sinks = (("sqlite", config.sqlite), ("jsonl", config.jsonl), ("postgres", config.postgres))
    return [name for name, on in sinks if on]


def replica_name(config: AuditConfig) -> str:
    """Who writes the rows: ``audit.replica``, or the host name (a pod's name)."""
    return config.replica or socket.gethostname()


class AuditLog:
    """The sinks and their backlogs: what the writer process runs (``audit.writer``)
    at each flush; tests drive it directly with ``prepare`` and ``flush``."""

    def __init__(
        self,
        config: AuditConfig,
        privacy: PrivacyConfig,
        state_dir: Path,
        metrics: Metrics | None = None,
        base_dir: Path = Path("."),
    ) -> None:
        self.config = config
        self._metrics = metrics
        # Attempts since the last flush, this process's and its workers'.
        self.attempts = AttemptBatcher(settle=True)
        self.record = self.attempts.record
        self.absorb = self.attempts.absorb
        self._dropped_reported = 0
        self._dropped_total = 0  # attempts this log could not keep (see take_dropped)
        self._dropped_taken = 0
        key = None
        if privacy.pseudonymize:
            if privacy.key_file:
                key = read_key_file(base_dir / privacy.key_file)
            else:
                key = load_or_create_key(state_dir / "audit.key")
        self._pseudonym = Pseudonymizer(key)
        self.sqlite: SqliteSink | None = None
        self.sinks: list[Sink] = []
        if config.sqlite:
            self.sqlite = SqliteSink(state_dir / config.sqlite)
            self.sinks.append(self.sqlite)
        if config.jsonl:
            self.sinks.append(JsonLinesSink(config.jsonl))
        if config.postgres:
            # Imported here: a trail without PostgreSQL never loads libpq.
            from resolver.audit.postgres import PostgresSink

            self.sinks.append(PostgresSink(config, base_dir, replica_name(config)))
        if metrics is not None:
            for sink in self.sinks:
                metrics.audit_degraded.labels(sink.name).set(0)
                metrics.audit_written.labels(sink.name)
        self._last_retention = 0.0

    @property
    def enabled(self) -> bool:
        return self.config.enabled and bool(self.sinks)

    @property
    def degraded(self) -> list[str]:
        """The sinks that cannot be written now, with why."""
        return [f"{sink.name}: {sink.failing}" for sink in self.sinks if sink.failing]

    def prepare(self, remote: bool = True) -> None:
        """Make the tables: SQLite's, and with ``remote`` PostgreSQL's (the writer
        process does; the answering process never waits for a database). A sink that
        cannot be prepared (a full disk, a database down) is reported degraded and
        tried again at every flush."""
        for sink in self.sinks:
            if sink is self.sqlite or remote:
                try:
                    sink.prepare()
                except (OSError, sqlite3.Error) as error:
                    self._failed(sink, error)

    def take_dropped(self) -> int:
        """Attempts dropped since the last call."""
        new = self._dropped_total - self._dropped_taken
        self._dropped_taken = self._dropped_total
        return new

    def _rows(self, batches: list[dict[AttemptKey, Seen]]) -> list[Attempt]:
        # Per attempt, only what differs: a client's pseudonym (an HMAC) and a type's
        # text are worked out once per flush, and tuple.__new__ makes each row without
        # the Python-level constructor a NamedTuple has.
        clients = _Memo(self._pseudonym)
        qtypes = _Memo(_qtype_text)
        name_to_text = wire.name_to_text
        new = tuple.__new__
        rows: list[Attempt] = []
        for batch in batches:
            items = list(batch.items())
            for start in range(0, len(items), WRITE_PIECE):
                rows.extend(
                    new(
                        Attempt,
                        (
                            first,
                            clients[client],
                            group,
                            name_to_text(name) if isinstance(name, bytes) else name,
                            qtypes[qtype],
                            service,
                            category,
                            action,
                            int(count),
                        ),
                    )
                    for (client, group, name, qtype, service, category, action), (
                        first,
                        count,
                    ) in items[start : start + WRITE_PIECE]
                )
                give_way()
        return rows

    def flush(self, last: bool = False) -> None:
        """Hand what was queued to every sink, and let each write its own backlog; the
        ``last`` flush tries every sink at once, and counts what none could write."""
        batches, dropped = self.attempts.take()
        self._report_drops(dropped)
        rows = self._rows(batches)
        for sink in self.sinks:
            if last:
                sink.retry_now()
            sink.backlog.extend(rows)
            # A sink down for long: its oldest rows go, counted, rather than memory.
            self._count_dropped(sink.trim(), sink)
            if not sink.backlog:
                continue
            try:
                sink.write(sink.backlog)
            except (OSError, sqlite3.Error, ValueError) as error:
                self._failed(sink, error)
                continue
            written = attempts_in(sink.backlog)
            sink.written += written
            sink.done()
            if self._metrics is not None:
                self._metrics.audit_written.labels(sink.name).inc(written)
            if sink.failing:
                log.warning(
                    "audit log: %s works again; its backlog is written (%d attempts dropped "
                    "meanwhile)",
                    sink.name,
                    sink.dropped,
                )
                sink.failing = ""
                sink.dropped = 0
                if self._metrics is not None:
                    self._metrics.audit_degraded.labels(sink.name).set(0)
        if last:
            for sink in self.sinks:
                if sink.backlog:
                    left = attempts_in(sink.backlog)
                    log.error("audit log: %s still down at exit: %d attempts lost", sink.name, left)
                    self._drop(left)
                    sink.done()
        self._apply_retention()

    def _failed(self, sink: Sink, error: BaseException) -> None:
        reason = str(error) or type(error).__name__
        if not sink.failing:
            # Once per outage, not at every flush.
            log.error(
                "audit log: cannot write to %s: %s; DNS goes on, attempts wait in memory "
                "(at most %d rows)",
                sink.name,
                reason,
                sink.limit,
            )
        sink.failing = reason
        if self._metrics is not None:
            self._metrics.audit_degraded.labels(sink.name).set(1)

    def _report_drops(self, dropped: int) -> None:
        new = dropped - self._dropped_reported
        if new > 0:
            self._dropped_reported = dropped
            self._count_dropped(new)

    def _count_dropped(self, count: int, sink: Sink | None = None) -> None:
        if count <= 0:
            return
        if sink is None:
            log.error("audit log: %d attempts not recorded: the queue was full", count)
        else:
            if not sink.dropped:  # once per outage
                log.error(
                    "audit log: %s is down and its queue full: the oldest attempts are "
                    "dropped and counted (aiwall_audit_dropped_total)",
                    sink.name,
                )
            sink.dropped += count
        self._drop(count)

    def _drop(self, count: int) -> None:
        self._dropped_total += count
        if self._metrics is not None:
            self._metrics.audit_dropped.inc(count)

    @property
    def written(self) -> int:
        """Attempts written to every sink."""
        return min((sink.written for sink in self.sinks), default=0)

    def _apply_retention(self) -> None:
        """Drop rows past the age limit, then the oldest past the row limit (once a minute)."""
        now = time.time()
        if now - self._last_retention < 60:
            return
        self._last_retention = now
        for sink in self.sinks:
            try:
                sink.apply_retention(now, self.config)
            except (OSError, sqlite3.Error) as error:
                log.error("audit log: retention failed in %s: %s", sink.name, error)
