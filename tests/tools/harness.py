"""What the fuzz and soak scripts share: a real ``aiwall serve`` process on loopback, an
upstream for it (NSD when installed, else the fake), and the checks of its answers. The
peers themselves (tests/peers/) are the ones the test suite and the benchmark use."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.fakes.upstream import FakeUpstream  # noqa: E402
from tests.peers.aiwall import Aiwall  # noqa: E402
from tests.peers.nsd import Nsd, NsdError, nsd_binary  # noqa: E402
from tests.peers.ports import free_port  # noqa: E402
from tests.peers.probe import probe  # noqa: E402

BLOCKED = "chat.deepseek.com"  # in the shipped catalog
LISTED = "listed.fuzz.test"  # in the list file every run writes


@dataclass
class Upstream:
    spec: str
    kind: str
    nsd: Nsd | None = None
    fake: FakeUpstream | None = None

    def stop(self) -> None:
        if self.nsd is not None:
            self.nsd.stop()
        if self.fake is not None:
            self.fake.stop()


def start_upstream(directory: Path, *, prefer_nsd: bool = True, ttl: int = 300) -> Upstream:
    """NSD (rate limiting off) when it is installed and starts, else the Python fake."""
    if prefer_nsd and nsd_binary() is not None:
        with contextlib.suppress(NsdError):
            nsd = Nsd(directory, ttl=ttl, timeout=10)
            return Upstream(nsd.spec, "nsd", nsd=nsd)
    fake = FakeUpstream().start()
    return Upstream(fake.server_spec, "fake (Python)", fake=fake)


class ServerProcess(Aiwall):
    """``python -m resolver serve`` on a free loopback port, one worker (so its memory is
    one process's), with a list file of its own next to the config."""

    def __init__(self, directory: Path, upstream: Upstream, **sections: Any) -> None:
        (directory / "list.txt").write_text(f"{LISTED}\n")
        raw: dict[str, Any] = {
            "listen": {
                "dns": [f"127.0.0.1:{free_port()}"],
                "http": f"127.0.0.1:{free_port()}",
            },
            "upstream": {"servers": [upstream.spec], "timeout": 1.0},
            "blocking": {"lists": ["list.txt"]},
            "logging": {"level": "warning"},
            "workers": 1,
        }
        for name, values in sections.items():
            raw.setdefault(name, {}).update(values)
        super().__init__(raw, directory)
        if probe(self.address, LISTED, timeout=30) is None:
            self.stop()
            raise RuntimeError(f"the server did not start; see {self.log_path}")

    def check_answers(self) -> list[str]:
        """What is wrong with the answers to a forwarded, a blocked and a listed name, over
        UDP and TCP ([] when nothing)."""
        problems = []
        for name, expected in ((f"ok{time.time_ns()}.fuzz.test", 0), (BLOCKED, 3), (LISTED, 3)):
            for tcp in (False, True):
                got = probe(self.address, name, tcp=tcp, timeout=3.0)
                if got is None or got.rcode != expected:
                    transport = "tcp" if tcp else "udp"
                    seen = None if got is None else (got.rcode, round(got.seconds, 3))
                    problems.append(f"{name} over {transport}: {seen} instead of rcode {expected}")
        return problems

    def log_problems(self) -> list[str]:
        lines = self.log.splitlines()
        return [line for line in lines if "Traceback" in line or "failed on" in line]


@contextlib.contextmanager
def workdir(keep: bool = False) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="aiwall-"))
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)


def environment() -> dict[str, str]:
    return {"cpus": str(os.cpu_count()), "python": sys.version.split()[0]}


def run_command(
    parser: argparse.ArgumentParser,
    run: Callable[[argparse.Namespace], dict[str, object]],
    argv: list[str] | None,
) -> int:
    """The end of the fuzz and soak command lines: the options both take, the run, its
    JSON report (printed, and written to --json); exit status 0 when the report is ok."""
    parser.add_argument("--fake-upstream", action="store_true", help="never use NSD")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    report = run(args)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0 if report["ok"] else 1
