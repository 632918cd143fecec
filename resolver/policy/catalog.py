"""The curated catalog of generative-AI services (and DNS-bypass endpoints) aiwall blocks.

One YAML file per service in ``blocklists/catalog/``; the format is described in
``blocklists/README.md``. Loading is strict on purpose: the catalog is a policy, and a
typo that silently drops a key or widens a name must stop the load, not be guessed at.
Every error names the file and the key path so the fix is obvious from the message.

This module holds the catalog's types, its vocabulary and where it lives;
``catalog_files`` reads it, ``catalog_lint`` checks the rules that span services.
"""

from __future__ import annotations

import datetime
import os
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from resolver.config import CATEGORIES as CATEGORIES
from resolver.dns.names import normalise_name

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

ID = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
URL = re.compile(r"^https?://[^\s/]+\.[^\s]+$")


# A review date a day ahead is a timezone, more than that is a typo.
REVIEW_SLACK = datetime.timedelta(days=1)


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
class Origin:
    """A signed bundle a catalog was made from (``catalog.sources``)."""

    source: str  # the source's label
    serial: int  # 0: no bundle yet, the shipped catalog stands in for this source
    created: float  # when the bundle was signed (Unix time; 0 with serial 0)


@dataclass(frozen=True, slots=True)
class Catalog:
    services: tuple[Service, ...]
    # Empty for the shipped catalog (or a folder); else one per configured source.
    origins: tuple[Origin, ...] = ()


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


def normalise_hostname(text: str) -> str | None:
    """Lowercase ASCII form of a hostname with at least two labels, or None."""
    name = normalise_name(text)
    return name if name is not None and is_valid_hostname(name) else None


def is_valid_hostname(name: str) -> bool:
    if len(name) > 253:
        return False
    labels = name.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        return False
    # No top-level domain is numeric: this keeps address literals such as 1.1.1.1 out.
    return not labels[-1].isdigit()


def parents(name: str) -> Iterator[str]:
    """Every proper parent of a name, nearest first (a.b.c -> b.c, c)."""
    labels = name.split(".")
    for start in range(1, len(labels)):
        yield ".".join(labels[start:])


def is_country(code: str) -> bool:
    return code in _ISO_COUNTRIES


def is_data_location(code: str) -> bool:
    return code == UNKNOWN or code in _ISO_COUNTRIES or code in _DATA_REGIONS
