"""A catalog publisher for tests: a key pair, catalog folders written on demand, and
bundles signed by the real ``aiwall catalog keygen`` and ``aiwall catalog bundle``."""

from __future__ import annotations

import datetime
import itertools
from pathlib import Path

from resolver.cli import main
from resolver.policy.bundle import BUNDLE_NAME, PRIVATE_KEY_NAME, PUBLIC_KEY_NAME
from tests.peers.listserver import ListServer

BUNDLE_PATH = f"/{BUNDLE_NAME}"
SIGNATURE_PATH = f"/{BUNDLE_NAME}.sig"

# Checked a month ago: the lint refuses a verified date in the future.
VERIFIED = (datetime.date.today() - datetime.timedelta(days=30)).isoformat()


def service_yaml(sid: str, domains: list[str]) -> str:
    """A service file that passes the whole lint (every domain has a source)."""
    listed = "".join(
        f"  - name: {name}\n    role: ui\n    source: https://{domains[0]}/network\n"
        for name in domains
    )
    return (
        f"id: {sid}\nname: {sid.title()} AI\nvendor: {sid.title()} Inc.\n"
        "vendor_country: US\ndata_location:\n  country: unknown\n"
        f"categories: [chat_assistant]\ndomains:\n{listed}"
        f"sources: [https://{domains[0]}/]\nverified: {VERIFIED}\n"
    )


def write_catalog(directory: Path, services: dict[str, list[str]]) -> Path:
    directory.mkdir(parents=True)
    for sid, domains in services.items():
        (directory / f"{sid}.yaml").write_text(service_yaml(sid, domains), encoding="utf-8")
    return directory


class Publisher:
    """One signing key; ``build`` signs a bundle of the services given."""

    _counter = itertools.count()

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        assert main(["catalog", "keygen", "--output", str(directory / "keys")]) == 0
        self.key = directory / "keys" / PRIVATE_KEY_NAME
        self.public_key = (directory / "keys" / PUBLIC_KEY_NAME).read_text().strip()

    def build(self, services: dict[str, list[str]], serial: int) -> tuple[str, str]:
        """(catalog.json, catalog.json.sig) as published."""
        number = next(self._counter)
        catalog = write_catalog(self.directory / f"catalog-{number}", services)
        output = self.directory / f"bundle-{number}"
        argv = ["catalog", "bundle", "--key", str(self.key), "--output", str(output)]
        assert main([*argv, "--catalog", str(catalog), "--serial", str(serial)]) == 0
        bundle = (output / BUNDLE_NAME).read_text(encoding="ascii")
        return bundle, (output / f"{BUNDLE_NAME}.sig").read_text(encoding="ascii")


class FeedServer(ListServer):
    """The mirror: serves one bundle and its signature (or none), swapped whole."""

    def serve(self, bundle: str, signature: str | None) -> None:
        files = {BUNDLE_PATH: bundle}
        if signature is not None:
            files[SIGNATURE_PATH] = signature
        self.lists = files

    @property
    def bundle_url(self) -> str:
        return self.url(BUNDLE_PATH)
