"""What a killed server leaves in ``state/run`` is removed by the next one to start, never
while another running server holds the folder (``resolver.serve.runfolder``)."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.upstream import DEFAULT_A, FakeUpstream
from tests.peers.aiwall import Aiwall, query, two_worker_config


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


def _leave_leftovers(run: Path) -> list[Path]:
    """What a server killed while building and publishing a policy leaves."""
    run.mkdir(parents=True, exist_ok=True)
    build = run / "build-k1ll3d"
    build.mkdir()
    (build / "table").write_bytes(b"\0" * 4096)
    published = [run / "policy-7.table", run / "policy-7.pickle", run / "policy-7.catalog"]
    for path in published:
        path.write_bytes(b"\0" * 1024)
    return [build, *published]


def _answers(server: Aiwall) -> bool:
    answer = query(*server.address, "allowed.example")
    return [rr.address for rrset in answer.answer for rr in rrset] == [DEFAULT_A]


def test_what_a_killed_server_left_is_removed_by_the_next_start(tmp_path, upstream):
    config = two_worker_config(upstream.server_spec, tmp_path)
    run = tmp_path / "state" / "run"
    left = _leave_leftovers(run)
    with Aiwall(config, tmp_path) as server:
        server.wait_serving()
        assert _answers(server)
        assert [path for path in left if path.exists()] == []
        assert "removed 4 files and folders a stopped server left" in server.log


def test_nothing_is_removed_while_another_server_holds_the_folder(tmp_path, upstream):
    config = two_worker_config(upstream.server_spec, tmp_path)
    run = tmp_path / "state" / "run"
    left = _leave_leftovers(run)
    holder = os.open(run / ".owner", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with Aiwall(config, tmp_path) as server:
            server.wait_serving()
            assert _answers(server)
            assert [path for path in left if not path.exists()] == []
            assert "another running aiwall uses the state folder" in server.log
    finally:
        os.close(holder)
