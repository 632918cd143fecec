"""The catalog feed's decisions, against a mirror faked in memory: what a first bundle is
compared with, a bundle the config's policy cannot use, a last good bundle changed on
disk or signed by a key no longer configured, several sources, and the metrics."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from resolver.config import Config, config_from_mapping
from resolver.metrics import Metrics
from resolver.policy import feed as feed_module
from resolver.policy.bundle import make_bundle, new_key_pair, sign
from resolver.policy.feed import CatalogFeeds, catalog_in_force, verified_median
from resolver.policy.remote import Download, RefreshRejected
from tests.peers.catalogfeed import VERIFIED, write_catalog

URL = "https://mirror.example/catalog.json"
SHIPPED = {f"shipped{i}": [f"shipped{i}.example"] for i in range(5)}
NOW = datetime.datetime(2026, 11, 30, tzinfo=datetime.UTC)


class Mirror:
    """``download`` as the feed calls it, answered from ``files``."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.key, self.public = _keys()

    def __call__(
        self, url: str, timeout: float, limit: int, *, etag: str = "", last_modified: str = ""
    ) -> Download | None:
        body = self.files.get(url)
        if body is None:
            raise RefreshRejected("http_status", "HTTP 404", 404)
        return Download(body, "", "")

    def publish(
        self, tmp_path: Path, services: dict[str, list[str]], serial: int, url: str = URL
    ) -> None:
        directory = write_catalog(tmp_path / f"published-{serial}-{len(services)}", services)
        data, _ = make_bundle(directory, serial, NOW, frozenset())
        self.files[url] = data
        self.files[url + ".sig"] = sign(data, self.key)


def _keys() -> tuple[Ed25519PrivateKey, str]:
    private, public = new_key_pair()
    key = serialization.load_pem_private_key(private, password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return key, public


@pytest.fixture
def mirror(monkeypatch: pytest.MonkeyPatch) -> Mirror:
    fake = Mirror()
    monkeypatch.setattr(feed_module, "download", fake)
    return fake


@pytest.fixture
def shipped(tmp_path: Path) -> Path:
    return write_catalog(tmp_path / "shipped", SHIPPED)


def config_for(tmp_path: Path, *sources: dict[str, object], **sections: object) -> Config:
    raw = {"catalog": {"sources": list(sources)}, "state": {"directory": "state"}, **sections}
    return config_from_mapping(raw, base_dir=tmp_path)


def one_source(mirror: Mirror, **values: object) -> dict[str, object]:
    return {"url": URL, "public_key": mirror.public, "name": "m", **values}


def ids(feeds: CatalogFeeds) -> list[str]:
    return sorted(service.id for service in feeds.catalog().services)


def test_without_sources_the_shipped_catalog_is_in_force(tmp_path, shipped):
    catalog = catalog_in_force(config_for(tmp_path), shipped)
    assert sorted(s.id for s in catalog.services) == sorted(SHIPPED)
    assert catalog.origins == ()


def test_a_first_bundle_replaces_the_shipped_catalog_unless_it_is_much_smaller(
    tmp_path, shipped, mirror
):
    feeds = CatalogFeeds(config_for(tmp_path, one_source(mirror)), shipped, Metrics())
    (feed,) = feeds.feeds
    assert ids(feeds) == sorted(SHIPPED)  # nothing held yet
    mirror.publish(tmp_path, {"only": ["only.example"]}, serial=1)
    assert feeds.refresh(feed) is False  # 5 services down to 1
    assert ids(feeds) == sorted(SHIPPED)
    mirror.publish(tmp_path, {**SHIPPED, "new": ["new.example"]}, serial=2)
    assert feeds.refresh(feed) is True
    assert ids(feeds) == sorted([*SHIPPED, "new"])
    assert feeds.catalog().origins[0].serial == 2
    assert feeds.refresh(feed) is False  # the same bundle again: nothing to do, no failure


def test_a_bundle_the_policy_cannot_use_is_rejected(tmp_path, shipped, mirror):
    config = config_for(
        tmp_path, one_source(mirror), blocking={"catalog": {"block": {"services": ["shipped0"]}}}
    )
    metrics = Metrics()
    feeds = CatalogFeeds(config, shipped, metrics)
    without = {sid: names for sid, names in SHIPPED.items() if sid != "shipped0"}
    mirror.publish(tmp_path, {**without, "new": ["new.example"]}, serial=3)
    assert feeds.refresh(feeds.feeds[0]) is False
    rejected = metrics.registry.get_sample_value(
        "aiwall_catalog_refresh_failures_total", {"source": "m", "reason": "policy"}
    )
    assert rejected == 1
    assert "shipped0" in ids(feeds)


def test_a_bundle_changed_on_disk_is_not_used_and_its_serial_still_counts(
    tmp_path, shipped, mirror, caplog
):
    feeds = CatalogFeeds(config_for(tmp_path, one_source(mirror)), shipped)
    (feed,) = feeds.feeds
    mirror.publish(tmp_path, {**SHIPPED, "new": ["new.example"]}, serial=9)
    published = dict(mirror.files)
    assert feeds.refresh(feed) is True
    kept = feed.bundle_path.read_bytes()
    feed.bundle_path.write_bytes(kept.replace(b"new.example", b"x.example"))
    assert feed.last_good() is None
    assert "cannot be used" in caplog.text
    assert "new" not in ids(feeds)  # the shipped catalog stands in
    mirror.publish(tmp_path, {**SHIPPED, "old": ["old.example"]}, serial=8)
    assert feeds.refresh(feed) is False  # rolled back: the floor was kept
    mirror.files = published
    assert feeds.refresh(feed) is True  # the very bundle 9 again restores it
    assert "new" in ids(feeds)


def test_a_new_key_drops_the_old_bundle_and_its_floor(tmp_path, shipped, mirror):
    first = CatalogFeeds(config_for(tmp_path, one_source(mirror)), shipped)
    mirror.publish(tmp_path, {**SHIPPED, "new": ["new.example"]}, serial=50)
    assert first.refresh(first.feeds[0]) is True
    mirror.key, mirror.public = _keys()  # the publisher moves to a new key
    feeds = CatalogFeeds(config_for(tmp_path, one_source(mirror)), shipped)
    assert "new" not in ids(feeds)  # signed by a key no longer trusted
    mirror.publish(tmp_path, {**SHIPPED, "newer": ["newer.example"]}, serial=1)
    assert feeds.refresh(feeds.feeds[0]) is True
    assert "newer" in ids(feeds)


def test_sources_add_up_and_the_shipped_catalog_fills_in_for_one_with_none(
    tmp_path, shipped, mirror
):
    second = "https://other.example/catalog.json"
    config = config_for(
        tmp_path,
        one_source(mirror),
        {"url": second, "public_key": mirror.public, "name": "o", "max_shrink": 1},
    )
    feeds = CatalogFeeds(config, shipped)
    mirror.publish(tmp_path, {"own": ["own.example"]}, serial=4, url=second)
    assert feeds.refresh(feeds.feeds[1]) is True
    assert ids(feeds) == sorted([*SHIPPED, "own"])  # "m" has none yet: shipped stands in
    mirror.publish(tmp_path, {**SHIPPED, "new": ["new.example"]}, serial=5)
    assert feeds.refresh(feeds.feeds[0]) is True
    assert ids(feeds) == sorted([*SHIPPED, "new", "own"])
    assert [(o.source, o.serial) for o in feeds.catalog().origins] == [("m", 5), ("o", 4)]


def test_an_unsigned_bundle_is_counted_as_such(tmp_path, shipped, mirror):
    metrics = Metrics()
    feeds = CatalogFeeds(config_for(tmp_path, one_source(mirror)), shipped, metrics)
    mirror.publish(tmp_path, {**SHIPPED, "new": ["new.example"]}, serial=5)
    del mirror.files[URL + ".sig"]
    assert feeds.refresh(feeds.feeds[0]) is False
    assert metrics.registry.get_sample_value(
        "aiwall_catalog_refresh_failures_total", {"source": "m", "reason": "unsigned"}
    )


def test_the_metrics_say_what_the_policy_was_built_from(tmp_path, shipped, mirror):
    metrics = Metrics()
    feeds = CatalogFeeds(config_for(tmp_path, one_source(mirror)), shipped, metrics)
    mirror.publish(tmp_path, {**SHIPPED, "new": ["new.example"]}, serial=12)
    assert feeds.refresh(feeds.feeds[0]) is True
    feeds.observe(feeds.catalog())
    value = metrics.registry.get_sample_value
    assert value("aiwall_catalog_serial", {"source": "m"}) == 12
    assert value("aiwall_catalog_bundle_created_timestamp_seconds", {"source": "m"}) == (
        NOW.timestamp()
    )
    assert value("aiwall_catalog_last_success_timestamp_seconds", {"source": "m"}) > 0
    age = value("aiwall_catalog_verified_median_age_seconds", {})
    verified = datetime.datetime.fromisoformat(VERIFIED).replace(tzinfo=datetime.UTC)
    assert age == pytest.approx(
        datetime.datetime.now(datetime.UTC).timestamp() - verified.timestamp(), abs=60
    )
    assert verified_median(feeds.catalog()) == verified.timestamp()


def test_the_shipped_catalog_is_read_once_for_its_metrics(tmp_path, shipped, monkeypatch):
    """No source and no group that uses the catalog: each reload and list refresh asks
    ``observe(None)`` for the shipped catalog's figures. They are read once per process
    (400 files parsed in a thread of the answering process held its event loop up), and
    a later CatalogFeeds (the next config's) publishes the same figures without reading."""
    reads: list[Path] = []
    real = feed_module.load_catalog

    def counted(directory: Path) -> object:
        reads.append(directory)
        return real(directory)

    monkeypatch.setattr(feed_module, "load_catalog", counted)
    monkeypatch.setattr(feed_module, "_SHIPPED_FACTS", {})
    verified = datetime.datetime.fromisoformat(VERIFIED).replace(tzinfo=datetime.UTC)
    for _ in range(3):
        metrics = Metrics()
        CatalogFeeds(config_for(tmp_path), shipped, metrics).observe(None)
        age = metrics.registry.get_sample_value("aiwall_catalog_verified_median_age_seconds", {})
        assert age == pytest.approx(
            datetime.datetime.now(datetime.UTC).timestamp() - verified.timestamp(), abs=60
        )
    assert reads == [shipped]
    # Another shipped directory is read for itself.
    other = write_catalog(tmp_path / "other", {"o": ["o.example"]})
    CatalogFeeds(config_for(tmp_path), other, Metrics()).observe(None)
    assert reads == [shipped, other]
