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
every time. A hit costs two dict look-ups, a clock read and a list slot bumped: the
counters it owes are added up per kind of answer and handed to the metrics before they
are read (``Metrics.defer``), and a cached answer's deadline is its next whole second of
age, so its TTLs are recounted only then. A client's group is looked up once and kept
until the policy changes.
Bounded: at most ``capacity`` answers, in slabs that start again empty one at a time
(``kept``); past ``clients`` clients, the table of clients starts again empty.

A banned name asked for the first time by a client the table knows (so one that access
control let in) takes a shorter way too, when the query is plain (``plain_question``:
opcode QUERY, one IN question, at most an OPT of version 0, none of the names DDR and
the rpz zones answer): the blocking stage's own decision (``BlockingHandler.blocks``),
the answer written straight as bytes (``BlockAnswers.plain``), then kept like any other.
Everything else, and every name the blocking stage would not block, takes the pipeline.
The stage is handed the client's group the table knows, rather than finding it again,
only while its policy is the one that group was found under: the table notes that
policy, and when the stage's is another (a policy swapped in without ``clear``, a
temporary rule running out), everything kept is forgotten first.
"""

from __future__ import annotations

import math
import struct
import time
from collections.abc import Callable
from typing import Final

from resolver.audit.attempts import QUESTION
from resolver.dns.codec import PlainQuestion, plain_question
from resolver.dns.model import Answer, Outcome, Query
from resolver.handlers.blocking import BlockingHandler, answer_mode
from resolver.metrics import Metrics
from resolver.policy.groups import ClientGroups, Group
from resolver.serve.kept import CAPACITY, KeptTables

# (client, group, name, qtype, service, category, action): an attempt for the audit trail.
AuditRecord = Callable[[str, str, bytes, int, str, str, str], None]

# Clients remembered (each with its group). Past it, that table starts again empty.
CLIENTS: Final = 16_384
# "Until the policy changes" (ms on the monotonic clock: over 30 years).
_NEVER: Final = 1 << 40
# What an answer does besides its bytes: (qtype, outcome, rcode, cached?, (service,
# category, group) when blocked). Few distinct ones; each kept answer points at one.
_Effects = tuple[int, str, int, bool, "tuple[str, str, str] | None"]


_COUNTDOWN: Final = struct.Struct("!dIQ")  # stored (monotonic s), age shown (whole s), until (ms)
_OFFSET: Final = struct.Struct("!H")
_TTL: Final = struct.Struct("!I")
_TC: Final = 0x02  # in the flags' first byte
_EFFECT: Final = 0xFFFF  # the low 16 bits of a deadline: the index of the answer's effects


def _countdown(answer: Answer, sent: bytes, until_ms: int) -> bytes | None:
    """How the fast path counts a cached answer's TTLs down: (stored, age shown, when it
    expires, where the TTLs sit in the answer without its ID), packed; None when it
    cannot (not a cached answer, or sent truncated, so the records are not where they
    were)."""
    if answer.countdown is None or not answer.ttl_offsets:
        return None
    if sent[2] & _TC or len(sent) < len(answer.message):
        return None
    stored, age = answer.countdown
    offsets = b"".join(_OFFSET.pack(offset - 2) for offset in answer.ttl_offsets)
    return _COUNTDOWN.pack(stored, age, until_ms) + offsets


def _early(key: bytes) -> float:
    """How long before each whole second of its age a kept answer's TTLs are counted
    down: between 0 and 1 s, by the question's hash. Answers cached together (a page's
    names, the benchmark's warm-up) are then recounted spread over the second, not all
    in the same few milliseconds: 1,000 recounts at 8.7 µs each are 8.7 ms of work
    (development VM, 2026-11-30; the bench's cached p99 did not move beyond its noise).
    A TTL is shown at most a second lower than the cache's own, never higher (RFC 1035
    7.4, RFC 2181 8)."""
    return (hash(key) & 1023) / 1024


def _age(now: float, stored: float, early: float) -> int:
    """The age a kept answer shows: whole seconds since ``stored``, counted ``early``."""
    return int(now - stored + early)


def _next_second(stored: float, age: int, early: float) -> int:
    """When a cached answer shown at ``age`` turns one older (ms, rounded down: its
    TTLs are recounted a little early, never late)."""
    return int((stored + age + 1 - early) * 1000)


class FastPath:
    """The tables hold only bytes and integers (the answer; its deadline and effects
    packed in one int), so the garbage collector never tracks nor walks them: kept as
    objects, 32,000 answers made every full collection take 15 ms."""

    def __init__(
        self,
        metrics: Metrics,
        group_of: Callable[[str], object],
        audit: AuditRecord | None,
        capacity: int = CAPACITY,
        clients: int = CLIENTS,
    ) -> None:
        """``group_of``: a client address -> its group (an object a policy change
        replaces); ``audit``: where blocked attempts are recorded (None: no trail)."""
        self._metrics = metrics
        self._group_of = group_of
        self._audit = audit
        self._clients = clients
        # Per group (the group object's id), in slabs: question bytes -> answer bytes,
        # question bytes -> deadline in ms << 16 | index into _effects, and for cached
        # answers question bytes -> packed (stored, age, until, offsets) of their TTLs
        # (see _countdown). The dicts of ``_tables`` are read here directly.
        self._tables = KeptTables(capacity)
        self._answers = self._tables.answers
        self._deadlines = self._tables.deadlines
        self._groups: dict[str, int] = {}  # client -> its group's id
        # Group id -> the group, and the blocking policy those groups belong to (the
        # blocker's, when they were looked up): the first-answer path hands the group
        # to the blocker rather than have it found again (held here, so its id is
        # never another's while kept).
        self._blocking_groups: dict[int, Group] = {}
        self._policy: ClientGroups | None = None
        # The blocker's reuse cap last seen, as a kept answer's deadline (``_deadline``,
        # shifted): computed again only when the cap changes.
        self._cap = -1.0
        self._cap_packed = 0
        self._effects: list[_Effects] = []
        self._effect_index: dict[_Effects, int] = {}
        # Per effect: answers given since the counters were last told (``flush``).
        self._counted: list[int] = []
        self._flushed = 0
        # Off while the rate limit is on: every answer must then take its bucket.
        self.enabled = True
        # Set by the data plane: the blocking stage in force (None: no first answers
        # here), and the names stages before it answer (DDR's, the rpz zones').
        self.blocker: BlockingHandler | None = None
        self.reserved: tuple[bytes, ...] = ()
        # (datagram, its plain question) read by the first-answer path for a datagram
        # it left to the pipeline: the listener takes it (``take_question``) rather
        # than parse that datagram's question again.
        self._question: tuple[bytes, PlainQuestion] | None = None
        metrics.defer(self.flush)

    def __len__(self) -> int:
        return len(self._tables)

    @property
    def clients(self) -> int:
        return len(self._groups)

    @property
    def hits(self) -> int:
        """Answers given from the tables, since the start."""
        return self._flushed + sum(self._counted)

    def flush(self) -> None:
        """Add the answers given since the last call to the counters they belong to."""
        counted = self._counted
        metrics = self._metrics
        for index, count in enumerate(counted):
            if not count:
                continue
            counted[index] = 0
            self._flushed += count
            qtype, outcome, rcode, cached, blocked = self._effects[index]
            metrics.queries.add(("udp", qtype), count)
            metrics.responses.add((outcome, rcode), count)
            if cached:
                metrics.cache_hits.add((), count)
            elif blocked is not None:
                metrics.blocked.add(blocked, count)

    def clear(self) -> None:
        """The policy changed: nothing kept may be served again."""
        self.flush()
        self._tables.clear()
        self._groups = {}
        self._blocking_groups = {}
        self._policy = None
        self._effects = []
        self._effect_index = {}
        self._counted = []

    def answer(self, data: bytes, client: str) -> bytes | None:
        """The ready answer to this datagram from ``client`` (its ID set), or None."""
        group = self._groups.get(client)
        if group is None:
            return None
        key = data[2:]
        slot = hash(key) & self._tables.mask
        payload = self._answers[group][slot].get(key)
        if payload is None:
            return self._first_block(data, key, client, group)
        packed = self._deadlines[group][slot][key]
        if packed >> 16 <= time.monotonic() * 1000:
            payload = self._renew(group, key, slot, packed)
            if payload is None:
                return None
        index = packed & _EFFECT
        self._counted[index] += 1
        blocked = self._effects[index][4]
        if blocked is not None and self._audit is not None:
            # The question as it came: the writer reads the name out of it (QUESTION).
            service, category, name = blocked
            self._audit(client, name, key, QUESTION, service, category, "blocked")
        return data[:2] + payload

    def keep(self, query: Query, answer: Answer, sent: bytes) -> None:
        """After the pipeline answered ``query`` with ``sent`` (the bytes on the wire):
        keep it when the answer says it may be reused."""
        if answer.reuse_until <= time.monotonic() or query.protocol != "udp":
            return
        if self.blocker is not None and self.blocker.groups is not self._policy:
            self.clear()  # the policy changed without a clear: nothing kept may be served
        group = self._groups.get(query.client)
        if group is None:
            group = self._know(query.client)
        effect = self._effect(query, answer)
        if effect < 0:
            return
        deadline = _deadline(answer.reuse_until)
        countdown = _countdown(answer, sent, deadline)
        key = query.raw[2:]
        if answer.countdown is not None:
            # Due again at its next whole second of age: its TTLs are then recounted
            # (``_renew``), or, when they cannot be, it is gone.
            deadline = min(deadline, _next_second(*answer.countdown, _early(key)))
        self._tables.store(group, key, sent[2:], deadline << 16 | effect, countdown)

    def _know(self, client: str) -> int:
        """Look ``client``'s group up and remember it; returns its id."""
        found: object
        policy = None
        if self.blocker is not None:
            # The blocker's own groups, so it can be handed them (``_first_block``).
            policy = self.blocker.current()  # may switch to the next version (a clear)
            found = policy.group_for(client)
        else:
            found = self._group_of(client)
        if policy is not self._policy:
            if self._groups:
                self.clear()  # the policy changed without a clear: start again
            self._policy = policy
        if len(self._groups) >= self._clients:
            self._groups = {}
        # The group object's identity: groups live as long as their policy version,
        # and a new version clears everything kept.
        group = self._groups[client] = id(found)
        if isinstance(found, Group):
            self._blocking_groups[group] = found
        self._tables.add_group(group)
        return group

    def _first_block(self, data: bytes, key: bytes, client: str, group: int) -> bytes | None:
        """A plain query for a banned name this client's group has no answer kept for:
        the blocking stage's decision and answer, kept, with every effect of the
        pipeline's (counters, audit record); None when the pipeline must answer."""
        blocker = self.blocker
        if blocker is None:
            return None
        if blocker.groups is not self._policy:
            self.clear()  # the policy changed without a clear: nothing kept may be served
            return None
        known = self._blocking_groups.get(group)
        if known is None:
            return None
        question = plain_question(data)
        if question is None:
            return None
        self._question = (data, question)
        name_end, labels, qtype, edns = question
        qname = data[12:name_end].lower()
        if qname.endswith(self.reserved):
            return None  # maybe DDR's or an rpz zone's (a suffix test only: maybe is enough)
        blocked = blocker.blocks(data, client, qname, labels, known)
        if blocker.groups is not self._policy:
            self.clear()  # a temporary rule ran out just now
            return None
        if blocked is None:
            return None
        chosen, rule, label = blocked
        mode = answer_mode(chosen, rule)
        zone_at = 12 + labels[label]
        payload = chosen.answers.plain(
            data, name_end + 4, qtype, zone_at, mode, edns, rule.description
        )
        if payload is None:
            return None
        on_list = (rule.service, rule.category, chosen.name)
        effects = (qtype, _BLOCKED, payload[1] & 0x0F, False, on_list)
        effect = self._effect_index.get(effects)
        if effect is None:
            effect = self._effect_of(effects)
            if effect < 0:
                return None
        cap = blocker.reuse_cap
        if cap != self._cap:
            self._cap, self._cap_packed = cap, _deadline(cap) << 16
        self._tables.store(group, key, payload, self._cap_packed | effect, None)
        self._counted[effect] += 1
        if self._audit is not None:
            # In the form its next answers (kept) are recorded in, so they are one key.
            self._audit(client, chosen.name, key, QUESTION, rule.service, rule.category, "blocked")
        return data[:2] + payload

    def take_question(self, data: bytes) -> PlainQuestion | None:
        """The plain question ``answer`` read in this very datagram (``data``, the same
        object) and left to the pipeline; None when it read none. Once."""
        kept, self._question = self._question, None
        if kept is not None and kept[0] is data:
            return kept[1]
        return None

    def _renew(self, group: int, key: bytes, slot: int, packed: int) -> bytes | None:
        """A kept answer past its deadline: a cached one still valid gets its TTLs at
        the current whole second of age (RFC 1035 7.4: a cached record's TTL counts
        down), counted from the original TTLs; anything else is dropped (None)."""
        now = time.monotonic()
        countdowns = self._tables.countdowns[group][slot]
        countdown = countdowns.get(key)
        if countdown is not None:
            stored, shown, until = _COUNTDOWN.unpack_from(countdown)
            if now * 1000 < until:
                early = _early(key)
                age = _age(now, stored, early)
                patched = bytearray(self._answers[group][slot][key])
                for (offset,) in _OFFSET.iter_unpack(countdown[_COUNTDOWN.size :]):
                    ttl = _TTL.unpack_from(patched, offset)[0] + shown
                    _TTL.pack_into(patched, offset, max(ttl - age, 0))
                payload = bytes(patched)
                self._answers[group][slot][key] = payload
                deadline = min(until, _next_second(stored, age, early))
                self._deadlines[group][slot][key] = deadline << 16 | packed & _EFFECT
                countdowns[key] = _COUNTDOWN.pack(stored, age, until) + countdown[_COUNTDOWN.size :]
                return payload
        self._tables.drop(group, key)
        return None

    def _effect(self, query: Query, answer: Answer) -> int:
        blocked = None
        if answer.outcome is Outcome.BLOCKED:
            blocked = (answer.service, answer.category, answer.group)
        outcome = str(answer.outcome.value)
        cached = answer.outcome is Outcome.CACHED
        return self._effect_of((query.qtype, outcome, answer.rcode, cached, blocked))

    def _effect_of(self, effects: _Effects) -> int:
        """The index of ``effects`` (-1: too many kinds; everything was cleared)."""
        index = self._effect_index.get(effects)
        if index is None:
            if len(self._effects) > _EFFECT:
                self.clear()
                return -1
            index = self._effect_index[effects] = len(self._effects)
            self._effects.append(effects)
            self._counted.append(0)
        return index


_BLOCKED: Final = str(Outcome.BLOCKED.value)


def _deadline(until: float) -> int:
    """A reuse deadline in ms on the monotonic clock, rounded down: a kept answer may
    stop a little early, never late."""
    return _NEVER if until == math.inf else int(until * 1000)
