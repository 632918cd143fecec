"""``codec.plain_query``: the Query of a plain query whose question the fast path has
read already must be the one ``parse_query`` reads, field for field, whatever the name's
case, the type, the flags and the EDNS (no sockets; the hand-over from the fast path:
test_plain_block)."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.name
import dns.rdatatype
from hypothesis import given, settings
from hypothesis import strategies as st

from resolver.dns.codec import parse_query, plain_query, plain_question

_LABEL = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_",
    min_size=1,
    max_size=20,
)
_TYPES = st.sampled_from(["A", "AAAA", "MX", "TXT", "HTTPS", "SVCB", "ANY", "PTR", "NS", "SOA"])
_FLAGS = st.sets(st.sampled_from([dns.flags.RD, dns.flags.CD, dns.flags.AD]))
# None: no OPT; else (payload, DO). Payloads below 512 read as 512 (RFC 6891 6.2.5).
_EDNS = st.none() | st.tuples(st.integers(0, 65535), st.booleans())


def _query(
    labels: list[str], rdtype: str, flags: set[int], edns: tuple[int, bool] | None, ident: int
) -> bytes:
    name = dns.name.from_text(".".join(labels) + ".")
    if edns is None:
        message = dns.message.make_query(name, rdtype, use_edns=False)
    else:
        payload, do = edns
        message = dns.message.make_query(name, rdtype, use_edns=0, payload=payload, want_dnssec=do)
    message.id = ident
    message.flags = 0
    for flag in flags:
        message.flags |= flag
    return message.to_wire()


@settings(max_examples=300)
@given(
    labels=st.lists(_LABEL, min_size=1, max_size=6),
    rdtype=_TYPES,
    flags=_FLAGS,
    edns=_EDNS,
    ident=st.integers(0, 0xFFFF),
)
def test_plain_query_is_parse_query(
    labels: list[str], rdtype: str, flags: set[int], edns: tuple[int, bool] | None, ident: int
) -> None:
    data = _query(labels, rdtype, flags, edns, ident)
    question = plain_question(data)
    assert question is not None
    assert plain_query(data, "udp", "192.0.2.1", question) == parse_query(data, "udp", "192.0.2.1")


@settings(max_examples=500)
@given(data=st.binary(min_size=12, max_size=80))
def test_any_bytes_taken_as_plain_read_as_parse_query_reads_them(data: bytes) -> None:
    # Headers that make the bytes a candidate: a query, one question, at most one record.
    data = (
        data[:2] + bytes([data[2] & 0x01, data[3]]) + b"\x00\x01\x00\x00\x00\x00\x00" + data[11:12]
    )
    data += b"\x00\x00\x01\x00\x01"
    question = plain_question(data)
    if question is not None:
        assert plain_query(data, "udp", "::1", question) == parse_query(data, "udp", "::1")
