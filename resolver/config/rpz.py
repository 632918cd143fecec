"""The ``rpz:`` section: Response Policy Zones aiwall serves to other resolvers.

Each item names a zone, whose policy it carries (the default policy or a client
group's), which networks may transfer it, the TSIG key a transfer must be signed with,
and where NOTIFY goes when its serial changes::

    rpz:
      - zone: rpz.aiwall.internal
        group: default
        allow_transfer: [127.0.0.0/8, 10.0.0.0/8]
        tsig: {name: aiwall-xfr, algorithm: hmac-sha256, secret_file: xfr.key}
        notify: ["10.0.0.53:53"]
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from resolver.config.values import ClientNetwork, ConfigError, DnsEndpoint
from resolver.dns.names import normalise_name

# HMAC-SHA256 (RFC 8945 6): every resolver this feed is meant for supports it.
TSIG_ALGORITHMS = ("hmac-sha256",)
# RFC 8945 6.2: a key shorter than half the hash output weakens the MAC.
TSIG_MIN_BYTES = 16


@dataclass(frozen=True)
class TsigConfig:
    name: str = ""
    algorithm: Literal["hmac-sha256"] = "hmac-sha256"
    # The base64 secret, inline or in a file (relative paths: from the config's folder).
    secret: str = ""
    secret_file: str = ""

    def validate(self, path: str) -> None:
        if normalise_name(self.name) is None:
            raise ConfigError(f"{path}.name: expected a key name like aiwall-xfr")
        if bool(self.secret) == bool(self.secret_file):
            raise ConfigError(f"{path}: set exactly one of secret and secret_file")
        if self.secret:
            decode_secret(self.secret, f"{path}.secret")

    def read_secret(self, base_dir: Path, path: str) -> bytes:
        """The key's bytes; the error names the key path and the file, never the secret."""
        if self.secret:
            return decode_secret(self.secret, f"{path}.secret")
        file = base_dir / self.secret_file
        try:
            text = file.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) else "not base64 text"
            raise ConfigError(f"{path}.secret_file: cannot read {file}: {reason}") from None
        return decode_secret(_key_file_secret(text), f"{path}.secret_file ({file})")


def _key_file_secret(text: str) -> str:
    """The secret of a key file: bare base64, or the ``secret "...";`` line that
    ``tsig-keygen`` writes (so the same file serves BIND and aiwall)."""
    for line in text.splitlines():
        words = line.strip().rstrip(";").split(None, 1)
        if len(words) == 2 and words[0] == "secret":
            return words[1].strip('"')
    return text.strip()


def decode_secret(text: str, path: str) -> bytes:
    try:
        secret = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{path}: expected a base64 secret (e.g. from tsig-keygen)") from None
    if len(secret) < TSIG_MIN_BYTES:
        raise ConfigError(f"{path}: the secret has {len(secret)} bytes; at least 16 are needed")
    return secret


@dataclass(frozen=True)
class RpzZoneConfig:
    zone: str = ""
    # Whose policy the zone carries: "default" or the name of a client group.
    group: str = "default"
    # Who may transfer the zone (and query names in it); loopback only by default.
    allow_transfer: tuple[ClientNetwork, ...] = (
        ClientNetwork.parse("127.0.0.0/8"),
        ClientNetwork.parse("::1/128"),
    )
    # When set, every transfer and SOA query must be signed with this key.
    tsig: TsigConfig | None = None
    # Secondaries told of each new serial (RFC 1996), as host:port.
    notify: tuple[DnsEndpoint, ...] = ()

    def validate(self, path: str) -> None:
        if normalise_name(self.zone) is None or "." not in self.zone.strip("."):
            raise ConfigError(f"{path}.zone: expected a zone name like rpz.aiwall.internal")
        if self.tsig is not None:
            self.tsig.validate(f"{path}.tsig")

    @property
    def name(self) -> str:
        """The zone's name, lowercase, without the trailing dot."""
        return self.zone.strip().rstrip(".").lower()


def check_rpz(zones: tuple[RpzZoneConfig, ...], groups: set[str], base_dir: Path) -> None:
    """What one item cannot check alone: unique zones, known groups, readable keys."""
    seen: set[str] = set()
    for index, item in enumerate(zones):
        path = f"rpz[{index}]"
        if item.name in seen:
            raise ConfigError(f"{path}.zone: {item.name!r} is listed twice")
        seen.add(item.name)
        if item.group not in groups:
            raise ConfigError(f"{path}.group: no group {item.group!r} (expected default or groups)")
        if item.tsig is not None:
            item.tsig.read_secret(base_dir, f"{path}.tsig")
