"""How aiwall's helper processes (the audit trail's writer, the reload builders) leave
the CPU to the answering process: a lower scheduling priority, where the system allows.

Best effort. A sandbox may refuse the calls: the shipped systemd unit's system-call
filter once denied them (``@resources``, with EPERM), and a container or another unit may
still. A helper that cannot step aside must go on with its work all the same: the
refusal is logged and costs only the priority. It once cost the whole audit trail (the
writer died at every start) and every reload (the builders' forker died with it).
"""

from __future__ import annotations

import contextlib
import logging
import os

log = logging.getLogger(__name__)

# The system calls ``step_aside`` and ``step_back`` make on Linux: what a sandbox must let
# through for the helpers to step aside and back (deploy/systemd/aiwall.service).
SYSCALLS = ("setpriority", "sched_setscheduler", "getpriority", "sched_getscheduler")
# And the one ``give_way`` makes.
YIELD_SYSCALL = "sched_yield"


def step_aside(what: str, nice: int, idle: bool = False) -> bool:
    """Lower this process's priority by ``nice``; with ``idle``, also put it in
    SCHED_IDLE (Linux: it runs only when nothing else wants the core, and a waking
    process of normal priority preempts it at once). ``what`` names the process in the
    log. True when everything asked for was applied."""
    refused: list[str] = []
    try:
        os.nice(nice)
    except OSError as error:
        refused.append(f"nice {nice}: {error.strerror}")
    if idle and hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        except OSError as error:
            refused.append(f"SCHED_IDLE: {error.strerror}")
    if refused:
        log.warning(
            "%s: the system refused a lower priority (%s); it runs at the server's priority",
            what,
            "; ".join(refused),
        )
    return not refused


def step_back(what: str) -> bool:
    """Back to the normal priority (SCHED_OTHER, nice 0): for a helper whose work now
    holds up the server's stop (the audit writer's last flush), which at SCHED_IDLE
    could wait for a busy core for seconds (9.2-12.6 s with both cores kept busy by one
    process each, against 0.2 s since; development VM, 2026-12-01), past a service
    manager's stop timeout.
    An unprivileged process may do it only as far as RLIMIT_NICE allows
    (deploy/systemd/aiwall.service sets it); refused, the helper goes on where it is."""
    refused: list[str] = []
    if hasattr(os, "SCHED_OTHER"):
        try:
            if os.sched_getscheduler(0) != os.SCHED_OTHER:
                os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        except OSError as error:
            refused.append(f"SCHED_OTHER: {error.strerror}")
    try:
        if os.getpriority(os.PRIO_PROCESS, 0) > 0:
            os.setpriority(os.PRIO_PROCESS, 0, 0)
    except OSError as error:
        refused.append(f"nice 0: {error.strerror}")
    if refused:
        log.info("%s: could not take back the normal priority (%s)", what, "; ".join(refused))
    return not refused


def give_way() -> None:
    """Between two pieces of a helper's work: let a waiting process have the core.

    SCHED_IDLE alone does not keep a helper from holding the server's core while the
    server waits. Linux 6.18 (EEVDF, the development VM, 2026-12-01), the server pinned
    to one core at 45,000 banned answers a second: when a third process preempted the
    server and then slept, the scheduler picked the audit writer, SCHED_IDLE, over the
    server, still runnable, and the writer kept the core until the next tick, 3.0-4.5 ms
    later, five times in 8 s (``perf sched``): a loop stall of as long. The writer's work
    comes in pieces of well under a millisecond, with this call between them."""
    with contextlib.suppress(OSError):  # refused by a sandbox: the pieces stay short
        os.sched_yield()
