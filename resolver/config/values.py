"""The typed values a config holds, each parsed once, where the config is read.

An address with its default port (``Endpoint``), a client network, a moment a temporary
rule ends (``Until``): the rest of the server receives these, never the text.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import string
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Self

from resolver.dns.names import normalise_name


class ConfigError(ValueError):
    """A config value is wrong; the message starts with its key path."""


# Keys that a reload cannot change: sockets and processes are set up once, at start.
RESTART_KEYS = ("listen", "workers")

# The catalog's categories: what `categories:` selectors may name.
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


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An IP address and port: ``1.2.3.4``, ``1.2.3.4:53``, ``[::1]:53`` or ``::1``."""

    host: str  # the canonical text form (as the kernel reports peers)
    port: int
    DEFAULT_PORT: ClassVar[int] = 53

    @classmethod
    def parse(cls, text: str) -> Self:
        text = text.strip()
        if text.startswith("["):
            host, sep, rest = text[1:].partition("]")
            if not sep or (rest and not rest.startswith(":")):
                raise ValueError("expected [IPv6]:port")
            port_text = rest[1:] if rest else str(cls.DEFAULT_PORT)
        elif text.count(":") == 1:
            host, port_text = text.split(":")
        else:
            host, port_text = text, str(cls.DEFAULT_PORT)
        address = ipaddress.ip_address(host)
        if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
            raise ValueError(f"port {port_text!r} is not a number from 0 to 65535")
        return cls(str(address), int(port_text))

    @classmethod
    def from_config(cls, value: object, path: str) -> Self:
        try:
            if not isinstance(value, str):
                raise ValueError("not text")
            return cls.parse(value)
        except ValueError as error:
            example = f"127.0.0.1:{cls.DEFAULT_PORT} or [::1]:{cls.DEFAULT_PORT}"
            raise ConfigError(
                f"{path}: expected an IP address with optional port, like {example}, "
                f"got {value!r} ({error})"
            ) from None

    @property
    def family(self) -> socket.AddressFamily:
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET

    @property
    def wildcard(self) -> bool:
        return self.host in ("0.0.0.0", "::")

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class DnsEndpoint(Endpoint):
    DEFAULT_PORT = 53


class HttpEndpoint(Endpoint):
    DEFAULT_PORT = 9153


@dataclass(frozen=True, slots=True)
class EncryptedEndpoint:
    """An upstream reached over TLS: ``tls://host[:853][#name]`` (DNS over TLS, RFC 7858)
    or ``https://host[:443]/path[#name]`` (DNS over HTTPS, RFC 8484). ``#name`` is the
    name its certificate must show when ``host`` is an address; without it, the
    certificate must show ``host`` itself (a DNS name, or an IP address SAN)."""

    scheme: str  # "tls" or "https"
    host: str  # an IP address in canonical text form, or a lowercase host name
    port: int
    path: str  # DoH: the URL path; DoT: ""
    name: str  # what the certificate is verified against (never empty)

    DEFAULT_PORTS: ClassVar[dict[str, int]] = {"tls": 853, "https": 443}

    @classmethod
    def parse(cls, text: str) -> EncryptedEndpoint:
        scheme, sep, rest = text.strip().partition("://")
        if scheme not in cls.DEFAULT_PORTS or not sep:
            raise ValueError("the scheme must be tls:// or https://")
        rest, _, name = rest.partition("#")
        authority, slash, path = rest.partition("/")
        path = slash + path
        if "?" in path or "@" in authority:
            raise ValueError("no query string or user name is allowed")
        if scheme == "tls" and path not in ("", "/"):
            raise ValueError("tls:// takes no path")
        if scheme == "https" and not path.strip("/"):
            raise ValueError("https:// needs the path of the DoH service, like /dns-query")
        host, port = _host_port(authority, cls.DEFAULT_PORTS[scheme])
        if name and not _is_host_name(name):
            raise ValueError(f"#{name} is not a host name")
        return cls(scheme, host, port, path if scheme == "https" else "", name.lower() or host)

    @property
    def address_given(self) -> bool:
        """True when ``host`` is an IP address (no name to resolve before connecting)."""
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        suffix = f"#{self.name}" if self.name != self.host else ""
        return f"{self.scheme}://{host}:{self.port}{self.path}{suffix}"


def _is_host_name(text: str) -> bool:
    labels = text.rstrip(".").split(".")
    allowed = set(string.ascii_letters + string.digits + "-_")
    return len(text) <= 253 and all(
        0 < len(label) <= 63 and set(label) <= allowed and not label.startswith("-")
        for label in labels
    )


def _host_port(authority: str, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port``: an address or a host name."""
    if authority.startswith("["):
        host, sep, rest = authority[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError("expected [IPv6]:port")
        return str(ipaddress.IPv6Address(host)), _port(rest[1:], default_port)
    host, _, port_text = authority.partition(":")
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        if not _is_host_name(host):
            raise ValueError(f"{host!r} is neither an IP address nor a host name") from None
        host = host.lower().rstrip(".")
    return host, _port(port_text, default_port)


def _port(text: str, default_port: int) -> int:
    if not text:
        return default_port
    if not text.isdigit() or not 0 < int(text) <= 65535:
        raise ValueError(f"port {text!r} is not a number from 1 to 65535")
    return int(text)


@dataclass(frozen=True, slots=True)
class UpstreamServer:
    """An upstream resolver, or ``system``: the nameservers of /etc/resolv.conf, read
    each time the pipeline is built."""

    endpoint: DnsEndpoint | None  # None: "system" (or an encrypted upstream)
    encrypted: EncryptedEndpoint | None = None  # DoT or DoH

    @classmethod
    def from_config(cls, value: object, path: str) -> UpstreamServer:
        if value == "system":
            return cls(None)
        if isinstance(value, str) and "://" in value:
            try:
                return cls(None, EncryptedEndpoint.parse(value))
            except ValueError as error:
                raise ConfigError(
                    f"{path}: expected tls://host[:853][#name] or "
                    f"https://host[:443]/dns-query[#name], got {value!r} ({error})"
                ) from None
        return cls(DnsEndpoint.from_config(value, path))

    def __str__(self) -> str:
        if self.encrypted is not None:
            return str(self.encrypted)
        return "system" if self.endpoint is None else str(self.endpoint)


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class ClientNetwork:
    """A network of clients (``10.0.0.0/8``, ``fd00::/8``); host bits may be set."""

    network: Network

    @classmethod
    def parse(cls, text: str) -> ClientNetwork:
        return cls(ipaddress.ip_network(text, strict=False))

    @classmethod
    def from_config(cls, value: object, path: str) -> ClientNetwork:
        try:
            if not isinstance(value, str):
                raise ValueError
            return cls.parse(value)
        except ValueError:
            raise ConfigError(
                f"{path}: expected a network like 10.0.0.0/8, got {value!r}"
            ) from None

    def __str__(self) -> str:
        return str(self.network)


@dataclass(frozen=True, slots=True)
class Until:
    """When a temporary rule stops applying: a date applies through that day (UTC) and
    stops at the next midnight; a date and time (``2026-12-31T18:00:00Z``) stops then."""

    text: str
    at: float  # Unix time

    @classmethod
    def parse(cls, text: str) -> Until:
        if "T" not in text:
            day = datetime.date.fromisoformat(text)
            midnight = datetime.datetime.combine(day, datetime.time(), datetime.UTC)
            return cls(text, (midnight + datetime.timedelta(days=1)).timestamp())
        moment = datetime.datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.UTC)
        return cls(text, moment.timestamp())

    @classmethod
    def from_config(cls, value: object, path: str) -> Until:
        # The YAML reader keeps dates as text, so `until: 2026-12-31` needs no quotes.
        try:
            if not isinstance(value, str):
                raise ValueError
            return cls.parse(value.strip())
        except ValueError:
            raise ConfigError(
                f"{path}: expected a date like 2026-12-31 or a time like "
                f"2026-12-31T18:00:00Z, got {value!r}"
            ) from None

    def __str__(self) -> str:
        return self.text


def check_range(path: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{path}: expected a value from {low} to {high}, got {value}")


def check_names(path: str, names: tuple[str, ...]) -> None:
    for index, name in enumerate(names):
        if normalise_name(name) is None:
            raise ConfigError(f"{path}[{index}]: expected a domain name, got {name!r}")


# RFC 6750 b64token characters: a token that fits an Authorization header as it is.
_TOKEN_CHARS = frozenset(string.ascii_letters + string.digits + "-._~+/=")
_TOKEN_MIN_LENGTH = 16


def check_token(path: str, token: str) -> None:
    if len(token) < _TOKEN_MIN_LENGTH or not set(token) <= _TOKEN_CHARS:
        raise ConfigError(
            f"{path}: expected at least {_TOKEN_MIN_LENGTH} characters of letters, digits "
            "and -._~+/= (e.g. from `openssl rand -hex 32`)"
        )


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


def read_secret_file(path_text: str, path: Path) -> str:
    """A one-line secret (a token, a password) from a file named by the config key
    ``path_text``; the error names the key and the file, never the content."""
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise ConfigError(f"{path_text}: cannot read {path}: {reason}") from None


def check_conninfo(path: str, dsn: str) -> None:
    """A libpq connection string (``host=db dbname=aiwall`` or ``postgresql://...``).
    The error never repeats the string: it may hold a password."""
    # Imported here: only configs that name a database pay for loading libpq.
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    try:
        conninfo_to_dict(dsn)
    except ProgrammingError:
        raise ConfigError(
            f"{path}: not a PostgreSQL connection string (expected e.g. "
            "'host=db.example port=5432 dbname=aiwall user=aiwall' or postgresql://...)"
        ) from None


def check_ca_file(path_text: str, path: Path) -> None:
    """A PEM bundle of CA certificates that TLS can load (``upstream.ca_file``)."""
    try:
        context = ssl.create_default_context(cafile=str(path))
    except OSError as error:
        raise ConfigError(f"{path_text}: cannot read {path}: {error.strerror}") from None
    except ssl.SSLError:
        raise ConfigError(f"{path_text}: {path} holds no PEM CA certificate") from None
    if not context.get_ca_certs():
        raise ConfigError(f"{path_text}: {path} holds no CA certificate")
