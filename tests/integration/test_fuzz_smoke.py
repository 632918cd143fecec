"""A short fuzz run (``make fuzz`` is the long one): a few thousand random, cut and
mutated packets over UDP and TCP, and the server still answers right in flat memory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # a tool run of tens of seconds: make test-slow
def test_hostile_packets_leave_the_server_answering_in_flat_memory(tmp_path: Path) -> None:
    report_path = tmp_path / "fuzz.json"
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "tests" / "tools" / "fuzz.py"),
            "--packets",
            "3000",
            "--seconds",
            "120",
            "--json",
            str(report_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert report_path.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(report_path.read_text())
    assert report["problems"] == []
    assert done.returncode == 0
    assert report["packets"] == 3000
    assert report["tcp_connections"] > 0
    assert report["udp_replies"] > 0
