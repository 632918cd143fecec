"""Ready answers for questions asked before: the fast path in front of the pipeline.

Most of an office's queries repeat: the same names, asked the same way, by the same
clients. For a question seen before, the pipeline's answer is kept as sent, minus its
ID, under the question's raw bytes (everything after the ID: flags, question as asked,
EDNS), one table per client group. A datagram whose bytes are in the table gets that
answer with its own ID, without being parsed or walking the handlers, and with every
effect the handlers would have had: the same counters, the same audit record.

What may be kept, and for how long, is decided where the answer was made (the
``reuse_until`` of an Answer, monotonic time; 0 = never):
- a blocked answer, by the blocking handler: until the policy changes (a reload, a
  temporary rule running out, a pause: ``clear``), never while paused;
- a cached answer, by the cache: until its TTLs would be counted down again (the next
  whole second of its age) or it expires.
Anything else (forwarded, stale, refused, rate-limited answers...) takes the pipeline
every time. A client's group is looked up once and kept until the policy changes.
Bounded: past ``limit`` answers or clients, the table starts again empty.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from resolver.dns.model import Answer, Outcome, Query
from resolver.metrics import Metrics

# (client, group, name, qtype, service, category, action): an attempt for the audit trail.
AuditRecord = Callable[[str, str, bytes, int, str, str, str], None]

LIMIT = 65_536


class _Entry:
    __slots__ = ("answer", "blocked", "cached", "outcome", "qname", "qtype", "rcode", "until")

    def __init__(self, query: Query, answer: Answer, payload: bytes) -> None:
        self.answer = payload  # the answer as sent, without its 2-byte ID
        self.until = answer.reuse_until
        self.qtype = query.qtype
        self.qname = query.qname
        self.outcome = answer.outcome
        self.rcode = answer.rcode
        self.cached = answer.outcome is Outcome.CACHED
        self.blocked = (
            (answer.service, answer.category, answer.group)
            if answer.outcome is Outcome.BLOCKED
            else None
        )


class FastPath:
    def __init__(
        self,
        metrics: Metrics,
        group_of: Callable[[str], object],
        audit: AuditRecord | None,
        limit: int = LIMIT,
    ) -> None:
        """``group_of``: a client address -> its group (an object a policy change
        replaces); ``audit``: where blocked attempts are recorded (None: no trail)."""
        self._metrics = metrics
        self._group_of = group_of
        self._audit = audit
        self._limit = limit
        self._tables: dict[int, dict[bytes, _Entry]] = {}
        self._clients: dict[str, dict[bytes, _Entry]] = {}
        self._size = 0
        self.hits = 0
        # Off while the rate limit is on: every answer must then take its bucket.
        self.enabled = True

    def clear(self) -> None:
        """The policy changed: nothing kept may be served again."""
        self._tables = {}
        self._clients = {}
        self._size = 0

    def answer(self, data: bytes, client: str) -> bytes | None:
        """The ready answer to this datagram from ``client`` (its ID set), or None."""
        table = self._clients.get(client)
        if table is None:
            return None
        entry = table.get(data[2:])
        if entry is None:
            return None
        if entry.until <= time.monotonic():
            del table[data[2:]]
            return None
        metrics = self._metrics
        metrics.queries.inc(("udp", entry.qtype))
        metrics.responses.inc((entry.outcome, entry.rcode))
        if entry.cached:
            metrics.cache_hits.inc()
        elif entry.blocked is not None:
            metrics.blocked.inc(entry.blocked)
            if self._audit is not None:
                service, category, group = entry.blocked
                self._audit(client, group, entry.qname, entry.qtype, service, category, "blocked")
        self.hits += 1
        return data[:2] + entry.answer

    def keep(self, query: Query, answer: Answer, sent: bytes) -> None:
        """After the pipeline answered ``query`` with ``sent`` (the bytes on the wire):
        keep it when the answer says it may be reused."""
        if answer.reuse_until <= time.monotonic() or query.protocol != "udp":
            return
        table = self._clients.get(query.client)
        if table is None:
            if len(self._clients) >= self._limit:
                self.clear()
            # The group object's identity: groups live as long as their policy version,
            # and a new version clears everything kept.
            group = id(self._group_of(query.client))
            table = self._tables.setdefault(group, {})
            self._clients[query.client] = table
        if self._size >= self._limit:
            self.clear()
            return
        table[query.raw[2:]] = _Entry(query, answer, sent[2:])
        self._size += 1
