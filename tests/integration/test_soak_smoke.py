"""A short overload run (``make soak`` is the long one): a few seconds at twice the
measured capacity; the server keeps answering, recovers at once and its memory stays
flat. Speed is reported by the script, never asserted here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # a tool run of tens of seconds: make test-slow
def test_overload_is_survived_and_recovered_from_at_once(tmp_path: Path) -> None:
    report_path = tmp_path / "soak.json"
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "tests" / "tools" / "soak.py"),
            "--duration",
            "8",
            "--measure",
            "3",
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
    assert report["completed"] > 0
    assert report["recovery"]["answered"] == report["recovery"]["queries"]
