"""The catalog, current between releases: signed bundles fetched from ``catalog.sources``.

The rules this module keeps, whoever controls the server a bundle comes from:
- nothing is applied that the configured key did not sign: the signature is checked
  over the exact bytes before they are parsed (``bundle``);
- a bundle never goes back: its serial must rise above the last good one's (the same
  serial is accepted only for the very same bytes), and that floor is kept on disk;
- a bundle that lost more than ``max_shrink`` of the services or domains of the one it
  would replace, that would block a protected name, or that the config's policy cannot
  use (a service it names is gone) is rejected, counted and logged;
- the last good bundle is kept in ``state.directory/catalog`` (its signature and its
  bytes in one file) and checked again each time it is read; until a source has one,
  the shipped catalog stands in for it.

The catalog in force is the union of every source's last good bundle (a service id
found in several is taken from the first source), plus the shipped catalog while any
source has none: a source that fails never loosens the policy.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from resolver.config import CatalogSourceConfig, Config, decode_public_key
from resolver.metrics import Metrics
from resolver.policy.bundle import (
    SIGNATURE_MAX_BYTES,
    Bundle,
    BundleError,
    open_bundle,
    shrink_problem,
)
from resolver.policy.bundle import public_key as read_public_key
from resolver.policy.catalog import (
    Catalog,
    CatalogError,
    Origin,
    default_catalog_dir,
    default_protected_path,
)
from resolver.policy.catalog_files import load_catalog, load_protected
from resolver.policy.feed_metrics import FeedMetrics
from resolver.policy.remote import Download, RefreshRejected, download
from resolver.policy.selectors import SelectorError, select_services
from resolver.storage import write_atomically

log = logging.getLogger(__name__)

# Raises BundleError when a verified bundle must still not replace the last good one
# (None: the source has none yet).
Judge = Callable[[Bundle, Bundle | None], None]


@dataclass(frozen=True, slots=True)
class Floor:
    """What the state folder remembers of a source's last good bundle, even when the
    bundle file itself is lost: its serial and digest (the rollback floor), and when
    and how it was last fetched."""

    serial: int
    digest: str
    fetched_at: float
    etag: str
    last_modified: str


class CatalogFeed:
    """One ``catalog.sources`` entry and its last good bundle on disk."""

    def __init__(
        self, config: CatalogSourceConfig, state_dir: Path, metrics: FeedMetrics | None = None
    ) -> None:
        self.config, self.label, self._metrics = config, config.label, metrics
        self._key = read_public_key(config.public_key)
        stem = state_dir / "catalog" / hashlib.sha256(config.url.encode()).hexdigest()[:16]
        # The signature's line, then the bundle's bytes: one file, replaced whole, so a
        # policy built while a refresh saves never reads a bundle with another's signature.
        self.bundle_path = Path(f"{stem}.signed")
        self._meta_path = Path(f"{stem}.meta.json")  # the floor (``Floor``)

    def floor(self) -> Floor | None:
        """The remembered state of this URL under this key (None: nothing, or it was
        kept for another key, whose serials mean nothing for this one)."""
        try:
            meta = json.loads(self._meta_path.read_text(encoding="utf-8"))
            same = meta["url"] == self.config.url and decode_public_key(
                meta["public_key"]
            ) == decode_public_key(self.config.public_key)
            if not same:
                return None
            return Floor(
                int(meta["serial"]),
                str(meta["sha256"]),
                float(meta["fetched_at"]),
                str(meta.get("etag", "")),
                str(meta.get("last_modified", "")),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def last_good(self) -> Bundle | None:
        """The last bundle accepted, its signature checked again (a copy changed on disk,
        or signed by a key no longer configured, is not used); None when there is none."""
        if self.floor() is None:
            return None
        try:
            signature, _, data = self.bundle_path.read_bytes().partition(b"\n")
        except OSError:
            return None
        try:
            return open_bundle(data, signature, self._key, frozenset())
        except BundleError as error:
            log.error("catalog %s: the bundle kept on disk cannot be used: %s", self.label, error)
            return None

    def fetched_at(self) -> float:
        floor = self.floor()
        return floor.fetched_at if floor is not None else 0.0

    def refresh(self, judge: Judge) -> bool:
        """Fetch once (blocking; run it in a thread). True when a new bundle was accepted;
        a rejected one is counted and logged, and the last good one stays in force."""
        floor = self.floor()
        held = self.last_good()
        try:
            fetched = self._fetch(floor if held is not None else None)
            candidate = self._candidate(fetched, held, floor)
            if candidate is not None:
                judge(candidate[0], held)
        except (BundleError, RefreshRejected) as rejected:
            self._rejected(rejected.reason, str(rejected), held)
            return False
        now = time.time()
        if self._metrics is not None:
            self._metrics.last_success.labels(self.label).set(now)
        if candidate is None:  # the bundle held is current
            assert held is not None
            self._remember(held, now, fetched or floor)
            return False
        bundle, signature = candidate
        assert fetched is not None
        # The meta file last: a crash in between leaves the old floor, which the new
        # bundle passes when it is fetched again.
        write_atomically(self.bundle_path, signature.strip() + b"\n" + fetched.body)
        self._write_meta(bundle, now, fetched.etag, fetched.last_modified)
        log.info(
            "catalog %s: bundle %d accepted (%d services, %d domains)",
            self.label,
            bundle.serial,
            bundle.services,
            bundle.domains,
        )
        return True

    def _fetch(self, validators: Floor | None) -> Download | None:
        return download(
            self.config.url,
            self.config.timeout,
            self.config.max_bytes,
            etag=validators.etag if validators is not None else "",
            last_modified=validators.last_modified if validators is not None else "",
        )

    def _candidate(
        self, fetched: Download | None, held: Bundle | None, floor: Floor | None
    ) -> tuple[Bundle, bytes] | None:
        """The fetched bundle, verified and past the serial check, and its signature;
        None when it is the bundle already held."""
        if fetched is None:
            return None
        if held is not None and hashlib.sha256(fetched.body).hexdigest() == held.digest:
            return None
        signature = self._signature()
        bundle = open_bundle(fetched.body, signature, self._key, _protected())
        check_serial(bundle, held, floor)
        return bundle, signature

    def _signature(self) -> bytes:
        return fetch_signature(self.config.signature, self.config.timeout)

    def _rejected(self, reason: str, detail: str, held: Bundle | None) -> None:
        if self._metrics is not None:
            self._metrics.failures.labels(self.label, reason).inc()
        kept = f"bundle {held.serial}" if held is not None else "the shipped catalog"
        log.error(
            "catalog %s: refresh rejected (%s), keeping %s: %s", self.label, reason, kept, detail
        )

    def _remember(self, held: Bundle, now: float, validators: Download | Floor | None) -> None:
        etag = validators.etag if validators is not None else ""
        last_modified = validators.last_modified if validators is not None else ""
        self._write_meta(held, now, etag, last_modified)

    def _write_meta(self, bundle: Bundle, now: float, etag: str, last_modified: str) -> None:
        meta = {
            "url": self.config.url,
            "public_key": self.config.public_key.strip(),
            "serial": bundle.serial,
            "sha256": bundle.digest,
            "fetched_at": now,
            "etag": etag,
            "last_modified": last_modified,
        }
        write_atomically(self._meta_path, json.dumps(meta, indent=1))


def fetch_signature(url: str, timeout: float) -> bytes:
    """A detached signature file; BundleError("unsigned") when there is none."""
    try:
        got = download(url, timeout, SIGNATURE_MAX_BYTES)
    except RefreshRejected as error:
        if error.status in (404, 410):
            raise BundleError("unsigned", f"no signature at {url} ({error})") from None
        raise
    if got is None or not got.body.strip():
        raise BundleError("unsigned", f"empty signature at {url}")
    return got.body


def check_serial(bundle: Bundle, held: Bundle | None, floor: Floor | None) -> None:
    """A bundle must be newer than the last good one: a higher serial, or the same serial
    with the very same bytes (a copy lost from disk, fetched again)."""
    last = max(floor.serial if floor is not None else 0, held.serial if held is not None else 0)
    digest = held.digest if held is not None and held.serial == last else ""
    if not digest and floor is not None and floor.serial == last:
        digest = floor.digest
    if bundle.serial < last:
        raise BundleError(
            "rollback", f"serial {bundle.serial} is older than {last}, the last good bundle's"
        )
    if bundle.serial == last and bundle.digest != digest:
        raise BundleError(
            "rollback",
            f"serial {last} again with other content (a publisher raises it for every change)",
        )


def _protected() -> frozenset[str]:
    """The shipped protected list; a bundle must block none of its names."""
    path = default_protected_path()
    try:
        return load_protected(path)
    except CatalogError as error:
        log.warning("cannot read the protected list, checking bundles without it: %s", error)
        return frozenset()


# What ``observe`` publishes of the shipped catalog when no group uses it (and no source
# replaces it), by directory: read once per process. Read again at every reload and list
# refresh, it was 400 YAML files parsed in a thread of the answering process (about
# 100 ms of Python), holding up its event loop for the interpreter and, on a host of
# one core, for the core itself (development VM, 2026-12-01, py-spy of a refresh). A
# policy that does use the catalog is built with it, and ``observe`` is given that one.
_SHIPPED_FACTS: dict[Path, tuple[tuple[Origin, ...], float | None]] = {}


class CatalogFeeds:
    """The catalog sources of one config, and the catalog they make together."""

    def __init__(
        self, config: Config, catalog_dir: Path | None = None, metrics: Metrics | None = None
    ) -> None:
        self.config = config
        self._shipped_dir = catalog_dir or default_catalog_dir()
        self._metrics = FeedMetrics.of(metrics.registry) if metrics is not None else None
        self.feeds = [
            CatalogFeed(source, config.state_dir, self._metrics)
            for source in config.catalog.sources
        ]
        if self._metrics is not None:
            self._metrics.preset(feed.label for feed in self.feeds)

    def catalog(self, replacing: tuple[CatalogFeed, Bundle] | None = None) -> Catalog:
        """The catalog in force (or, with ``replacing``, the one a new bundle would make).
        Raises CatalogError when the shipped catalog is needed and cannot be read."""
        if not self.feeds:
            return load_catalog(self._shipped_dir)
        parts: list[Catalog] = []
        origins: list[Origin] = []
        for feed in self.feeds:
            if replacing is not None and replacing[0] is feed:
                bundle: Bundle | None = replacing[1]
            else:
                bundle = feed.last_good()
            if bundle is None:
                origins.append(Origin(feed.label, 0, 0.0))
                continue
            origins.append(Origin(feed.label, bundle.serial, bundle.created))
            parts.append(bundle.catalog)
        if len(parts) < len(self.feeds):
            parts.append(load_catalog(self._shipped_dir))
        return _union(parts, origins)

    def refresh(self, feed: CatalogFeed) -> bool:
        """Fetch one source once (blocking); True when its new bundle was accepted."""
        return feed.refresh(lambda bundle, held: self.judge(feed, bundle, held))

    def judge(self, feed: CatalogFeed, bundle: Bundle, held: Bundle | None) -> None:
        """The checks that need more than the bundle: the shrink guard against what it
        would replace (the last good bundle, else the shipped catalog), and that the
        config's policy can use the catalog it makes. Raises BundleError."""
        baseline = held.catalog if held is not None else self._shipped()
        if baseline is not None:
            problem = shrink_problem(bundle.catalog, baseline, feed.config.max_shrink)
            if problem:
                raise BundleError("shrink", problem)
        try:
            fits(self.config, self.catalog(replacing=(feed, bundle)))
        except (CatalogError, SelectorError) as error:
            raise BundleError("policy", f"the config's policy cannot use it: {error}") from None

    def _shipped(self) -> Catalog | None:
        try:
            return load_catalog(self._shipped_dir)
        except CatalogError as error:
            log.warning("no shipped catalog to compare a first bundle with: %s", error)
            return None

    def observe(self, catalog: Catalog | None) -> None:
        """Publish what the policy was built from: each source's serial and signing time,
        and the median age of the verified dates."""
        if self._metrics is None:
            return
        shipped = catalog is None and not self.feeds
        if shipped and self._shipped_dir in _SHIPPED_FACTS:
            origins, median = _SHIPPED_FACTS[self._shipped_dir]
        else:
            if catalog is None:  # no group uses the catalog; say what it would be
                try:
                    catalog = self.catalog()
                except CatalogError:
                    return
            origins, median = catalog.origins, verified_median(catalog)
            if shipped:
                _SHIPPED_FACTS[self._shipped_dir] = (origins, median)
        for origin in origins:
            self._metrics.bundle(origin.source, origin.serial, origin.created)
        if median is not None:
            self._metrics.verified(median)


def fits(config: Config, catalog: Catalog) -> None:
    """Raises SelectorError when a catalog rule of the config names what ``catalog`` lacks
    (the policy would be refused: better to refuse the bundle)."""
    select_services(config.blocking.catalog, catalog, "blocking.catalog")
    for index, group in enumerate(config.groups):
        if group.catalog is not None:
            select_services(group.catalog, catalog, f"groups[{index}].catalog")


def _union(parts: Sequence[Catalog], origins: Sequence[Origin]) -> Catalog:
    seen: set[str] = set()
    services = []
    for part in parts:
        for service in part.services:
            if service.id not in seen:
                seen.add(service.id)
                services.append(service)
    return Catalog(tuple(services), tuple(origins))


def verified_median(catalog: Catalog) -> float | None:
    """The median ``verified:`` date as Unix time (midnight UTC); None without services."""
    if not catalog.services:
        return None
    day = statistics.median_low(service.verified for service in catalog.services)
    return datetime.datetime.combine(day, datetime.time(), datetime.UTC).timestamp()


def catalog_in_force(config: Config, catalog_dir: Path | None = None) -> Catalog:
    """The catalog a policy of ``config`` is built from: the shipped one (``catalog_dir``
    in tests) without ``catalog.sources``, else the sources' last good bundles."""
    return CatalogFeeds(config, catalog_dir).catalog()
