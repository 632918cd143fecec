"""The control channel between supervisor and workers: a reply belongs to its request.

The old pipe protocol answered each request with whatever came next, so one reply that
missed its poll answered the following request (/api/stats got a pause's reply). These
tests drive the channel from a raw socket playing a worker that replies late or out of
order, and a real Channel on each end.
"""

from __future__ import annotations

import asyncio
import pickle
import socket
import struct
from typing import Any

import pytest

from resolver.serve.channel import Channel, ChannelClosed, RemoteError

LENGTH = struct.Struct("!I")


def frame(message: tuple[Any, ...]) -> bytes:
    data = pickle.dumps(message)
    return LENGTH.pack(len(data)) + data


async def read_frame(reader: asyncio.StreamReader) -> tuple[Any, ...]:
    (length,) = LENGTH.unpack(await reader.readexactly(LENGTH.size))
    message: tuple[Any, ...] = pickle.loads(await reader.readexactly(length))
    return message


def test_a_late_reply_is_dropped_and_never_answers_the_next_request() -> None:
    async def scenario() -> None:
        ours, theirs = socket.socketpair()
        channel = Channel(ours)
        await channel.start()
        reader, writer = await asyncio.open_unix_connection(sock=theirs)
        # The first request times out: its reply has not come.
        with pytest.raises(TimeoutError):
            await channel.request("stats", wait=0.1)
        kind, first_id, op, _, _ = await read_frame(reader)
        assert (kind, op) == ("request", "stats")
        second = asyncio.ensure_future(channel.request("pause", 60, wait=2.0))
        _, second_id, op, payload, _ = await read_frame(reader)
        assert (op, payload) == ("pause", 60)
        # The stale reply to the first comes now, before the second's own.
        writer.write(frame(("reply", first_id, "stats", (True, {"queries": 1}), 0.0)))
        writer.write(frame(("reply", second_id, "pause", (True, "paused"), 0.0)))
        await writer.drain()
        assert await second == "paused"
        assert channel.late_replies == 1
        channel.close()
        writer.close()

    asyncio.run(scenario())


def test_a_handler_past_its_deadline_is_cancelled_and_sends_nothing() -> None:
    async def scenario() -> None:
        finished: list[str] = []

        async def handler(op: str, payload: Any) -> Any:
            if op == "slow":
                await asyncio.sleep(0.5)
                finished.append(op)
            return f"{op}:{payload}"

        left, right = socket.socketpair()
        supervisor, worker = Channel(left), Channel(right, handler)
        await supervisor.start()
        await worker.start()
        with pytest.raises(TimeoutError):
            await supervisor.request("slow", 1, wait=0.1)
        # A quick request meanwhile is not held up by the slow one, and gets its own.
        assert await supervisor.request("quick", 2, wait=1.0) == "quick:2"
        await asyncio.sleep(0.6)
        assert finished == []  # cancelled at its deadline on the worker's side too
        assert supervisor.late_replies == 0
        supervisor.close()
        worker.close()

    asyncio.run(scenario())


def test_a_failing_handler_and_a_closed_peer_are_errors_not_answers() -> None:
    async def scenario() -> None:
        async def handler(op: str, payload: Any) -> Any:
            if op == "metrics":
                await asyncio.sleep(10)  # still working when its process goes away
            raise ValueError(f"no such thing as {op}")

        left, right = socket.socketpair()
        supervisor, worker = Channel(left), Channel(right, handler)
        await supervisor.start()
        await worker.start()
        with pytest.raises(RemoteError, match="no such thing as frob"):
            await supervisor.request("frob", wait=1.0)
        pending = asyncio.ensure_future(supervisor.request("metrics", wait=5.0))
        await asyncio.sleep(0.1)
        worker.close()
        with pytest.raises(ChannelClosed):
            await pending
        await asyncio.wait_for(supervisor.closed.wait(), 1.0)
        with pytest.raises(ChannelClosed):
            await supervisor.request("metrics", wait=1.0)
        supervisor.close()

    asyncio.run(scenario())
