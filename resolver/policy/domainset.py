"""Suffix matching of names against large lists, a few dict probes per query.

Entries are keyed by their lowercase wire form. A query name in wire form holds every
parent as a suffix that starts at a label boundary (``\\x04chat\\x08deepseek\\x03com\\x00``
contains ``\\x08deepseek\\x03com\\x00``), so finding the most specific entry is one dict
lookup per label, whatever the list size, with no decoding to text. Most names are
covered by no entry at all: the last two labels of every entry are kept in a set, and a
name whose last two labels are not in it skips the entries (one look-up, not one per
label). Large lists are a table of their names' keys (``nametable``), tried after.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from resolver.policy.nametable import NameTable

Value = TypeVar("Value")

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
        # The last two labels of every entry (``_tail``), and whether some entry has
        # fewer: what ``_may_hold`` rules names out with.
        self._tails: set[bytes] = set()
        self._short = False
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
            "_tails": self._tails,
            "_short": self._short,
            "_table_values": self._table_values,
        }

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._table = None

    def add(self, name: bytes, value: Value, *, below_only: bool = False) -> None:
        """Add a lowercase wire-form name; a later add of the same name replaces the value."""
        self._hold(name)
        if below_only:
            self._has_wildcards = True
            name = _BELOW_ONLY + name
        self._entries[name] = value

    def setdefault(self, name: bytes, value: Value) -> Value:
        """Add unless present; return what is stored (the first list to claim a name keeps it)."""
        self._hold(name)
        return self._entries.setdefault(name, value)

    def _hold(self, name: bytes) -> None:
        """Note the last two labels of a name added (``find`` rules names out by them)."""
        starts = [0]
        position = 0
        while name[position]:
            position += name[position] + 1
            starts.append(position)
        if len(starts) > 2:
            self._tails.add(name[starts[-3] :])
        else:
            self._tails.add(name)  # one label (or none): the name's last label alone
            self._short = True

    def items(self) -> Iterator[tuple[bytes, Value, bool]]:
        """Every entry as (wire name, value, below_only), for exports and explanations."""
        for key, value in self._entries.items():
            if key.startswith(_BELOW_ONLY):
                yield key[len(_BELOW_ONLY) :], value, True
            else:
                yield key, value, False

    def match(self, name: bytes, labels: Sequence[int]) -> Match[Value] | None:
        """The most specific entry covering ``name``; ``labels`` are its label offsets."""
        found = self.find(name, labels)
        return None if found is None else Match(found[0], found[1])

    def find(self, name: bytes, labels: Sequence[int]) -> tuple[Value, int] | None:
        """``match`` as (value, label index), without the object (the blocking path)."""
        entry = None
        # An entry can only cover a name if it ends with the name's last two labels (or
        # is its last label alone): one set look-up rules most names out, whatever
        # their number of labels.
        tails = self._tails
        if (
            len(labels) < 2
            or name[labels[-2] :] in tails
            or (self._short and name[labels[-1] :] in tails)
        ):
            entry = self._entry(name, labels)
        table = self._table
        if table is None:
            return entry
        # Entries win over the table at the same label: the table is tried above it only.
        stop = len(labels) if entry is None else entry[1]
        if not stop:
            return entry
        found, index = table.first_suffix(name, labels, stop)
        return entry if found < 0 else (self._table_values[found], index)

    def _entry(self, name: bytes, labels: Sequence[int]) -> tuple[Value, int] | None:
        entries = self._entries
        for index, start in enumerate(labels):
            suffix = name[start:] if start else name
            value = entries.get(suffix)
            if value is not None:
                return value, index
            if self._has_wildcards and index > 0:
                value = entries.get(_BELOW_ONLY + suffix)
                if value is not None:
                    return value, index
        return None
