"""``resolver.dns.pending.Pending``: steps in order, failures and cancellations passed
on, never dropped."""

from __future__ import annotations

import asyncio

import pytest

from resolver.dns import responses, wire
from resolver.dns.model import Answer, Outcome
from resolver.dns.pending import Pending
from tests.unit.handler_support import make_query


def _answer(outcome: Outcome = Outcome.FORWARDED) -> Answer:
    return responses.error(make_query("a.example.test"), wire.NOERROR, outcome)


def test_steps_run_in_the_order_added_then_the_consumers_are_told() -> None:
    order: list[str] = []
    blocked = _answer(Outcome.BLOCKED)

    def inner(answer: Answer) -> Answer:
        order.append("inner")
        return answer

    def outer(answer: Answer) -> Answer:
        order.append("outer")
        return blocked  # a stage may replace the answer

    pending = Pending().then(inner).then(outer)
    told: list[Answer] = []
    pending.add_done_callback(lambda done: told.append(done.result()))
    assert order == []
    assert told == []
    pending.set_result(_answer())
    assert order == ["inner", "outer"]
    assert told == [blocked]


def test_a_failing_step_fails_the_answer_and_the_steps_after_it_never_run() -> None:
    after: list[Answer] = []

    def broken(answer: Answer) -> Answer:
        raise RuntimeError("a stage's bug")

    pending = Pending().then(broken).then(lambda answer: after.append(answer) or answer)
    errors: list[BaseException | None] = []
    pending.add_done_callback(lambda done: errors.append(done.exception()))
    pending.set_result(_answer())
    assert after == []
    assert len(errors) == 1
    assert isinstance(errors[0], RuntimeError)
    with pytest.raises(RuntimeError):
        pending.result()


def test_a_failure_skips_every_step_and_reaches_the_consumer() -> None:
    stepped: list[Answer] = []
    pending = Pending().then(lambda answer: stepped.append(answer) or answer)
    told: list[Pending] = []
    pending.add_done_callback(told.append)
    pending.set_exception(TimeoutError())
    assert stepped == []
    assert told == [pending]
    assert isinstance(pending.exception(), TimeoutError)


def test_cancel_stops_the_work_and_tells_the_consumers_once() -> None:
    stopped: list[bool] = []
    pending = Pending(lambda: stopped.append(True))
    told: list[Pending] = []
    pending.add_done_callback(told.append)
    assert pending.cancel()
    assert not pending.cancel()
    assert stopped == [True]
    assert told == [pending]
    assert pending.cancelled()
    with pytest.raises(asyncio.CancelledError):
        pending.result()
    with pytest.raises(asyncio.InvalidStateError):
        pending.set_result(_answer())


def test_added_after_completion_steps_and_consumers_run_at_once() -> None:
    pending = Pending()
    pending.set_result(_answer())
    replaced = _answer(Outcome.BLOCKED)
    pending.then(lambda answer: replaced)
    told: list[Answer] = []
    pending.add_done_callback(lambda done: told.append(done.result()))
    assert told == [replaced]


def test_a_failing_consumer_does_not_keep_the_others_from_their_answer() -> None:
    pending = Pending()
    told: list[Pending] = []

    def broken(done: Pending) -> None:
        raise RuntimeError("a consumer's bug")

    pending.add_done_callback(broken)
    pending.add_done_callback(told.append)
    pending.set_result(_answer())
    assert told == [pending]


def test_awaiting_gives_the_answer_or_raises_and_a_cancelled_waiter_cancels_it() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        answered = Pending()
        loop.call_soon(answered.set_result, _answer())
        assert (await answered).outcome is Outcome.FORWARDED

        failed = Pending()
        loop.call_soon(failed.set_exception, OSError("unreachable"))
        with pytest.raises(OSError, match="unreachable"):
            await failed

        stopped: list[bool] = []
        abandoned = Pending(lambda: stopped.append(True))
        waiter = asyncio.ensure_future(abandoned)
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert abandoned.cancelled()
        assert stopped == [True]

    asyncio.run(scenario())


def test_any_awaitable_runs_as_a_task_once_a_consumer_comes() -> None:
    started: list[bool] = []

    async def handler_coroutine() -> Answer:
        started.append(True)
        await asyncio.sleep(0)
        return _answer()

    async def scenario() -> None:
        pending = Pending.of(handler_coroutine())
        assert Pending.of(pending) is pending
        await asyncio.sleep(0)
        assert started == []  # nobody asked yet
        assert (await pending).outcome is Outcome.FORWARDED
        assert started == [True]

        never = Pending.of(handler_coroutine())
        assert never.cancel()  # never started: the coroutine is closed, not left pending
        assert started == [True]

    asyncio.run(scenario())
