"""The catalog's rules that span services and the protected list.

A name claimed by two services, a name nested under another service's name, a name
whose blocking would take down shared infrastructure (``google.com`` when only
``gemini.google.com`` was meant), a shared host a block would catch anyway; and, per
service, the rules a catalog built in code must also keep (a source for every domain,
a verified date). ``aiwall catalog lint`` runs it, in CI.
"""

from __future__ import annotations

import datetime

from resolver.policy.catalog import (
    CATEGORIES,
    ID,
    REVIEW_SLACK,
    ROLES,
    UNKNOWN,
    URL,
    Catalog,
    Service,
    is_country,
    is_data_location,
    is_valid_hostname,
    parents,
)


def lint(catalog: Catalog, protected: frozenset[str]) -> list[str]:
    """Problems in a catalog as human-readable lines; an empty list means clean.

    Covers what a single file cannot see (names shared or nested across services, names
    that would block protected infrastructure, shared hosts that a block would catch
    anyway) and re-checks per-service rules for catalogs not built by ``load_catalog``.
    """
    today = datetime.date.today()
    problems = [p for service in catalog.services for p in _lint_service(service, today)]
    owners = _owners(catalog, problems)
    problems += _nested(catalog, owners)
    problems += _protected(protected, owners)
    problems += _shared_blocked(catalog, owners)
    return problems


def collisions(catalog: Catalog, protected: frozenset[str]) -> list[str]:
    """The problems that make a catalog unsafe to apply, whatever its metadata: a
    service id or name claimed twice, and names that would block protected ones. A
    catalog fetched at run time is held to these (its publisher ran the whole lint)."""
    problems: list[str] = []
    owners = _owners(catalog, problems)
    return problems + _protected(protected, owners)


def _owners(catalog: Catalog, problems: list[str]) -> dict[str, str]:
    """Catalog name -> the first service that lists it; ids and names claimed twice
    are reported into ``problems``."""
    owners: dict[str, str] = {}
    seen_ids: set[str] = set()
    for service in catalog.services:
        if service.id in seen_ids:
            problems.append(f"{service.id}: service id is used more than once")
        seen_ids.add(service.id)
        for domain in service.domains:
            owner = owners.setdefault(domain.name, service.id)
            if owner != service.id:
                problems.append(
                    f"{service.id}: {domain.name!r} is also listed by service {owner!r}"
                )
    return owners


def _first_owner(name: str, owners: dict[str, str], *, itself: bool) -> tuple[str, str] | None:
    """(covering name, its service) for ``name``'s nearest covering entry, or None."""
    candidates = (name, *parents(name)) if itself else tuple(parents(name))
    for candidate in candidates:
        owner = owners.get(candidate)
        if owner is not None:
            return candidate, owner
    return None


def _nested(catalog: Catalog, owners: dict[str, str]) -> list[str]:
    problems = []
    for service in catalog.services:
        for domain in service.domains:
            found = _first_owner(domain.name, owners, itself=False)
            if found is not None and found[1] != service.id:
                problems.append(
                    f"{service.id}: {domain.name!r} is under {found[0]!r} of service {found[1]!r}"
                )
    return problems


def _protected(protected: frozenset[str], owners: dict[str, str]) -> list[str]:
    """A catalog name collides when it is the protected name or one of its parents."""
    problems = []
    for protected_name in sorted(protected):
        for candidate in (protected_name, *parents(protected_name)):
            owner = owners.get(candidate)
            if owner is not None:
                what = "is" if candidate == protected_name else "is a parent of"
                problems.append(f"{owner}: {candidate!r} {what} protected name {protected_name!r}")
    return problems


def _shared_blocked(catalog: Catalog, owners: dict[str, str]) -> list[str]:
    problems = []
    for service in catalog.services:
        for host in service.shared:
            found = _first_owner(host.name, owners, itself=True)
            if found is not None:
                problems.append(
                    f"{service.id}: shared host {host.name!r} would be blocked anyway"
                    f" by {found[0]!r} of service {found[1]!r}"
                )
    return problems


def _lint_service(service: Service, today: datetime.date) -> list[str]:
    sid = service.id or "(no id)"
    checks = (_identity, _locations, _categories, _domains, _shared, _sources)
    problems = [f"{sid}: {problem}" for check in checks for problem in check(service)]
    # Catalogs built in code are not type-checked at run time; None must not pass as a date.
    verified: object = service.verified
    if not isinstance(verified, datetime.date):
        problems.append(f"{sid}: no verified date")
    elif verified > today + REVIEW_SLACK:
        problems.append(f"{sid}: verified date {verified} is in the future")
    return problems


def _identity(service: Service) -> list[str]:
    problems = []
    if not ID.match(service.id):
        problems.append(f"id {service.id!r} must be lowercase letters, digits and '-'")
    if not service.name.strip():
        problems.append("name is empty")
    if not service.vendor.strip():
        problems.append("vendor is empty")
    if service.vendor_country != UNKNOWN and not is_country(service.vendor_country):
        problems.append(f"vendor_country {service.vendor_country!r} is not ISO alpha-2")
    return problems


def _locations(service: Service) -> list[str]:
    location = service.data_location
    problems = []
    if not is_data_location(location.country):
        problems.append(f"data_location.country {location.country!r} is not valid")
    if location.country != UNKNOWN and not location.source:
        problems.append(f"data_location {location.country!r} has no source")
    return problems


def _categories(service: Service) -> list[str]:
    problems = [] if service.categories else ["no categories"]
    problems += [f"unknown category {c!r}" for c in service.categories if c not in CATEGORIES]
    return problems


def _domains(service: Service) -> list[str]:
    problems = [] if service.domains else ["no domains"]
    names = [domain.name for domain in service.domains]
    problems += [f"{n!r} is listed twice" for n in sorted({n for n in names if names.count(n) > 1})]
    for domain in service.domains:
        if not is_valid_hostname(domain.name):
            problems.append(f"{domain.name!r} is not a valid hostname")
        if not domain.source:
            problems.append(f"{domain.name!r} has no source")
        elif not URL.match(domain.source):
            problems.append(f"{domain.name!r} source {domain.source!r} is not a URL")
        if domain.role is not None and domain.role not in ROLES:
            problems.append(f"{domain.name!r} has unknown role {domain.role!r}")
    return problems


def _shared(service: Service) -> list[str]:
    problems = []
    for host in service.shared:
        if not is_valid_hostname(host.name):
            problems.append(f"shared host {host.name!r} is not a valid hostname")
        if not host.reason.strip():
            problems.append(f"shared host {host.name!r} has no reason")
    return problems


def _sources(service: Service) -> list[str]:
    problems = [] if service.sources else ["no sources"]
    problems += [f"source {s!r} is not an http(s) URL" for s in service.sources if not URL.match(s)]
    return problems
