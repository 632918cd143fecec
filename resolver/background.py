"""How aiwall's helpers leave the CPU to the answering event loop: its helper processes
(the audit trail's writer, the reload builders) by a lower scheduling priority, where
the system allows; its helper threads by holding the interpreter for short turns.

Best effort. A sandbox may refuse the calls: the shipped systemd unit's system-call
filter once denied them (``@resources``, with EPERM), and a container or another unit may
still. A helper that cannot step aside must go on with its work all the same: the
refusal is logged and costs only the priority. It once cost the whole audit trail (the
writer died at every start) and every reload (the builders' forker died with it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger(__name__)

# How long a thread keeps the interpreter while another waits for it: see
# ``threads_take_turns``.
SWITCH_INTERVAL = 0.0005
# The scheduling priority of the answering process's helper threads: see
# ``helper_threads``.
HELPER_THREAD_NICE = 19

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
    refused = lower_priority(0, nice, idle)
    if refused:
        log.warning(
            "%s: the system refused a lower priority (%s); it runs at the server's priority",
            what,
            "; ".join(refused),
        )
    return not refused


def lower_priority(pid: int, nice: int, idle: bool = False) -> list[str]:
    """``step_aside`` for process ``pid`` (0: the calling thread, as Linux counts it);
    what the system refused, unlogged. A parent calls it on the helper it has just
    started, which then runs its own ``step_aside`` once its imports are done: the
    audit writer's imports cost about 0.3 s of CPU, at the server's priority until
    then, and took the pinned core from the server for up to 49 ms at a time at every
    server start (development VM, 2026-12-02, the pauses phase of ``make bench``)."""
    refused: list[str] = []
    try:
        now = os.getpriority(os.PRIO_PROCESS, pid)
        os.setpriority(os.PRIO_PROCESS, pid, min(now + nice, 19))
    except OSError as error:
        refused.append(f"nice {nice}: {error.strerror}")
    if idle and hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0))
        except OSError as error:
            refused.append(f"SCHED_IDLE: {error.strerror}")
    return refused


def step_back(what: str) -> bool:
    """Back to the normal priority (SCHED_OTHER, nice 0): for a helper whose work now
    holds up the server's stop (the audit writer's last flush), which at SCHED_IDLE
    could wait for a busy core for seconds (9.2-12.6 s with both cores kept busy by one
    process each, against 0.2 s since; development VM, 2026-12-01), past a service
    manager's stop timeout.
    An unprivileged process may do it only as far as RLIMIT_NICE allows
    (deploy/systemd/aiwall.service sets it); refused, the helper goes on where it is."""
    refused = restore_priority(0)
    if refused:
        log.info("%s: could not take back the normal priority (%s)", what, "; ".join(refused))
    return not refused


def restore_priority(pid: int) -> list[str]:
    """``step_back`` for process ``pid`` (0: the calling thread); what the system
    refused, unlogged. The server calls it on the audit writer before its last flush:
    lowered the moment it was started (``lower_priority``), a writer started on busy
    cores may still be in its imports, which at ``SCHED_IDLE`` could take minutes."""
    refused: list[str] = []
    if hasattr(os, "SCHED_OTHER"):
        try:
            if os.sched_getscheduler(pid) != os.SCHED_OTHER:
                os.sched_setscheduler(pid, os.SCHED_OTHER, os.sched_param(0))
        except OSError as error:
            refused.append(f"SCHED_OTHER: {error.strerror}")
    try:
        if os.getpriority(os.PRIO_PROCESS, pid) > 0:
            os.setpriority(os.PRIO_PROCESS, pid, 0)
    except OSError as error:
        refused.append(f"nice 0: {error.strerror}")
    return refused


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


def threads_take_turns() -> None:
    """A helper thread running Python (a config read, a policy loaded or retired, a list
    refreshed: ``asyncio.to_thread``) gives the interpreter back to the event loop
    within ``SWITCH_INTERVAL`` rather than Python's 5 ms. The loop lets go of the
    interpreter at each turn (in ``epoll_wait``) and must then wait for it: with a busy
    helper thread, every turn waited the whole interval. Measured (development VM,
    2026-12-01; a 2 ms timer, a thread adding numbers meanwhile, 300 turns): late by
    5.3 ms at the median and 10-16 ms at worst at 5 ms; 0.7 ms and 3.6-4.6 ms at
    0.5 ms. Handing over more often costs the helper a few microseconds a turn, and
    nothing when no thread waits. For the whole process (its workers inherit it)."""
    sys.setswitchinterval(SWITCH_INTERVAL)


def helper_threads(loop: asyncio.AbstractEventLoop) -> None:
    """The threads ``asyncio.to_thread`` runs work in (a reload's loading and freeing of
    policies, a remote list's refresh) leave the core to the event loop's thread: each
    lowers its own scheduling priority (Linux gives each thread its own). With two
    threads of the same priority on a busy core, the event loop's thread, woken by a
    query, waited for the helper's time slice to end before it could even ask for the
    interpreter: late by 5-7 ms, again and again, while a list refresh ran on one core
    (development VM, 2026-12-01, the server pinned to one core at 5,000 queries a
    second). Call it in the process that answers, before its first ``to_thread``."""
    loop.set_default_executor(
        ThreadPoolExecutor(thread_name_prefix="aiwall-helper", initializer=_step_aside_thread)
    )


def _step_aside_thread() -> None:
    # On Linux setpriority(PRIO_PROCESS, 0) lowers the calling thread only; elsewhere it
    # would lower the whole process, the event loop's thread with it.
    if sys.platform == "linux":
        step_aside("a helper thread of the answering process", HELPER_THREAD_NICE)
