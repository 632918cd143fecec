"""The blocking sections: which services and lists are banned, for whom."""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass, field
from typing import Literal

from resolver.config.values import (
    CATEGORIES,
    ClientNetwork,
    ConfigError,
    Until,
    check_names,
    check_range,
)

ResponseMode = Literal["nxdomain", "sinkhole", "nodata", "refused"]
# How a list file is written (resolver.policy.listformats says what each form means):
# "auto" reads every form on any line, telling the ones that differ (``*.name``,
# ``.name``) from the file; a named format reads only its own lines.
ListFormat = Literal[
    "auto", "plain", "wildcard", "hosts", "adblock", "dnsmasq", "unbound", "rpz", "surge"
]


@dataclass(frozen=True)
class CatalogSelector:
    """Catalog services picked by any of these (a union); matching ignores case.

    ``services`` takes service ids or display names; ``vendors`` matches a part of the
    vendor's (or its owner's) name ("ByteDance" picks every ByteDance company);
    ``countries`` is the vendor's or its owner's country, ``data_locations`` where the
    vendor says it keeps user data.
    """

    all: bool = False
    services: tuple[str, ...] = ()
    vendors: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    countries: tuple[str, ...] = ()
    data_locations: tuple[str, ...] = ()
    # A temporary rule (an audited exception, say), without a restart.
    until: Until | None = None

    @property
    def expires_at(self) -> float | None:
        return self.until.at if self.until is not None else None

    def validate(self, path: str) -> None:
        for index, category in enumerate(self.categories):
            if category not in CATEGORIES:
                raise ConfigError(
                    f"{path}.categories[{index}]: expected one of "
                    f"{', '.join(sorted(CATEGORIES))}, got {category!r}"
                )
        for key in ("countries", "data_locations"):
            for index, code in enumerate(getattr(self, key)):
                if not (code.isalpha() and len(code) in (2, 3)) and code.lower() != "unknown":
                    raise ConfigError(
                        f"{path}.{key}[{index}]: expected a country code like CN "
                        f"(or EU, unknown), got {code!r}"
                    )

    @property
    def empty(self) -> bool:
        return not (
            self.all
            or self.services
            or self.vendors
            or self.categories
            or self.countries
            or self.data_locations
        )


@dataclass(frozen=True)
class CatalogPolicy:
    """Which catalog services are banned: ``block`` minus the exceptions in ``allow``;
    services under ``report`` are answered normally but counted and logged as if
    blocked, to measure a ban before enforcing it."""

    block: CatalogSelector = field(default_factory=lambda: CatalogSelector(all=True))
    allow: CatalogSelector = field(default_factory=CatalogSelector)
    report: CatalogSelector = field(default_factory=CatalogSelector)

    @classmethod
    def from_scalar(cls, value: object, path: str) -> CatalogPolicy:
        # "all" and "none" stay valid shorthands for the two simplest policies.
        if value == "all":
            return cls()
        if value == "none":
            return cls(block=CatalogSelector())
        raise ConfigError(
            f"{path}: expected 'all', 'none' or a mapping with block/allow, got {value!r}"
        )

    def validate(self, path: str) -> None:
        self.block.validate(f"{path}.block")
        self.allow.validate(f"{path}.allow")
        self.report.validate(f"{path}.report")


@dataclass(frozen=True)
class LocalListConfig:
    """A list file on this machine. A reload that would lose more than ``max_shrink`` of
    its entries, or whose lines are mostly unreadable (more than ``max_invalid`` of
    them), is rejected and the last good copy stays in force, as for remote lists: a
    file cut short by a full disk or overwritten with junk must not unblock names."""

    path: str = ""
    max_shrink: float = 0.5  # 1 turns the shrink guard off
    max_invalid: float = 0.5  # 1 accepts a file however much of it is unreadable
    format: ListFormat = "auto"

    @classmethod
    def from_scalar(cls, value: object, path: str) -> LocalListConfig:
        if isinstance(value, str):
            return cls(path=value)
        raise ConfigError(f"{path}: expected a file path or a mapping with path, got {value!r}")

    def validate(self, path: str) -> None:
        if not self.path:
            raise ConfigError(f"{path}.path: expected a file path")
        check_range(f"{path}.max_shrink", self.max_shrink, 0, 1)
        check_range(f"{path}.max_invalid", self.max_invalid, 0, 1)


@dataclass(frozen=True)
class RemoteListConfig:
    """A list fetched over HTTP(S) and refreshed; its last good copy is kept on disk."""

    url: str = ""
    name: str = ""  # label in metrics and logs; derived from the URL when empty
    refresh: float = 3600.0  # seconds between conditional GETs
    # A refresh that loses more than this fraction of the entries is rejected: a list
    # that suddenly shrinks is far more often a broken download than a real change.
    max_shrink: float = 0.5
    max_invalid: float = 0.5  # a download whose lines are mostly unreadable is rejected
    # Bounds the whole download (connection, headers and body), not each read: a server
    # that drips one byte a second must not hold a start or a refresh for ever.
    timeout: float = 30.0
    max_bytes: int = 64 * 1024 * 1024
    # With no copy yet, start no DNS listener until one has been fetched (else: serve
    # without it, /readyz answering 503 until it arrives).
    required: bool = False
    # A copy shipped beside the config, used until the first download succeeds.
    seed: str = ""
    format: ListFormat = "auto"

    def validate(self, path: str) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"{path}.url: expected an http:// or https:// URL, got {self.url!r}")
        check_range(f"{path}.refresh", self.refresh, 1, 7 * 86400)
        check_range(f"{path}.max_shrink", self.max_shrink, 0, 1)
        check_range(f"{path}.max_invalid", self.max_invalid, 0, 1)
        check_range(f"{path}.timeout", self.timeout, 0.1, 600)
        check_range(f"{path}.max_bytes", self.max_bytes, 1024, 1024 * 1024 * 1024)

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        without_scheme = self.url.split("://", 1)[1]
        return without_scheme.split("?", 1)[0].rstrip("/")[:80]


@dataclass(frozen=True)
class BlockingConfig:
    response: ResponseMode = "nxdomain"
    # Which services of the shipped catalog are banned; "all" (the default) or "none" too.
    catalog: CatalogPolicy = field(default_factory=CatalogPolicy)
    lists: tuple[LocalListConfig, ...] = ()
    remote_lists: tuple[RemoteListConfig, ...] = ()
    allow: tuple[str, ...] = ()
    ttl: int = 300  # how long clients may cache a block answer
    sinkhole_ipv4: str = "0.0.0.0"
    sinkhole_ipv6: str = "::"
    # Names that must get NXDOMAIN whatever the mode: a browser only turns its own
    # DNS-over-HTTPS off when its canary does not exist (a sinkhole address is not enough).
    canaries: tuple[str, ...] = ("use-application-dns.net", "mask.icloud.com", "mask-h2.icloud.com")
    cname_inspection: bool = True
    # "report": nothing is blocked, everything that would be is counted and logged.
    mode: Literal["enforce", "report"] = "enforce"

    def validate(self, path: str) -> None:
        self.catalog.validate(f"{path}.catalog")
        for index, local in enumerate(self.lists):
            local.validate(f"{path}.lists[{index}]")
        labels: set[str] = set()
        for index, remote in enumerate(self.remote_lists):
            remote.validate(f"{path}.remote_lists[{index}]")
            if remote.label in labels:
                raise ConfigError(
                    f"{path}.remote_lists[{index}].name: {remote.label!r} is used twice"
                )
            labels.add(remote.label)
        check_names(f"{path}.allow", self.allow)
        check_names(f"{path}.canaries", self.canaries)
        check_range(f"{path}.ttl", self.ttl, 0, 604800)
        for key, kind in (
            ("sinkhole_ipv4", ipaddress.IPv4Address),
            ("sinkhole_ipv6", ipaddress.IPv6Address),
        ):
            value = getattr(self, key)
            try:
                kind(value)
            except ValueError:
                raise ConfigError(
                    f"{path}.{key}: expected an {kind.__name__[:4]} address, got {value!r}"
                ) from None


@dataclass(frozen=True)
class GroupConfig:
    """Clients (by network) with a policy of their own; what is not set here is taken
    from ``blocking``. The most specific network decides a client's group."""

    name: str = ""
    clients: tuple[ClientNetwork, ...] = ()
    catalog: CatalogPolicy | None = None
    allow: tuple[str, ...] | None = None
    response: ResponseMode | None = None
    mode: Literal["enforce", "report"] | None = None

    def validate(self, path: str) -> None:
        if not self.name or not self.name.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"{path}.name: expected a name of letters, digits, - and _")
        if not self.clients:
            raise ConfigError(f"{path}.clients: expected at least one network")
        if self.catalog is not None:
            self.catalog.validate(f"{path}.catalog")
        if self.allow is not None:
            check_names(f"{path}.allow", self.allow)

    def applied_to(self, blocking: BlockingConfig) -> BlockingConfig:
        """The group's own blocking settings, the default ones where it sets none."""
        return dataclasses.replace(
            blocking,
            catalog=self.catalog if self.catalog is not None else blocking.catalog,
            allow=self.allow if self.allow is not None else blocking.allow,
            response=self.response or blocking.response,
            mode=self.mode or blocking.mode,
        )
