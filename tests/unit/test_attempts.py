"""Attempts gathered between flushes (``audit.attempts``): in the answering process no
dict grows past ``BOUNDED`` keys (a dict that doubles copies itself whole, in the
callback that answers), nothing is lost or counted twice, and the cap still holds."""

from __future__ import annotations

import io

import dns.message

from resolver.audit.attempts import BOUNDED, QUESTION, QUEUE_LIMIT, AttemptBatcher, settled
from resolver.audit.handover import CHUNK, messages, receive


def record(batcher: AttemptBatcher, first: int, count: int, times: int = 1) -> None:
    for i in range(first, first + count):
        for _ in range(times):
            batcher.record("192.0.2.1", "default", f"n{i}.example", 1, "s", "c", "blocked")


def test_a_flood_of_distinct_names_fills_dicts_of_bounded_size() -> None:
    batcher = AttemptBatcher(bounded=True)
    record(batcher, 0, 3 * BOUNDED + 10, times=2)
    assert len(batcher) == 3 * BOUNDED + 10
    batches, dropped = batcher.take()
    assert dropped == 0
    assert [len(batch) for batch in batches] == [BOUNDED, BOUNDED, BOUNDED, 10]
    counts = [count for batch in batches for _, count in batch.values()]
    assert counts == [2] * (3 * BOUNDED + 10)
    assert len(batcher) == 0
    assert batcher.take() == ([], 0)


def test_an_attempt_alike_in_two_dicts_is_merged_by_the_trails_batcher() -> None:
    """The same attempt before and after a new dict was started is two entries in the
    answering process; the writer's batcher (unbounded) makes them one row again."""
    answering = AttemptBatcher(bounded=True)
    record(answering, 0, 1)
    record(answering, 1, BOUNDED)  # the first dict is full
    record(answering, 0, 1)
    batches, _ = answering.take()
    assert len(batches) == 2
    writer = AttemptBatcher()
    for batch in batches:
        writer.absorb([batch])
    merged, _ = writer.take()
    assert len(merged) == 1
    assert len(merged[0]) == BOUNDED + 1
    assert next(iter(merged[0].values()))[1] == 2


def test_the_cap_counts_every_dict() -> None:
    batcher = AttemptBatcher(bounded=True)
    record(batcher, 0, QUEUE_LIMIT + 7)
    assert len(batcher) == QUEUE_LIMIT
    record(batcher, QUEUE_LIMIT - 3, 3)  # alike to attempts in the newest dict: counted
    record(batcher, 0, 2)  # alike to attempts in the first dict: dropped, counted
    batches, dropped = batcher.take()
    assert dropped == 7 + 2
    assert max(len(batch) for batch in batches) == BOUNDED
    assert sum(count for batch in batches for _, count in batch.values()) == QUEUE_LIMIT + 3


def test_a_full_batcher_drops_a_new_attempt_without_looking_through_every_dict() -> None:
    """Under a flood of new names that fills it (a writer starved or stuck), a new
    attempt must cost what it costs below the cap, not a look through every dict."""
    batcher = AttemptBatcher(bounded=True)
    record(batcher, 0, QUEUE_LIMIT)
    full = batcher._full
    looked: list[int] = []

    class Counting(dict):  # type: ignore[type-arg]
        def get(self, key, default=None):  # type: ignore[no-untyped-def]
            looked.append(1)
            return super().get(key, default)

    batcher._full = [Counting(batch) for batch in full]
    record(batcher, QUEUE_LIMIT, 100)
    assert looked == []
    assert batcher.dropped == 100


def test_the_count_of_attempts_held_is_kept_as_they_come() -> None:
    """The hand-over needs the number of attempts it sends up front (what a dead writer
    lost is counted from it): kept as attempts come, not summed over a second's worth
    in the callback that hands them over."""
    batcher = AttemptBatcher(bounded=True)
    record(batcher, 0, BOUNDED + 5, times=3)
    record(batcher, 0, 2)  # alike to attempts in the first, full dict
    assert batcher.count == 3 * (BOUNDED + 5) + 2
    batches, _ = batcher.take()
    assert sum(count for batch in batches for _, count in batch.values()) == 3 * (BOUNDED + 5) + 2
    assert batcher.count == 0


def test_handing_over_empties_the_batches_a_chunk_at_a_time() -> None:
    """Each chunk's attempts are freed with it: freeing a second's worth at once, when
    the last frame was made, kept the event loop for up to 12 ms."""
    batcher = AttemptBatcher(bounded=True)
    record(batcher, 0, 1000)
    batches, _ = batcher.take()
    frames = messages(batches, ("flush",))
    first = next(frames)
    assert receive(io.BytesIO(first)) is not None
    assert sum(len(batch) for batch in batches) == 1000 - CHUNK
    rest = list(frames)
    assert sum(len(batch) for batch in batches) == 0
    received = [receive(io.BytesIO(data)) for data in [first, *rest]]
    assert received[-1] == ("flush",)
    names = [
        key[2] for message in received[:-1] if message for chunk in message[1] for key in chunk
    ]
    # In the order they came: a sink that must drop some drops the oldest.
    assert names == [f"n{i}.example" for i in range(1000)]


def test_a_question_as_it_came_is_settled_by_the_writer_into_the_pipelines_attempt() -> None:
    """The fast path records a kept answer's question as the datagram carried it (any
    case, EDNS after it); the answering process keeps it so (no name read out on the
    answer path), and the writer's batcher merges it with the pipeline's attempt on the
    same name: one row, both counted, first seen the earlier."""
    asked = dns.message.make_query("Chat.DeepSeek.COM", "AAAA", use_edns=0, want_dnssec=True)
    question = asked.to_wire()[2:]
    pipeline = ("192.0.2.1", "office", b"\x04chat\x08deepseek\x03com\x00", 28)
    rest = ("deepseek", "chat_assistant", "blocked")
    answering = AttemptBatcher(bounded=True)
    answering.record(*pipeline, *rest)
    for _ in range(3):
        answering.record("192.0.2.1", "office", question, QUESTION, *rest)
    batches, _ = answering.take()
    assert sum(len(batch) for batch in batches) == 2  # not settled where it answers
    writer = AttemptBatcher(settle=True)
    writer.absorb(batches)
    merged, _ = writer.take()
    [(key, (first, count))] = [item for batch in merged for item in batch.items()]
    assert key == (*pipeline, *rest)
    assert count == 4
    assert first == min(seen[0] for batch in batches for seen in batch.values())


def test_settling_a_question_cut_short_keeps_what_there_is() -> None:
    """A kept question is always whole; a cut one must still not stop the writer."""
    cut = dns.message.make_query("a.example", "A").to_wire()[2:-3]
    key = settled(("c", "g", cut, QUESTION, "s", "c", "blocked"))
    assert key[2] == b"\x01a\x07example\x00"
    assert key[3] == 0
    # The name itself cut: no exception in the writer, the bytes there are kept.
    broken = settled(("c", "g", cut[:14], QUESTION, "s", "c", "blocked"))
    assert broken[2] == b"\x01a\x07e" == cut[10:14]
    assert broken[3] == 0
