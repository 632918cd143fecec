"""The answer cache's keys and entries, each one bytes object.

A dict whose keys and values are all bytes is never tracked by the garbage collector,
so a full cache adds nothing to a collection. As tuples, the entries were checked one
by one at every full collection (the dicts holding them are tracked again each time a
fresh tuple goes in): 40-120 ms per full collection with 130,000 answers cached, which
ran every few seconds under a steady flow of misses (development VM, 2026-11-30).

An entry is ``HEAD`` (stored, expires, recheck_after, served_age, rcode, the number of
TTL offsets, the length of the CNAME part, the length of the message), the TTL offsets
(u16 each), the CNAME targets (a length byte and the wire name each), the message, and
the copy last served (empty while ``served_age`` is -1). ``served_age`` is that copy's
age in whole seconds: every hit within the same second reuses it. Until
``recheck_after`` the stale answer is served without asking upstream (after a
failure). Entries are replaced, never changed.
"""

from __future__ import annotations

import struct
from array import array
from typing import Final, NamedTuple

HEAD: Final = struct.Struct("=dddiHHHH")
_KEY_TAIL: Final = struct.Struct("!HB")
# ``served_age`` within HEAD (native byte order, no padding: "=").
_AGE: Final = struct.Struct("=i")
_AGE_AT: Final = struct.calcsize("=ddd")
# Readers of the TTL offsets for the common counts, compiled once (a format string
# built per read costs more than the read itself).
_OFFSETS: Final = tuple(struct.Struct(f"={count}H") for count in range(65))


def cache_key(qname: bytes, qtype: int, flags: int) -> bytes:
    """The key of a question: its lowercase wire-form name (which ends with its root
    label, so nothing can follow it ambiguously), type, and the flags that change the
    answer (DO, CD)."""
    return qname + _KEY_TAIL.pack(qtype, flags)


class Entry(NamedTuple):
    stored: float
    expires: float
    recheck_after: float
    served_age: int
    rcode: int
    ttl_offsets: tuple[int, ...]
    cnames: tuple[bytes, ...]
    message: bytes
    served: bytes


def pack(entry: Entry) -> bytes:
    return pack_parts(*entry)


def pack_parts(
    stored: float,
    expires: float,
    recheck_after: float,
    served_age: int,
    rcode: int,
    ttl_offsets: tuple[int, ...],
    cnames: tuple[bytes, ...],
    message: bytes,
    served: bytes,
) -> bytes:
    """``pack`` of an Entry's fields, without the Entry (each miss stores one)."""
    count = len(ttl_offsets)
    if count < len(_OFFSETS):
        offsets = _OFFSETS[count].pack(*ttl_offsets)
    else:
        offsets = array("H", ttl_offsets).tobytes()
    names = b"".join(bytes([len(name)]) + name for name in cnames) if cnames else b""
    head = HEAD.pack(
        stored, expires, recheck_after, served_age, rcode, count, len(names), len(message)
    )
    return b"".join((head, offsets, names, message, served))


def unpack(data: bytes) -> Entry:
    stored, expires, recheck, served_age, rcode, count, cnames_length, length = HEAD.unpack_from(
        data
    )
    start = HEAD.size + 2 * count
    end = start + cnames_length
    return Entry(
        stored,
        expires,
        recheck,
        served_age,
        rcode,
        ttl_offsets(data, count),
        cnames_in(data, start, end),
        data[end : end + length],
        data[end + length :],
    )


def ttl_offsets(data: bytes, count: int) -> tuple[int, ...]:
    """The ``count`` TTL offsets of an entry (they follow its head)."""
    if count < len(_OFFSETS):
        return _OFFSETS[count].unpack_from(data, HEAD.size)
    return struct.unpack_from(f"={count}H", data, HEAD.size)


def cnames_in(data: bytes, start: int, end: int) -> tuple[bytes, ...]:
    """The CNAME targets an entry holds between ``start`` and ``end``."""
    cnames: list[bytes] = []
    at = start
    while at < end:
        size = data[at]
        cnames.append(data[at + 1 : at + 1 + size])
        at += 1 + size
    return tuple(cnames)


def served_anew(data: bytes, message_end: int, age: int, served: bytes) -> bytes:
    """The entry ``data`` with another copy served, ``age`` seconds old: its bytes up to
    the end of its message kept but for ``served_age``, then ``served``."""
    return b"".join((data[:_AGE_AT], _AGE.pack(age), data[_AGE_AT + 4 : message_end], served))


def message_length(data: bytes) -> int:
    """The length of an entry's message, without unpacking the rest."""
    length: int = HEAD.unpack_from(data)[7]
    return length
