"""Suffix matching of names against large lists, a few dict probes per query.

Entries are keyed by their lowercase wire form. A query name in wire form holds every
parent as a suffix that starts at a label boundary (``\\x04chat\\x08deepseek\\x03com\\x00``
contains ``\\x08deepseek\\x03com\\x00``), so finding the most specific entry is one dict
lookup per label, whatever the list size, with no decoding to text.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

Value = TypeVar("Value")

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

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, name: bytes, value: Value, *, below_only: bool = False) -> None:
        """Add a lowercase wire-form name; a later add of the same name replaces the value."""
        if below_only:
            self._has_wildcards = True
            name = _BELOW_ONLY + name
        self._entries[name] = value

    def setdefault(self, name: bytes, value: Value) -> Value:
        """Add unless present; return what is stored (the first list to claim a name keeps it)."""
        return self._entries.setdefault(name, value)

    def update(self, items: Iterable[tuple[bytes, Value]]) -> None:
        self._entries.update(items)

    def items(self) -> Iterator[tuple[bytes, Value, bool]]:
        """Every entry as (wire name, value, below_only), for exports and explanations."""
        for key, value in self._entries.items():
            if key.startswith(_BELOW_ONLY):
                yield key[len(_BELOW_ONLY) :], value, True
            else:
                yield key, value, False

    def match(self, name: bytes, labels: Iterable[int]) -> Match[Value] | None:
        """The most specific entry covering ``name``; ``labels`` are its label offsets."""
        entries = self._entries
        for index, start in enumerate(labels):
            suffix = name[start:] if start else name
            value = entries.get(suffix)
            if value is not None:
                return Match(value, index)
            if self._has_wildcards and index > 0:
                value = entries.get(_BELOW_ONLY + suffix)
                if value is not None:
                    return Match(value, index)
        return None
