"""Attempts gathered between flushes (``audit.attempts``): in the answering process no
dict grows past ``BOUNDED`` keys (a dict that doubles copies itself whole, in the
callback that answers), nothing is lost or counted twice, and the cap still holds."""

from __future__ import annotations

from resolver.audit.attempts import BOUNDED, QUEUE_LIMIT, AttemptBatcher


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
    record(batcher, 0, 3)  # already held: counted, not dropped
    batches, dropped = batcher.take()
    assert dropped == 7
    assert max(len(batch) for batch in batches) == BOUNDED
    assert sum(count for batch in batches for _, count in batch.values()) == QUEUE_LIMIT + 3
