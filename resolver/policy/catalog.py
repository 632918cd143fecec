"""The curated catalog of generative-AI services (and DNS-bypass endpoints) aiwall blocks.

One YAML file per service in ``blocklists/catalog/``; the format is described in
``blocklists/README.md``. Loading is strict on purpose: the catalog is a policy, and a
typo that silently drops a key or widens a name must stop the load, not be guessed at.
Every error names the file and the key path so the fix is obvious from the message.

``lint`` adds the checks that span services and the protected list: a name claimed by
two services, a name nested under another service's name, and any name whose blocking
would take down shared infrastructure (``google.com`` when only ``gemini.google.com``
was meant).
"""

from __future__ import annotations

import datetime
import os
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from resolver import yamltext
from resolver.policy.listfile import normalise_name

__all__ = [
    "CATEGORIES",
    "ROLES",
    "Catalog",
    "CatalogError",
    "DataLocation",
    "Domain",
    "Owner",
    "Service",
    "SharedHost",
    "default_catalog_dir",
    "default_protected_path",
    "lint",
    "load_catalog",
    "load_protected",
]

CATEGORIES: frozenset[str] = frozenset(
    {
        "chat_assistant",
        "coding_assistant",
        "image_video",
        "voice_music",
        "search_answer_engine",
        "api_developer_platform",
        "model_hub",
        "companion",
        "writing_assistant",
        "agent",
        "bypass",
    }
)
ROLES: frozenset[str] = frozenset({"ui", "api", "auth", "cdn", "telemetry"})

CATALOG_DIR_ENV = "AIWALL_CATALOG_DIR"
PROTECTED_PATH_ENV = "AIWALL_PROTECTED_PATH"

UNKNOWN = "unknown"

# ISO 3166-1 alpha-2. A closed list rather than "two capital letters" because the usual
# mistakes ("UK" for GB, "EN" for a language) are exactly two capital letters.
_ISO_ALPHA2 = """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO
    BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ
    DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP
    GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG
    KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML
    MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE
    PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL
    SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM
    US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW
"""
_ISO_COUNTRIES = frozenset(_ISO_ALPHA2.split())
# Storage is often promised per region rather than per country ("hosted in the EU").
_DATA_REGIONS = frozenset({"EU", "EEA"})

_ID = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_URL = re.compile(r"^https?://[^\s/]+\.[^\s]+$")

_REQUIRED_KEYS = (
    "id",
    "name",
    "vendor",
    "vendor_country",
    "data_location",
    "categories",
    "domains",
    "sources",
    "verified",
)
_OPTIONAL_KEYS = ("shared", "notes", "parent")
_SERVICE_KEYS = frozenset(_REQUIRED_KEYS + _OPTIONAL_KEYS)
_DOMAIN_KEYS = frozenset({"name", "role", "source"})
_PARENT_KEYS = frozenset({"name", "country"})
_SHARED_KEYS = frozenset({"name", "reason"})
_LOCATION_KEYS = frozenset({"country", "source"})

# A review date a day ahead is a timezone, more than that is a typo.
_REVIEW_SLACK = datetime.timedelta(days=1)


class CatalogError(ValueError):
    """The catalog or the protected list cannot be used; the message names file and key."""


@dataclass(frozen=True, slots=True)
class Domain:
    name: str  # lowercase ASCII, blocked together with every subdomain
    role: str | None
    # Where this host was found: a vendor page, the client's code (pinned to a commit), a
    # network-configuration page or a public list with its commit. The lint requires it.
    source: str | None = None


@dataclass(frozen=True, slots=True)
class SharedHost:
    name: str  # documented, never blocked: other products depend on it
    reason: str


@dataclass(frozen=True, slots=True)
class DataLocation:
    country: str  # ISO alpha-2, a region such as EU, or "unknown"
    source: str | None


@dataclass(frozen=True, slots=True)
class Owner:
    """The group that owns the operating company, where it differs (ByteDance for the
    Singapore company that runs its international apps; Meta for Manus)."""

    name: str
    country: str


@dataclass(frozen=True, slots=True)
class Service:
    id: str
    name: str
    vendor: str  # the company that operates the service (the one its terms name)
    vendor_country: str
    data_location: DataLocation
    categories: tuple[str, ...]  # the first one is the service's main category
    domains: tuple[Domain, ...]
    shared: tuple[SharedHost, ...]
    sources: tuple[str, ...]
    verified: datetime.date  # when the entry was last checked against its sources
    notes: str
    parent: Owner | None = None

    @property
    def countries(self) -> tuple[str, ...]:
        """The operator's country, then its owner's: a ban on a country's vendors covers
        their subsidiaries abroad."""
        if self.parent is None or self.parent.country == self.vendor_country:
            return (self.vendor_country,)
        return (self.vendor_country, self.parent.country)

    @property
    def vendors(self) -> tuple[str, ...]:
        return (self.vendor,) if self.parent is None else (self.vendor, self.parent.name)


@dataclass(frozen=True, slots=True)
class Catalog:
    services: tuple[Service, ...]

    def by_id(self, service_id: str) -> Service | None:
        for service in self.services:
            if service.id == service_id:
                return service
        return None


# --- locations -------------------------------------------------------------------------


def _package_root() -> Path:
    return Path(__file__).resolve().parents[2]


def _first_existing(candidates: Iterable[Path]) -> Path | None:
    for candidate in candidates:
        if candidate.exists():
            return candidate
    return None


def default_catalog_dir() -> Path:
    """The shipped catalog: $AIWALL_CATALOG_DIR, else the checkout, else the install prefix."""
    override = os.environ.get(CATALOG_DIR_ENV)
    if override:
        return Path(override)
    checkout = _package_root() / "blocklists" / "catalog"
    installed = Path(sys.prefix) / "share" / "aiwall" / "blocklists" / "catalog"
    # Fall back to the checkout path so a missing catalog is reported where one expects it.
    return _first_existing((checkout, installed)) or checkout


def default_protected_path() -> Path:
    """The shipped protected list: $AIWALL_PROTECTED_PATH, else beside the shipped catalog."""
    override = os.environ.get(PROTECTED_PATH_ENV)
    if override:
        return Path(override)
    checkout = _package_root() / "blocklists" / "protected.txt"
    installed = Path(sys.prefix) / "share" / "aiwall" / "blocklists" / "protected.txt"
    return _first_existing((checkout, installed)) or checkout


# --- names -----------------------------------------------------------------------------


def _normalise_hostname(text: str) -> str | None:
    """Lowercase ASCII form of a hostname with at least two labels, or None."""
    name = normalise_name(text)
    return name if name is not None and _is_valid_hostname(name) else None


def _is_valid_hostname(name: str) -> bool:
    if len(name) > 253:
        return False
    labels = name.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        return False
    # No top-level domain is numeric: this keeps address literals such as 1.1.1.1 out.
    return not labels[-1].isdigit()


def _parents(name: str) -> Iterator[str]:
    """Every proper parent of a name, nearest first (a.b.c -> b.c, c)."""
    labels = name.split(".")
    for start in range(1, len(labels)):
        yield ".".join(labels[start:])


def _is_country(code: str) -> bool:
    return code in _ISO_COUNTRIES


def _is_data_location(code: str) -> bool:
    return code == UNKNOWN or code in _ISO_COUNTRIES or code in _DATA_REGIONS


# --- loading ---------------------------------------------------------------------------


class _Reader:
    """Type-checked access to one parsed file, raising errors that carry file and key path."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, key: str, problem: str) -> CatalogError:
        return CatalogError(f"{self.path}: {key}: {problem}")

    def mapping(self, value: object, key: str, allowed: frozenset[str]) -> Mapping[str, object]:
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a mapping, got {_describe(value)}")
        for name in value:
            if not isinstance(name, str):
                raise self.fail(key, f"keys must be text, got {name!r}")
            if name not in allowed:
                expected = ", ".join(sorted(allowed))
                where = f"{key}.{name}" if key != "(file)" else name
                raise self.fail(where, f"unknown key (expected one of: {expected})")
        return value

    def require(self, data: Mapping[str, object], key: str, prefix: str = "") -> object:
        if key not in data:
            raise self.fail(f"{prefix}{key}" if prefix else key, "missing required key")
        return data[key]

    def text(self, value: object, key: str) -> str:
        # YAML 1.1 reads some bare words as booleans or numbers (NO is Norway, not False).
        if not isinstance(value, str):
            raise self.fail(key, f"expected text, got {_describe(value)} (quote it)")
        stripped = value.strip()
        if not stripped:
            raise self.fail(key, "must not be empty")
        return stripped

    def sequence(self, value: object, key: str, *, allow_empty: bool = False) -> list[object]:
        if not isinstance(value, list):
            raise self.fail(key, f"expected a list, got {_describe(value)}")
        if not value and not allow_empty:
            raise self.fail(key, "must list at least one entry")
        return value

    def hostname(self, value: object, key: str) -> str:
        text = self.text(value, key)
        name = _normalise_hostname(text)
        if name is None:
            raise self.fail(key, f"{text!r} is not a valid hostname")
        return name

    def url(self, value: object, key: str) -> str:
        text = self.text(value, key)
        if not _URL.match(text):
            raise self.fail(key, f"{text!r} is not an http(s) URL")
        return text

    def date(self, value: object, key: str) -> datetime.date:
        # The loader keeps YAML dates as text; fromisoformat takes a date, never a timestamp.
        if isinstance(value, str):
            try:
                return datetime.date.fromisoformat(value.strip())
            except ValueError:
                pass
        raise self.fail(key, f"expected a date (YYYY-MM-DD), got {value!r}")


def _describe(value: object) -> str:
    if value is None:
        return "nothing"
    return f"{type(value).__name__} {value!r}"


def _parse_file(path: Path) -> object:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise CatalogError(f"{path}: cannot read: {error.strerror}") from None
    except UnicodeDecodeError:
        raise CatalogError(f"{path}: not UTF-8 text") from None
    try:
        return yamltext.load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "(file)"
        problem = getattr(error, "problem", None) or str(error)
        raise CatalogError(f"{path}: {where}: not valid YAML: {problem}") from None
    except ValueError as error:
        # Values PyYAML still builds while parsing can fail outside its own error types.
        raise CatalogError(f"{path}: (file): not valid YAML: {error}") from None


def _load_service(path: Path) -> Service:
    reader = _Reader(path)
    data = reader.mapping(_parse_file(path), "(file)", _SERVICE_KEYS)

    service_id = reader.text(reader.require(data, "id"), "id")
    if not _ID.match(service_id):
        raise reader.fail("id", f"{service_id!r} must be lowercase letters, digits and '-'")
    if service_id != path.stem:
        raise reader.fail("id", f"{service_id!r} must equal the file name stem {path.stem!r}")

    name = reader.text(reader.require(data, "name"), "name")
    vendor = reader.text(reader.require(data, "vendor"), "vendor")
    vendor_country = reader.text(reader.require(data, "vendor_country"), "vendor_country")
    if vendor_country != UNKNOWN and not _is_country(vendor_country):
        raise reader.fail(
            "vendor_country", f"{vendor_country!r} is not an ISO 3166-1 alpha-2 code or 'unknown'"
        )

    data_location = _load_location(reader, reader.require(data, "data_location"))

    categories: list[str] = []
    for index, item in enumerate(reader.sequence(reader.require(data, "categories"), "categories")):
        key = f"categories[{index}]"
        category = reader.text(item, key)
        if category not in CATEGORIES:
            raise reader.fail(key, f"unknown category {category!r}")
        if category in categories:
            raise reader.fail(key, f"category {category!r} is listed twice")
        categories.append(category)

    domains: list[Domain] = []
    seen: set[str] = set()
    for index, item in enumerate(reader.sequence(reader.require(data, "domains"), "domains")):
        key = f"domains[{index}]"
        entry = reader.mapping(item, key, _DOMAIN_KEYS)
        host = reader.hostname(reader.require(entry, "name", f"{key}."), f"{key}.name")
        if host in seen:
            raise reader.fail(f"{key}.name", f"{host!r} is listed twice")
        seen.add(host)
        role: str | None = None
        if entry.get("role") is not None:
            role = reader.text(entry["role"], f"{key}.role")
            if role not in ROLES:
                expected = ", ".join(sorted(ROLES))
                raise reader.fail(f"{key}.role", f"unknown role {role!r} (expected {expected})")
        source = reader.url(entry["source"], f"{key}.source") if "source" in entry else None
        domains.append(Domain(host, role, source))

    shared: list[SharedHost] = []
    raw_shared = data.get("shared")
    if raw_shared is not None:
        for index, item in enumerate(reader.sequence(raw_shared, "shared", allow_empty=True)):
            key = f"shared[{index}]"
            entry = reader.mapping(item, key, _SHARED_KEYS)
            host = reader.hostname(reader.require(entry, "name", f"{key}."), f"{key}.name")
            reason = reader.text(reader.require(entry, "reason", f"{key}."), f"{key}.reason")
            shared.append(SharedHost(host, reason))

    sources: list[str] = []
    for index, item in enumerate(reader.sequence(reader.require(data, "sources"), "sources")):
        source = reader.url(item, f"sources[{index}]")
        if source in sources:
            raise reader.fail(f"sources[{index}]", f"{source!r} is listed twice")
        sources.append(source)

    verified = reader.date(reader.require(data, "verified"), "verified")
    parent = _load_parent(reader, data["parent"]) if data.get("parent") is not None else None

    notes = ""
    if data.get("notes") is not None:
        notes = reader.text(data["notes"], "notes")

    return Service(
        id=service_id,
        name=name,
        vendor=vendor,
        vendor_country=vendor_country,
        data_location=data_location,
        categories=tuple(categories),
        domains=tuple(domains),
        shared=tuple(shared),
        sources=tuple(sources),
        verified=verified,
        notes=notes,
        parent=parent,
    )


def _load_parent(reader: _Reader, value: object) -> Owner:
    data = reader.mapping(value, "parent", _PARENT_KEYS)
    name = reader.text(reader.require(data, "name", "parent."), "parent.name")
    country = reader.text(reader.require(data, "country", "parent."), "parent.country")
    if country != UNKNOWN and not _is_country(country):
        raise reader.fail(
            "parent.country", f"{country!r} is not an ISO 3166-1 alpha-2 code or 'unknown'"
        )
    return Owner(name, country)


def _load_location(reader: _Reader, value: object) -> DataLocation:
    data = reader.mapping(value, "data_location", _LOCATION_KEYS)
    country = reader.text(
        reader.require(data, "country", "data_location."), "data_location.country"
    )
    if not _is_data_location(country):
        raise reader.fail(
            "data_location.country",
            f"{country!r} is not an ISO 3166-1 alpha-2 code, EU/EEA or 'unknown'",
        )
    source: str | None = None
    if data.get("source") is not None:
        source = reader.url(data["source"], "data_location.source")
    elif country != UNKNOWN:
        # A storage claim without a citation is exactly what the catalog must not contain.
        raise reader.fail("data_location.source", f"required when country is {country!r}")
    return DataLocation(country, source)


def load_catalog(directory: Path) -> Catalog:
    """Every ``*.yaml`` service file in ``directory``, validated; raises CatalogError."""
    if not directory.is_dir():
        raise CatalogError(f"{directory}: catalog directory not found")
    stray = sorted(p.name for p in directory.glob("*.yml"))
    if stray:
        # Silently skipping a file would silently unblock a service.
        raise CatalogError(f"{directory / stray[0]}: catalog files must end in .yaml")
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise CatalogError(f"{directory}: no service files (*.yaml) found")
    return Catalog(tuple(_load_service(path) for path in files))


def load_protected(path: Path) -> frozenset[str]:
    """Hostnames the catalog must never block, one per line, ``#`` starts a comment."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise CatalogError(f"{path}: cannot read: {error.strerror}") from None
    except UnicodeDecodeError:
        raise CatalogError(f"{path}: not UTF-8 text") from None
    names: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        content = line.split("#", 1)[0].strip()
        if not content:
            continue
        name = _normalise_hostname(content)
        if name is None:
            raise CatalogError(f"{path}: line {number}: {content!r} is not a valid hostname")
        names.add(name)
    return frozenset(names)


# --- lint ------------------------------------------------------------------------------


def lint(catalog: Catalog, protected: frozenset[str]) -> list[str]:
    """Problems in a catalog as human-readable lines; an empty list means clean.

    Covers what a single file cannot see (names shared or nested across services, names
    that would block protected infrastructure, shared hosts that a block would catch
    anyway) and re-checks per-service rules for catalogs not built by ``load_catalog``.
    """
    problems: list[str] = []
    owners: dict[str, str] = {}  # catalog name -> id of the first service that lists it
    seen_ids: set[str] = set()
    today = datetime.date.today()

    for service in catalog.services:
        problems.extend(_lint_service(service, today))
        if service.id in seen_ids:
            problems.append(f"{service.id}: service id is used more than once")
        seen_ids.add(service.id)
        for domain in service.domains:
            owner = owners.get(domain.name)
            if owner is not None and owner != service.id:
                problems.append(
                    f"{service.id}: {domain.name!r} is also listed by service {owner!r}"
                )
            owners.setdefault(domain.name, service.id)

    for service in catalog.services:
        for domain in service.domains:
            for parent in _parents(domain.name):
                owner = owners.get(parent)
                if owner is not None and owner != service.id:
                    problems.append(
                        f"{service.id}: {domain.name!r} is under {parent!r} of service {owner!r}"
                    )
                    break

    # A catalog name collides when it is the protected name or one of its parents.
    for protected_name in sorted(protected):
        for candidate in (protected_name, *_parents(protected_name)):
            owner = owners.get(candidate)
            if owner is not None:
                what = "is" if candidate == protected_name else "is a parent of"
                problems.append(f"{owner}: {candidate!r} {what} protected name {protected_name!r}")

    for service in catalog.services:
        for host in service.shared:
            for candidate in (host.name, *_parents(host.name)):
                owner = owners.get(candidate)
                if owner is not None:
                    problems.append(
                        f"{service.id}: shared host {host.name!r} would be blocked anyway"
                        f" by {candidate!r} of service {owner!r}"
                    )
                    break
    return problems


def _lint_service(service: Service, today: datetime.date) -> list[str]:
    sid = service.id or "(no id)"
    problems: list[str] = []
    if not _ID.match(service.id):
        problems.append(f"{sid}: id {service.id!r} must be lowercase letters, digits and '-'")
    if not service.name.strip():
        problems.append(f"{sid}: name is empty")
    if not service.vendor.strip():
        problems.append(f"{sid}: vendor is empty")
    if service.vendor_country != UNKNOWN and not _is_country(service.vendor_country):
        problems.append(f"{sid}: vendor_country {service.vendor_country!r} is not ISO alpha-2")
    location = service.data_location
    if not _is_data_location(location.country):
        problems.append(f"{sid}: data_location.country {location.country!r} is not valid")
    if location.country != UNKNOWN and not location.source:
        problems.append(f"{sid}: data_location {location.country!r} has no source")
    if not service.categories:
        problems.append(f"{sid}: no categories")
    for category in service.categories:
        if category not in CATEGORIES:
            problems.append(f"{sid}: unknown category {category!r}")
    if not service.domains:
        problems.append(f"{sid}: no domains")
    names = [domain.name for domain in service.domains]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"{sid}: {name!r} is listed twice")
    for domain in service.domains:
        if not _is_valid_hostname(domain.name):
            problems.append(f"{sid}: {domain.name!r} is not a valid hostname")
        if domain.source and not _URL.match(domain.source):
            problems.append(f"{sid}: {domain.name!r} source {domain.source!r} is not a URL")
        if domain.role is not None and domain.role not in ROLES:
            problems.append(f"{sid}: {domain.name!r} has unknown role {domain.role!r}")
    for host in service.shared:
        if not _is_valid_hostname(host.name):
            problems.append(f"{sid}: shared host {host.name!r} is not a valid hostname")
        if not host.reason.strip():
            problems.append(f"{sid}: shared host {host.name!r} has no reason")
    if not service.sources:
        problems.append(f"{sid}: no sources")
    for source in service.sources:
        if not _URL.match(source):
            problems.append(f"{sid}: source {source!r} is not an http(s) URL")
    # Catalogs built in code are not type-checked at run time; None must not pass as a date.
    verified: object = service.verified
    if not isinstance(verified, datetime.date):
        problems.append(f"{sid}: no verified date")
    elif verified > today + _REVIEW_SLACK:
        problems.append(f"{sid}: verified date {verified} is in the future")
    return problems
