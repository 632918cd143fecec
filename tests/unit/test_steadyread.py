"""Building from list files only when nobody is writing them."""

from __future__ import annotations

import os
import time

import pytest

from resolver.policy.steadyread import ListsChanging, build_when_steady


class Clock:
    """Wall time for the settle check, moved by the fake sleep."""

    def __init__(self) -> None:
        self.now = time.time()
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def aged(path, seconds: float, clock: Clock) -> None:
    stamp = clock.now - seconds
    os.utime(path, (stamp, stamp))


def test_a_quiet_file_is_built_at_once(tmp_path):
    listed = tmp_path / "a.txt"
    listed.write_text("a.test\n")
    clock = Clock()
    aged(listed, 10, clock)
    assert build_when_steady([listed], listed.read_text, clock=clock, sleep=clock.sleep) == (
        "a.test\n"
    )
    assert clock.slept == []


def test_a_file_changed_a_moment_ago_is_left_to_settle(tmp_path):
    listed = tmp_path / "a.txt"
    listed.write_text("a.test\n")
    clock = Clock()
    aged(listed, 0.05, clock)
    build_when_steady([listed], listed.read_text, clock=clock, sleep=clock.sleep, settle=0.2)
    assert clock.slept == [pytest.approx(0.15, abs=0.01)]


def test_a_modification_time_in_the_future_is_not_waited_on(tmp_path):
    listed = tmp_path / "a.txt"
    listed.write_text("a.test\n")
    clock = Clock()
    aged(listed, -3600, clock)  # copied with cp -p from a clock an hour ahead
    build_when_steady([listed], listed.read_text, clock=clock, sleep=clock.sleep)
    assert clock.slept == []


def test_a_file_that_changes_during_the_build_is_read_again(tmp_path):
    listed = tmp_path / "a.txt"
    listed.write_text("old.test\n")
    clock = Clock()
    aged(listed, 10, clock)
    reads: list[str] = []

    def build() -> str:
        text = listed.read_text()
        reads.append(text)
        if len(reads) == 1:
            listed.write_text("new.test\nmore.test\n")  # the writer strikes mid-build
            aged(listed, 5, clock)
        return text

    result = build_when_steady([listed], build, clock=clock, sleep=clock.sleep)
    assert result == "new.test\nmore.test\n"
    assert len(reads) == 2


def test_an_error_from_a_half_written_file_is_retried(tmp_path):
    listed = tmp_path / "a.txt"
    listed.write_text("")
    clock = Clock()
    aged(listed, 10, clock)
    calls = 0

    def build() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            listed.write_text("done.test\n")
            aged(listed, 5, clock)
            raise ValueError("no usable line")
        return listed.read_text()

    assert build_when_steady([listed], build, clock=clock, sleep=clock.sleep) == "done.test\n"


def test_an_error_from_a_steady_file_is_raised(tmp_path):
    listed = tmp_path / "a.txt"
    listed.write_text("bad\n")
    clock = Clock()
    aged(listed, 10, clock)

    def build() -> str:
        raise ValueError("no usable line")

    with pytest.raises(ValueError, match="no usable line"):
        build_when_steady([listed], build, clock=clock, sleep=clock.sleep)


def test_a_file_that_never_settles_gives_up_with_advice(tmp_path):
    listed = tmp_path / "a.txt"
    listed.write_text("a.test\n")
    clock = Clock()

    def build() -> str:
        listed.write_text(listed.read_text() + "x.test\n")
        return "never"

    aged(listed, 10, clock)
    with pytest.raises(ListsChanging, match=r"a.txt.*kept changing.*mv"):
        build_when_steady([listed], build, clock=clock, sleep=clock.sleep, give_up=2)


def test_missing_files_are_left_to_the_build_to_report(tmp_path):
    def build() -> str:
        raise FileNotFoundError("missing.txt")

    with pytest.raises(FileNotFoundError):
        build_when_steady([tmp_path / "missing.txt"], build)
