"""The supervisor's worker processes: forked, connected, watched, asked, stopped.

A worker is forked from the supervisor (``serve.worker``); its end of a socket pair
carries the control channel (``serve.channel``). A worker that dies is forked again
after a short back-off, from whatever the supervisor holds then (the current policy);
the supervisor is told (``died``) so that the totals of the dead one are kept. On the
way out, SIGTERM to each, a bounded wait, and SIGKILL for any that is left: no worker
outlives the supervisor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from resolver.serve.channel import Channel, ChannelClosed
from resolver.serve.worker import WorkerStart, run_in_child

log = logging.getLogger(__name__)

START_TIMEOUT = 120.0
RESTART_BACKOFF = 1.0
STOP_TIMEOUT = 10.0

# What a worker is born with: its index and its end of the channel -> the rest.
StartFor = Callable[[int, socket.socket], WorkerStart]
# A note from worker ``index``: (index, op, payload).
OnNote = Callable[[int, str, Any], Awaitable[None]]


class WorkerStartError(RuntimeError):
    """A worker exited before it was serving: its own log line says why."""


class Handle:
    """The supervisor's side of one worker."""

    def __init__(self, index: int, pid: int, sock: socket.socket) -> None:
        self.index = index
        self.pid = pid
        self.sock = sock
        self.channel: Channel | None = None
        self.started = asyncio.Event()  # set by the worker's "started" note
        self.exited = False


class Fleet:
    def __init__(
        self,
        count: int,
        start_for: StartFor,
        on_note: OnNote,
        died: Callable[[int], None],
        inherited: Callable[[], list[socket.socket]],
    ) -> None:
        """``inherited``: the supervisor's own sockets, which a forked worker closes."""
        self.count = count
        self.handles: list[Handle] = []
        self._start_for = start_for
        self._on_note = on_note
        self._died = died
        self._inherited = inherited

    def fork_all(self) -> None:
        """Before any event loop runs in this process (the first workers)."""
        for index in range(self.count):
            self.handles.append(self._fork(index))

    def _fork(self, index: int) -> Handle:
        parent, child = socket.socketpair()
        start = self._start_for(index, child)
        inherited = [parent, *(h.sock for h in self.handles), *self._inherited()]
        pid = os.fork()
        if pid == 0:
            run_in_child(start, inherited)
        child.close()
        return Handle(index, pid, parent)

    async def connect_all(self) -> None:
        for handle in self.handles:
            await self._connect(handle)

    async def _connect(self, handle: Handle) -> None:
        handle.started = asyncio.Event()

        async def note(op: str, payload: Any) -> None:
            if op == "started":
                handle.started.set()
            else:
                await self._on_note(handle.index, op, payload)

        handle.channel = Channel(handle.sock, note)
        await handle.channel.start()

    async def wait_started(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        for handle in self.handles:
            while not handle.started.is_set():
                if self.reap(handle) or time.monotonic() > deadline:
                    raise WorkerStartError(f"worker {handle.index} did not start")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(handle.started.wait(), 0.2)

    @staticmethod
    def reap(handle: Handle) -> bool:
        """True when the worker has exited (and is reaped)."""
        if handle.exited:
            return True
        try:
            pid, _status = os.waitpid(handle.pid, os.WNOHANG)
        except ChildProcessError:
            pid = handle.pid
        handle.exited = pid == handle.pid
        return handle.exited

    async def watch(self, stopping: asyncio.Event) -> None:
        """Fork a worker that died again, for as long as we are not stopping."""
        while not stopping.is_set():
            await asyncio.sleep(0.5)
            for position, handle in enumerate(self.handles):
                if stopping.is_set() or not self.reap(handle):
                    continue
                log.error("worker %d died; starting it again", handle.index)
                self._died(handle.index)
                if handle.channel is not None:
                    handle.channel.close()
                await asyncio.sleep(RESTART_BACKOFF)
                fresh = self._fork(handle.index)
                self.handles[position] = fresh
                await self._connect(fresh)

    async def ask_all(self, op: str, payload: Any, wait: float) -> list[Any | BaseException]:
        """Every worker's answer, in order; an exception for one that failed, timed out
        or is gone."""

        async def ask(handle: Handle) -> Any:
            if handle.channel is None:
                raise ChannelClosed(op)
            return await handle.channel.request(op, payload, wait)

        return await asyncio.gather(*(ask(h) for h in self.handles), return_exceptions=True)

    async def stop(self) -> None:
        for handle in self.handles:
            with contextlib.suppress(ProcessLookupError):
                os.kill(handle.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        # Polling waitpid: a child's exit is not an asyncio event we could await.
        for _ in range(int(STOP_TIMEOUT / 0.05) + 1):
            if all(self.reap(h) for h in self.handles) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        for handle in self.handles:
            if handle.channel is not None:
                handle.channel.close()

    def stop_now(self) -> None:
        """The last resort on the way out: no worker outlives the supervisor."""
        for handle in self.handles:
            if not self.reap(handle):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(handle.pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(handle.pid, 0)
