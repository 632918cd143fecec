"""The benchmark's split of a server's CPU (``bench.system.process_cpu_split``): time
spent in the process's own code counts as user, time the kernel spends on its system
calls as kernel, and a child's time counts for the tree it belongs to. The report's
"CPU per answer" divides these by the answers given."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager

from bench.system import process_cpu_split

# A process that does one kind of work per line read: "user" spins in Python, "kernel"
# reads /dev/zero into one buffer (the copying is the kernel's), each until it has used
# SPEND seconds of CPU; "child" runs a child process that spins as long, then waits
# (alive) for the next line. It prints "done" after each.
WORKER = textwrap.dedent(
    """
    import subprocess, sys, time
    SPEND = float(sys.argv[1])
    # Reading the CPU clock is a system call: it is read once per 100,000 steps.
    SPIN = (
        "import time\\nend = time.process_time() + %r\\n"
        "while time.process_time() < end:\\n    for _ in range(100_000): pass\\n"
        "print('spun', flush=True)\\ninput()"
    )
    buffer = bytearray(1 << 20)
    zero = open("/dev/zero", "rb", buffering=0)
    for line in sys.stdin:
        end = time.process_time() + SPEND
        if line.strip() == "user":
            while time.process_time() < end:
                for _ in range(100_000):
                    pass
        elif line.strip() == "kernel":
            while time.process_time() < end:
                zero.readinto(buffer)
        else:
            # Measured while it is alive, as a worker is: it waits after its work.
            child = subprocess.Popen(
                [sys.executable, "-c", SPIN % SPEND],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            child.stdout.readline()
        print("done", flush=True)
        if line.strip() == "child":
            sys.stdin.readline()
            child.communicate("\\n")
    """
)
SPEND = 0.6


@contextmanager
def worker() -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(SPEND)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def run(proc: subprocess.Popen[str], work: str) -> tuple[float, float]:
    """The CPU (user, kernel) the process tree spent on ``work``."""
    assert proc.stdin is not None
    assert proc.stdout is not None
    before = process_cpu_split(proc.pid)
    proc.stdin.write(work + "\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "done"
    after = process_cpu_split(proc.pid)
    return after[0] - before[0], after[1] - before[1]


def test_code_of_its_own_counts_as_user_and_system_calls_as_kernel() -> None:
    with worker() as proc:
        user, kernel = run(proc, "user")
        # Clock ticks (10 ms) blur each figure a little; the work is 600 ms.
        assert user >= SPEND * 0.8, (user, kernel)
        assert kernel < SPEND * 0.2, (user, kernel)
        user, kernel = run(proc, "kernel")
        assert kernel >= SPEND * 0.5, (user, kernel)
        assert kernel > user, (user, kernel)


def test_a_childs_cpu_counts_for_the_tree() -> None:
    # aiwall's workers are the server process's children: their time is the server's.
    with worker() as proc:
        user, _kernel = run(proc, "child")
        assert user >= SPEND * 0.8, user
        assert proc.stdin is not None
        proc.stdin.write("\n")  # the child may go
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
