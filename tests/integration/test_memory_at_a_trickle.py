"""A server answering a trickle of queries, as an office's does most of the day, still
collects the interpreter's older generations: reference cycles that outlive a young
collection (an exception kept with its traceback, a closed connection) are freed, not
kept for the life of the process."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.fakes.upstream import FakeUpstream
from tests.integration.test_one_server import ask, ask_tcp, config_for
from tests.peers.aiwall import Aiwall


@pytest.mark.parametrize(
    ("workers", "generation", "seconds"),
    [(1, "1", 3.0), (2, "1", 3.0), (1, "2", 12.0)],
    ids=["middle generation", "middle generation, two workers", "oldest generation"],
)
def test_a_trickle_of_queries_still_gets_older_generations_collected(
    upstream: FakeUpstream,
    catalog_dir: Path,
    tmp_path: Path,
    workers: int,
    generation: str,
    seconds: float,
) -> None:
    config = config_for([upstream.server_spec], workers, state={"directory": str(tmp_path / "s")})
    server = Aiwall(config, tmp_path, catalog_dir=catalog_dir)
    try:
        server.wait_serving(60)
        ask(server, "warm.example")
        before = server.metric("python_gc_collections_total", generation=generation)
        deadline = time.monotonic() + seconds
        count = 0
        # 20 queries a second, over UDP and TCP: far below the interpreter's own trigger
        # (700 new objects between two collections, which the server's own young
        # collections every 10 ms reset).
        while time.monotonic() < deadline:
            count += 1
            (ask_tcp if count % 2 else ask)(server, f"q{count}.trickle.example")
            time.sleep(0.05)
        after = server.metric("python_gc_collections_total", generation=generation)
    finally:
        server.stop()
    # The middle generation's turn comes after 10 young collections (about 100 ms), the
    # oldest's every 10 s (resolver.serve.young); on a loaded machine the 10 ms ticks
    # come late, so at least one.
    assert after - before >= 1, f"generation {generation}: none in {seconds} s ({before}, {after})"
