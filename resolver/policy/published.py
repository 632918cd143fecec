"""A built policy written down once, for the worker processes to load.

The supervisor builds each version of the policy once and writes it in two files in
``state.directory/run``: the table of list names (``nametable``), which every process
maps (the page cache holds it once, whatever the number of workers), and a pickle of
the rest (the groups, their versions, the catalog), which is small. A worker loads both
and attaches the table; the files can be deleted as soon as every worker has them.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path

from resolver.policy.groups import ClientGroups
from resolver.policy.loading import BuiltPolicy
from resolver.policy.nametable import NameTable


@dataclass(frozen=True, slots=True)
class Published:
    version: int
    table: Path | None  # None: no compact list, no table
    rest: Path

    def remove(self) -> None:
        for path in (self.table, self.rest):
            if path is not None:
                path.unlink(missing_ok=True)


def table_of(built: BuiltPolicy) -> NameTable | None:
    """The name table the policy's groups share (None when it has none)."""
    return built.groups.default.blocklist.names.table


def publish(built: BuiltPolicy, directory: Path, version: int) -> Published:
    """Write ``built`` for the workers; blocking (run it in a thread)."""
    directory.mkdir(parents=True, exist_ok=True)
    table = table_of(built)
    table_path = directory / f"policy-{version}.table" if table is not None else None
    if table is not None and table_path is not None:
        _write(table_path, table.to_bytes())
    rest = directory / f"policy-{version}.pickle"
    _write(rest, pickle.dumps(built, pickle.HIGHEST_PROTOCOL))
    return Published(version, table_path, rest)


def load_published(published: Published) -> BuiltPolicy:
    """The policy as ``publish`` wrote it, its table mapped from the file."""
    built: BuiltPolicy = pickle.loads(published.rest.read_bytes())
    if published.table is not None:
        table = NameTable.map_file(published.table)
        version: ClientGroups | None = built.groups
        while version is not None:
            for group in version.all:
                group.blocklist.names.reattach(table)
            version = version.successor
    return built


def _write(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("wb") as stream:
        stream.write(data)
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(temporary, path)
