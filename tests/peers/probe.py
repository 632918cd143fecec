"""One DNS question asked until a server answers it, with dnspython (a client independent
of the code under test): how tests, tools and the benchmark wait for a server to serve,
and time its answers."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

import dns.exception
import dns.message
import dns.query
import dns.rdatatype


class Reply(NamedTuple):
    rcode: int
    seconds: float  # from the first try to the answer
    message: dns.message.Message


def probe(
    address: tuple[str, int],
    name: str,
    rdtype: str = "A",
    *,
    tcp: bool = False,
    timeout: float = 2.0,
    attempt: float = 0.5,
    alive: Callable[[], bool] | None = None,
) -> Reply | None:
    """The first answer to ``name`` within ``timeout`` seconds, or None.

    Tries last at most ``attempt`` seconds each: a query sent before the server was
    listening is lost, not late. ``alive`` (the server's process is running) ends the
    wait early when it turns False.
    """
    query = dns.message.make_query(name, dns.rdatatype.from_text(rdtype))
    host, port = address
    started = time.monotonic()
    deadline = started + timeout
    while True:
        try_for = max(min(attempt, deadline - time.monotonic()), 0.05)
        try:
            if tcp:
                answer = dns.query.tcp(query, host, port=port, timeout=try_for)
            else:
                answer = dns.query.udp(query, host, port=port, timeout=try_for)
            return Reply(answer.rcode(), time.monotonic() - started, answer)
        except (dns.exception.Timeout, OSError):  # OSError: refused, or not yet listening
            pass
        if time.monotonic() >= deadline or (alive is not None and not alive()):
            return None
        time.sleep(0.005)  # a refused TCP connection fails at once: do not spin


def addresses(message: dns.message.Message, rdtype: str = "A") -> list[str]:
    """The addresses (or other rdata, as text) of ``rdtype`` in an answer section."""
    wanted = dns.rdatatype.from_text(rdtype)
    return sorted(
        rd.to_text() for rrset in message.answer if rrset.rdtype == wanted for rd in rrset
    )
