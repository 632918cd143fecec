"""Catalog bundles: the format, Ed25519 signing and verification, the serial and shrink
rules, and the config of ``catalog.sources``. No network: see test_catalog_feed for the
feed against a mirror."""

from __future__ import annotations

import base64
import datetime
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from resolver.config import ConfigError, config_from_mapping
from resolver.policy.bundle import (
    Bundle,
    BundleError,
    make_bundle,
    new_key_pair,
    open_bundle,
    parse,
    public_key,
    shrink_problem,
    sign,
    verify,
)
from resolver.policy.catalog import Catalog
from resolver.policy.catalog_files import load_catalog
from resolver.policy.feed import Floor, check_serial
from tests.peers.catalogfeed import write_catalog

SERVICES = {
    "alpha": ["alpha-ai.example", "api.alpha-ai.example"],
    "beta": ["beta-ai.example"],
}
NOW = datetime.datetime(2026, 11, 30, 12, 0, tzinfo=datetime.UTC)


def keys() -> tuple[Ed25519PrivateKey, str]:
    private, public = new_key_pair()
    key = serialization.load_pem_private_key(private, password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return key, public


def built(tmp_path: Path, services: dict[str, list[str]] = SERVICES, serial: int = 5) -> bytes:
    directory = write_catalog(tmp_path / f"catalog-{serial}-{len(services)}", services)
    data, _ = make_bundle(directory, serial, NOW, frozenset())
    return data


def document(data: bytes) -> dict[str, object]:
    loaded: dict[str, object] = json.loads(data)
    return loaded


# --- the format ------------------------------------------------------------------------


def test_a_signed_bundle_opens_to_the_catalog_of_its_folder(tmp_path):
    key, public = keys()
    data = built(tmp_path)
    bundle = open_bundle(data, sign(data, key), public_key(public), frozenset())
    assert (bundle.serial, bundle.services, bundle.domains) == (5, 2, 3)
    assert bundle.created == NOW.timestamp()
    folder = load_catalog(tmp_path / "catalog-5-2")
    assert bundle.catalog.services == folder.services
    top = document(data)
    assert top["format"] == "aiwall-catalog-bundle"
    assert top["version"] == 1
    assert top["created"] == "2026-11-30T12:00:00Z"
    assert data.isascii()


@pytest.mark.parametrize("position", [0, 10, 200, -3])
def test_any_change_to_the_signed_bytes_breaks_the_signature(tmp_path, position):
    key, public = keys()
    data = built(tmp_path)
    signature = sign(data, key)
    changed = bytearray(data)
    changed[position] ^= 0x01
    with pytest.raises(BundleError) as caught:
        verify(bytes(changed), signature, public_key(public))
    assert caught.value.reason == "signature"
    with pytest.raises(BundleError):
        verify(data + b" ", signature, public_key(public))


def test_a_signature_by_another_key_or_not_a_signature_is_rejected(tmp_path):
    key, public = keys()
    other, _ = keys()
    data = built(tmp_path)
    good = base64.b64decode(sign(data, key))
    for signature in (
        sign(data, other),
        b"not base64!\n",
        base64.b64encode(good[:63]),
        b"",
        base64.b64encode(bytes(64)),
    ):
        with pytest.raises(BundleError) as caught:
            open_bundle(data, signature, public_key(public), frozenset())
        assert caught.value.reason == "signature", signature


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: [d], "not an aiwall-catalog-bundle"),
        (lambda d: {**d, "format": "other"}, "not an aiwall-catalog-bundle"),
        (lambda d: {**d, "version": 2}, "version 2"),
        (lambda d: {**d, "version": True}, "version True"),
        (lambda d: {**d, "serial": 0}, "serial"),
        (lambda d: {**d, "serial": "6"}, "serial"),
        (lambda d: {**d, "serial": True}, "serial"),
        (lambda d: {**d, "created": "2026-11-30T12:00:00"}, "created"),
        (lambda d: {**d, "services": []}, "services"),
        (lambda d: {**d, "extra": 1}, "unknown key 'extra'"),
    ],
)
def test_what_is_no_bundle_of_this_version_is_refused(tmp_path, change, message):
    data = json.dumps(change(document(built(tmp_path)))).encode()
    with pytest.raises(BundleError, match=message) as caught:
        parse(data)
    assert caught.value.reason == "format"


def test_not_json_is_refused():
    for data in (b"\xff\xfe", b"{", b"[" * 100_000):
        with pytest.raises(BundleError) as caught:
            parse(data)
        assert caught.value.reason == "format"


def test_a_service_that_breaks_a_rule_is_named():
    top = {"format": "aiwall-catalog-bundle", "version": 1, "serial": 1}
    top |= {"created": "2026-11-30T12:00:00Z", "services": [{"id": "x", "name": "X"}]}
    with pytest.raises(BundleError) as caught:
        parse(json.dumps(top).encode())
    assert caught.value.reason == "invalid"
    assert str(caught.value) == "bundle services[0]: vendor_country: missing required key"


def test_a_bundle_that_would_block_a_protected_name_is_invalid(tmp_path):
    key, public = keys()
    data = built(tmp_path)
    with pytest.raises(BundleError, match=r"protected name 'api\.alpha-ai\.example'") as caught:
        open_bundle(data, sign(data, key), public_key(public), frozenset({"api.alpha-ai.example"}))
    assert caught.value.reason == "invalid"


def test_a_catalog_that_fails_the_lint_is_not_bundled(tmp_path):
    directory = write_catalog(tmp_path / "catalog", SERVICES)
    path = directory / "beta.yaml"
    path.write_text(path.read_text().replace("    source: https://beta-ai.example/network\n", ""))
    with pytest.raises(BundleError, match="has no source"):
        make_bundle(directory, 1, NOW, frozenset())


# --- serial and shrink -----------------------------------------------------------------


def bundle_of(serial: int, digest: str = "a") -> Bundle:
    return Bundle(serial, 0.0, Catalog(()), digest)


@pytest.mark.parametrize(
    ("serial", "digest", "held", "floor", "accepted"),
    [
        (6, "b", 5, None, True),
        (4, "b", 5, None, False),  # rolled back
        (5, "b", 5, None, False),  # the same serial with other content
        (5, "a", 5, None, True),  # the same bytes
        (1, "b", None, None, True),  # nothing held: any serial
        (4, "b", None, 5, False),  # the bundle file lost: the floor stays
        (5, "b", None, 5, False),
        (5, "a", None, 5, True),  # the lost bundle fetched again
        (6, "b", 5, 7, False),  # the higher of the two counts
    ],
)
def test_a_bundle_must_be_newer_than_the_last_good_one(serial, digest, held, floor, accepted):
    kept = bundle_of(held) if held is not None else None
    remembered = Floor(floor, "a", 0.0, "", "") if floor is not None else None
    if accepted:
        check_serial(bundle_of(serial, digest), kept, remembered)
        return
    with pytest.raises(BundleError) as caught:
        check_serial(bundle_of(serial, digest), kept, remembered)
    assert caught.value.reason == "rollback"


def test_the_shrink_guard_counts_services_and_domains(tmp_path):
    many = {f"s{i}": [f"s{i}.example"] for i in range(10)}
    big = load_catalog(write_catalog(tmp_path / "big", many))
    assert shrink_problem(Catalog(big.services[:8]), big, 0.2) == ""
    assert shrink_problem(Catalog(big.services[:7]), big, 0.2) == (
        "10 services down to 7, beyond max_shrink (0.2)"
    )
    assert shrink_problem(Catalog(big.services[:1]), big, 1.0) == ""
    wide = load_catalog(
        write_catalog(tmp_path / "wide", {"one": [f"h{i}.one.example" for i in range(10)]})
    )
    narrow = load_catalog(write_catalog(tmp_path / "narrow", {"one": ["h0.one.example"]}))
    assert shrink_problem(narrow, wide, 0.5) == "10 domains down to 1, beyond max_shrink (0.5)"


# --- config ----------------------------------------------------------------------------


def source(**values: object) -> dict[str, object]:
    return {"catalog": {"sources": [{"url": "https://m.example/catalog.json", **values}]}}


def test_a_catalog_source_reads_with_its_defaults():
    _, public = keys()
    config = config_from_mapping(source(public_key=public))
    (only,) = config.catalog.sources
    assert (only.refresh, only.max_shrink, only.label) == (3600.0, 0.2, "m.example/catalog.json")
    assert only.signature == "https://m.example/catalog.json.sig"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"public_key": "not a key"}, "catalog.sources[0].public_key: expected an Ed25519"),
        ({"public_key": base64.b64encode(bytes(31)).decode()}, "31 bytes"),
        ({"url": "ftp://m.example/c.json"}, "catalog.sources[0].url: expected an http"),
        ({"signature_url": "file:///c.sig"}, "catalog.sources[0].signature_url"),
        ({"refresh": 0}, "catalog.sources[0].refresh"),
        ({"max_shrink": 2}, "catalog.sources[0].max_shrink"),
        ({"publickey": "x"}, "catalog.sources[0].publickey: unknown key"),
    ],
)
def test_a_bad_catalog_source_names_its_key(values, message):
    _, public = keys()
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        config_from_mapping(source(**{"public_key": public, **values}))


def test_two_sources_need_two_names():
    _, public = keys()
    one = {"url": "https://m.example/catalog.json", "public_key": public}
    with pytest.raises(ConfigError, match=r"catalog.sources\[1\].name: .* is used twice"):
        config_from_mapping({"catalog": {"sources": [one, one]}})
