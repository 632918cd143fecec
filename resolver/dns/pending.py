"""An answer still to come (an upstream's), and what each stage does with it when it comes.

A cache miss used to be a task running a chain of coroutines, one per stage with work
to do on the answer (count it, inspect its CNAMEs, cache it). A chain of
``asyncio.Future`` objects would spare the task, but a future runs its callbacks on the
event loop's next turn, so each stage would cost a turn. A ``Pending`` runs its steps
at once, in order, from the callback that completes it, then tells its consumers:
whoever completes it (the forwarder, from the upstream socket's answer) runs every
stage's work and the listener's send in one go, without a task or a coroutine frame.

The order of effects is the order of the stages: a step added by an inner stage (the
cache's put) runs before one added by an outer stage (the CNAME inspection, the
counting), and all of them before a consumer (the listener sending the answer).

It is awaitable, like a future: ``await pending`` gives the answer or raises.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Generator
from typing import Any

from resolver.dns.model import Answer

log = logging.getLogger(__name__)

Step = Callable[[Answer], Answer]

_WAITING, _ANSWERED, _FAILED, _CANCELLED = range(4)


class Pending:
    """An answer to come: completed once, with an answer, an exception or a cancellation.

    ``then(step)`` adds a step: it gets the answer and returns the answer to pass on (the
    same or another). A step that raises fails the whole answer with its exception, and
    the steps after it are skipped: a stage's failure is never hidden from the consumer.
    ``add_done_callback(callback)`` adds a consumer, called with this object once it is
    complete. Both run at once when added to an already completed ``Pending``.
    """

    __slots__ = ("_callbacks", "_error", "_on_cancel", "_source", "_state", "_steps", "_value")

    def __init__(self, on_cancel: Callable[[], object] | None = None) -> None:
        """``on_cancel``: what stops the work when a consumer gives up (``cancel``)."""
        self._state = _WAITING
        self._steps: list[Step] = []
        self._callbacks: list[Callable[[Pending], None]] = []
        self._value: Answer | None = None
        self._error: BaseException | None = None
        self._on_cancel = on_cancel
        self._source: Awaitable[Answer] | None = None  # ``of`` an awaitable, not started

    @classmethod
    def of(cls, awaitable: Awaitable[Answer]) -> Pending:
        """``awaitable`` as a ``Pending`` (itself if it is one). Any other awaitable (a
        coroutine of a handler written as one) runs as a task, started when the first
        consumer comes (a stage may be called outside the event loop, as a coroutine
        function could)."""
        if isinstance(awaitable, Pending):
            return awaitable
        pending = cls()
        pending._source = awaitable
        return pending

    def _start(self) -> None:
        source, self._source = self._source, None
        assert source is not None
        future = asyncio.ensure_future(source)
        self._on_cancel = future.cancel
        future.add_done_callback(self.settle_from)

    # --- the producer's side ---------------------------------------------------------

    def set_result(self, answer: Answer) -> None:
        """Complete with ``answer``: the steps run on it, then the consumers are told."""
        self._check_waiting()
        for step in self._steps:
            try:
                answer = step(answer)
            except Exception as error:  # a stage's bug costs this answer, as a task's would
                self._complete(_FAILED, None, error)
                return
        self._complete(_ANSWERED, answer, None)

    def set_exception(self, error: BaseException) -> None:
        """Fail: no step runs, the consumers are told."""
        self._check_waiting()
        self._complete(_FAILED, None, error)

    def settle_from(self, done: asyncio.Future[Answer]) -> None:
        """Complete as the (completed) future ``done`` did, unless completed already."""
        if self._state != _WAITING:
            return
        if done.cancelled():
            self.cancel()
            return
        error = done.exception()
        if error is not None:
            self.set_exception(error)
        else:
            self.set_result(done.result())

    # --- the consumer's side ---------------------------------------------------------

    def then(self, step: Step) -> Pending:
        """Add a step; returns this object, so a stage can return it on."""
        if self._state == _WAITING:
            self._steps.append(step)
        elif self._state == _ANSWERED:
            assert self._value is not None
            try:
                self._value = step(self._value)
            except Exception as error:
                self._state, self._value, self._error = _FAILED, None, error
        return self

    def add_done_callback(self, callback: Callable[[Pending], None]) -> None:
        if self._state == _WAITING:
            self._callbacks.append(callback)
            if self._source is not None:
                self._start()
        else:
            callback(self)

    def cancel(self) -> bool:
        """Give up: the work stops (``on_cancel``), no step runs, the consumers are told.
        False when already complete."""
        if self._state != _WAITING:
            return False
        on_cancel, self._on_cancel = self._on_cancel, None
        source, self._source = self._source, None
        if inspect.iscoroutine(source):
            source.close()  # never started: nothing to stop, no "never awaited" warning
        self._complete(_CANCELLED, None, None)
        if on_cancel is not None:
            on_cancel()
        return True

    def done(self) -> bool:
        return self._state != _WAITING

    def cancelled(self) -> bool:
        return self._state == _CANCELLED

    def exception(self) -> BaseException | None:
        """The failure (None when answered); raises as ``result`` does when cancelled or
        not complete."""
        if self._state == _FAILED:
            return self._error
        self.result()
        return None

    def result(self) -> Answer:
        if self._state == _ANSWERED:
            assert self._value is not None
            return self._value
        if self._state == _FAILED:
            assert self._error is not None
            raise self._error
        if self._state == _CANCELLED:
            raise asyncio.CancelledError()
        raise asyncio.InvalidStateError("the answer has not come yet")

    def __await__(self) -> Generator[Any, None, Answer]:
        if self._state == _WAITING:
            future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
            self.add_done_callback(lambda done: _settle(future, done))  # starts ``of``'s task
            # The awaiting task cancelled: so is the work it waited for.
            future.add_done_callback(lambda waited: self.cancel() if waited.cancelled() else None)
            yield from future
        return self.result()

    def _check_waiting(self) -> None:
        if self._state != _WAITING:
            raise asyncio.InvalidStateError("the answer is complete already")

    def _complete(self, state: int, value: Answer | None, error: BaseException | None) -> None:
        self._state, self._value, self._error = state, value, error
        self._on_cancel = None
        self._steps = []
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback(self)
            except Exception:
                # One consumer's bug must not keep the others (or the producer) from
                # their work; the event loop logs a failing future callback the same way.
                log.exception("a callback of a pending answer failed")


def _settle(future: asyncio.Future[Answer], done: Pending) -> None:
    """Complete ``future`` as ``done`` was (``await`` on a Pending)."""
    if future.done():
        return
    if done.cancelled():
        future.cancel()
    elif (error := done.exception()) is not None:
        future.set_exception(error)
    else:
        future.set_result(done.result())
