"""Which catalog services the organisation bans, and the config rule that says so.

A policy is a union of selectors (``block``) minus a union of exceptions (``allow``).
Every decision carries the key path and value that made it, so ``aiwall check`` can say
"blocked by blocking.catalog.block.countries: CN" instead of just "blocked".
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from resolver.config import CatalogPolicy, CatalogSelector
from resolver.policy.catalog import Catalog, Service


class SelectorError(ValueError):
    """A selector value matches no catalog service: most likely a typo, which would
    silently ban nothing, so the policy is refused instead."""


@dataclass(frozen=True, slots=True)
class ServiceVerdict:
    service: Service
    action: Literal["block", "allow", "report"]
    reason: str  # e.g. "blocking.catalog.block.countries: CN"


def _matches(selector: CatalogSelector, service: Service, path: str) -> str | None:
    """The first selector entry that picks ``service``, as "key path: value"."""
    if selector.all:
        return f"{path}.all"
    for wanted in selector.services:
        if wanted.lower() in (service.id, service.name.lower()):
            return f"{path}.services: {wanted}"
    for wanted in selector.vendors:
        if any(wanted.lower() in vendor.lower() for vendor in service.vendors):
            return f"{path}.vendors: {wanted}"
    for wanted in selector.categories:
        if wanted in service.categories:
            return f"{path}.categories: {wanted}"
    for wanted in selector.countries:
        if wanted.upper() in service.countries:
            return f"{path}.countries: {wanted}"
    for wanted in selector.data_locations:
        if wanted.upper() == service.data_location.country.upper():
            return f"{path}.data_locations: {wanted}"
    return None


def _check_every_value_matches(selector: CatalogSelector, catalog: Catalog, path: str) -> None:
    for key in ("services", "vendors", "categories", "countries", "data_locations"):
        for index, wanted in enumerate(getattr(selector, key)):
            fields: dict[str, Any] = {key: (wanted,)}
            single = CatalogSelector(**fields)
            if not any(_matches(single, service, path) for service in catalog.services):
                raise SelectorError(
                    f"{path}.{key}[{index}]: {wanted!r} matches no service in the catalog"
                )


def _in_force(selector: CatalogSelector, now: float) -> CatalogSelector:
    """The selector, or an empty one once its ``until`` date has passed."""
    expires = selector.expires_at
    return CatalogSelector() if expires is not None and now >= expires else selector


def expiries(policies: Sequence[CatalogPolicy], now: float) -> list[float]:
    """Every moment after ``now`` at which a temporary rule of these policies stops
    applying, in order: the policy changes at each of them."""
    moments = {
        at
        for policy in policies
        for selector in (policy.block, policy.allow, policy.report)
        if (at := selector.expires_at) is not None and at > now
    }
    return sorted(moments)


def select_services(
    policy: CatalogPolicy,
    catalog: Catalog,
    path: str = "blocking.catalog",
    now: float | None = None,
) -> list[ServiceVerdict]:
    """Every catalog service the policy names: excepted (allow), report-only, or blocked,
    in that order of precedence. Rules past their ``until`` date no longer apply."""
    when = time.time() if now is None else now
    block = _in_force(policy.block, when)
    allow = _in_force(policy.allow, when)
    report = _in_force(policy.report, when)
    for selector, key in (
        (policy.block, "block"),
        (policy.allow, "allow"),
        (policy.report, "report"),
    ):
        _check_every_value_matches(selector, catalog, f"{path}.{key}")
    verdicts: list[ServiceVerdict] = []
    for service in catalog.services:
        exception = _matches(allow, service, f"{path}.allow")
        # Excepting a vendor's AI ("vendors: Google") must not reopen its public
        # DNS-over-HTTPS resolver: bypass services are excepted only by name.
        by_name = (f"{path}.allow.services", f"{path}.allow.categories: bypass")
        if exception and "bypass" in service.categories and not exception.startswith(by_name):
            exception = None
        if exception is not None:
            verdicts.append(ServiceVerdict(service, "allow", exception))
            continue
        reported = _matches(report, service, f"{path}.report")
        if reported is not None:
            verdicts.append(ServiceVerdict(service, "report", reported))
            continue
        reason = _matches(block, service, f"{path}.block")
        if reason is not None:
            verdicts.append(ServiceVerdict(service, "block", reason))
    return verdicts
