"""The ``catalog`` section: signed catalog bundles fetched between releases.

Each source is a URL serving a bundle (``resolver.policy.bundle``) and the Ed25519 key
that must have signed it. The key is checked here, as text, so a typo stops the start
instead of silently turning every refresh into a rejection.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from resolver.config.values import ConfigError, check_range

# Raw Ed25519 public keys are 32 bytes (RFC 8032 5.1.5).
PUBLIC_KEY_BYTES = 32


def decode_public_key(text: str) -> bytes:
    """The 32 raw bytes of a key written as ``aiwall catalog keygen`` writes it (base64);
    ValueError when it is not one."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64") from None
    if len(raw) != PUBLIC_KEY_BYTES:
        raise ValueError(f"{len(raw)} bytes, an Ed25519 public key has {PUBLIC_KEY_BYTES}")
    return raw


# The numbers a source may set, and their bounds (as for remote lists).
_RANGES = (
    ("refresh", 1, 7 * 86400),
    ("max_shrink", 0, 1),
    ("timeout", 0.1, 600),
    ("max_bytes", 1024, 1024 * 1024 * 1024),
)


@dataclass(frozen=True)
class CatalogSourceConfig:
    """One signed catalog feed. Its bundle replaces the shipped catalog once one has been
    verified; until then (and whenever none can be read) the shipped catalog stands in."""

    url: str = ""
    # The publisher's Ed25519 public key, base64 (``aiwall catalog keygen`` prints it).
    public_key: str = ""
    refresh: float = 3600.0  # seconds between conditional GETs
    name: str = ""  # label in metrics and logs; derived from the URL when empty
    signature_url: str = ""  # the detached signature; default: url + ".sig"
    # A bundle with fewer services or domains than this fraction below the one it would
    # replace (the last good bundle, else the shipped catalog) is rejected.
    max_shrink: float = 0.2
    timeout: float = 30.0  # bounds each whole download, as for remote lists
    max_bytes: int = 16 * 1024 * 1024

    def validate(self, path: str) -> None:
        for key in ("url", "signature_url"):
            value = getattr(self, key)
            if (value or key == "url") and not value.startswith(("http://", "https://")):
                raise ConfigError(
                    f"{path}.{key}: expected an http:// or https:// URL, got {value!r}"
                )
        try:
            decode_public_key(self.public_key)
        except ValueError as error:
            raise ConfigError(
                f"{path}.public_key: expected an Ed25519 public key in base64 (as "
                f"`aiwall catalog keygen` prints it), got {self.public_key!r} ({error})"
            ) from None
        for key, low, high in _RANGES:
            check_range(f"{path}.{key}", getattr(self, key), low, high)

    @property
    def label(self) -> str:
        return self.name or self.url.partition("://")[2].split("?", 1)[0].rstrip("/")[:80]

    @property
    def signature(self) -> str:
        return self.signature_url or self.url + ".sig"


@dataclass(frozen=True)
class CatalogConfig:
    """Where the catalog comes from besides the copy shipped with aiwall."""

    sources: tuple[CatalogSourceConfig, ...] = ()

    def validate(self, path: str) -> None:
        labels: set[str] = set()
        for index, source in enumerate(self.sources):
            source.validate(f"{path}.sources[{index}]")
            if source.label in labels:
                raise ConfigError(f"{path}.sources[{index}].name: {source.label!r} is used twice")
            labels.add(source.label)
