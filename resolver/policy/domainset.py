"""Suffix matching of names against large lists, a few dict probes per query.

Entries are keyed by their lowercase wire form. A query name in wire form holds every
parent as a suffix that starts at a label boundary (``\\x04chat\\x08deepseek\\x03com\\x00``
contains ``\\x08deepseek\\x03com\\x00``), so finding the most specific entry is one dict
lookup per label, whatever the list size, with no decoding to text.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from resolver.policy.nametable import NameTable

Value = TypeVar("Value")
_MASK64 = (1 << 64) - 1

# Keys of "*.example.com" entries: the wildcard matches strictly below the name.
_BELOW_ONLY = b"\x01*"


@dataclass(slots=True)  # not frozen: a frozen __init__ costs a microsecond per query
class Match(Generic[Value]):
    value: Value
    label: int  # index of the query label where the matched entry starts


class DomainSet(Generic[Value]):
    """Maps names (each covering its subdomains) to values; the most specific entry wins."""

    def __init__(self) -> None:
        self._entries: dict[bytes, Value] = {}
        self._has_wildcards = False
        # Large lists: one table of their names' keys (``nametable``), shared by every
        # group and version of a policy, and the value of each list by its index.
        self._table: NameTable | None = None
        self._table_values: list[Value] = []

    def __len__(self) -> int:
        return len(self._entries) + (len(self._table) if self._table is not None else 0)

    def attach_table(self, table: NameTable, values: list[Value]) -> None:
        """Check ``table`` after the exact entries of each label; a key's stored index
        picks its value in ``values`` (shared, not copied)."""
        self._table = table
        self._table_values = values

    def release(self) -> None:
        """Let go of the large lists (the table is freed once no version holds it)."""
        self._table = None
        self._table_values = []

    @property
    def table(self) -> NameTable | None:
        return self._table

    def reattach(self, table: NameTable) -> None:
        """After unpickling (``policy.published``): the table the values were made for."""
        if self._table_values:
            self._table = table

    def __getstate__(self) -> dict[str, object]:
        # The table is written and mapped on its own; everything else pickles as it is.
        return {
            "_entries": self._entries,
            "_has_wildcards": self._has_wildcards,
            "_table_values": self._table_values,
        }

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._table = None

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
        table = self._table
        dotted = _dotted(name, labels) if table is not None else b""
        for index, start in enumerate(labels):
            suffix = name[start:] if start else name
            value = entries.get(suffix)
            if value is not None:
                return Match(value, index)
            if self._has_wildcards and index > 0:
                value = entries.get(_BELOW_ONLY + suffix)
                if value is not None:
                    return Match(value, index)
            if table is not None:
                # Label i of the dotted form starts where label i's length byte was; the
                # key is nametable.table_key, written out on this path.
                found = table.get((hash(dotted[start:]) & _MASK64) or 1)
                if found >= 0:
                    return Match(self._table_values[found], index)
        return None


def _dotted(name: bytes, labels: Sequence[int]) -> bytes:
    """``\x04chat\x08deepseek\x03com\x00`` to ``chat.deepseek.com``, keeping offsets:
    dropping the first length byte shifts every label left by one, onto its own
    length byte."""
    text = bytearray(name[1:-1])
    for start in labels[1:]:
        text[start - 1] = 0x2E
    return bytes(text)
