"""Against a real upstream: NSD (Debian package) serving a wildcard root zone on loopback."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.rcode
import pytest

from tests.support import RunningServer, ask, free_port, make_config

BIG_TXT = " ".join(f'"{"x" * 200}-{i}"' for i in range(8))  # about 1.6 kB: beyond 1232 bytes

ZONE = f"""\
$TTL 300
.                   IN SOA ns.root. hostmaster.root. 1 3600 600 86400 300
.                   IN NS  ns.root.
ns.root.            IN A   127.0.0.1
*                   IN A   198.51.100.7
*                   IN AAAA 2001:db8::7
tracker.cloak.test. IN CNAME chat.deepseek.com.
big.test.           IN TXT {BIG_TXT}
short.test.     5   IN A   192.0.2.5
nodata.test.        IN TXT "only text here"
"""


@pytest.fixture(scope="module")
def nsd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("nsd") or "/usr/sbin/nsd"
    assert Path(binary).exists(), "nsd is installed by tests/tools/install-system-deps.sh"
    directory = tmp_path_factory.mktemp("nsd")
    (directory / "root.zone").write_text(ZONE)
    port = free_port()
    (directory / "nsd.conf").write_text(
        f"""\
server:
  ip-address: 127.0.0.1@{port}
  port: {port}
  database: ""
  username: ""
  chroot: ""
  zonesdir: "{directory}"
  pidfile: "{directory}/nsd.pid"
  xfrdfile: "{directory}/xfrd.state"
  zonelistfile: "{directory}/zone.list"
  server-count: 1
  rrl-ratelimit: 0
  verbosity: 0
remote-control:
  control-enable: no
zone:
  name: "."
  zonefile: "root.zone"
"""
    )
    checkzone = str(Path(binary).with_name("nsd-checkzone"))
    checked = subprocess.run(
        [checkzone, ".", str(directory / "root.zone")], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    proc = subprocess.Popen(
        [binary, "-c", str(directory / "nsd.conf"), "-d"], stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        probe = subprocess.run(
            ["dig", "@127.0.0.1", "-p", str(port), "+short", "+time=1", "+tries=1", "probe.test"],
            capture_output=True,
            text=True,
        )
        if "198.51.100.7" in probe.stdout:
            break
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.1)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


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
