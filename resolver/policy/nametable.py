"""Millions of list names in one flat table, shareable between processes.

Every name of every list is stored as the 64-bit hash of its dotted form (``hash()`` of
the bytes, as the query path computes it), with the index of the first list that has
it, in an open-addressing table: two arrays in one buffer. The buffer is plain bytes,
so it can live in memory or in a file that every worker process maps (the page cache
holds it once), and a lookup reads it in place, without building a Python object per
name. A million names cost about 20 MB, against about 60 MB as Python sets.

All processes that share a table must share Python's hash secret: the workers are
forked from the process that builds it.

Layout: ``MAGIC`` (8 bytes), capacity and count (8 bytes each), then ``capacity`` keys
(u64, 0 = empty) and ``capacity`` values (u16).
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final

MAGIC: Final = b"AIWNT001"
_HEADER: Final = struct.Struct("<8sQQ")
KEY_MASK: Final = (1 << 64) - 1
# A value is a list's index; the table refuses more lists than this.
MAX_VALUES: Final = 65_535


def table_key(name: bytes) -> int:
    """The table key of a dotted lowercase name: its hash, as an unsigned 64-bit number
    that is never 0 (0 marks an empty slot)."""
    return (hash(name) & KEY_MASK) or 1


class NameTable:
    """A read-only map from name keys to small integers."""

    def __init__(self, buffer: bytes | bytearray | mmap.mmap) -> None:
        magic: bytes
        capacity: int
        count: int
        magic, capacity, count = _HEADER.unpack_from(buffer)
        if magic != MAGIC or capacity & (capacity - 1):
            raise ValueError("not a name table")
        self._buffer = buffer
        view = memoryview(buffer)
        start = _HEADER.size
        self._keys = view[start : start + 8 * capacity].cast("Q")
        # The same keys read as signed: hash() as it comes, without the mask, is then
        # the key (two's complement: the same 64 bits; the slot, ``& mask``, the same).
        self._signed_keys = view[start : start + 8 * capacity].cast("q")
        self._values = view[start + 8 * capacity : start + 10 * capacity].cast("H")
        self._mask = capacity - 1
        self.count = count
        self.capacity = capacity

    def __len__(self) -> int:
        return self.count

    def get(self, key: int) -> int:
        """The value stored for ``key``, or -1."""
        keys = self._keys
        slot = key & self._mask
        while True:
            found = keys[slot]
            if found == key:
                value: int = self._values[slot]
                return value
            if not found:
                return -1
            slot = (slot + 1) & self._mask

    def first_suffix(self, name: bytes, labels: Sequence[int], stop: int) -> tuple[int, int]:
        """(value, index) of the longest suffix of the lowercase wire-form ``name`` the
        table holds, among those starting at ``labels[:stop]`` (its label offsets);
        (-1, -1) when it holds none. One call for all of a name's suffixes, the key
        (``table_key`` of the dotted suffix) and the probe written out: a call per
        suffix costs more than its probe."""
        # The dotted form keeps the offsets: without the first length byte, each label
        # starts where its length byte was, and the root's 0 ends it (label 0 turns it
        # into a dot, cut off below).
        text = bytearray(name[1:])
        for start in labels:
            text[start - 1] = 0x2E
        dotted = bytes(text)
        end = len(dotted) - 1
        keys = self._signed_keys
        mask = self._mask
        for index in range(stop):
            key = hash(dotted[labels[index] : end]) or 1
            slot = key & mask
            found = keys[slot]
            while found and found != key:
                slot = (slot + 1) & mask
                found = keys[slot]
            if found:
                value: int = self._values[slot]
                return value, index
        return -1, -1

    @property
    def nbytes(self) -> int:
        return len(self._buffer)

    def to_bytes(self) -> bytes:
        return bytes(self._buffer)

    def release(self) -> None:
        """Let go of the buffer (a mapped file is unmapped once nothing else holds it)."""
        self._keys.release()
        self._signed_keys.release()
        self._values.release()
        if isinstance(self._buffer, mmap.mmap):
            self._buffer.close()

    @classmethod
    def map_file(cls, path: Path) -> NameTable:
        with path.open("rb") as stream:
            return cls(mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ))


def build_table(groups: Iterable[tuple[Sequence[int], int]], count_hint: int) -> bytearray:
    """A table of every key of ``groups`` (keys, value), the first value given to a key
    kept; at most half full, so a miss ends after a probe or two."""
    capacity = 1024
    while capacity < 2 * count_hint:
        capacity *= 2
    buffer = bytearray(_HEADER.size + 10 * capacity)
    view = memoryview(buffer)
    keys = view[_HEADER.size : _HEADER.size + 8 * capacity].cast("Q")
    values = view[_HEADER.size + 8 * capacity :].cast("H")
    mask = capacity - 1
    count = 0
    for group_keys, value in groups:
        if not 0 <= value <= MAX_VALUES:
            raise ValueError(f"value {value} does not fit the table")
        for key in group_keys:
            slot = key & mask
            while True:
                found = keys[slot]
                if not found:
                    keys[slot] = key
                    values[slot] = value
                    count += 1
                    break
                if found == key:
                    break  # an earlier list has it: the first to claim a name keeps it
                slot = (slot + 1) & mask
    keys.release()
    values.release()
    view.release()
    _HEADER.pack_into(buffer, 0, MAGIC, capacity, count)
    return buffer
