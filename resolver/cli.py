"""The ``aiwall`` command: serve, check a name, validate a config, health-check a server."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import secrets
import signal
import socket
import sys
import time
from pathlib import Path

import yaml

from resolver import __version__, background, catalog_cli, compiled, memory, yamltext
from resolver.audit.report import FORMATS as REPORT_FORMATS
from resolver.audit.report import (
    GROUPINGS,
    ReportError,
    parse_since,
    summarise,
    summarise_postgres,
)
from resolver.audit.report import render as render_report
from resolver.config import (
    CatalogPolicy,
    Config,
    ConfigError,
    DnsEndpoint,
    config_from_mapping,
    load_config,
)
from resolver.dns import wire
from resolver.logs import setup_logging
from resolver.policy.catalog import CatalogError, default_catalog_dir, default_protected_path
from resolver.policy.catalog_files import load_catalog, load_protected
from resolver.policy.catalog_lint import lint
from resolver.policy.explain import explain
from resolver.policy.export import FORMATS, ExportOptions, render
from resolver.policy.loading import PolicyError, load_policy, remote_lists
from resolver.serve import runfolder
from resolver.serve.builder import ChildBuilds
from resolver.serve.server import Server, serve_until_stopped
from resolver.serve.supervisor import Supervisor, WorkerStartError
from resolver.storage import write_atomically

log = logging.getLogger("aiwall")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def _load(path: str | None) -> Config:
    return load_config(Path(path) if path else None)


async def _serve(config: Config, path: Path | None, builds: ChildBuilds) -> int:
    background.helper_threads(asyncio.get_running_loop())
    # With the file's path, SIGHUP and POST /api/reload read the config again too.
    await serve_until_stopped(Server(config, config_path=path, builds=builds))
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    memory.single_arena()  # before any thread: see resolver.memory
    background.threads_take_turns()
    config = _load(args.config)
    path = Path(args.config) if args.config else None
    setup_logging(config.logging)
    # Before any process is forked, so that all of them hold the claim.
    claimed = runfolder.claim(config.state_dir)
    try:
        if config.worker_count > 1:
            code = Supervisor(config, path).run()
        else:
            # Reloads are built by a process forked now, before any thread or loop.
            with ChildBuilds.forked() as builds:
                code = asyncio.run(_serve(config, path, builds))
        # Stopped cleanly; a second SIGTERM while the interpreter winds down (the loop's
        # handlers are gone by now) must not turn that into death by signal.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        return code
    except PolicyError as error:
        log.error("not starting: the blocking policy cannot be loaded: %s", error)
        return EXIT_FAILURE
    except OSError as error:
        log.error("not starting: cannot open a listener: %s", error)
        return EXIT_FAILURE
    except ConfigError as error:
        log.error("not starting: %s", error)
        return EXIT_FAILURE
    except WorkerStartError as error:
        log.error("not starting: %s", error)
        return EXIT_FAILURE
    finally:
        if claimed is not None:
            claimed.release()


def cmd_validate(args: argparse.Namespace) -> int:
    config = load_config(Path(args.file))
    groups = load_policy(config, remote=remote_lists(config)).groups
    total = sum(groups.entries_by_source.values())
    print(f"{args.file}: valid ({total} policy entries)")
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    config = _load(args.config)
    built = load_policy(config, remote=remote_lists(config))
    groups, catalog = built.groups, built.catalog
    if catalog is None:
        catalog = load_catalog(default_catalog_dir())
    try:
        explanation = explain(groups, catalog, args.name, args.client or "")
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    print("\n".join(explanation.lines()))
    return EXIT_OK


def _catalog_policy_from(text: str) -> CatalogPolicy:
    """``--policy`` takes the same value as ``blocking.catalog``, in YAML flow form."""
    try:
        raw = yamltext.load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"--policy: not valid YAML: {error}") from None
    return config_from_mapping({"blocking": {"catalog": raw}}).blocking.catalog


def cmd_export(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if args.policy:
        blocking = dataclasses.replace(config.blocking, catalog=_catalog_policy_from(args.policy))
        config = dataclasses.replace(config, blocking=blocking)
    # Every list name must be printed, so the lists are kept as names, not hashes.
    groups = load_policy(config, remote=remote_lists(config), compact=False, chain=False).groups
    group = groups.by_name(args.group)
    if group is None:
        raise ConfigError(f"--group: no group {args.group!r} in the config")
    blocklist = group.blocklist
    entries = blocklist.entries()
    options = ExportOptions(
        response=config.blocking.response,
        sinkhole_ipv4=config.blocking.sinkhole_ipv4,
        sinkhole_ipv6=config.blocking.sinkhole_ipv6,
        ttl=config.blocking.ttl,
        rpz_zone=args.rpz_zone,
        rpz_file=args.rpz_file,
        # Rises with every export, so secondaries and reloads see a new zone (fits 32 bits).
        serial=int(blocklist.loaded_at),
        generated=f"aiwall {__version__}, {time.strftime('%Y-%m-%d')}, {len(entries)} entries",
    )
    text = render(entries, args.format, options)
    if args.output:
        write_atomically(Path(args.output), text)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def cmd_catalog_list(args: argparse.Namespace) -> int:
    catalog = load_catalog(Path(args.catalog) if args.catalog else default_catalog_dir())
    services = [
        s
        for s in catalog.services
        if (args.category is None or args.category in s.categories)
        and (args.country is None or s.vendor_country.upper() == args.country.upper())
    ]
    rows = [("ID", "SERVICE", "VENDOR", "CTRY", "DATA", "CATEGORIES", "DOMAINS")]
    for s in services:
        vendor = s.vendor if len(s.vendor) <= 32 else s.vendor[:31] + "…"
        rows.append(
            (
                s.id,
                s.name,
                vendor,
                s.vendor_country,
                s.data_location.country,
                ",".join(s.categories),
                str(len(s.domains)),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    print(f"{len(services)} services, {sum(len(s.domains) for s in services)} domains")
    return EXIT_OK


def cmd_catalog_lint(args: argparse.Namespace) -> int:
    """Every rule of blocklists/README.md over the catalog and the protected list."""
    directory = Path(args.catalog) if args.catalog else default_catalog_dir()
    protected_path = Path(args.protected) if args.protected else default_protected_path()
    catalog = load_catalog(directory)
    problems = lint(catalog, load_protected(protected_path))
    for problem in problems:
        print(problem)
    services = len(catalog.services)
    domains = sum(len(s.domains) for s in catalog.services)
    verdict = f"{len(problems)} problems" if problems else "clean"
    print(f"{directory}: {services} services, {domains} domains: {verdict}", file=sys.stderr)
    return EXIT_FAILURE if problems else EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    config = _load(args.config)
    since = parse_since(args.since)
    # The PostgreSQL trail when there is one: it holds every replica's rows.
    dsn = args.postgres or config.audit.postgres
    if dsn:
        password = config.audit.postgres_password(config.base_dir)
        rows = summarise_postgres(dsn, password, since, args.by)
    elif not config.audit.sqlite:
        raise ReportError("audit.sqlite is off in the config: there is nothing to report from")
    else:
        rows = summarise(config.state_dir / config.audit.sqlite, since, args.by)
    sys.stdout.write(render_report(rows, args.by, args.format))
    return EXIT_OK


def cmd_audit_migrate(args: argparse.Namespace) -> int:
    """Create or migrate the PostgreSQL audit tables (the writer also does at start)."""
    from resolver.audit.postgres import DatabaseDown, migrate_command

    config = _load(args.config)
    dsn = args.postgres or config.audit.postgres
    if not dsn:
        raise ReportError("audit.postgres is not set: give it in the config or --postgres DSN")
    try:
        print(migrate_command(dsn, config.audit.postgres_password(config.base_dir)))
    except DatabaseDown as error:
        raise ReportError(f"audit migrate: {error}") from None
    return EXIT_OK


def cmd_healthcheck(args: argparse.Namespace) -> int:
    """Send a real DNS query to the server and succeed on any well-formed answer to it."""
    config = _load(args.config)
    endpoint = DnsEndpoint.parse(args.server) if args.server else config.listen.dns[0]
    host, port = endpoint.host, endpoint.port
    if endpoint.wildcard:
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    # The Firefox canary is answered by the server itself, so this checks aiwall, not upstream.
    ident = secrets.randbelow(65536)
    request = wire.query_message(
        ident, wire.question(wire.text_to_name("use-application-dns.net"), wire.TYPE_A)
    )
    with socket.socket(endpoint.family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(args.timeout)
        try:
            sock.sendto(request, (host, port))
            data, _ = sock.recvfrom(4096)
            scan = wire.scan_response(data)
        except (OSError, wire.WireError) as error:
            print(f"unhealthy: {host}:{port}: {error}", file=sys.stderr)
            return EXIT_FAILURE
    if wire.HEADER.unpack_from(data)[0] != ident:
        print(f"unhealthy: {host}:{port}: answer with the wrong ID", file=sys.stderr)
        return EXIT_FAILURE
    rcode = wire.RCODE_NAMES.get(scan.rcode, str(scan.rcode))
    print(f"healthy: {host}:{port} answered {rcode}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aiwall",
        description="A forwarding DNS server that blocks generative-AI services by policy.",
    )
    parser.add_argument(
        "--version", action="version", version=f"aiwall {__version__} ({compiled.STATUS})"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the DNS server")
    serve.add_argument("--config", "-c", help="YAML config file (default: built-in defaults)")
    serve.set_defaults(run=cmd_serve)

    check = commands.add_parser("check", help="explain the decision for a name")
    check.add_argument("name")
    check.add_argument("--client", help="explain it for this client address (its group)")
    check.add_argument("--config", "-c")
    check.set_defaults(run=cmd_check)

    validate = commands.add_parser("validate-config", help="check a config file and its lists")
    validate.add_argument("file")
    validate.set_defaults(run=cmd_validate)

    export = commands.add_parser("export", help="print the blocking policy for another DNS program")
    export.add_argument("--format", "-f", required=True, choices=FORMATS)
    export.add_argument("--group", default="default", help="whose policy (default: default)")
    export.add_argument("--output", "-o", help="write to FILE (atomically) instead of stdout")
    export.add_argument("--config", "-c")
    export.add_argument(
        "--policy", help="catalog policy instead of the config's, e.g. '{block: {countries: [CN]}}'"
    )
    export.add_argument("--rpz-zone", default="rpz.aiwall", help="policy zone name (bind, rpz)")
    export.add_argument(
        "--rpz-file",
        default="/etc/bind/db.rpz.aiwall",
        help="path of the rpz zone in the bind snippet",
    )
    export.set_defaults(run=cmd_export)

    report = commands.add_parser("report", help="blocked attempts from the audit trail")
    report.add_argument("--since", default="24h", help="how far back: 30m, 24h, 7d (default 24h)")
    report.add_argument("--by", default="service", choices=tuple(GROUPINGS))
    report.add_argument("--format", default="table", choices=REPORT_FORMATS)
    report.add_argument("--config", "-c")
    report.add_argument("--postgres", help="read this PostgreSQL trail (default: audit.postgres)")
    report.set_defaults(run=cmd_report)

    audit = commands.add_parser("audit", help="the audit trail's PostgreSQL tables")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    migrate = audit_commands.add_parser("migrate", help="create or migrate the tables")
    migrate.add_argument("--config", "-c")
    migrate.add_argument("--postgres", help="this database instead of audit.postgres")
    migrate.set_defaults(run=cmd_audit_migrate)

    catalog = commands.add_parser("catalog", help="the shipped generative-AI catalog")
    catalog_commands = catalog.add_subparsers(dest="catalog_command", required=True)
    listing = catalog_commands.add_parser("list", help="print the catalog as a table")
    listing.add_argument("--category", help="only services in this category, e.g. chat_assistant")
    listing.add_argument("--country", help="only vendors from this country, e.g. CN")
    listing.add_argument("--catalog", help="catalog folder (default: the shipped one)")
    listing.set_defaults(run=cmd_catalog_list)
    linting = catalog_commands.add_parser(
        "lint", help="check the catalog's rules (sources, dates, duplicates, protected hosts)"
    )
    linting.add_argument("--catalog", help="catalog folder (default: the shipped one)")
    linting.add_argument("--protected", help="protected list (default: the shipped one)")
    linting.set_defaults(run=cmd_catalog_lint)
    catalog_cli.add_commands(catalog_commands)  # keygen, bundle, diff: the signed feed

    health = commands.add_parser("healthcheck", help="query a running server; exit 0 if it answers")
    health.add_argument("--config", "-c")
    health.add_argument(
        "--server", help="host:port to query (default: the first listen.dns address)"
    )
    health.add_argument("--timeout", type=float, default=2.0)
    health.set_defaults(run=cmd_healthcheck)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
        sys.stdout.flush()
    except (ConfigError, PolicyError, CatalogError, ReportError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except BrokenPipeError:
        # The reader (``| head``) has gone; silence the flush at interpreter exit too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    return code
