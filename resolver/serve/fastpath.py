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

import math
import time
from collections.abc import Callable

from resolver.dns.model import Answer, Outcome, Query
from resolver.metrics import Metrics

# (client, group, name, qtype, service, category, action): an attempt for the audit trail.
AuditRecord = Callable[[str, str, bytes, int, str, str, str], None]

# Answers kept per client group, and clients remembered. Past it, that table starts
# again empty: freeing 16,384 kept answers takes about a millisecond.
LIMIT = 16_384
# "Until the policy changes" (ms on the monotonic clock: over 30 years).
_NEVER = 1 << 40
# What an answer does besides its bytes: (qtype, outcome, rcode, cached?, (service,
# category, group) when blocked). Few distinct ones; each kept answer points at one.
_Effects = tuple[int, str, int, bool, "tuple[str, str, str] | None"]


def _qname(key: bytes) -> bytes:
    """The question name in a datagram without its ID (header, then the name)."""
    end = 10
    while key[end]:
        end += key[end] + 1
    return key[10 : end + 1]


class FastPath:
    """The tables hold only bytes and integers (the answer; its deadline and effects
    packed in one int), so the garbage collector never tracks nor walks them: kept as
    objects, 32,000 answers made every full collection take 15 ms."""

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
        # Per group (the group object's id): question bytes -> answer bytes, and
        # question bytes -> deadline in ms << 16 | index into _effects.
        self._answers: dict[int, dict[bytes, bytes]] = {}
        self._deadlines: dict[int, dict[bytes, int]] = {}
        self._groups: dict[str, int] = {}  # client -> its group's id
        self._effects: list[_Effects] = []
        self._effect_index: dict[_Effects, int] = {}
        self.hits = 0
        # Off while the rate limit is on: every answer must then take its bucket.
        self.enabled = True

    def __len__(self) -> int:
        return sum(len(table) for table in self._answers.values())

    @property
    def clients(self) -> int:
        return len(self._groups)

    def clear(self) -> None:
        """The policy changed: nothing kept may be served again."""
        self._answers = {}
        self._deadlines = {}
        self._groups = {}
        self._effects = []
        self._effect_index = {}

    def answer(self, data: bytes, client: str) -> bytes | None:
        """The ready answer to this datagram from ``client`` (its ID set), or None."""
        group = self._groups.get(client)
        if group is None:
            return None
        key = data[2:]
        payload = self._answers[group].get(key)
        if payload is None:
            return None
        deadlines = self._deadlines[group]
        packed = deadlines[key]
        if packed >> 16 <= time.monotonic() * 1000:
            del self._answers[group][key], deadlines[key]
            return None
        qtype, outcome, rcode, cached, blocked = self._effects[packed & 0xFFFF]
        metrics = self._metrics
        metrics.queries.inc(("udp", qtype))
        metrics.responses.inc((outcome, rcode))
        if cached:
            metrics.cache_hits.inc()
        elif blocked is not None:
            metrics.blocked.inc(blocked)
            if self._audit is not None:
                service, category, name = blocked
                self._audit(client, name, _qname(key), qtype, service, category, "blocked")
        self.hits += 1
        return data[:2] + payload

    def keep(self, query: Query, answer: Answer, sent: bytes) -> None:
        """After the pipeline answered ``query`` with ``sent`` (the bytes on the wire):
        keep it when the answer says it may be reused."""
        if answer.reuse_until <= time.monotonic() or query.protocol != "udp":
            return
        group = self._groups.get(query.client)
        if group is None:
            if len(self._groups) >= self._limit:
                self._groups = {}
            # The group object's identity: groups live as long as their policy version,
            # and a new version clears everything kept.
            group = self._groups[query.client] = id(self._group_of(query.client))
            self._answers.setdefault(group, {})
            self._deadlines.setdefault(group, {})
        answers, deadlines = self._answers[group], self._deadlines[group]
        if len(answers) >= self._limit:
            answers.clear()
            deadlines.clear()
        effect = self._effect(query, answer)
        if effect < 0:
            return
        until = answer.reuse_until
        # Rounded down: a kept answer may stop a little early, never late.
        deadline = _NEVER if until == math.inf else int(until * 1000)
        answers[query.raw[2:]] = sent[2:]
        deadlines[query.raw[2:]] = deadline << 16 | effect

    def _effect(self, query: Query, answer: Answer) -> int:
        blocked = None
        if answer.outcome is Outcome.BLOCKED:
            blocked = (answer.service, answer.category, answer.group)
        outcome = str(answer.outcome.value)
        effects = (query.qtype, outcome, answer.rcode, answer.outcome is Outcome.CACHED, blocked)
        index = self._effect_index.get(effects)
        if index is None:
            if len(self._effects) > 0xFFFF:
                self.clear()
                return -1
            index = self._effect_index[effects] = len(self._effects)
            self._effects.append(effects)
        return index
