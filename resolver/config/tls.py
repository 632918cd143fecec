"""The ``tls`` section: the certificate and key the DoT and DoH listeners present, and
the name they are known by (announced by DDR, RFC 9462).

The files are read at load (a bad file is a config error naming the key) and again at
every reload, so a renewed certificate is taken up without a restart.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from resolver.config.values import ConfigError, DnsEndpoint
from resolver.dns.names import normalise_name

# ALPN protocol ids (IANA TLS ALPN registry): RFC 7858 for DoT, RFC 8484 for DoH.
ALPN_DOT = ("dot",)
ALPN_DOH = ("h2", "http/1.1")


class DotEndpoint(DnsEndpoint):
    DEFAULT_PORT = 853  # RFC 7858 3.1


class DohEndpoint(DnsEndpoint):
    DEFAULT_PORT = 443  # RFC 8484 uses HTTPS


@dataclass(frozen=True)
class TlsConfig:
    certificate: str = ""  # PEM chain, leaf first (relative: from the config's folder)
    key: str = ""  # PEM private key
    # The name in the certificate: the SVCB target DDR announces, and the name clients
    # verify; "" when no DoT/DoH listener is configured.
    name: str = ""

    def validate(self, path: str) -> None:
        if bool(self.certificate) != bool(self.key):
            missing = "key" if self.certificate else "certificate"
            raise ConfigError(f"{path}.{missing}: expected with {path}.certificate and .key")
        if self.name and normalise_name(self.name) is None:
            raise ConfigError(f"{path}.name: expected a domain name, got {self.name!r}")


def server_context(tls: TlsConfig, base_dir: Path, alpn: tuple[str, ...]) -> ssl.SSLContext:
    """A server context with the configured certificate and key and ``alpn``; raises
    ConfigError naming ``tls.certificate`` (or ``tls.key``) when they cannot be used."""
    certificate, key = base_dir / tls.certificate, base_dir / tls.key
    for field_name, file in (("certificate", certificate), ("key", key)):
        if not file.is_file():
            raise ConfigError(f"tls.{field_name}: cannot read {file}: no such file")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    # RFC 8310 / RFC 8484 5.2: TLS 1.2 at least (RFC 9325 too).
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certificate, key)
    except ssl.SSLError as error:
        raise ConfigError(
            f"tls.certificate: {certificate} with tls.key {key} is not a usable PEM "
            f"certificate and key: {error.reason or error}"
        ) from None
    except OSError as error:
        raise ConfigError(f"tls.certificate: cannot read {certificate}: {error}") from None
    context.set_alpn_protocols(list(alpn))
    return context


def check_tls(
    tls: TlsConfig,
    dot: tuple[DnsEndpoint, ...],
    doh: tuple[DnsEndpoint, ...],
    base_dir: Path,
) -> None:
    """An encrypted listener needs the certificate, the key and the name; the files are
    loaded now, so a bad one stops the start (or the reload)."""
    if not dot and not doh:
        return
    wanted = "listen.dot" if dot else "listen.doh"
    if not tls.certificate:
        raise ConfigError(f"tls.certificate: required by {wanted} (with tls.key)")
    if not tls.name:
        raise ConfigError(f"tls.name: required by {wanted} (the name in the certificate)")
    server_context(tls, base_dir, ALPN_DOT)
