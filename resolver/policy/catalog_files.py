"""Reading the catalog's files: one strict YAML file per service, and the protected list.

Loading is strict on purpose: the catalog is a policy, and a typo that silently drops a
key or widens a name must stop the load, not be guessed at. Every error names the file
and the key path, so the fix is obvious from the message.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from pathlib import Path

import yaml

from resolver import yamltext
from resolver.policy.catalog import (
    CATEGORIES,
    ID,
    ROLES,
    UNKNOWN,
    URL,
    Catalog,
    CatalogError,
    DataLocation,
    Domain,
    Owner,
    Service,
    SharedHost,
    is_country,
    is_data_location,
    normalise_hostname,
)

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


class _Reader:
    """Type-checked access to one parsed file, raising errors that carry file and key path."""

    def __init__(self, where: Path | str) -> None:
        self.where = where  # the file, or where in a bundle

    def fail(self, key: str, problem: str) -> CatalogError:
        return CatalogError(f"{self.where}: {key}: {problem}")

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
        name = normalise_hostname(text)
        if name is None:
            raise self.fail(key, f"{text!r} is not a valid hostname")
        return name

    def url(self, value: object, key: str) -> str:
        text = self.text(value, key)
        if not URL.match(text):
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


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        raise CatalogError(f"{path}: cannot read: {error.strerror}") from None
    except UnicodeDecodeError:
        raise CatalogError(f"{path}: not UTF-8 text") from None


def parse_service_file(path: Path) -> object:
    """A service file as YAML parses it (dates kept as text), before any check."""
    text = _read_text(path)
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
    return service_from_mapping(parse_service_file(path), path, stem=path.stem)


def service_from_mapping(raw: object, where: Path | str, *, stem: str | None = None) -> Service:
    """One service as its YAML file parses (a catalog bundle carries the same mappings),
    held to the same rules; ``where`` starts every error, ``stem`` is the file's name
    that the id must equal. Raises CatalogError."""
    reader = _Reader(where)
    data = reader.mapping(raw, "(file)", _SERVICE_KEYS)
    service_id = reader.text(reader.require(data, "id"), "id")
    if not ID.match(service_id):
        raise reader.fail("id", f"{service_id!r} must be lowercase letters, digits and '-'")
    if stem is not None and service_id != stem:
        raise reader.fail("id", f"{service_id!r} must equal the file name stem {stem!r}")
    vendor_country = reader.text(reader.require(data, "vendor_country"), "vendor_country")
    if vendor_country != UNKNOWN and not is_country(vendor_country):
        raise reader.fail(
            "vendor_country", f"{vendor_country!r} is not an ISO 3166-1 alpha-2 code or 'unknown'"
        )
    return Service(
        id=service_id,
        name=reader.text(reader.require(data, "name"), "name"),
        vendor=reader.text(reader.require(data, "vendor"), "vendor"),
        vendor_country=vendor_country,
        data_location=_load_location(reader, reader.require(data, "data_location")),
        categories=_load_categories(reader, data),
        domains=_load_domains(reader, data),
        shared=_load_shared(reader, data),
        sources=_load_sources(reader, data),
        verified=reader.date(reader.require(data, "verified"), "verified"),
        notes=reader.text(data["notes"], "notes") if data.get("notes") is not None else "",
        parent=_load_parent(reader, data["parent"]) if data.get("parent") is not None else None,
    )


def _load_categories(reader: _Reader, data: Mapping[str, object]) -> tuple[str, ...]:
    categories: list[str] = []
    for index, item in enumerate(reader.sequence(reader.require(data, "categories"), "categories")):
        key = f"categories[{index}]"
        category = reader.text(item, key)
        if category not in CATEGORIES:
            raise reader.fail(key, f"unknown category {category!r}")
        if category in categories:
            raise reader.fail(key, f"category {category!r} is listed twice")
        categories.append(category)
    return tuple(categories)


def _load_domains(reader: _Reader, data: Mapping[str, object]) -> tuple[Domain, ...]:
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
    return tuple(domains)


def _load_shared(reader: _Reader, data: Mapping[str, object]) -> tuple[SharedHost, ...]:
    raw = data.get("shared")
    if raw is None:
        return ()
    shared: list[SharedHost] = []
    for index, item in enumerate(reader.sequence(raw, "shared", allow_empty=True)):
        key = f"shared[{index}]"
        entry = reader.mapping(item, key, _SHARED_KEYS)
        host = reader.hostname(reader.require(entry, "name", f"{key}."), f"{key}.name")
        reason = reader.text(reader.require(entry, "reason", f"{key}."), f"{key}.reason")
        shared.append(SharedHost(host, reason))
    return tuple(shared)


def _load_sources(reader: _Reader, data: Mapping[str, object]) -> tuple[str, ...]:
    sources: list[str] = []
    for index, item in enumerate(reader.sequence(reader.require(data, "sources"), "sources")):
        source = reader.url(item, f"sources[{index}]")
        if source in sources:
            raise reader.fail(f"sources[{index}]", f"{source!r} is listed twice")
        sources.append(source)
    return tuple(sources)


def _load_parent(reader: _Reader, value: object) -> Owner:
    data = reader.mapping(value, "parent", _PARENT_KEYS)
    name = reader.text(reader.require(data, "name", "parent."), "parent.name")
    country = reader.text(reader.require(data, "country", "parent."), "parent.country")
    if country != UNKNOWN and not is_country(country):
        raise reader.fail(
            "parent.country", f"{country!r} is not an ISO 3166-1 alpha-2 code or 'unknown'"
        )
    return Owner(name, country)


def _load_location(reader: _Reader, value: object) -> DataLocation:
    data = reader.mapping(value, "data_location", _LOCATION_KEYS)
    country = reader.text(
        reader.require(data, "country", "data_location."), "data_location.country"
    )
    if not is_data_location(country):
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
    return Catalog(tuple(_load_service(path) for path in service_files(directory)))


def service_files(directory: Path) -> list[Path]:
    """The service files of a catalog folder, in order; raises CatalogError."""
    if not directory.is_dir():
        raise CatalogError(f"{directory}: catalog directory not found")
    stray = sorted(p.name for p in directory.glob("*.yml"))
    if stray:
        # Silently skipping a file would silently unblock a service.
        raise CatalogError(f"{directory / stray[0]}: catalog files must end in .yaml")
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise CatalogError(f"{directory}: no service files (*.yaml) found")
    return files


def load_protected(path: Path) -> frozenset[str]:
    """Hostnames the catalog must never block, one per line, ``#`` starts a comment."""
    text = _read_text(path)
    names: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        content = line.split("#", 1)[0].strip()
        if not content:
            continue
        name = normalise_hostname(content)
        if name is None:
            raise CatalogError(f"{path}: line {number}: {content!r} is not a valid hostname")
        names.add(name)
    return frozenset(names)
