"""A built policy written down once, for the worker processes to load.

The supervisor builds each version of the policy once and writes it in two files in
``state.directory/run``: the table of list names (``nametable``), which every process
maps (the page cache holds it once, whatever the number of workers), and a pickle of
the rest (the groups, their versions, the catalog), which is small. A worker loads both
and attaches the table; the files can be deleted as soon as every worker has them.

The catalog goes in a file of its own, with a digest: a process that already holds a
catalog of that digest keeps using it rather than unpickling the same again (most
reloads change lists, not the catalog, and the catalog is most of the pickle).

The single-process server has its reloads built the same way, by a builder process
(``serve.builder``): ``build_published`` runs there, and the server takes the result
with ``take_result``, which refuses anything it cannot vouch for.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from resolver.config import Config
from resolver.policy.catalog import Catalog
from resolver.policy.groups import ClientGroups
from resolver.policy.loading import BuiltPolicy, PolicyError, remote_lists
from resolver.policy.nametable import NameTable, table_key
from resolver.policy.source import PolicySource, build_steady

# Hashed by the builder and by the server: equal only when both have the same hash
# secret, without which the table's keys would match no name the server looks up.
HASH_PROBE = b"aiwall.hash.probe"
RESULT_NAME = "result.pickle"
_CATALOG = "catalog"


@dataclass(frozen=True, slots=True)
class Published:
    version: int
    table: Path | None  # None: no compact list, no table
    rest: Path
    catalog: Path | None = None  # None: the policy has no catalog
    catalog_digest: str = ""

    @property
    def paths(self) -> list[Path]:
        return [path for path in (self.table, self.rest, self.catalog) if path is not None]

    def remove(self) -> None:
        for path in self.paths:
            path.unlink(missing_ok=True)


@dataclass(frozen=True, slots=True)
class KnownCatalog:
    """A catalog a process holds already, and the digest of its published form."""

    digest: str
    catalog: Catalog


def catalog_digest(catalog: Catalog) -> tuple[str, bytes]:
    """The digest of ``catalog``'s published form, and that form."""
    data = pickle.dumps(catalog, pickle.HIGHEST_PROTOCOL)
    return hashlib.sha256(data).hexdigest(), data


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
    catalog_path, digest = None, ""
    if built.catalog is not None:
        digest, data = catalog_digest(built.catalog)
        catalog_path = directory / f"policy-{version}.catalog"
        _write(catalog_path, data)
    rest = directory / f"policy-{version}.pickle"
    stream = io.BytesIO()
    _Pickler(stream, built.catalog).dump(built)
    _write(rest, stream.getvalue())
    return Published(version, table_path, rest, catalog_path, digest)


def load_published(published: Published, known: KnownCatalog | None = None) -> BuiltPolicy:
    """The policy as ``publish`` wrote it, its table mapped from the file; its catalog is
    ``known``'s when the digests are equal."""

    def catalog() -> Catalog:
        if known is not None and known.digest == published.catalog_digest:
            return known.catalog
        if published.catalog is None:
            raise pickle.UnpicklingError("a catalog is referred to, and none was published")
        loaded: Catalog = pickle.load(_FrameByFrame(published.catalog.read_bytes()))
        return loaded

    reading = _Unpickler(_FrameByFrame(published.rest.read_bytes()), catalog)
    built: BuiltPolicy = reading.load()
    if published.table is not None:
        table = NameTable.map_file(published.table)
        version: ClientGroups | None = built.groups
        while version is not None:
            for group in version.all:
                group.blocklist.names.reattach(table)
            version = version.successor
    return built


class _FrameByFrame(io.BytesIO):
    """A pickle the unpickler reads a frame (64 KB) at a time, letting other threads run
    in between: one ``pickle.loads`` of a policy (its catalog mostly) holds the
    interpreter lock for its whole length, 10-25 ms, which stalls the server's event
    loop as long; a frame takes 1-3 ms."""

    def read(self, size: int | None = -1) -> bytes:
        time.sleep(0)  # releases the interpreter lock; a waiting thread takes it
        return super().read(size)


class _Pickler(pickle.Pickler):
    """Pickles a policy without its catalog (written apart), referring to it by name."""

    def __init__(self, stream: io.BytesIO, catalog: Catalog | None) -> None:
        super().__init__(stream, pickle.HIGHEST_PROTOCOL)
        self._catalog = catalog

    def persistent_id(self, obj: object) -> str | None:
        return _CATALOG if obj is not None and obj is self._catalog else None


class _Unpickler(pickle.Unpickler):
    def __init__(self, stream: io.BytesIO, catalog: Callable[[], Catalog]) -> None:
        super().__init__(stream)
        self._catalog = catalog

    def persistent_load(self, pid: object) -> Catalog:
        if pid != _CATALOG:
            raise pickle.UnpicklingError(f"unknown reference {pid!r}")
        return self._catalog()


def _write(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("wb") as stream:
        stream.write(data)
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(temporary, path)


@dataclass(frozen=True, slots=True)
class BuildRequest:
    """What a builder process needs for one reload (it reads the lists itself)."""

    config: Config
    catalog_dir: Path | None
    directory: Path  # a fresh folder for this build's files, removed by the server
    version: int


@dataclass(frozen=True, slots=True)
class BuildResult:
    published: Published | None  # None: the build failed, ``error`` says why
    error: str = ""
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)
    probe: int = 0


def build_published(request: BuildRequest) -> None:
    """In the builder process: build the policy of ``request.config`` as a reload does
    (a list its guard rejects fails the build) and publish it in ``request.directory``,
    with a ``BuildResult`` next to it. Raises only on what the result cannot say."""
    rejected: list[tuple[str, str]] = []
    config = request.config
    try:
        built = build_steady(
            config,
            request.catalog_dir,
            remote_lists(config),
            lambda source, reason: rejected.append((source, reason)),
            starting=False,
        )
    except PolicyError as error:
        result = BuildResult(None, str(error), rejected, table_key(HASH_PROBE))
    else:
        published = publish(built, request.directory, request.version)
        result = BuildResult(published, "", rejected, table_key(HASH_PROBE))
    _write(request.directory / RESULT_NAME, pickle.dumps(result, pickle.HIGHEST_PROTOCOL))


def take_result(
    request: BuildRequest, source: PolicySource, known: KnownCatalog | None = None
) -> tuple[BuiltPolicy, KnownCatalog | None]:
    """In the server, once the builder exited with success: its policy, loaded (with
    ``known``'s catalog if it is the same) and its metrics counted into ``source``, and
    its catalog to know next time. Raises PolicyError for a failed build and for
    anything that is not a whole policy built for this process. Blocking."""
    try:
        result = pickle.loads((request.directory / RESULT_NAME).read_bytes())
    except Exception as error:  # a cut or garbled file: anything unpickling raises
        raise PolicyError(f"the builder's result is unreadable: {error!r}") from None
    if not isinstance(result, BuildResult):
        raise PolicyError(f"the builder's result is not one: {type(result).__name__}")
    if result.published is None:
        source.adopt(None, result.rejected)
        raise PolicyError(result.error or "the builder failed and did not say why")
    if result.probe != table_key(HASH_PROBE):
        raise PolicyError("the builder hashes names unlike this process (another hash secret)")
    published = result.published
    if {path.parent for path in published.paths} != {request.directory}:
        raise PolicyError("the builder's result names files outside its folder")
    try:
        built = load_published(published, known)
    except Exception as error:
        raise PolicyError(f"the builder's policy is unreadable: {error!r}") from None
    if not isinstance(built, BuiltPolicy):
        raise PolicyError(f"the builder's policy is not one: {type(built).__name__}")
    source.adopt(built, result.rejected)
    catalog = built.catalog
    return built, KnownCatalog(published.catalog_digest, catalog) if catalog is not None else None
