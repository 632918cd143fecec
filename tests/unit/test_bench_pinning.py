"""--pin: the servers on their cores, the load generator and the benchmark's own process
on the others (bench/system.py)."""

from __future__ import annotations

import os

import pytest

from bench.cli import parse_args
from bench.system import cpu_list, stay_off_the_server_core


def test_the_bench_reads_taskset_cpu_lists_and_keeps_itself_on_the_load_cores():
    assert cpu_list("1") == {1}
    assert cpu_list("0,2-3") == {0, 2, 3}
    for wrong in ("", "a", "3-1", "-1", "1,"):
        with pytest.raises(ValueError, match=r"invalid literal|not a CPU list"):
            cpu_list(wrong)
    with pytest.raises(SystemExit):
        parse_args(["--pin", "1:x"])
    before = os.sched_getaffinity(0)
    settings = parse_args(["--pin", f"{max(before)}:{min(before)}"])
    try:
        stay_off_the_server_core(settings)
        # Woken by a server, the scheduler may only put the bench on the load's CPUs.
        assert os.sched_getaffinity(0) == {min(before)}
    finally:
        os.sched_setaffinity(0, before)
    stay_off_the_server_core(parse_args(["--pin", "none"]))
    assert os.sched_getaffinity(0) == before
