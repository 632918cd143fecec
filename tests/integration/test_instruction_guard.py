"""The CI guard on the hot path's cost: instructions per query, counted by callgrind over
a fixed replay (bench/instructions.py), must stay within 10 % of the committed baseline.
A change that makes a path dearer on purpose updates the baseline in the same commit
(`make instructions-baseline`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.instructions import BASELINE, PHASES, TOLERANCE, compare, measure, modes, toolchain

ROOT = Path(__file__).resolve().parents[2]


def test_compare_flags_only_what_costs_more_than_the_tolerance() -> None:
    baseline = dict.fromkeys(PHASES, 100_000.0)
    measured = dict(baseline, blocked=100_000 * (1 + TOLERANCE) + 1, miss=50_000.0)
    worse = compare(measured, baseline)
    assert len(worse) == 1
    assert worse[0].startswith("blocked:")


@pytest.mark.slow
def test_instructions_per_query_stay_within_the_baseline() -> None:
    baseline = json.loads(BASELINE.read_text(encoding="utf-8"))
    assert baseline["toolchain"] == toolchain(), (
        "the baseline was counted with another Python or valgrind: "
        "run `make instructions-baseline` and commit bench/instructions.json"
    )
    for mode in modes():
        assert compare(measure(mode=mode), baseline[mode]) == [], mode


def test_the_stage_breakdown_accounts_for_every_phase() -> None:
    """The README's table of where a query's time goes comes from this command."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "replay.py"), "--stages", "--count", "60"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    stages = json.loads(done.stdout)
    assert list(stages) == list(PHASES)
    for phase, split in stages.items():
        assert split["total, untimed"] > 0, phase
        assert all(value >= 0 for value in split.values()), phase
    # The fast path answers without the pipeline; the first pass walks it.
    assert not any(key.startswith("pipeline:") for key in stages["blocked-fast"])
    assert "pipeline: blocking" in stages["blocked"]
    # A first answer from the fast path: its own decision, no pipeline stage.
    first = stages["blocked-first"]
    assert not any(key.startswith("pipeline:") for key in first)
    assert first["fast path: blocking decision (policy lookup, verdict)"] > 0
