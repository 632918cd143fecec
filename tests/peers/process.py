"""A child process started by a test, a tool or the benchmark: its output in a log file,
stopped by its own PID (or its own process group), its memory read from /proc."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path


class Process:
    """One child. stdout and stderr go to ``log_path``; ``group`` starts it in a session
    of its own, so that stopping it reaches the children it forks, and a Ctrl-C in the
    terminal reaches only the parent, which then stops its children in order."""

    def __init__(
        self,
        argv: Sequence[str],
        log_path: Path,
        *,
        name: str | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        group: bool = False,
        append: bool = False,
    ) -> None:
        self.name = name or log_path.stem
        self.log_path = log_path
        self.group = group
        with log_path.open("ab" if append else "wb") as out:
            self.proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=group,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 20) -> str:
        return tail(self.log_path, lines)

    def check_running(self) -> None:
        if not self.alive:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail(40)}")

    def signal(self, number: int) -> None:
        if self.group:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, number)
        else:
            self.proc.send_signal(number)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; the exit status (None only if
        even SIGKILL did not end it within 5 s)."""
        for number, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            if not self.alive:
                break
            self.signal(number)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(wait)
        return self.proc.poll()

    def memory_kb(self) -> dict[str, int]:
        return memory_kb(self.proc.pid)

    def __enter__(self) -> Process:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log file ("" when it cannot be read)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def descendants(pid: int) -> list[int]:
    """``pid`` and the pids of all its children, grandchildren...: aiwall with
    ``workers:`` forks."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses; fields follow the last ')'.
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) in KiB, summed over the process tree.

    With forked workers the sum counts shared pages once per process, so it is an upper
    bound; with one process it is exact.
    """
    totals = {"VmRSS": 0, "VmHWM": 0}
    for member in descendants(pid):
        try:
            status = Path(f"/proc/{member}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            key, _, value = line.partition(":")
            if key in totals:
                totals[key] += int(value.split()[0])
    return {"rss_kb": totals["VmRSS"], "peak_rss_kb": totals["VmHWM"]}
