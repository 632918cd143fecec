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
- a cached answer, by the cache: until it expires. The fast path counts its TTLs down
  itself, once per whole second of age, as the cache would (so the names cached
  together do not all go back through the pipeline at the same second); an answer
  whose TTLs it cannot find (truncated) is kept until the next second only.
Anything else (forwarded, stale, refused, rate-limited answers...) takes the pipeline
every time. A client's group is looked up once and kept until the policy changes.
Bounded: past ``limit`` answers or clients, the table starts again empty.
"""

from __future__ import annotations

import math
import struct
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


_COUNTDOWN = struct.Struct("!dI")  # stored (monotonic), age shown (whole seconds)
_OFFSET = struct.Struct("!H")
_TTL = struct.Struct("!I")
_TC = 0x02  # in the flags' first byte


def _countdown(answer: Answer, sent: bytes) -> bytes | None:
    """How the fast path counts a cached answer's TTLs down: (stored, age shown, where
    the TTLs sit in the answer without its ID), packed; None when it cannot (not a
    cached answer, or sent truncated, so the records are not where they were)."""
    if answer.countdown is None or not answer.ttl_offsets:
        return None
    if sent[2] & _TC or len(sent) < len(answer.message):
        return None
    stored, age = answer.countdown
    offsets = b"".join(_OFFSET.pack(offset - 2) for offset in answer.ttl_offsets)
    return _COUNTDOWN.pack(stored, age) + offsets


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
        # Per group, for cached answers: question bytes -> packed (stored, age, offsets)
        # of their TTLs (see _countdown).
        self._countdowns: dict[int, dict[bytes, bytes]] = {}
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
        self._countdowns = {}
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
            self._countdowns[group].pop(key, None)
            return None
        qtype, outcome, rcode, cached, blocked = self._effects[packed & 0xFFFF]
        metrics = self._metrics
        metrics.queries.inc(("udp", qtype))
        metrics.responses.inc((outcome, rcode))
        if cached:
            metrics.cache_hits.inc()
            countdown = self._countdowns[group].get(key)
            if countdown is not None:
                payload = self._count_down(group, key, payload, countdown)
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
            self._countdowns.setdefault(group, {})
        answers, deadlines = self._answers[group], self._deadlines[group]
        countdowns = self._countdowns[group]
        if len(answers) >= self._limit:
            answers.clear()
            deadlines.clear()
            countdowns.clear()
        effect = self._effect(query, answer)
        if effect < 0:
            return
        key = query.raw[2:]
        until = answer.reuse_until
        countdown = _countdown(answer, sent)
        if countdown is not None:
            countdowns[key] = countdown
        else:
            countdowns.pop(key, None)
            if answer.countdown is not None:
                # TTLs it cannot count down: until they would change.
                stored, age = answer.countdown
                until = min(until, stored + age + 1)
        # Rounded down: a kept answer may stop a little early, never late.
        deadline = _NEVER if until == math.inf else int(until * 1000)
        answers[key] = sent[2:]
        deadlines[key] = deadline << 16 | effect

    def _count_down(self, group: int, key: bytes, payload: bytes, countdown: bytes) -> bytes:
        """The kept answer with its TTLs at the current whole second of age (RFC 1035
        7.4: a cached record's TTL counts down), kept for the hits that follow."""
        stored, shown = _COUNTDOWN.unpack_from(countdown)
        age = int(time.monotonic() - stored)
        if age == shown:
            return payload
        patched = bytearray(payload)
        for (offset,) in _OFFSET.iter_unpack(countdown[_COUNTDOWN.size :]):
            ttl = _TTL.unpack_from(patched, offset)[0] + shown
            _TTL.pack_into(patched, offset, max(ttl - age, 0))
        payload = bytes(patched)
        self._answers[group][key] = payload
        self._countdowns[group][key] = _COUNTDOWN.pack(stored, age) + countdown[_COUNTDOWN.size :]
        return payload

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
