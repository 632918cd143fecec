"""Attempts handed to the writer process by the event loop, a slice at a time.

The answering process must never run Python in a second thread while it serves: a
thread that pickles holds the interpreter lock, and after each of the event loop's
system calls (every ``recvfrom`` and ``sendto``) the loop may have to wait for it, up to
the switch interval (5 ms) each time. Measured at half load on the blocked mix, with
the hand-over in a thread: single answers took 2-9 ms, and the loop's ticks were late
by up to 14 ms. So the loop itself does the hand-over: it pickles a small chunk of
attempts, writes it to the pipe without blocking, and gives the loop back once ``SLICE``
has passed or the pipe is full (then it waits for the pipe to drain, as any other
writer on the loop does).

Frames are ``!I`` length-prefixed pickles, read by ``writer.child_main``.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import struct
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import IO, Any

from resolver.audit.attempts import AttemptKey, Seen

# Attempts per pickled chunk: pickling one costs about 0.1 ms on a small gateway.
CHUNK = 200
# The longest the hand-over keeps the event loop before giving it back.
SLICE = 0.0005
FRAME = struct.Struct("!I")


def frame(message: tuple[Any, ...]) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return FRAME.pack(len(data)) + data


def receive(stream: IO[bytes]) -> tuple[Any, ...] | None:
    """The next frame's message (the writer's side); None at the end of the stream."""
    head = stream.read(FRAME.size)
    if len(head) < FRAME.size:
        return None
    (size,) = FRAME.unpack(head)
    message = pickle.loads(stream.read(size))
    assert isinstance(message, tuple)
    return message


def messages(batches: list[dict[AttemptKey, Seen]], last: tuple[Any, ...]) -> Iterator[bytes]:
    """The frames that hand ``batches`` over in chunks, then ``last`` ("flush" or
    "close"); each chunk is pickled only when the pipe can take it. The batches are
    emptied as they go, in the order the attempts came (a sink that must drop some
    drops the oldest): a second's attempts freed all at once, when the last frame was
    made, took up to 12 ms of the loop (11,500 attempts); a chunk's are freed with it."""
    for batch in batches:
        keys = deque(batch)
        while keys:
            chunk = {}
            for _ in range(min(CHUNK, len(keys))):
                key = keys.popleft()
                chunk[key] = batch.pop(key)
            yield frame(("attempts", [chunk]))
    yield frame(last)


class Handover:
    """Writes frames to a non-blocking pipe from the event loop, in slices."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        fd: int,
        on_broken: Callable[[], None],
    ) -> None:
        os.set_blocking(fd, False)
        self._loop = loop
        self._fd = fd
        self._on_broken = on_broken
        self._frames: Iterator[bytes] | None = None
        self._out = memoryview(b"")
        self._waiting = False  # for the pipe to drain (add_writer)
        self._again: asyncio.Handle | None = None  # the next slice (call_soon)

    @property
    def busy(self) -> bool:
        """A batch is still going out."""
        return self._frames is not None

    def send(self, frames: Iterator[bytes]) -> None:
        """Start sending ``frames`` (the last batch must have gone out)."""
        assert self._frames is None
        self._frames = frames
        self._pump()

    def detach(self) -> tuple[bytes, Iterator[bytes] | None]:
        """Stop using the loop; what was not sent yet: the rest of a frame, and the
        frames after it (for a blocking write when closing)."""
        if self._waiting:
            self._loop.remove_writer(self._fd)
            self._waiting = False
        if self._again is not None:
            self._again.cancel()
            self._again = None
        rest, frames = bytes(self._out), self._frames
        self._out, self._frames = memoryview(b""), None
        return rest, frames

    def _drained(self) -> None:
        self._loop.remove_writer(self._fd)
        self._waiting = False
        self._pump()

    def _next_slice(self) -> None:
        self._again = None
        self._pump()

    def _pump(self) -> None:
        frames = self._frames
        if frames is None:
            return
        until = time.perf_counter() + SLICE
        while True:
            if not self._out:
                data = next(frames, None)
                if data is None:
                    self._frames = None
                    return
                self._out = memoryview(data)
            try:
                written = os.write(self._fd, self._out)
            except BlockingIOError:
                self._waiting = True
                self._loop.add_writer(self._fd, self._drained)
                return
            except OSError:  # BrokenPipeError: the writer is gone
                self.detach()
                self._on_broken()
                return
            self._out = self._out[written:]
            if time.perf_counter() >= until:
                self._again = self._loop.call_soon(self._next_slice)
                return
