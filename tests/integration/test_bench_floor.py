"""The benchmark's machine floor: a core taken away from the spinning process shows up
as a gap as long as the time it was away (here, the process stopped by a signal)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

FLOOR = Path(__file__).resolve().parents[2] / "bench" / "floor.py"


def test_a_core_taken_away_for_80_ms_is_a_gap_of_at_least_80_ms() -> None:
    spinning = subprocess.Popen(
        [sys.executable, str(FLOOR), "1.5"], stdout=subprocess.PIPE, text=True
    )
    try:
        time.sleep(0.5)
        spinning.send_signal(signal.SIGSTOP)
        time.sleep(0.08)
        spinning.send_signal(signal.SIGCONT)
        out, _ = spinning.communicate(timeout=30)
    finally:
        if spinning.poll() is None:
            spinning.kill()
            spinning.wait()
    floor = json.loads(out)
    assert floor["seconds"] == 1.5
    assert floor["worst_ms"] >= 80
    assert floor["over_5ms"] >= 1
    assert floor["over_1ms"] >= floor["over_2ms"] >= floor["over_5ms"]
