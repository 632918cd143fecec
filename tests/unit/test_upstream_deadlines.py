"""The queue of deadlines under one timer (``resolver.upstream.deadlines``)."""

from __future__ import annotations

import asyncio

from resolver.upstream.deadlines import Deadlines


class _Question:
    def __init__(self, name: str, ended: list[str], fails: bool = False) -> None:
        self.name = name
        self.deadline = 0.0
        self._ended = ended
        self._fails = fails

    def expire(self) -> None:
        self.deadline = 0.0
        self._ended.append(self.name)
        if self._fails:
            raise RuntimeError("a bug in one question's timeout")


def test_a_failing_timeout_does_not_keep_the_others_from_timing_out() -> None:
    async def scenario() -> None:
        deadlines = Deadlines(asyncio.get_running_loop(), 0.05)
        ended: list[str] = []
        questions = [
            _Question("a", ended),
            _Question("b", ended, fails=True),
            _Question("c", ended),
        ]
        for question in questions[:2]:
            question.deadline = deadlines.add(question)
        await asyncio.sleep(0.02)
        questions[2].deadline = deadlines.add(questions[2])  # due after the first wake-up
        await asyncio.sleep(0.15)
        assert ended == ["a", "b", "c"]
        assert len(deadlines) == 0

    asyncio.run(scenario())


def test_an_ended_question_is_passed_over() -> None:
    async def scenario() -> None:
        deadlines = Deadlines(asyncio.get_running_loop(), 0.05)
        ended: list[str] = []
        answered, waiting = _Question("answered", ended), _Question("waiting", ended)
        answered.deadline = deadlines.add(answered)
        waiting.deadline = deadlines.add(waiting)
        answered.deadline = 0.0  # its answer came
        await asyncio.sleep(0.15)
        assert ended == ["waiting"]

    asyncio.run(scenario())
