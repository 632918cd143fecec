"""Issue 15: real resolver fleets follow aiwall's live RPZ feed. Each program from
Debian runs on loopback as a secondary of a real ``aiwall serve`` (TSIG, NOTIFY),
forwards other names to a real NSD upstream, and must block what aiwall bans, resolve
the rest, and follow a policy change within seconds."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dns.rcode
import pytest
import yaml

from tests.integration.test_one_server import config_for
from tests.peers.aiwall import AIWALL, ROOT, Aiwall
from tests.peers.bind import Bind
from tests.peers.kresd import Kresd
from tests.peers.nsd import Nsd
from tests.peers.pdns import PdnsRecursor
from tests.peers.ports import free_port
from tests.peers.rpzpeer import Feed, ResolverPeer
from tests.peers.unbound import Unbound
from tests.peers.wait import wait_until

ZONE = "rpz.aiwall.internal"
KEY = "aiwall-xfr"
SECRET = "c2VjcmV0LWtleS1mb3ItdGhlLXJwei1mZWVkLXRlc3Rz"  # base64


@pytest.fixture
def nsd(tmp_path: Path) -> Iterator[Nsd]:
    directory = tmp_path / "nsd"
    directory.mkdir()
    server = Nsd(directory)
    yield server
    server.stop()


def start_primary(
    tmp_path: Path,
    catalog_dir: Path,
    nsd: Nsd,
    notify: list[str],
    workers: int = 1,
    *,
    tsig: bool = True,
) -> tuple[Aiwall, Path]:
    listed = tmp_path / "ai.txt"
    listed.write_text("banned.example\n")
    (tmp_path / "xfr.key").write_text(f'key "{KEY}" {{\n\tsecret "{SECRET}";\n}};\n')
    rpz: dict[str, Any] = {"zone": ZONE, "allow_transfer": ["127.0.0.1/32"], "notify": notify}
    if tsig:
        rpz["tsig"] = {"name": KEY, "secret_file": str(tmp_path / "xfr.key")}
    config = config_for(
        [nsd.spec],
        workers,
        blocking={"lists": [str(listed)]},
        state={"directory": str(tmp_path / "state")},
        rpz=[rpz],
    )
    server = Aiwall(config, tmp_path, catalog_dir=catalog_dir)
    server.wait_serving(60)
    return server, listed


def follow_the_feed(
    tmp_path: Path,
    catalog_dir: Path,
    nsd: Nsd,
    peer_of: Callable[[Feed, int], ResolverPeer],
    *,
    workers: int = 1,
    tsig: bool = True,
    notify: bool = True,
) -> None:
    port = free_port()
    targets = [f"127.0.0.1:{port}"] if notify else []
    server, listed = start_primary(tmp_path, catalog_dir, nsd, targets, workers, tsig=tsig)
    peer = peer_of(Feed(ZONE, server.address, KEY, SECRET), port)
    try:
        peer.wait_serving("resolves.example")
        wait_until(lambda: peer.blocks("banned.example"), 20, "the first transfer")
        assert peer.blocks("x.banned.example")
        assert peer.blocks("chat.deepseek.com")  # from the catalog
        assert peer.rcode("resolves.example") == dns.rcode.NOERROR
        assert peer.rcode("other.example") == dns.rcode.NOERROR

        listed.write_text("banned.example\nlater.example\n")
        server.signal(signal.SIGHUP)
        # A fresh name each time: an answer cached before the change may outlive it.
        fresh = itertools.count()
        wait_until(lambda: peer.blocks(f"n{next(fresh)}.later.example"), 10, "the change")
        assert peer.blocks("later.example")
        assert peer.blocks("banned.example")
        # The change went as a difference (RFC 1995), not as the whole zone again.
        assert server.metric("aiwall_rpz_transfers_total", kind="ixfr", result="ok") >= 1
        assert server.metric("aiwall_rpz_transfers_total", result="badsig") == 0
    finally:
        peer.stop()
        server.stop()


FOLLOWERS: dict[str, tuple[type[ResolverPeer], dict[str, Any]]] = {
    # BIND: TSIG, NOTIFY, IXFR, and a 2-worker aiwall (a TCP connection lands anywhere).
    "bind": (Bind, {"workers": 2}),
    # Unbound 1.17 cannot sign transfers: its zone has no key, only its address.
    "unbound": (Unbound, {"tsig": False}),
    # PowerDNS Recursor 4.8 ignores NOTIFY for RPZ: it polls the SOA every second.
    "pdns_recursor": (PdnsRecursor, {"notify": False}),
}


@pytest.mark.parametrize("program", FOLLOWERS)
def test_a_resolver_follows_the_feed(
    tmp_path: Path, catalog_dir: Path, nsd: Nsd, program: str
) -> None:
    kind, options = FOLLOWERS[program]
    follow_the_feed(
        tmp_path,
        catalog_dir,
        nsd,
        lambda feed, port: kind(tmp_path / program, feed, nsd.address, port),
        **options,
    )


def test_kresd_follows_an_exported_rpz_file_replaced_atomically(
    tmp_path: Path, catalog_dir: Path, nsd: Nsd
) -> None:
    listed = tmp_path / "ai.txt"
    listed.write_text("banned.example\n")
    config = tmp_path / "aiwall.yaml"
    config.write_text(yaml.safe_dump({"blocking": {"lists": [str(listed)]}}))
    feed = Feed(ZONE, ("127.0.0.1", 0), KEY, SECRET)  # no transfer: a file
    peer = Kresd(tmp_path / "kresd", feed, nsd.address, start=False)

    def export() -> None:
        peer.rpz_file.parent.mkdir(exist_ok=True)
        command = [*AIWALL, "export", "--format", "rpz", "--config", str(config)]
        command += ["--output", str(peer.rpz_file)]
        env = dict(os.environ, PYTHONPATH=str(ROOT), AIWALL_CATALOG_DIR=str(catalog_dir))
        subprocess.run(command, check=True, env=env, cwd=ROOT, timeout=60)

    export()
    peer.start()
    try:
        peer.wait_serving("resolves.example")
        assert peer.blocks("banned.example")
        assert peer.blocks("x.banned.example")
        assert peer.blocks("api.deepseek.com")
        assert peer.rcode("resolves.example") == dns.rcode.NOERROR
        listed.write_text("banned.example\nlater.example\n")
        export()
        fresh = itertools.count()
        wait_until(lambda: peer.blocks(f"n{next(fresh)}.later.example"), 10, "the new file")
        assert peer.blocks("later.example")
        assert peer.blocks("banned.example")
    finally:
        peer.stop()


@pytest.mark.parametrize("program", ["bind", "pdns_recursor"])
def test_a_resolver_with_the_wrong_tsig_secret_gets_no_zone(
    tmp_path: Path, catalog_dir: Path, nsd: Nsd, program: str
) -> None:
    # The two that sign transfers, given another secret under the same key name: aiwall
    # must answer NOTAUTH/BADSIG (RFC 8945 5.2), count it, and hand over nothing.
    kind, _ = FOLLOWERS[program]
    server, _ = start_primary(tmp_path, catalog_dir, nsd, [], 1, tsig=True)
    wrong = "d3Jvbmctc2VjcmV0LWZvci10aGUtcnB6LWZlZWQtdGVzdA=="
    feed = Feed(ZONE, server.address, KEY, wrong)
    peer = kind(tmp_path / program, feed, nsd.address, free_port())
    try:
        peer.wait_serving("resolves.example")
        wait_until(
            lambda: server.metric("aiwall_rpz_transfers_total", result="badsig") >= 1,
            20,
            "a transfer refused for its signature",
        )
        for kind_name in ("axfr", "ixfr"):
            assert server.metric("aiwall_rpz_transfers_total", kind=kind_name, result="ok") == 0
            assert server.metric("aiwall_rpz_transfers_total", kind=kind_name, result="full") == 0
        # Without the zone, the secondary has no policy: it resolves through NSD.
        assert peer.rcode("banned.example") == dns.rcode.NOERROR
    finally:
        peer.stop()
        server.stop()
