"""The config's sections other than blocking, and the whole ``Config``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from resolver.config.blocking import BlockingConfig, GroupConfig, RemoteListConfig
from resolver.config.feed import CatalogConfig
from resolver.config.rpz import RpzZoneConfig, check_rpz
from resolver.config.system import available_cpus
from resolver.config.tls import DohEndpoint, DotEndpoint, TlsConfig, check_tls
from resolver.config.values import (
    ClientNetwork,
    ConfigError,
    DnsEndpoint,
    HttpEndpoint,
    UpstreamServer,
    check_ca_file,
    check_conninfo,
    check_range,
    check_token,
    read_key_file,
    read_secret_file,
)
from resolver.dns.names import normalise_name

# Loopback only until told otherwise: an unconfigured server serves nobody else.
_LOCAL_DNS = (DnsEndpoint("127.0.0.1", 5353),)
_LOCAL_HTTP = HttpEndpoint("127.0.0.1", 9153)
_SYSTEM = (UpstreamServer(None),)


@dataclass(frozen=True)
class ListenConfig:
    dns: tuple[DnsEndpoint, ...] = _LOCAL_DNS
    http: HttpEndpoint | None = _LOCAL_HTTP  # None (or ""): off
    tcp_idle_timeout: float = 10.0  # RFC 7766 6.2.3: on the order of seconds
    tcp_max_connections: int = 512
    # DNS over TLS (RFC 7858) and over HTTPS (RFC 8484) for managed devices; they need
    # the tls section. Limits of those connections (resolver.serve.tls):
    dot: tuple[DotEndpoint, ...] = ()
    doh: tuple[DohEndpoint, ...] = ()
    doh_path: str = "/dns-query"
    tls_handshake_timeout: float = 5.0
    tls_idle_timeout: float = 30.0
    tls_max_connections: int = 1024
    tls_max_connections_per_client: int = 32
    http_max_header_bytes: int = 8192

    def validate(self, path: str) -> None:
        if not self.dns:
            raise ConfigError(f"{path}.dns: expected at least one address")
        check_range(f"{path}.tcp_idle_timeout", self.tcp_idle_timeout, 0.1, 3600)
        check_range(f"{path}.tcp_max_connections", self.tcp_max_connections, 1, 100_000)
        path_ok = self.doh_path.startswith("/") and not set("?#{} ") & set(self.doh_path)
        if not path_ok:
            raise ConfigError(f"{path}.doh_path: expected a path like /dns-query")
        check_range(f"{path}.tls_handshake_timeout", self.tls_handshake_timeout, 0.1, 60)
        check_range(f"{path}.tls_idle_timeout", self.tls_idle_timeout, 0.1, 3600)
        check_range(f"{path}.tls_max_connections", self.tls_max_connections, 1, 100_000)
        per_client = self.tls_max_connections_per_client
        check_range(f"{path}.tls_max_connections_per_client", per_client, 1, 100_000)
        check_range(f"{path}.http_max_header_bytes", self.http_max_header_bytes, 1024, 65536)
        _check_tcp_clashes(path, self._tcp_listeners())

    def _tcp_listeners(self) -> list[tuple[str, DnsEndpoint | HttpEndpoint]]:
        """Every address served over TCP, with its key: a DNS address takes TCP too."""
        listeners: list[tuple[str, DnsEndpoint | HttpEndpoint]] = []
        for key, endpoints in (("dns", self.dns), ("dot", self.dot), ("doh", self.doh)):
            listeners += [(f"{key}[{index}]", each) for index, each in enumerate(endpoints)]
        if self.http is not None:
            listeners.append(("http", self.http))
        return listeners


def _check_tcp_clashes(path: str, listeners: list[tuple[str, DnsEndpoint | HttpEndpoint]]) -> None:
    """Two listeners on one TCP port of one address would both bind (SO_REUSEADDR) and
    the second would fail at ``listen`` in every worker: refused here, naming both. A
    wildcard address covers its family's addresses ([::] is bound IPv6-only); port 0
    (any free port) clashes with nothing."""
    for later, (key, endpoint) in enumerate(listeners):
        for first_key, first in listeners[:later]:
            same_port = endpoint.port == first.port != 0
            overlap = endpoint.host == first.host or (
                endpoint.family == first.family and (endpoint.wildcard or first.wildcard)
            )
            if same_port and overlap:
                raise ConfigError(
                    f"{path}.{key}: expected an address and port of its own, got {endpoint} "
                    f"(TCP), which {path}.{first_key} ({first}) already takes"
                )


@dataclass(frozen=True)
class UpstreamConfig:
    # "system" reads the nameservers of /etc/resolv.conf.
    servers: tuple[UpstreamServer, ...] = _SYSTEM
    conditional: dict[str, tuple[UpstreamServer, ...]] = field(default_factory=dict)
    timeout: float = 2.0  # per server attempt, before failing over to the next
    # PEM CA bundle trusted for tls:// and https:// upstreams instead of the system's
    # store ("" = the system's); relative: from the config file's folder.
    ca_file: str = ""

    def validate(self, path: str) -> None:
        if not self.servers:
            raise ConfigError(f"{path}.servers: expected at least one server or 'system'")
        for domain, servers in self.conditional.items():
            if normalise_name(domain) is None:
                raise ConfigError(
                    f"{path}.conditional: expected domain names as keys, got {domain!r}"
                )
            if not servers:
                raise ConfigError(f"{path}.conditional.{domain}: expected at least one server")
        check_range(f"{path}.timeout", self.timeout, 0.05, 30)

    def ca_path(self, base_dir: Path) -> Path | None:
        """The CA bundle for encrypted upstreams (None: the system's store), checked."""
        if not self.ca_file:
            return None
        path = base_dir / self.ca_file
        check_ca_file("upstream.ca_file", path)
        return path


@dataclass(frozen=True)
class CacheConfig:
    # Bytes of cached answers in all (split between the workers, which each cache their
    # own share of the names); least recently used go first; 0 turns the cache off.
    # 64 MiB fits the shipped container and pod limits with room to spare.
    max_bytes: int = 64 * 1024 * 1024
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
        check_range(f"{path}.max_bytes", self.max_bytes, 0, 64 * 1024 * 1024 * 1024)
        check_range(f"{path}.min_ttl", self.min_ttl, 0, 86_400)
        check_range(f"{path}.max_ttl", self.max_ttl, 0, 604_800)
        check_range(f"{path}.max_negative_ttl", self.max_negative_ttl, 0, 86_400)
        check_range(f"{path}.stale_ttl", self.stale_ttl, 1, 86_400)
        check_range(f"{path}.max_stale", self.max_stale, 0, 604_800)
        check_range(f"{path}.stale_client_timeout", self.stale_client_timeout, 0, 30)
        if self.min_ttl > self.max_ttl:
            raise ConfigError(
                f"{path}.min_ttl: expected at most max_ttl ({self.max_ttl}), got {self.min_ttl}"
            )


# Loopback and the private ranges: an office network, never the open internet (BCP 140).
DEFAULT_CLIENT_NETWORKS = tuple(
    ClientNetwork.parse(text)
    for text in (
        "127.0.0.0/8",
        "::1/128",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "fc00::/7",
        "fe80::/10",
    )
)


@dataclass(frozen=True)
class AccessConfig:
    allow: tuple[ClientNetwork, ...] = DEFAULT_CLIENT_NETWORKS

    def validate(self, path: str) -> None:
        """The networks were checked as they were read."""


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
        check_range(f"{path}.rate", self.rate, 0, 10_000_000)
        check_range(f"{path}.burst", self.burst, 1, 10_000_000)
        check_range(f"{path}.slip", self.slip, 0, 100)
        check_range(f"{path}.ipv4_prefix", self.ipv4_prefix, 8, 32)
        check_range(f"{path}.ipv6_prefix", self.ipv6_prefix, 16, 128)
        check_range(f"{path}.max_prefixes", self.max_prefixes, 1, 10_000_000)


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
            check_token(f"{path}.token", self.token)
        check_range(f"{path}.max_pause_minutes", self.max_pause_minutes, 0, 24 * 60)


@dataclass(frozen=True)
class LoggingConfig:
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"

    def validate(self, path: str) -> None:
        """Literal types already bound every value here."""


@dataclass(frozen=True)
class StateConfig:
    # Last good copies of lists, the audit database and the pseudonym key live here;
    # relative to the config file's folder.
    directory: str = "state"

    def validate(self, path: str) -> None:
        if not self.directory:
            raise ConfigError(f"{path}.directory: expected a folder path")


@dataclass(frozen=True)
class AuditConfig:
    """The trail of blocked and report-only attempts (never of allowed queries)."""

    enabled: bool = True
    sqlite: str = "audit.db"  # in state.directory; what `aiwall report` reads; "" = off
    jsonl: str = ""  # JSON lines for a SIEM: a file path, or "-" for standard output
    retention_days: float = 90.0
    max_rows: int = 5_000_000
    flush_interval: float = 1.0  # seconds between batched writes
    # One trail for every replica: a PostgreSQL connection string ("" = off); the
    # password from postgres_password_file (relative: from the config file's folder)
    # or libpq's own PGPASSWORD / PGPASSFILE, so it can come from a Kubernetes Secret.
    postgres: str = ""
    postgres_password_file: str = ""
    # Rows kept in the writer while PostgreSQL is unreachable; beyond, dropped, counted.
    postgres_queue: int = 100_000
    replica: str = ""  # who wrote each row; "" = the host name (the pod's name)

    def validate(self, path: str) -> None:
        check_range(f"{path}.retention_days", self.retention_days, 0.01, 3650)
        check_range(f"{path}.max_rows", self.max_rows, 1, 1_000_000_000)
        check_range(f"{path}.flush_interval", self.flush_interval, 0.05, 60)
        check_range(f"{path}.postgres_queue", self.postgres_queue, 1, 10_000_000)
        if len(self.replica) > 253:
            raise ConfigError(f"{path}.replica: at most 253 characters")
        if self.postgres:
            check_conninfo(f"{path}.postgres", self.postgres)
        elif self.postgres_password_file:
            raise ConfigError(f"{path}.postgres_password_file: set without {path}.postgres")

    def postgres_password(self, base_dir: Path) -> str | None:
        """The PostgreSQL password from its file, read at every connection so that a
        rotated Secret is taken up (None: libpq's PGPASSWORD, PGPASSFILE or ~/.pgpass)."""
        if not self.postgres_password_file:
            return None
        path = base_dir / self.postgres_password_file
        return read_secret_file("audit.postgres_password_file", path)


@dataclass(frozen=True)
class PrivacyConfig:
    # Replace client addresses in the audit trail by a keyed HMAC: reports still count
    # distinct clients, but the log names nobody.
    pseudonymize: bool = False
    # The HMAC key (relative paths: from the config file's folder); it must exist. By
    # default audit.key in state.directory, made once and then never replaced.
    key_file: str = ""

    def validate(self, path: str) -> None:
        """The key file is checked by Config.validate, which knows the config's folder."""


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
    # Signed catalog bundles that replace the shipped catalog between releases.
    catalog: CatalogConfig = field(default_factory=CatalogConfig)
    # Processes answering on the same ports as one server; 0 = one per usable CPU. One
    # by default: see the README's "Scaling out" for what a second costs and buys.
    workers: int = 1
    # Response Policy Zones served to other resolvers by zone transfer (resolver.config.rpz).
    rpz: tuple[RpzZoneConfig, ...] = ()
    # The certificate of listen.dot / listen.doh (resolver.config.tls).
    tls: TlsConfig = field(default_factory=TlsConfig)
    # Relative list paths are resolved against the config file's folder.
    base_dir: Path = field(default=Path("."), metadata={"internal": True})

    def validate(self) -> None:
        for section in dataclasses.fields(self):
            value = getattr(self, section.name)
            if hasattr(value, "validate"):
                value.validate(section.name)
        check_range("workers", self.workers, 0, 256)
        names = {"default"}
        for index, group in enumerate(self.groups):
            group.validate(f"groups[{index}]")
            if group.name in names:
                raise ConfigError(
                    f"groups[{index}].name: {group.name!r} is taken (default is reserved)"
                )
            names.add(group.name)
        for index, zone in enumerate(self.rpz):
            zone.validate(f"rpz[{index}]")
        check_rpz(self.rpz, names, self.base_dir)
        check_tls(self.tls, self.listen.dot, self.listen.doh, self.base_dir)
        if self.api.token_file:
            # Read now, so a missing or bad token file stops the start (or the reload).
            self.api_token()
        if self.privacy.pseudonymize and self.privacy.key_file:
            read_key_file(self.base_dir / self.privacy.key_file)
        if self.audit.postgres_password_file:
            self.audit.postgres_password(self.base_dir)
        self.upstream.ca_path(self.base_dir)

    def api_token(self) -> str:
        """The API bearer token ("" when the API is disabled)."""
        if not self.api.token_file:
            return self.api.token
        path = self.base_dir / self.api.token_file
        token = read_secret_file("api.token_file", path)
        check_token(f"api.token_file ({path})", token)
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
