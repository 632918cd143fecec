"""The benchmark's wake-up cost (``bench/wakeups.py``): what it reports is the echoing
process's own CPU per datagram, so a known amount of work per echo shows up in both
figures, whether the other side sleeps between datagrams or not."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

WAKEUPS = Path(__file__).resolve().parents[2] / "bench" / "wakeups.py"


def test_the_echoing_sides_own_work_per_datagram_is_in_both_figures() -> None:
    # 400 µs of CPU per echo: far above what a wake-up or an echo costs on its own.
    done = subprocess.run(
        [sys.executable, str(WAKEUPS), "200", "--work-us", "400"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    figures = json.loads(done.stdout)
    assert figures["count"] == 200
    for key in ("sleeping_peer_us", "spinning_peer_us"):
        assert 400 <= figures[key] < 400 * 20, figures
