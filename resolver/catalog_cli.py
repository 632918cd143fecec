"""``aiwall catalog keygen|bundle|diff``: publishing a signed catalog, and previewing one.

An organisation that runs its own mirror (or adds its own services) makes a key pair
once, signs a bundle of its catalog folder whenever it changes (and at least weekly, so
its servers can tell a live feed from a frozen one), and serves the two files. ``diff``
shows what a bundle would add or remove before any server applies it.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
from pathlib import Path

from resolver.config import CatalogConfig, CatalogSourceConfig, Config, load_config
from resolver.policy.bundle import (
    BUNDLE_NAME,
    PRIVATE_KEY_NAME,
    PUBLIC_KEY_NAME,
    SIGNATURE_SUFFIX,
    Bundle,
    BundleError,
    make_bundle,
    new_key_pair,
    open_bundle,
    public_key,
    public_text,
    read_private_key,
    sign,
)
from resolver.policy.catalog import Catalog, default_catalog_dir, default_protected_path
from resolver.policy.catalog_files import load_protected
from resolver.policy.feed import CatalogFeed, CatalogFeeds, check_serial, fetch_signature
from resolver.policy.remote import RefreshRejected, download
from resolver.policy.selectors import SelectorError, select_services
from resolver.storage import write_atomically

EXIT_OK = 0
EXIT_FAILURE = 1


# --- keygen ----------------------------------------------------------------------------


def cmd_keygen(args: argparse.Namespace) -> int:
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    private_path, public_path = output / PRIVATE_KEY_NAME, output / PUBLIC_KEY_NAME
    private, public = new_key_pair()
    # Never over an existing key: the servers that trust it would reject every bundle.
    try:
        handle = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ValueError(f"{private_path} exists: a new key pair goes in another folder") from None
    with os.fdopen(handle, "wb") as stream:
        stream.write(private)
    write_atomically(public_path, public + "\n")
    print(f"private key: {private_path} (keep it secret: whoever holds it can sign catalogs)")
    print(f"public key:  {public_path}")
    print("for the config of every server that trusts it:")
    print("catalog:\n  sources:")
    print(f"    - url: https://mirror.example.org/aiwall/{BUNDLE_NAME}")
    print(f"      public_key: {public}")
    return EXIT_OK


# --- bundle ----------------------------------------------------------------------------


def _previous_serial(path: Path) -> int | None:
    """The serial of a bundle already in the output folder (None if there is none)."""
    try:
        serial = json.loads(path.read_bytes()).get("serial")
    except (OSError, ValueError, AttributeError):
        return None
    return serial if isinstance(serial, int) else None


def cmd_bundle(args: argparse.Namespace) -> int:
    directory = Path(args.catalog) if args.catalog else default_catalog_dir()
    protected = load_protected(Path(args.protected) if args.protected else default_protected_path())
    key = read_private_key(Path(args.key))
    output = Path(args.output)
    target = output / BUNDLE_NAME
    now = datetime.datetime.now(datetime.UTC)
    serial = args.serial if args.serial is not None else int(now.timestamp())
    previous = _previous_serial(target)
    if previous is not None and serial <= previous:
        raise ValueError(
            f"{target} has serial {previous}: every server that has it rejects a bundle "
            f"with serial {serial} (give a higher --serial)"
        )
    data, catalog = make_bundle(directory, serial, now, protected)
    # The bundle first, its signature next: a server fetching in between rejects that
    # pair once (signature) and takes the new bundle at its next attempt.
    write_atomically(target, data)
    signature = target.with_name(target.name + SIGNATURE_SUFFIX)
    write_atomically(signature, sign(data, key))
    domains = sum(len(service.domains) for service in catalog.services)
    print(
        f"{target}: serial {serial}, {len(catalog.services)} services, {domains} domains; "
        f"signature {signature}; public key {public_text(key.public_key())}"
    )
    return EXIT_OK


# --- diff ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Target:
    feeds: CatalogFeeds
    feed: CatalogFeed
    location: str  # a URL or a file


def _target(config: Config, catalog_dir: Path | None, source: str | None, key: str) -> _Target:
    """The feeds of the config, with the source a --source stands for."""
    sources = config.catalog.sources
    if source is None:
        if len(sources) != 1:
            raise ValueError(
                "name the bundle with --source (the config has "
                f"{len(sources)} catalog sources, not one)"
            )
        source = sources[0].url
    chosen = _chosen(sources, source, key)
    replaced = tuple(chosen if s.label == chosen.label else s for s in sources) or (chosen,)
    feeds = CatalogFeeds(dataclasses.replace(config, catalog=CatalogConfig(replaced)), catalog_dir)
    (feed,) = [f for f in feeds.feeds if f.config == chosen]
    return _Target(feeds, feed, source)


def _chosen(sources: tuple[CatalogSourceConfig, ...], source: str, key: str) -> CatalogSourceConfig:
    """The configured source with the URL of --source, else the only one (a new location
    of its bundle); with none configured, a bundle would replace the shipped catalog."""
    matched = [s for s in sources if s.url == source]
    if not matched and len(sources) == 1:
        matched = list(sources)
    if matched:
        return dataclasses.replace(matched[0], public_key=key or matched[0].public_key)
    if sources:
        raise ValueError(f"--source {source} is none of the config's catalog.sources")
    if not key:
        raise ValueError("--public-key is needed: the config names no catalog source")
    return CatalogSourceConfig(url=source, public_key=key, name="--source")


def _read(target: _Target) -> Bundle:
    """The bundle at the target, verified with the source's key."""
    config = target.feed.config
    location = target.location
    if location.startswith(("http://", "https://")):
        got = download(location, config.timeout, config.max_bytes)
        assert got is not None  # no validators were sent
        data = got.body
        signature_url = config.signature if location == config.url else location + ".sig"
        signature = fetch_signature(signature_url, config.timeout)
    else:
        data = Path(location).read_bytes()
        try:
            signature = Path(location + SIGNATURE_SUFFIX).read_bytes()
        except FileNotFoundError:
            raise BundleError("unsigned", f"no signature file {location}.sig") from None
    protected = load_protected(default_protected_path())
    return open_bundle(data, signature, public_key(config.public_key), protected)


def _verdict(target: _Target, bundle: Bundle) -> str:
    feed = target.feed
    held = feed.last_good()
    try:
        check_serial(bundle, held, feed.floor())
        target.feeds.judge(feed, bundle, held)
    except BundleError as error:
        return f"would be rejected ({error.reason}): {error}"
    return "would be applied"


def _blocked(config: Config, catalog: Catalog) -> set[str]:
    """Every catalog name some group's policy blocks or reports."""
    policies = [(config.blocking.catalog, "blocking.catalog")] + [
        (group.catalog, f"groups[{index}].catalog")
        for index, group in enumerate(config.groups)
        if group.catalog is not None
    ]
    names: set[str] = set()
    for policy, path in policies:
        for verdict in select_services(policy, catalog, path):
            if verdict.action != "allow":
                names.update(domain.name for domain in verdict.service.domains)
    return names


def describe(before: Catalog, after: Catalog) -> list[str]:
    """The services and domains ``after`` adds, removes or changes, one line each."""
    old = {service.id: service for service in before.services}
    new = {service.id: service for service in after.services}
    lines = []
    for sid in sorted(new.keys() - old.keys()):
        service = new[sid]
        names = ", ".join(domain.name for domain in service.domains)
        lines.append(
            f"+ {sid}: {service.name} ({service.vendor}, {service.vendor_country}): {names}"
        )
    for sid in sorted(old.keys() - new.keys()):
        names = ", ".join(domain.name for domain in old[sid].domains)
        lines.append(f"- {sid}: {old[sid].name}: {names}")
    for sid in sorted(old.keys() & new.keys()):
        was = {domain.name for domain in old[sid].domains}
        now = {domain.name for domain in new[sid].domains}
        changes = [f"+{n}" for n in sorted(now - was)] + [f"-{n}" for n in sorted(was - now)]
        if changes:
            lines.append(f"~ {sid}: {' '.join(changes)}")
        elif old[sid] != new[sid]:
            lines.append(f"~ {sid}: metadata only")
    return lines


def _counts(catalog: Catalog) -> str:
    domains = sum(len(service.domains) for service in catalog.services)
    return f"{len(catalog.services)} services, {domains} domains"


def cmd_diff(args: argparse.Namespace) -> int:
    config = load_config(Path(args.config) if args.config else None)
    catalog_dir = Path(args.catalog) if args.catalog else None
    target = _target(config, catalog_dir, args.source, args.public_key or "")
    before = target.feeds.catalog()
    try:
        bundle = _read(target)
    except (BundleError, RefreshRejected, OSError) as error:
        reason = getattr(error, "reason", "unreadable")
        print(f"{target.location}: cannot be used ({reason}): {error}")
        return EXIT_FAILURE
    after = target.feeds.catalog(replacing=(target.feed, bundle))
    created = datetime.datetime.fromtimestamp(bundle.created, datetime.UTC)
    print(f"{target.location}: serial {bundle.serial}, signed {created:%Y-%m-%d %H:%M:%S}Z")
    print(f"in force: {_counts(before)}; with this bundle: {_counts(after)}")
    print("\n".join(describe(before, after)) or "no service or domain changes")
    try:
        was, will = _blocked(config, before), _blocked(config, after)
        print(f"names the config's policy blocks: +{len(will - was)} -{len(was - will)}")
    except SelectorError as error:
        print(f"the config's policy cannot use it: {error}")
    print(_verdict(target, bundle))
    return EXIT_OK


# --- the command line ------------------------------------------------------------------


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The publishing commands, under ``aiwall catalog``."""
    keygen = commands.add_parser("keygen", help="make an Ed25519 key pair to sign bundles with")
    keygen.add_argument("--output", "-o", required=True, help="folder for the two key files")
    keygen.set_defaults(run=cmd_keygen)

    bundle = commands.add_parser("bundle", help="build and sign a catalog bundle to publish")
    bundle.add_argument("--key", required=True, help="the private key (from keygen)")
    bundle.add_argument("--output", "-o", required=True, help=f"folder for {BUNDLE_NAME}(.sig)")
    bundle.add_argument("--catalog", help="catalog folder (default: the shipped one)")
    bundle.add_argument("--protected", help="protected list (default: the shipped one)")
    bundle.add_argument(
        "--serial", type=int, help="the bundle's serial (default: the time, in Unix seconds)"
    )
    bundle.set_defaults(run=cmd_bundle)

    diff = commands.add_parser(
        "diff", help="what a bundle would add or remove, before any server applies it"
    )
    diff.add_argument("--source", help="a bundle's URL or file (default: the configured source)")
    diff.add_argument("--public-key", help="the key to verify it with (default: its source's)")
    diff.add_argument("--config", "-c")
    diff.add_argument("--catalog", help="the shipped catalog folder (default: the shipped one)")
    diff.set_defaults(run=cmd_diff)
