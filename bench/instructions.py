"""Instructions per query, counted by valgrind's callgrind over a fixed replay
(bench/replay.py): a figure that does not move with the machine's load, so CI can fail a
change that makes the hot path dearer (tests/integration/test_instruction_guard.py).

    python bench/instructions.py            # measure, compare with the baseline
    python bench/instructions.py --update   # measure, write the baseline (on purpose)

The baseline (bench/instructions.json) holds the counts and what they were measured
with: the counts are only comparable on the same Python and valgrind. It holds them for
the two ways the hot path runs (resolver/compiled.py): compiled, where the install found
a C compiler, and from source (AIWALL_PURE=1); each is measured and guarded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from resolver import compiled

BENCH = Path(__file__).resolve().parent
BASELINE = BENCH / "instructions.json"
# Questions per phase: enough that start-up effects (first-time paths, cache warm-up)
# are a small share, few enough that the run stays a few minutes under callgrind.
COUNT = 400
# A change may cost this much more per query before the guard fails.
TOLERANCE = 0.10
# The replay's phases, in its order (bench/replay.py, which this runs under callgrind).
PHASES = ("miss", "cached", "cached-fast", "blocked", "blocked-first", "blocked-fast")
# A dump with fewer instructions than this is a mark's second trigger, not a phase.
EMPTY_DUMP = 10_000


def toolchain() -> dict[str, str]:
    valgrind = subprocess.run(
        ["valgrind", "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return {"python": platform.python_version(), "valgrind": valgrind}


def _total(path: Path) -> int:
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1])
    raise ValueError(f"{path}: no totals line")


MODES = ("compiled", "source")


def modes() -> tuple[str, ...]:
    """The ways the hot path can run here: from source always, compiled when built."""
    return MODES if compiled.COMPILED else MODES[1:]


def measure(count: int = COUNT, mode: str = "source") -> dict[str, float]:
    """Instructions per question for each phase of the replay, the hot path run ``mode``."""
    if shutil.which("valgrind") is None:
        raise RuntimeError("valgrind is not installed (tests/tools/install-system-deps.sh)")
    with tempfile.TemporaryDirectory(prefix="aiwall-callgrind-") as directory:
        out = Path(directory) / "callgrind.out"
        command = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            "--dump-before=*getppid",  # bench/replay.py calls it after start-up and each phase
            sys.executable,
            str(BENCH / "replay.py"),
            "--marks",
            "--count",
            str(count),
        ]
        # The same hash seed every run: dict and set layouts, hence the work, repeat.
        env = dict(os.environ, PYTHONHASHSEED="0")
        env.pop("AIWALL_PURE", None)
        if mode == "source":
            env["AIWALL_PURE"] = "1"
        subprocess.run(command, check=True, env=env, capture_output=True, timeout=1800)
        dumps = sorted(
            Path(directory).glob("callgrind.out.*"),
            key=lambda p: int(re.sub(r"\D", "", p.suffix) or 0),
        )
        # glibc's getppid has two names (getppid, __getppid): each mark may dump twice,
        # the second time with next to nothing. What is left: start-up, then a phase each.
        totals = [total for total in map(_total, dumps) if total > EMPTY_DUMP]
        if len(totals) < len(PHASES) + 1:
            raise RuntimeError(f"expected {len(PHASES) + 1} dumps, found {len(totals)}")
        totals = totals[1 : len(PHASES) + 1]
    return {phase: round(total / count) for phase, total in zip(PHASES, totals, strict=True)}


def compare(measured: dict[str, float], baseline: dict[str, float]) -> list[str]:
    """The phases that cost more than the tolerance over the baseline."""
    return [
        f"{phase}: {measured[phase]:,.0f} instructions per query, baseline "
        f"{baseline[phase]:,.0f} (+{measured[phase] / baseline[phase] - 1:.0%})"
        for phase in PHASES
        if measured[phase] > baseline[phase] * (1 + TOLERANCE)
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--update", action="store_true", help="write the baseline")
    args = parser.parse_args()
    measured = {mode: measure(mode=mode) for mode in modes()}
    print(json.dumps(measured, indent=2))
    if args.update:
        kept = json.loads(BASELINE.read_text()) if BASELINE.exists() else {}
        baseline = {"toolchain": toolchain(), **{m: kept[m] for m in MODES if m in kept}}
        baseline.update(measured)
        BASELINE.write_text(json.dumps(baseline, indent=2) + "\n")
        print(f"baseline written to {BASELINE}")
        return 0
    baseline = json.loads(BASELINE.read_text())
    worse = [
        f"{mode}: {line}" for mode in measured for line in compare(measured[mode], baseline[mode])
    ]
    for line in worse:
        print("dearer:", line)
    return 1 if worse else 0


if __name__ == "__main__":
    sys.exit(main())
