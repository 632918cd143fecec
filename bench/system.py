"""The machine the benchmark runs on: its child processes, short commands, Debian
packages, CPU pinning and accounting, and the git checkout."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import FrameType

from bench.settings import REPO, BenchError, Settings
from tests.peers.process import Process, descendants

# Debian package of each program the benchmark runs.
PACKAGES = {"dnsperf": "dnsperf", "nsd": "nsd", "dnsmasq": "dnsmasq-base", "unbound": "unbound"}


class Processes:
    """Every child the benchmark starts, so that all of them die with it."""

    def __init__(self) -> None:
        self._running: list[Process] = []

    def start(
        self,
        command: Sequence[str],
        log: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Process:
        # A session of its own: the signal reaches the whole process group, and a
        # Ctrl-C in the terminal reaches only us, so we stop children in order.
        proc = Process(command, log, env=env, cwd=cwd, group=True, append=True)
        self._running.append(proc)
        return proc

    def stop(self, proc: Process) -> None:
        if proc in self._running:
            self._running.remove(proc)
        proc.stop(10.0)

    def stop_all(self) -> None:
        for proc in reversed(list(self._running)):
            self.stop(proc)


def raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_tool(
    command: Sequence[str],
    timeout: float,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> str:
    """Run a short command and return its output; a failure stops the benchmark."""
    try:
        done = subprocess.run(
            list(command),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=cwd,
            env=env,
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"{command[0]} did not finish in {timeout:.0f} s") from None
    if done.returncode != 0:
        raise BenchError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout + done.stderr


def find_binary(name: str) -> str | None:
    # /usr/sbin is not on a non-root PATH, yet that is where Debian puts the daemons.
    return shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/sbin") / name) if p.exists()), None
    )


def ensure_packages(programs: Iterable[str]) -> None:
    """Install the Debian packages of missing programs, as tests/tools/install-system-deps.sh."""
    missing = sorted({PACKAGES[p] for p in programs if p in PACKAGES and find_binary(p) is None})
    if not missing:
        return
    if os.geteuid() != 0:
        raise BenchError(
            f"missing Debian packages: {' '.join(missing)} "
            f"(as root: apt-get install -y {' '.join(missing)})"
        )
    print(f"installing Debian packages: {' '.join(missing)}", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run_tool(["apt-get", "update", "-qq"], timeout=600, env=env)
    run_tool(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
        timeout=900,
        env=env,
    )
    # The packages may start system instances on port 53; the benchmark runs its own.
    subprocess.run(
        ["systemctl", "disable", "--now", "nsd", "unbound"],
        capture_output=True,
        timeout=60,
        check=False,
    )


def cpu_list(text: str) -> set[int]:
    """CPUs in taskset's list format: ``1``, ``0-3``, ``0,2-3``."""
    cpus: set[int] = set()
    for part in text.split(","):
        low, _, high = part.partition("-")
        first, last = int(low), int(high or low)
        if first < 0 or last < first:
            raise ValueError(f"not a CPU list: {text!r}")
        cpus.update(range(first, last + 1))
    return cpus


def stay_off_the_server_core(settings: Settings) -> None:
    """With --pin, the benchmark's own process runs on the load generator's CPUs, with
    every thread it starts later. It reads /metrics, serves the pauses phase's remote
    list and waits for dnsperf; unpinned, Linux woke it on the core of the server that
    had just answered it, and it ran there: 3.3 ms at once in a run of the pauses phase
    while the server's queries waited (``perf sched timehist``, 2026-12-02), a stall
    the report then charged to aiwall. Call it before any thread is started."""
    if settings.pin is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cpu_list(settings.pin[1]))


def pinned(settings: Settings, command: list[str], role: str) -> list[str]:
    """``command`` under taskset when --pin is given: servers apart from the load."""
    if settings.pin is None:
        return command
    cpus = settings.pin[0] if role == "server" else settings.pin[1]
    return ["taskset", "-c", cpus, *command]


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU time of the whole machine that was not idle, steal included (another VM ran)."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def process_cpu_split(pid: int) -> tuple[float, float]:
    """CPU seconds of a process tree in user space and in the kernel (utime, stime: the
    kernel's share holds the system calls and the network stack's work done for them,
    softirqs included where the kernel charges them to the task)."""
    user = system = 0
    for member in descendants(pid):
        try:
            stat = Path(f"/proc/{member}/stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        user += int(fields[11])  # field 14 of proc(5)
        system += int(fields[12])  # field 15
    return user / CLOCK_TICKS, system / CLOCK_TICKS


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a process tree."""
    return sum(process_cpu_split(pid))


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def git_describe() -> str:
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "log", "--oneline", "-1"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "resolver"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.split("\n")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    changed = [line[3:] for line in dirty if line.strip()]
    commit = head.split(" ", 1)[0] or "unknown"
    return commit + (f" + uncommitted {', '.join(changed)}" if changed else "")
