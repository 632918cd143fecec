"""The types every handler speaks: a query in, an answer out."""

from __future__ import annotations

import enum
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Protocol, TypeAlias

from resolver.dns.edns import Edns


class Outcome(enum.StrEnum):
    """How a query was answered; a bounded label for metrics and logs."""

    FORWARDED = "forwarded"
    CACHED = "cached"
    STALE = "stale"
    BLOCKED = "blocked"
    REFUSED = "refused"
    FORMERR = "formerr"
    NOTIMP = "notimp"
    BADVERS = "badvers"
    SERVFAIL = "servfail"
    DROPPED = "dropped"
    # Over the rate limit, sent with TC=1 so a real client retries over TCP.
    TRUNCATED = "truncated"
    # Written by us in place of the real data: the RFC 8482 answer to ANY.
    SYNTHESIZED = "synthesized"


# Hot classes spell out their __init__ (``init=False``): compiled, the one the dataclass
# decorator writes runs as bytecode, 5x slower (README, "Compiled hot modules").
@dataclass(slots=True, init=False)
class Query:
    """A query as read from the wire: header, question and EDNS, nothing more.

    ``qname`` is the lowercase wire form used for matching; the question bytes as the
    client sent them (case included) stay in ``raw`` and are echoed back verbatim.
    ``problem`` is set when the question or OPT record cannot be read, so the sanity
    handler can answer FORMERR instead of the transport dropping the packet.
    """

    raw: bytes
    id: int
    flags: int
    qdcount: int
    qname: bytes
    labels: tuple[int, ...]
    qtype: int
    qclass: int
    question_end: int
    edns: Edns | None
    protocol: str
    client: str
    problem: str = ""

    def __init__(
        self,
        raw: bytes,
        id: int,
        flags: int,
        qdcount: int,
        qname: bytes,
        labels: tuple[int, ...],
        qtype: int,
        qclass: int,
        question_end: int,
        edns: Edns | None,
        protocol: str,
        client: str,
        problem: str = "",
    ) -> None:
        self.raw = raw
        self.id = id
        self.flags = flags
        self.qdcount = qdcount
        self.qname = qname
        self.labels = labels
        self.qtype = qtype
        self.qclass = qclass
        self.question_end = question_end
        self.edns = edns
        self.protocol = protocol
        self.client = client
        self.problem = problem


@dataclass(slots=True, init=False)
class Answer:
    """A response before its final touches.

    ``message`` is a complete DNS message without an OPT record. The codec sets the
    client's ID, RD and CD bits and question case, adds OPT (with ``ede``) when the client
    used EDNS, and truncates for UDP; handlers never need to know the transport.
    """

    message: bytes
    outcome: Outcome
    rcode: int
    ede: tuple[int, str] | None = None
    # Bounded labels for the blocked counter: a catalog service id or a list name.
    service: str = ""
    category: str = ""
    group: str = ""  # the client group whose policy blocked it
    # CNAME targets in the answer, so the blocking handler can inspect cached answers
    # without walking them again.
    cnames: tuple[bytes, ...] = field(default=())
    # Set on upstream answers only: where the TTLs sit, and how long the answer may be
    # cached (None: not cacheable, e.g. SERVFAIL or a negative answer without SOA).
    ttl_offsets: tuple[int, ...] = field(default=())
    cache_ttl: int | None = None
    # Until when (monotonic) this very answer may be given again to the same question
    # from the same client group without asking the pipeline (``serve.fastpath``);
    # 0: never. Set by the stage that knows: the cache, the blocking handler.
    reuse_until: float = 0.0
    # A cached answer: (stored, age) when its TTLs count down from ``stored``
    # (monotonic) and the message shows them at ``age`` whole seconds, with
    # ``ttl_offsets`` where they sit; the fast path then counts them down itself.
    countdown: tuple[float, int] | None = None

    def __init__(
        self,
        message: bytes,
        outcome: Outcome,
        rcode: int,
        ede: tuple[int, str] | None = None,
        service: str = "",
        category: str = "",
        group: str = "",
        cnames: tuple[bytes, ...] = (),
        ttl_offsets: tuple[int, ...] = (),
        cache_ttl: int | None = None,
        reuse_until: float = 0.0,
        countdown: tuple[float, int] | None = None,
    ) -> None:
        self.message = message
        self.outcome = outcome
        self.rcode = rcode
        self.ede = ede
        self.service = service
        self.category = category
        self.group = group
        self.cnames = cnames
        self.ttl_offsets = ttl_offsets
        self.cache_ttl = cache_ttl
        self.reuse_until = reuse_until
        self.countdown = countdown

    def __reduce__(self) -> tuple[type[Answer], tuple[object, ...]]:
        # Answers travel between workers (resolver.serve.relay), and a compiled class runs
        # its __init__ when unpickled, which needs every field. (The other hot classes
        # never leave their process.)
        return Answer, (
            self.message,
            self.outcome,
            self.rcode,
            self.ede,
            self.service,
            self.category,
            self.group,
            self.cnames,
            self.ttl_offsets,
            self.cache_ttl,
            self.reuse_until,
            self.countdown,
        )


Resolution: TypeAlias = Answer | Awaitable[Answer]


class Handler(Protocol):
    """One stage of the pipeline.

    ``handle`` returns an ``Answer`` when it can answer at once (blocked, cached, refused)
    and an awaitable only when it must wait (upstream): the common cases then cost no
    coroutine and no task.
    """

    name: str

    def handle(self, query: Query) -> Resolution: ...
