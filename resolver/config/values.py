"""The typed values a config holds, each parsed once, where the config is read.

An address with its default port (``Endpoint``), a client network, a moment a temporary
rule ends (``Until``): the rest of the server receives these, never the text.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
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
class UpstreamServer:
    """An upstream resolver, or ``system``: the nameservers of /etc/resolv.conf, read
    each time the pipeline is built."""

    endpoint: DnsEndpoint | None  # None: "system"

    @classmethod
    def from_config(cls, value: object, path: str) -> UpstreamServer:
        if value == "system":
            return cls(None)
        return cls(DnsEndpoint.from_config(value, path))

    def __str__(self) -> str:
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
