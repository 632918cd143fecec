"""What waking a sleeping process on the other core costs the waker, on this machine.

Two processes, one on the server's core and one on the load generator's, echo a
datagram back and forth over loopback. The echoing side (where the servers run) waits
in ``epoll`` as a server does; the other side either sleeps in ``recv`` between
datagrams, so that every echo has to wake it, or spins on a non-blocking ``recv`` and
never needs waking. The echoing side's CPU time per datagram, read from
``/proc/PID/schedstat`` (nanoseconds, not ticks), is given for both: the difference is
what a wake-up costs the process that sends. On a virtual machine it can be several
times the work of the echo itself.

A server at full load rarely wakes anyone: the load generator and the upstream are busy.
At half load they sleep between datagrams, so a server pays part of that cost per answer
there and is busier per query than at its peak; the p99s at half load are measured on
cores that busy. The benchmark measures it once, before the runs.

    python bench/wakeups.py COUNT [SERVER_CPU PEER_CPU] [--work-us N]   # JSON
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import time
from typing import Any

# A round trip that takes longer than this means the echoing side is gone.
_GIVE_UP = 5.0


def _schedstat_ns(pid: int) -> int:
    with open(f"/proc/{pid}/schedstat", encoding="ascii") as stat:
        return int(stat.read().split()[0])


def _echo(sock: socket.socket, count: int, cpu: int | None, work: float) -> None:
    """The echoing side, in a forked child: answers ``count`` datagrams, then exits."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    poller = select.epoll()
    poller.register(sock.fileno(), select.EPOLLIN)
    answered = 0
    while answered < count:
        if not poller.poll(_GIVE_UP):
            return  # the asking side is gone (it gave up): no waitpid() hangs on us
        try:
            data, peer = sock.recvfrom(512)
        except BlockingIOError:
            continue
        # CPU time, not wall time: preempted or not, each echo costs at least ``work``.
        until = time.process_time() + work
        while time.process_time() < until:
            pass
        sock.sendto(data, peer)
        answered += 1


def echo_cpu_us(
    count: int, peer_sleeps: bool, cpus: tuple[int, int] | None, work: float = 0.0
) -> float:
    """The echoing side's CPU per datagram (µs) over ``count`` round trips."""
    echoing = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    echoing.bind(("127.0.0.1", 0))
    echoing.setblocking(False)
    asking = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    asking.bind(("127.0.0.1", 0))
    if peer_sleeps:
        asking.settimeout(_GIVE_UP)
    else:
        asking.setblocking(False)
    child = os.fork()
    if child == 0:
        try:
            _echo(echoing, count + 1, cpus[0] if cpus else None, work)
        finally:
            os._exit(0)
    try:
        if cpus is not None:
            os.sched_setaffinity(0, {cpus[1]})
        target = echoing.getsockname()
        _round_trip(asking, target, peer_sleeps)  # the child is up and polling
        before = _schedstat_ns(child)
        for _ in range(count):
            _round_trip(asking, target, peer_sleeps)
        spent = _schedstat_ns(child) - before
    finally:
        os.waitpid(child, 0)
        echoing.close()
        asking.close()
    return spent / count / 1000


def _round_trip(sock: socket.socket, target: tuple[str, int], sleeps: bool) -> None:
    sock.sendto(b"\x00" * 32, target)
    if sleeps:
        sock.recv(512)  # times out after _GIVE_UP
        return
    give_up = time.monotonic() + _GIVE_UP
    while True:
        try:
            sock.recv(512)
            return
        except BlockingIOError:
            if time.monotonic() > give_up:
                raise TimeoutError("no echo") from None


def measure(count: int, cpus: tuple[int, int] | None, work: float = 0.0) -> dict[str, Any]:
    return {
        "count": count,
        "sleeping_peer_us": round(echo_cpu_us(count, True, cpus, work), 1),
        "spinning_peer_us": round(echo_cpu_us(count, False, cpus, work), 1),
    }


def describe(wakeups: dict[str, Any] | None) -> str:
    """One line of the report (empty when it was not measured)."""
    if not wakeups:
        return ""
    return (
        "- waking a process asleep on the other core: a process on the server's core echoing"
        f" datagrams spent {wakeups['sleeping_peer_us']:.1f} µs of CPU per datagram when the"
        f" other side slept between them, {wakeups['spinning_peer_us']:.1f} µs when it never"
        " slept (bench/wakeups.py); at half load the load generator and NSD sleep between"
        " datagrams, so every server is busier per query there than at its peak"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("count", type=int)
    parser.add_argument("cpus", type=int, nargs="*", help="the server's CPU, then the peer's")
    parser.add_argument("--work-us", type=float, default=0.0, help="work per echo (tests)")
    args = parser.parse_args()
    cpus = (args.cpus[0], args.cpus[1]) if len(args.cpus) == 2 else None
    print(json.dumps(measure(args.count, cpus, args.work_us / 1e6)))


if __name__ == "__main__":
    main()
