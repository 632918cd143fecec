"""Suffix matching of names against large lists, a few dict probes per query.

Entries are keyed by their lowercase wire form. A query name in wire form holds every
parent as a suffix that starts at a label boundary (``\\x04chat\\x08deepseek\\x03com\\x00``
contains ``\\x08deepseek\\x03com\\x00``), so finding the most specific entry is one dict
lookup per label, whatever the list size, with no decoding to text.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

Value = TypeVar("Value")

BULK_CHUNKS = 256
BULK_MASK = BULK_CHUNKS - 1

# Keys of "*.example.com" entries: the wildcard matches strictly below the name.
_BELOW_ONLY = b"\x01*"


@dataclass(frozen=True, slots=True)
class Match(Generic[Value]):
    value: Value
    label: int  # index of the query label where the matched entry starts


class DomainSet(Generic[Value]):
    """Maps names (each covering its subdomains) to values; the most specific entry wins."""

    def __init__(self) -> None:
        self._entries: dict[bytes, Value] = {}
        self._has_wildcards = False
        # Large lists: the hashes of their names (dotted text form), per list. An int per
        # name is a third of what a bytes key and its dict slot cost, which keeps a
        # million-name list within about 60 MB. Each list is split in BULK_CHUNKS sets so
        # that no single resize or free (C loops that never let the event loop thread
        # run) takes more than a millisecond or so while a reload builds in a thread.
        self._bulk: list[tuple[list[set[int]], Value]] = []

    def __len__(self) -> int:
        return len(self._entries) + sum(len(chunk) for chunks, _ in self._bulk for chunk in chunks)

    def add_bulk_chunks(self, chunks: list[set[int]], value: Value) -> int:
        """Add names already hashed by ``hashed_chunks`` (shared, not copied)."""
        self._bulk.append((chunks, value))
        return sum(len(chunk) for chunk in chunks)

    def release(self) -> None:
        """Empty the large lists piece by piece (see BULK_CHUNKS); call it from a thread
        on a set that has been swapped out."""
        for chunks, _ in self._bulk:
            for chunk in chunks:
                chunk.clear()
        self._bulk = []

    def add(self, name: bytes, value: Value, *, below_only: bool = False) -> None:
        """Add a lowercase wire-form name; a later add of the same name replaces the value."""
        if below_only:
            self._has_wildcards = True
            name = _BELOW_ONLY + name
        self._entries[name] = value

    def setdefault(self, name: bytes, value: Value) -> Value:
        """Add unless present; return what is stored (the first list to claim a name keeps it)."""
        return self._entries.setdefault(name, value)

    def items(self) -> Iterator[tuple[bytes, Value, bool]]:
        """Every entry as (wire name, value, below_only), for exports and explanations."""
        for key, value in self._entries.items():
            if key.startswith(_BELOW_ONLY):
                yield key[len(_BELOW_ONLY) :], value, True
            else:
                yield key, value, False

    def match(self, name: bytes, labels: Sequence[int]) -> Match[Value] | None:
        """The most specific entry covering ``name``; ``labels`` are its label offsets."""
        entries = self._entries
        bulk = self._bulk
        dotted = _dotted(name, labels) if bulk else b""
        for index, start in enumerate(labels):
            suffix = name[start:] if start else name
            value = entries.get(suffix)
            if value is not None:
                return Match(value, index)
            if self._has_wildcards and index > 0:
                value = entries.get(_BELOW_ONLY + suffix)
                if value is not None:
                    return Match(value, index)
            if bulk:
                # Label i of the dotted form starts where label i's length byte was.
                key = hash(dotted[start:])
                for chunks, bulk_value in bulk:
                    if key in chunks[key & BULK_MASK]:
                        return Match(bulk_value, index)
        return None


def hashed_chunks(names: Iterable[str]) -> list[set[int]]:
    """Lowercase dotted names as the hash sets ``add_bulk_chunks`` takes."""
    chunks: list[set[int]] = [set() for _ in range(BULK_CHUNKS)]
    for name in names:
        key = hash(name.encode("ascii"))
        chunks[key & BULK_MASK].add(key)
    return chunks


def _dotted(name: bytes, labels: Sequence[int]) -> bytes:
    """``\x04chat\x08deepseek\x03com\x00`` to ``chat.deepseek.com``, keeping offsets:
    dropping the first length byte shifts every label left by one, onto its own
    length byte."""
    text = bytearray(name[1:-1])
    for start in labels[1:]:
        text[start - 1] = 0x2E
    return bytes(text)
