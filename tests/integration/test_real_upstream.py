"""Against a real upstream: NSD (Debian package) serving a wildcard root zone on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.rcode
import pytest

from tests.peers.nsd import Nsd, nsd_binary
from tests.support import RunningServer, ask, make_config

BIG_TXT = " ".join(f'"{"x" * 200}-{i}"' for i in range(8))  # about 1.6 kB: beyond 1232 bytes

# Beside the wildcard; they make "test." an empty non-terminal (see tests/peers/nsd.py).
RECORDS = f"""\
tracker.cloak.test. IN CNAME chat.deepseek.com.
big.test.           IN TXT {BIG_TXT}
short.test.     5   IN A   192.0.2.5
nodata.test.        IN TXT "only text here"
"""


@pytest.fixture(scope="module")
def nsd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    assert nsd_binary(), "nsd is installed by tests/tools/install-system-deps.sh"
    with Nsd(tmp_path_factory.mktemp("nsd"), records=RECORDS) as upstream:
        yield upstream.spec


@pytest.fixture
def server(nsd: str, catalog_dir: Path, tmp_path: Path) -> Iterator[RunningServer]:
    with RunningServer(make_config(nsd, base_dir=tmp_path), catalog_dir=catalog_dir) as running:
        yield running


def test_forwards_and_blocks_with_nsd_upstream(server):
    assert ask(server, "www.python.org").answer[0][0].to_text() == "198.51.100.7"
    assert ask(server, "www.python.org", "AAAA").answer[0][0].to_text() == "2001:db8::7"
    assert ask(server, "chat.deepseek.com").rcode() == dns.rcode.NXDOMAIN


def test_cname_into_the_catalog_is_blocked(server):
    reply = ask(server, "tracker.cloak.test")
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert not reply.answer


def test_large_answer_truncates_over_udp_and_arrives_whole_over_tcp(server):
    udp = ask(server, "big.test", "TXT")
    assert udp.flags & dns.flags.TC
    assert not udp.answer
    tcp = ask(server, "big.test", "TXT", tcp=True)
    assert len(tcp.answer[0][0].strings) == 8


def test_nodata_and_nxdomain_are_relayed(server):
    nodata = ask(server, "nodata.test", "A")
    assert nodata.rcode() == dns.rcode.NOERROR
    assert not nodata.answer
    assert nodata.authority
    # NSD's wildcard does not cover names under an existing node (RFC 4592).
    nx = ask(server, "nothing.cloak.test")
    assert nx.rcode() == dns.rcode.NXDOMAIN
