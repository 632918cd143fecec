"""The configuration: typed sections loaded strictly from one YAML file.

Every section is a frozen dataclass with working defaults and its own ``validate``.
Unknown keys, wrong types and bad values are errors that name the key path
(``blocking.response``) and what was expected; a server never starts on a config it
only half understood.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import os
import string
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

import yaml

from resolver import yamltext
from resolver.policy.catalog import CATEGORIES
from resolver.policy.listfile import normalise_name


class ConfigError(ValueError):
    """A config value is wrong; the message starts with its key path."""


def parse_host_port(text: str, default_port: int) -> tuple[str, int]:
    """``1.2.3.4``, ``1.2.3.4:53``, ``[::1]:53`` or ``::1`` to (host, port)."""
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError("expected [IPv6]:port")
        port_text = rest[1:] if rest else str(default_port)
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host, port_text = text, str(default_port)
    ipaddress.ip_address(host)
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"port {port_text!r} is not a number from 0 to 65535")
    return host, int(port_text)


def _check_address(path: str, value: str, default_port: int) -> None:
    try:
        parse_host_port(value, default_port)
    except ValueError as error:
        raise ConfigError(
            f"{path}: expected an IP address with optional port, "
            f"like 127.0.0.1:53 or [::1]:53, got {value!r} ({error})"
        ) from None


def _check_addresses(path: str, values: tuple[str, ...], default_port: int) -> None:
    for index, value in enumerate(values):
        _check_address(f"{path}[{index}]", value, default_port)


def _check_names(path: str, names: tuple[str, ...]) -> None:
    for index, name in enumerate(names):
        if normalise_name(name) is None:
            raise ConfigError(f"{path}[{index}]: expected a domain name, got {name!r}")


def _check_range(path: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{path}: expected a value from {low} to {high}, got {value}")


@dataclass(frozen=True)
class ListenConfig:
    dns: tuple[str, ...] = ("127.0.0.1:5353",)
    http: str = "127.0.0.1:9153"
    tcp_idle_timeout: float = 10.0  # RFC 7766 6.2.3: on the order of seconds
    tcp_max_connections: int = 512

    def validate(self, path: str) -> None:
        if not self.dns:
            raise ConfigError(f"{path}.dns: expected at least one address")
        _check_addresses(f"{path}.dns", self.dns, 53)
        if self.http:
            _check_address(f"{path}.http", self.http, 9153)
        _check_range(f"{path}.tcp_idle_timeout", self.tcp_idle_timeout, 0.1, 3600)
        _check_range(f"{path}.tcp_max_connections", self.tcp_max_connections, 1, 100_000)


@dataclass(frozen=True)
class UpstreamConfig:
    # "system" reads the nameservers of /etc/resolv.conf.
    servers: tuple[str, ...] = ("system",)
    conditional: dict[str, tuple[str, ...]] = field(default_factory=dict)
    timeout: float = 2.0  # per server attempt, before failing over to the next

    def validate(self, path: str) -> None:
        if not self.servers:
            raise ConfigError(f"{path}.servers: expected at least one server or 'system'")
        # Indexes count "system" too, so the message points at the entry the user wrote.
        for index, server in enumerate(self.servers):
            if server != "system":
                _check_address(f"{path}.servers[{index}]", server, 53)
        for domain, servers in self.conditional.items():
            if normalise_name(domain) is None:
                raise ConfigError(
                    f"{path}.conditional: expected domain names as keys, got {domain!r}"
                )
            if not servers:
                raise ConfigError(f"{path}.conditional.{domain}: expected at least one server")
            _check_addresses(f"{path}.conditional.{domain}", servers, 53)
        _check_range(f"{path}.timeout", self.timeout, 0.05, 30)


ResponseMode = Literal["nxdomain", "sinkhole", "nodata", "refused"]


@dataclass(frozen=True)
class CatalogSelector:
    """Catalog services picked by any of these (a union); matching ignores case.

    ``services`` takes service ids or display names; ``vendors`` matches a part of the
    vendor's name ("ByteDance" picks every ByteDance company); ``countries`` is the
    vendor's country, ``data_locations`` where the vendor says it keeps user data.
    """

    all: bool = False
    services: tuple[str, ...] = ()
    vendors: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    countries: tuple[str, ...] = ()
    data_locations: tuple[str, ...] = ()
    # A temporary rule (an audited exception, say): a date applies through that day (UTC)
    # and stops at the next midnight; a date and time (2026-12-31T18:00:00Z) stops then.
    # Either way without a restart.
    until: str = ""

    @property
    def expires_at(self) -> float | None:
        if not self.until:
            return None
        if "T" not in self.until:
            day = datetime.date.fromisoformat(self.until)
            midnight = datetime.datetime.combine(day, datetime.time(), datetime.UTC)
            return (midnight + datetime.timedelta(days=1)).timestamp()
        moment = datetime.datetime.fromisoformat(self.until)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.UTC)
        return moment.timestamp()

    def validate(self, path: str) -> None:
        if self.until:
            try:
                self.expires_at  # noqa: B018 - parsing is the check
            except ValueError:
                raise ConfigError(
                    f"{path}.until: expected a date like 2026-12-31 or a time like "
                    f"2026-12-31T18:00:00Z, got {self.until!r}"
                ) from None
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

    @classmethod
    def from_scalar(cls, value: object, path: str) -> LocalListConfig:
        if isinstance(value, str):
            return cls(path=value)
        raise ConfigError(f"{path}: expected a file path or a mapping with path, got {value!r}")

    def validate(self, path: str) -> None:
        if not self.path:
            raise ConfigError(f"{path}.path: expected a file path")
        _check_range(f"{path}.max_shrink", self.max_shrink, 0, 1)
        _check_range(f"{path}.max_invalid", self.max_invalid, 0, 1)


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

    def validate(self, path: str) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"{path}.url: expected an http:// or https:// URL, got {self.url!r}")
        _check_range(f"{path}.refresh", self.refresh, 1, 7 * 86400)
        _check_range(f"{path}.max_shrink", self.max_shrink, 0, 1)
        _check_range(f"{path}.max_invalid", self.max_invalid, 0, 1)
        _check_range(f"{path}.timeout", self.timeout, 0.1, 600)
        _check_range(f"{path}.max_bytes", self.max_bytes, 1024, 1024 * 1024 * 1024)

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
        _check_names(f"{path}.allow", self.allow)
        _check_names(f"{path}.canaries", self.canaries)
        _check_range(f"{path}.ttl", self.ttl, 0, 604800)
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
class CacheConfig:
    size: int = 20_000  # entries; least recently used go first
    min_ttl: int = 0
    max_ttl: int = 86_400
    max_negative_ttl: int = 3_600  # RFC 2308 8: negative answers are kept at most this long
    # RFC 8767 serve-stale: an expired answer is kept up to max_stale seconds (0: off) and
    # served, with TTL stale_ttl, when every upstream fails or none has answered within
    # stale_client_timeout. The numbers are RFC 8767's and Unbound's defaults.
    stale_ttl: int = 30
    max_stale: int = 86_400
    stale_client_timeout: float = 1.8

    def validate(self, path: str) -> None:
        _check_range(f"{path}.size", self.size, 0, 10_000_000)
        _check_range(f"{path}.min_ttl", self.min_ttl, 0, 86_400)
        _check_range(f"{path}.max_ttl", self.max_ttl, 0, 604_800)
        _check_range(f"{path}.max_negative_ttl", self.max_negative_ttl, 0, 86_400)
        _check_range(f"{path}.stale_ttl", self.stale_ttl, 1, 86_400)
        _check_range(f"{path}.max_stale", self.max_stale, 0, 604_800)
        _check_range(f"{path}.stale_client_timeout", self.stale_client_timeout, 0, 30)
        if self.min_ttl > self.max_ttl:
            raise ConfigError(
                f"{path}.min_ttl: expected at most max_ttl ({self.max_ttl}), got {self.min_ttl}"
            )


# Loopback and the private ranges: an office network, never the open internet (BCP 140).
DEFAULT_CLIENT_NETWORKS = (
    "127.0.0.0/8",
    "::1/128",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "fc00::/7",
    "fe80::/10",
)


@dataclass(frozen=True)
class AccessConfig:
    allow: tuple[str, ...] = DEFAULT_CLIENT_NETWORKS

    def validate(self, path: str) -> None:
        for index, network in enumerate(self.allow):
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ConfigError(
                    f"{path}.allow[{index}]: expected a network like 10.0.0.0/8, got {network!r}"
                ) from None


@dataclass(frozen=True)
class RateLimitConfig:
    """A token bucket per client prefix on UDP answers, as BIND's and NSD's RRL: a flood
    from one network (or spoofed in its name) cannot take the server or a victim down.

    TCP is not limited here: its source address is proven by the handshake, so it cannot
    be used for reflection, and the connection cap bounds it.
    """

    rate: float = 0.0  # answers per second per prefix; 0 turns the limiter off
    burst: int = 200  # answers a prefix that was quiet may get at once
    # Every slip-th limited answer is sent truncated (TC=1), so a real client behind the
    # prefix retries over TCP and gets through; the others are dropped. 0 drops them all.
    slip: int = 2
    ipv4_prefix: int = 24
    ipv6_prefix: int = 56
    # Prefixes tracked at once; beyond this the oldest is forgotten, so a flood of spoofed
    # sources costs bounded memory (a forgotten prefix starts again with a full bucket).
    max_prefixes: int = 100_000

    def validate(self, path: str) -> None:
        _check_range(f"{path}.rate", self.rate, 0, 10_000_000)
        _check_range(f"{path}.burst", self.burst, 1, 10_000_000)
        _check_range(f"{path}.slip", self.slip, 0, 100)
        _check_range(f"{path}.ipv4_prefix", self.ipv4_prefix, 8, 32)
        _check_range(f"{path}.ipv6_prefix", self.ipv6_prefix, 16, 128)
        _check_range(f"{path}.max_prefixes", self.max_prefixes, 1, 10_000_000)


# RFC 6750 b64token characters: a token that fits an Authorization header as it is.
_TOKEN_CHARS = frozenset(string.ascii_letters + string.digits + "-._~+/=")
_TOKEN_MIN_LENGTH = 16


def _check_token(path: str, token: str) -> None:
    if len(token) < _TOKEN_MIN_LENGTH or not set(token) <= _TOKEN_CHARS:
        raise ConfigError(
            f"{path}: expected at least {_TOKEN_MIN_LENGTH} characters of letters, digits "
            "and -._~+/= (e.g. from `openssl rand -hex 32`)"
        )


@dataclass(frozen=True)
class ApiConfig:
    """State-changing HTTP endpoints (POST /api/reload) need this bearer token; with none
    set they are disabled. token_file keeps the secret out of the config file (relative
    paths are read from the config file's folder) and is read again on every reload."""

    token: str = field(default="", repr=False)
    token_file: str = ""
    # POST /api/pause can switch blocking off for at most this long: a forgotten pause
    # must not become a lifted ban.
    max_pause_minutes: float = 60.0

    def validate(self, path: str) -> None:
        if self.token and self.token_file:
            raise ConfigError(f"{path}: set token or token_file, not both")
        if self.token:
            _check_token(f"{path}.token", self.token)
        _check_range(f"{path}.max_pause_minutes", self.max_pause_minutes, 0, 24 * 60)


@dataclass(frozen=True)
class LoggingConfig:
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"

    def validate(self, path: str) -> None:
        """Literal types already bound every value here."""


@dataclass(frozen=True)
class StateConfig:
    # Last good copies of remote lists live here; relative to the config file's folder.
    directory: str = "state"

    def validate(self, path: str) -> None:
        if not self.directory:
            raise ConfigError(f"{path}.directory: expected a folder path")


@dataclass(frozen=True)
class GroupConfig:
    """Clients (by network) with a policy of their own; what is not set here is taken
    from ``blocking``. The most specific network decides a client's group."""

    name: str = ""
    clients: tuple[str, ...] = ()
    catalog: CatalogPolicy | None = None
    allow: tuple[str, ...] | None = None
    response: ResponseMode | None = None
    mode: Literal["enforce", "report"] | None = None

    def validate(self, path: str) -> None:
        if not self.name or not self.name.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"{path}.name: expected a name of letters, digits, - and _")
        if not self.clients:
            raise ConfigError(f"{path}.clients: expected at least one network")
        for index, network in enumerate(self.clients):
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ConfigError(
                    f"{path}.clients[{index}]: expected a network like 10.1.0.0/16, got {network!r}"
                ) from None
        if self.catalog is not None:
            self.catalog.validate(f"{path}.catalog")
        if self.allow is not None:
            _check_names(f"{path}.allow", self.allow)

    def applied_to(self, blocking: BlockingConfig) -> BlockingConfig:
        """The group's own blocking settings, the default ones where it sets none."""
        return dataclasses.replace(
            blocking,
            catalog=self.catalog if self.catalog is not None else blocking.catalog,
            allow=self.allow if self.allow is not None else blocking.allow,
            response=self.response or blocking.response,
            mode=self.mode or blocking.mode,
        )


@dataclass(frozen=True)
class AuditConfig:
    """The trail of blocked and report-only attempts (never of allowed queries)."""

    enabled: bool = True
    sqlite: str = "audit.db"  # in state.directory; what `aiwall report` reads; "" = off
    jsonl: str = ""  # JSON lines for a SIEM: a file path, or "-" for standard output
    retention_days: float = 90.0
    max_rows: int = 5_000_000
    flush_interval: float = 1.0  # seconds between batched writes

    def validate(self, path: str) -> None:
        _check_range(f"{path}.retention_days", self.retention_days, 0.01, 3650)
        _check_range(f"{path}.max_rows", self.max_rows, 1, 1_000_000_000)
        _check_range(f"{path}.flush_interval", self.flush_interval, 0.05, 60)


@dataclass(frozen=True)
class PrivacyConfig:
    # Replace client addresses in the audit trail by a keyed HMAC: reports still count
    # distinct clients, but the log names nobody.
    pseudonymize: bool = False
    # The HMAC key (relative paths: from the config file's folder); it must exist. By
    # default audit.key in state.directory, made once and then never replaced.
    key_file: str = ""

    def validate(self, path: str) -> None:
        """Any path will do; the key is created on first use."""


@dataclass(frozen=True)
class Config:
    listen: ListenConfig = field(default_factory=ListenConfig)
    upstream: UpstreamConfig = field(default_factory=UpstreamConfig)
    blocking: BlockingConfig = field(default_factory=BlockingConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    access: AccessConfig = field(default_factory=AccessConfig)
    ratelimit: RateLimitConfig = field(default_factory=RateLimitConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    state: StateConfig = field(default_factory=StateConfig)
    groups: tuple[GroupConfig, ...] = ()
    audit: AuditConfig = field(default_factory=AuditConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    # Processes answering on the same ports (SO_REUSEPORT); 0 = one per CPU.
    workers: int = 0
    # Relative list paths are resolved against the config file's folder.
    base_dir: Path = field(default=Path("."), metadata={"internal": True})

    def validate(self) -> None:
        for section in dataclasses.fields(self):
            value = getattr(self, section.name)
            if hasattr(value, "validate"):
                value.validate(section.name)
        _check_range("workers", self.workers, 0, 256)
        names = {"default"}
        for index, group in enumerate(self.groups):
            group.validate(f"groups[{index}]")
            if group.name in names:
                raise ConfigError(
                    f"groups[{index}].name: {group.name!r} is taken (default is reserved)"
                )
            names.add(group.name)
        if self.api.token_file:
            # Read now, so a missing or bad token file stops the start (or the reload).
            self.api_token()
        if self.privacy.pseudonymize and self.privacy.key_file:
            read_key_file(self.base_dir / self.privacy.key_file)

    def api_token(self) -> str:
        """The API bearer token ("" when the API is disabled)."""
        if not self.api.token_file:
            return self.api.token
        path = self.base_dir / self.api.token_file
        try:
            token = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
            raise ConfigError(f"api.token_file: cannot read {path}: {reason}") from None
        _check_token(f"api.token_file ({path})", token)
        return token

    @property
    def worker_count(self) -> int:
        return self.workers or available_cpus()

    def list_paths(self) -> tuple[Path, ...]:
        return tuple(self.base_dir / local.path for local in self.blocking.lists)

    def seed_path(self, remote: RemoteListConfig) -> Path | None:
        return self.base_dir / remote.seed if remote.seed else None

    @property
    def state_dir(self) -> Path:
        return self.base_dir / self.state.directory


# The pseudonym key: shorter is guessable, and a key is never replaced once made.
KEY_MIN_BYTES = 32


def read_key_file(path: Path) -> bytes:
    """A configured ``privacy.key_file``: it must exist and hold at least 32 bytes."""
    try:
        key = path.read_bytes().strip()
    except OSError as error:
        raise ConfigError(f"privacy.key_file: cannot read {path}: {error.strerror}") from None
    if len(key) < KEY_MIN_BYTES:
        raise ConfigError(
            f"privacy.key_file: {path} holds {len(key)} bytes; at least {KEY_MIN_BYTES} "
            "are needed (e.g. from `openssl rand -hex 32`)"
        )
    return key


Section = TypeVar("Section")


def _describe(kind: Any) -> str:
    origin = get_origin(kind)
    if origin is Literal:
        return "one of " + ", ".join(repr(v) for v in get_args(kind))
    if origin is tuple:
        return f"a list of {_describe(get_args(kind)[0])}"
    if origin is dict:
        return f"a mapping of {_describe(get_args(kind)[0])} to {_describe(get_args(kind)[1])}"
    names = {str: "a string", int: "a whole number", float: "a number", bool: "true or false"}
    return names.get(kind, getattr(kind, "__name__", str(kind)))


def _convert(kind: Any, value: Any, path: str) -> Any:
    origin = get_origin(kind)
    wrong = ConfigError(f"{path}: expected {_describe(kind)}, got {value!r}")
    if origin in (types.UnionType, typing.Union):
        # Only "X | None" is used: None (or the key left out) means "not set here".
        (inner,) = (arg for arg in get_args(kind) if arg is not type(None))
        return None if value is None else _convert(inner, value, path)
    if dataclasses.is_dataclass(kind) and isinstance(kind, type):
        if not isinstance(value, dict) and hasattr(kind, "from_scalar"):
            return kind.from_scalar(value, path)
        return _build(kind, value, path)
    if origin is Literal:
        if value not in get_args(kind):
            raise wrong
        return value
    if origin is tuple:
        if isinstance(value, str) or not isinstance(value, list):
            if isinstance(value, str):
                # A lone string where a list belongs is a common slip; accept it as one item.
                value = [value]
            else:
                raise wrong
        return tuple(
            _convert(get_args(kind)[0], item, f"{path}[{i}]") for i, item in enumerate(value)
        )
    if origin is dict:
        if not isinstance(value, dict):
            raise wrong
        key_kind, value_kind = get_args(kind)
        return {
            _convert(key_kind, key, f"{path}"): _convert(value_kind, item, f"{path}.{key}")
            for key, item in value.items()
        }
    if kind is bool:
        if not isinstance(value, bool):
            raise wrong
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise wrong
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise wrong
        return value
    raise TypeError(f"{path}: unsupported config type {kind}")  # a bug in this module


def _build(kind: type[Section], raw: Any, path: str) -> Section:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path or 'config'}: expected a mapping of keys, got {raw!r}")
    hints = get_type_hints(kind)
    fields = {f.name: f for f in dataclasses.fields(kind)}  # type: ignore[arg-type]
    known = [name for name, f in fields.items() if not f.metadata.get("internal")]
    values: dict[str, Any] = {}
    for key, value in raw.items():
        key_path = f"{path}.{key}" if path else str(key)
        if key not in known:
            raise ConfigError(f"{key_path}: unknown key (expected one of {', '.join(known)})")
        values[key] = _convert(hints[key], value, key_path)
    return kind(**values)


def config_from_mapping(raw: Any, base_dir: Path = Path(".")) -> Config:
    config = _build(Config, raw, "")
    config = dataclasses.replace(config, base_dir=base_dir)
    config.validate()
    return config


def load_config(path: Path | None) -> Config:
    """Load and validate a config file; None gives the defaults."""
    if path is None:
        return config_from_mapping({})
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the config file: {error.strerror}") from None
    try:
        raw = yamltext.load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    return config_from_mapping(raw, base_dir=path.resolve().parent)


def available_cpus(cgroup: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """CPUs this process may really use: its affinity, capped by a container's CPU quota
    (cgroup v2), which os.cpu_count() ignores."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    count = count or 1
    try:
        quota, period = cgroup.read_text(encoding="ascii").split()[:2]
    except (OSError, ValueError):
        return count
    if quota != "max" and int(period) > 0:
        count = min(count, max(1, -(-int(quota) // int(period))))
    return count


def system_nameservers(resolv_conf: Path = Path("/etc/resolv.conf")) -> tuple[str, ...]:
    """Nameservers of resolv.conf, in order (the 'system' upstream)."""
    servers: list[str] = []
    try:
        lines = resolv_conf.read_text(encoding="utf-8").splitlines()
    except OSError:
        return ()
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            address = parts[1].split("%", 1)[0]
            try:
                ip = ipaddress.ip_address(address)
            except ValueError:
                continue
            servers.append(f"[{ip}]:53" if ip.version == 6 else f"{ip}:53")
    return tuple(servers)
