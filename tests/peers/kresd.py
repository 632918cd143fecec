"""Knot Resolver 5 (Debian ``knot-resolver``; watching the file needs ``lua-cqueues``)
reading aiwall's RPZ from a file (``policy.rpz`` with watch), forwarding every other
name to the test's upstream. It cannot transfer a zone: ``aiwall export --format rpz
--output FILE`` writes the file, replacing it atomically, and kresd reloads it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tests.peers.rpzpeer import ResolverPeer


class Kresd(ResolverPeer):
    program = "kresd"

    @property
    def rpz_file(self) -> Path:
        return self.directory / "rpz" / "aiwall.rpz"

    def command(self, binary: str) -> Sequence[str]:
        conf = self.directory / "kresd.conf"
        conf.write_text(self.conf())
        return [binary, "--noninteractive", "--config", str(conf), str(self.directory)]

    def conf(self) -> str:
        upstream, upstream_port = self.upstream
        return f"""\
net.listen('127.0.0.1', {self.port}, {{ kind = 'dns' }})
cache.size = 10 * MB
modules = {{ 'policy' }}
-- the file: NXDOMAIN for CNAME ., rpz-passthru. for exceptions; reread when replaced
policy.add(policy.rpz(policy.DENY, '{self.rpz_file}', true))
-- STUB: the test's upstream serves an unsigned root, so no DNSSEC validation
policy.add(policy.all(policy.STUB({{'{upstream}@{upstream_port}'}})))
"""
