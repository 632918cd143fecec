"""Building the whole policy from the config, the catalog and every list, and freeing it.

The policy is built as a chain of versions: the one in force now and one for each moment
a temporary rule (``until``) runs out. The versions share the parsed lists, so the chain
costs little more than one version, and an expiry is a switch to a version that already
exists: it cannot fail, and it needs no list file to be readable at midnight.

Local list files are guarded as remote lists are: a file that suddenly lost most of its
entries, or whose lines are mostly unreadable, is not believed. The last good copy,
kept in ``state.directory``, stays in force, and the rejection is counted and logged.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from resolver import memory
from resolver.config import BlockingConfig, Config, LocalListConfig
from resolver.dns.responses import BlockAnswers
from resolver.metrics import Metrics
from resolver.policy.blocklist import build_blocklist, list_table
from resolver.policy.catalog import Catalog, CatalogError
from resolver.policy.feed import catalog_in_force
from resolver.policy.fingerprint import policy_fingerprint
from resolver.policy.groups import ClientGroups, Group
from resolver.policy.lists import ListError, ListPart, ListText, parse_list_text, read_list_file
from resolver.policy.nametable import NameTable
from resolver.policy.remote import RemoteList
from resolver.policy.selectors import SelectorError, expiries

log = logging.getLogger(__name__)

# (source, reason): a list update that was not believed; for the refresh-failure counter.
Rejected = Callable[[str, str], None]


def _ignore(source: str, reason: str) -> None:
    """No metrics to count into (the command-line tools)."""


class PolicyError(RuntimeError):
    """The blocking policy could not be built; nothing is served without one."""


@dataclass(slots=True)
class BuiltPolicy:
    groups: ClientGroups  # the version in force now; later ones hang off it
    catalog: Catalog | None
    # Lists whose new content was not believed (the last good copy is in force instead).
    warnings: list[str] = field(default_factory=list)
    # Lines each list skipped, by class (resolver.policy.listformats.SKIP_CLASSES).
    skipped: dict[str, dict[str, int]] = field(default_factory=dict)
    # Equal on every replica that decides alike (resolver.policy.fingerprint).
    fingerprint: str = ""


# --- local lists -----------------------------------------------------------------------


def _guard_problem(part: ListPart, previous: int | None, local: LocalListConfig) -> str:
    """Why a freshly read list must not replace its last good copy ("" when it may)."""
    if part.invalid_share > local.max_invalid:
        return (
            f"{part.lines_rejected} of {part.lines_rejected + part.lines_used} lines are "
            f"unreadable, more than max_invalid ({local.max_invalid:g}): {part.skip_summary}"
        )
    if previous is not None and part.entries < previous * (1 - local.max_shrink):
        return (
            f"{previous} entries down to {part.entries}, beyond max_shrink ({local.max_shrink:g})"
        )
    return ""


class LocalCopy:
    """The last good copy of one local list file, in ``state.directory/lists``."""

    def __init__(self, path: Path, state_dir: Path) -> None:
        digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
        self.path = path
        self.copy = state_dir / "lists" / f"local-{digest}.txt"
        self._meta = state_dir / "lists" / f"local-{digest}.json"

    def entries(self) -> int | None:
        """Entries of the last good copy; None when there is none."""
        try:
            meta = json.loads(self._meta.read_text(encoding="utf-8"))
            if meta.get("path") != str(self.path.resolve()) or not self.copy.is_file():
                return None
            return int(meta["entries"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def keep(self, part: ListPart) -> None:
        """Make the file just read the last good copy (best effort: a full or read-only
        state folder costs the guard its memory across restarts, never the policy)."""
        try:
            status = self.path.stat()
            meta = json.loads(self._meta.read_text(encoding="utf-8")) if self._meta.exists() else {}
            fingerprint = [status.st_size, status.st_mtime_ns, status.st_ino]
            if meta.get("fingerprint") == fingerprint and meta.get("entries") == part.entries:
                return
            self.copy.parent.mkdir(parents=True, exist_ok=True)
            _copy_atomically(self.path, self.copy)
            meta = {"path": str(self.path.resolve()), "entries": part.entries}
            meta["fingerprint"] = fingerprint
            _copy_text_atomically(json.dumps(meta), self._meta)
        except (OSError, ValueError) as error:
            log.warning("list %s: cannot keep a last good copy: %s", self.path, error)


def _copy_atomically(source: Path, target: Path) -> None:
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    os.close(handle)
    try:
        shutil.copyfile(source, temporary)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _copy_text_atomically(text: str, target: Path) -> None:
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_local_list(
    local: LocalListConfig,
    path: Path,
    index: int,
    state_dir: Path,
    *,
    compact: bool,
    rejected: Rejected,
    warnings: list[str],
    remember: bool,
    fallback: bool,
) -> ListPart:
    """The list as the file says, unless the guard rejects it: then, with ``fallback``
    (at start, when no policy runs yet), its last good copy; without (a reload, which
    keeps the running policy instead), a ListError. Also a ListError when there is no
    last good copy."""
    origin = f"blocking.lists[{index}] ({path.name})"
    copy = LocalCopy(path, state_dir)
    previous = copy.entries()
    try:
        listed = read_list_file(path, origin, local.format)
    except ListError as error:
        problem, reason = str(error), "unreadable"
    else:
        try:
            part = parse_list_text(listed, compact=compact)
            problem = _guard_problem(part, previous, local)
            reason = "shrink" if problem and "max_shrink" in problem else "parse"
        except ListError as error:
            problem, reason = str(error), "parse"
    if not problem:
        if remember:
            copy.keep(part)
        return part
    source = f"list:{path.name}"
    rejected(source, reason)
    hint = f"set blocking.lists[{index}].max_shrink or max_invalid if this is intended"
    if previous is None or not fallback:
        # A reload is rejected whole: the running policy holds the last good copy.
        copy_note = "" if previous is None else "; the running policy keeps its last good copy"
        raise ListError(f"{path}: {problem}{copy_note} ({hint})")
    message = f"list {path}: rejected ({problem}); its last good copy is used ({hint})"
    log.error("%s", message)
    warnings.append(message)
    kept = ListText(
        source, path=copy.copy, origin=f"{origin}, last good copy", list_format=local.format
    )
    return parse_list_text(kept, compact=compact)


# --- the whole policy ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _GroupPolicy:
    name: str
    blocking: BlockingConfig
    catalog_path: str  # the config key its catalog policy comes from
    allow_path: str  # likewise for its allow list


def _group_policies(config: Config) -> list[_GroupPolicy]:
    """The default group's and each group's settings, with the config keys they come from."""
    policies = [_GroupPolicy("default", config.blocking, "blocking.catalog", "blocking.allow")]
    for index, group in enumerate(config.groups):
        own = f"groups[{index}]"
        policies.append(
            _GroupPolicy(
                group.name,
                group.applied_to(config.blocking),
                f"{own}.catalog" if group.catalog is not None else "blocking.catalog",
                f"{own}.allow" if group.allow is not None else "blocking.allow",
            )
        )
    return policies


def _version(
    config: Config,
    policies: list[_GroupPolicy],
    catalog: Catalog | None,
    parts: Sequence[ListPart],
    when: float,
    table: NameTable | None,
) -> ClientGroups:
    built = [
        Group(
            policy.name,
            build_blocklist(
                policy.blocking,
                catalog,
                parts,
                now=when,
                catalog_path=policy.catalog_path,
                allow_path=policy.allow_path,
                table=table,
            ),
            BlockAnswers(
                policy.blocking.response,
                policy.blocking.ttl,
                policy.blocking.sinkhole_ipv4,
                policy.blocking.sinkhole_ipv6,
            ),
            policy.blocking.mode,
        )
        for policy in policies
    ]
    return ClientGroups(
        built[0], [(g.clients, group) for g, group in zip(config.groups, built[1:], strict=True)]
    )


def remote_lists(config: Config, metrics: Metrics | None = None) -> list[RemoteList]:
    """The configured remote lists, reading their last good copies from the state folder."""
    return [
        RemoteList(remote, config.state_dir, metrics, config.seed_path(remote))
        for remote in config.blocking.remote_lists
    ]


def read_lists(
    config: Config,
    remote: Sequence[RemoteList],
    *,
    compact: bool,
    rejected: Rejected,
    warnings: list[str],
    remember: bool,
    fallback: bool,
) -> list[ListPart]:
    """Every list parsed once: local files (guarded) and remote lists' last good copies.
    ``remember``: a local file that passes the guard becomes its last good copy (the
    server does this; the command-line tools only read the copies)."""
    parts = [
        load_local_list(
            local,
            path,
            index,
            config.state_dir,
            compact=compact,
            rejected=rejected,
            warnings=warnings,
            remember=remember,
            fallback=fallback,
        )
        for index, (local, path) in enumerate(
            zip(config.blocking.lists, config.list_paths(), strict=True)
        )
    ]
    for source in remote:
        copy = source.last_good()
        if copy is None:
            log.warning("list %s: no copy yet, serving without it until it downloads", source.label)
            continue
        origin = f"blocking.remote_lists: {source.label}" + (" (seed)" if copy.seed else "")
        parts.append(
            parse_list_text(
                ListText(source.source, copy.text, origin=origin, list_format=source.config.format),
                compact=compact,
            )
        )
    return parts


def load_policy(
    config: Config,
    catalog_dir: Path | None = None,
    remote: Sequence[RemoteList] = (),
    *,
    compact: bool = True,
    now: float | None = None,
    rejected: Rejected = _ignore,
    chain: bool = True,
    remember: bool = False,
    fallback: bool = True,
) -> BuiltPolicy:
    """Build every group's policy, now and at each coming expiry (``chain``), from the
    catalog, the local lists and the remote lists' last good copies (lists are parsed
    once and shared). Raises PolicyError when any part is unusable: nothing is
    half-loaded."""
    when = time.time() if now is None else now
    policies = _group_policies(config)
    warnings: list[str] = []
    catalog: Catalog | None = None
    try:
        if any(
            not p.blocking.catalog.block.empty or not p.blocking.catalog.report.empty
            for p in policies
        ):
            # The shipped catalog, or the signed bundles of catalog.sources (policy.feed).
            catalog = catalog_in_force(config, catalog_dir)
        parts = read_lists(
            config,
            remote,
            compact=compact,
            rejected=rejected,
            warnings=warnings,
            remember=remember,
            fallback=fallback,
        )
        table = list_table(parts)
        current = _version(config, policies, catalog, parts, when, table)
        if chain:
            later = current
            for moment in expiries([p.blocking.catalog for p in policies], when):
                later.valid_until = moment
                later.successor = _version(config, policies, catalog, parts, moment, table)
                later = later.successor
    except (CatalogError, ListError, SelectorError) as error:
        raise PolicyError(str(error)) from None
    fingerprint = policy_fingerprint(
        [*policies, [(group.name, group.clients) for group in config.groups]], catalog, parts
    )
    skipped = {part.source: part.skipped for part in parts}
    return BuiltPolicy(current, catalog, warnings, skipped, fingerprint)


def retire(groups: ClientGroups | None) -> None:
    """After a policy swap: free the old policy piece by piece, keep the new one out of
    future GC passes, and hand the freed heap back to the OS. Runs in a thread."""
    if groups is not None:
        groups.release()
    # Each step holds the interpreter lock for a few milliseconds: the event loop gets it
    # back in between (time.sleep releases it), not only after the switch interval.
    time.sleep(0)
    # Everything alive now is long-lived; the collector need not walk it again. Dead
    # cycles go first (a build leaves some): frozen, they would never be freed, and
    # each reload would add its own (measured: +4 MB over 25 reloads in the supervisor).
    gc.collect()
    time.sleep(0)
    gc.freeze()
    # Parsing a large list leaves tens of megabytes freed in malloc's heap (glibc).
    memory.trim()
