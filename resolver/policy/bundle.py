"""Signed catalog bundles: the catalog as one JSON file and a detached Ed25519 signature.

The format (also in the README):
- ``catalog.json``: a JSON object with ``format`` ("aiwall-catalog-bundle"), ``version``
  (1), ``serial`` (a whole number that rises with every bundle a publisher signs),
  ``created`` (when it was signed, ISO 8601 with a time zone) and ``services`` (one
  object per service, exactly the mapping its YAML file holds, dates as text);
- ``catalog.json.sig``: the Ed25519 signature (RFC 8032) of the exact bytes of
  ``catalog.json``, in base64 on one line.

The signature is checked before a single byte of the bundle is parsed: whoever serves
the file without the key can make aiwall reject it, never read it. Ed25519 through the
``cryptography`` package (OpenSSL underneath), which is why it is a dependency.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from resolver.config import decode_public_key
from resolver.policy.catalog import Catalog, CatalogError
from resolver.policy.catalog_files import parse_service_file, service_files, service_from_mapping
from resolver.policy.catalog_lint import collisions, lint

FORMAT = "aiwall-catalog-bundle"
VERSION = 1
BUNDLE_NAME = "catalog.json"
SIGNATURE_SUFFIX = ".sig"
PRIVATE_KEY_NAME = "catalog-signing.key"
PUBLIC_KEY_NAME = "catalog-signing.pub"
SIGNATURE_BYTES = 64  # RFC 8032 5.1.6
SIGNATURE_MAX_BYTES = 1024  # the signature file: base64 of 64 bytes, and some slack
MAX_SERIAL = 2**63 - 1
_KEYS = frozenset({"format", "version", "serial", "created", "services"})


class BundleError(ValueError):
    """A bundle that must not be applied; ``reason`` is a metric label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Bundle:
    serial: int
    created: float  # Unix time
    catalog: Catalog
    digest: str  # SHA-256 of the signed bytes, hex

    @property
    def services(self) -> int:
        return len(self.catalog.services)

    @property
    def domains(self) -> int:
        return domain_count(self.catalog)


def domain_count(catalog: Catalog) -> int:
    return sum(len(service.domains) for service in catalog.services)


# --- keys and signatures ---------------------------------------------------------------


def new_key_pair() -> tuple[bytes, str]:
    """A private key (PKCS #8 PEM, unencrypted: protect the file) and its public key as
    the config takes it (base64 of the 32 raw bytes)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return private, public_text(key.public_key())


def public_text(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def read_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ValueError(f"{path}: cannot read the signing key: {error.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{path}: not an unencrypted PEM private key ({error})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 key (`aiwall catalog keygen` makes one)")
    return key


def public_key(text: str) -> Ed25519PublicKey:
    """The key of a ``catalog.sources`` entry (or --public-key); ValueError if it is none."""
    return Ed25519PublicKey.from_public_bytes(decode_public_key(text))


def sign(data: bytes, key: Ed25519PrivateKey) -> bytes:
    """The content of the signature file for ``data``."""
    return base64.b64encode(key.sign(data)) + b"\n"


def verify(data: bytes, signature: bytes, key: Ed25519PublicKey) -> None:
    """Raises BundleError("signature") unless ``signature`` (a signature file's content)
    is ``key``'s signature of exactly ``data``."""
    try:
        raw = base64.b64decode(signature.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise BundleError("signature", "the signature file is not base64") from None
    if len(raw) != SIGNATURE_BYTES:
        raise BundleError("signature", f"the signature has {len(raw)} bytes, not 64")
    try:
        key.verify(raw, data)
    except InvalidSignature:
        raise BundleError(
            "signature", "the signature does not match the bundle and the configured key"
        ) from None


# --- reading ---------------------------------------------------------------------------


def open_bundle(
    data: bytes, signature: bytes, key: Ed25519PublicKey, protected: frozenset[str]
) -> Bundle:
    """The bundle in ``data``: its signature checked first, then its content, then that
    applying it could not block a protected name. Raises BundleError."""
    verify(data, signature, key)
    bundle = parse(data)
    problems = collisions(bundle.catalog, protected)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise BundleError("invalid", f"{problems[0]}{more}")
    return bundle


def parse(data: bytes) -> Bundle:
    """A bundle's content, held to the rules of the catalog's files (call it on signed
    bytes only). Raises BundleError: "format" when it is no bundle of this version,
    "invalid" when a service breaks a rule."""
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise BundleError("format", f"not JSON: {error}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise BundleError("format", f"not an {FORMAT} (no format key saying so)")
    unknown = sorted(set(document) - _KEYS)
    if unknown:
        raise BundleError("format", f"unknown key {unknown[0]!r}")
    version = document.get("version")
    if version != VERSION or isinstance(version, bool):
        raise BundleError("format", f"version {version!r}: this aiwall reads version {VERSION}")
    serial = document.get("serial")
    if not isinstance(serial, int) or isinstance(serial, bool) or not 0 < serial <= MAX_SERIAL:
        raise BundleError("format", f"serial: expected a whole number above 0, got {serial!r}")
    created = _moment(document.get("created"))
    services = document.get("services")
    if not isinstance(services, list) or not services:
        raise BundleError("format", "services: expected a list of at least one service")
    try:
        loaded = tuple(
            service_from_mapping(raw, f"bundle services[{index}]")
            for index, raw in enumerate(services)
        )
    except CatalogError as error:
        raise BundleError("invalid", str(error)) from None
    return Bundle(serial, created, Catalog(loaded), hashlib.sha256(data).hexdigest())


def _moment(value: object) -> float:
    try:
        if not isinstance(value, str):
            raise ValueError
        moment = datetime.datetime.fromisoformat(value)
        if moment.tzinfo is None:
            raise ValueError
    except ValueError:
        raise BundleError(
            "format", f"created: expected a time like 2026-11-30T12:00:00Z, got {value!r}"
        ) from None
    return moment.timestamp()


# --- building --------------------------------------------------------------------------


def make_bundle(
    directory: Path, serial: int, created: datetime.datetime, protected: frozenset[str]
) -> tuple[bytes, Catalog]:
    """The bundle of a catalog folder: every file held to the catalog's rules and the
    whole lint (``aiwall catalog lint``), so that no client is sent what it would refuse.
    Raises CatalogError, or BundleError("invalid") with the lint's problems."""
    files = service_files(directory)
    mappings = [parse_service_file(path) for path in files]
    catalog = Catalog(
        tuple(
            service_from_mapping(raw, path, stem=path.stem)
            for raw, path in zip(mappings, files, strict=True)
        )
    )
    problems = lint(catalog, protected)
    if problems:
        shown = "\n  ".join(problems[:10])
        more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise BundleError("invalid", f"{directory}: the catalog fails the lint:\n  {shown}{more}")
    if not 0 < serial <= MAX_SERIAL:
        raise BundleError("format", f"serial: expected a whole number above 0, got {serial}")
    document = {
        "format": FORMAT,
        "version": VERSION,
        "serial": serial,
        "created": created.astimezone(datetime.UTC)
        .replace(microsecond=0)
        .isoformat()
        .replace("+00:00", "Z"),
        "services": mappings,
    }
    # ASCII only: the signed bytes survive any text tool a mirror passes them through.
    text = json.dumps(document, indent=1, sort_keys=True, ensure_ascii=True) + "\n"
    return text.encode("ascii"), catalog


def shrink_problem(new: Catalog, old: Catalog, max_shrink: float) -> str:
    """Why ``new`` may not replace ``old``: it lost more than ``max_shrink`` of the
    services or of the domains ("" when it may)."""
    for what, before, after in (
        ("services", len(old.services), len(new.services)),
        ("domains", domain_count(old), domain_count(new)),
    ):
        if after < before * (1 - max_shrink):
            return f"{before} {what} down to {after}, beyond max_shrink ({max_shrink:g})"
    return ""
