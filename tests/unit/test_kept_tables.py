"""The fast path's tables on their own: slabs, the shared capacity, and letting go of
everything kept a slab per turn of the event loop (no sockets)."""

from __future__ import annotations

import asyncio
import gc

from resolver.serve.kept import CAPACITY, KeptTables, slab_count


def fill(tables: KeptTables, group: int, count: int, prefix: bytes = b"q") -> list[bytes]:
    keys = [prefix + b"%07d" % i for i in range(count)]
    for key in keys:
        tables.store(group, key, b"answer:" + key, 1 << 20, None)
    return keys


def test_a_small_capacity_is_one_slab_and_a_large_one_many() -> None:
    assert slab_count(100) == 1
    assert slab_count(4_096) == 2
    assert slab_count(CAPACITY) == 64
    assert slab_count(10 * CAPACITY) == 64


def test_the_capacity_holds_and_is_shared_by_the_groups() -> None:
    tables = KeptTables(capacity=8_192)
    tables.add_group(1)
    fill(tables, 1, 20_000)
    assert 0 < len(tables) <= 8_192
    tables.add_group(2)
    fill(tables, 1, 20_000, prefix=b"r")
    fill(tables, 2, 20_000)
    # Each group now has half: every slab emptied alone when it reached its share.
    assert sum(len(slab) for slab in tables.answers[1]) <= 4_096
    assert sum(len(slab) for slab in tables.answers[2]) <= 4_096


def test_the_benchmark_s_banned_questions_all_fit() -> None:
    # 100,000 questions (bench/load.py draws them from a 200,000-name list, so fewer
    # distinct): kept whole, none evicted by an unlucky slab.
    tables = KeptTables()
    tables.add_group(1)
    keys = fill(tables, 1, 100_000)
    assert len(tables) == len(keys)
    assert max(len(slab) for slab in tables.answers[1]) <= CAPACITY // tables.slabs


def test_a_question_is_found_in_its_slab_with_its_deadline() -> None:
    tables = KeptTables()
    tables.add_group(7)
    tables.store(7, b"question", b"answer", 42, b"countdown")
    slot = hash(b"question") & tables.mask
    assert tables.answers[7][slot][b"question"] == b"answer"
    assert tables.deadlines[7][slot][b"question"] == 42
    assert tables.countdowns[7][slot][b"question"] == b"countdown"
    tables.store(7, b"question", b"blocked", 43, None)  # no countdown any more
    assert b"question" not in tables.countdowns[7][slot]
    tables.drop(7, b"question")
    assert len(tables) == 0
    assert b"question" not in tables.deadlines[7][slot]


def test_the_tables_are_never_tracked_by_the_collector() -> None:
    tables = KeptTables()
    tables.add_group(1)
    fill(tables, 1, 5_000)
    gc.collect()
    assert not any(gc.is_tracked(slab) for slab in tables.answers[1])
    assert not any(gc.is_tracked(slab) for slab in tables.deadlines[1])


def test_clear_forgets_at_once_and_frees_a_slab_per_loop_turn() -> None:
    async def scenario() -> tuple[int, int, int, int]:
        tables = KeptTables()
        tables.add_group(1)
        fill(tables, 1, 50_000)
        tables.clear()
        forgotten = len(tables)
        set_aside = tables.retired
        await asyncio.sleep(0)
        after_one_turn = tables.retired
        for _ in range(set_aside + 2):
            await asyncio.sleep(0)
        return forgotten, set_aside, after_one_turn, tables.retired

    forgotten, set_aside, after_one_turn, left = asyncio.run(scenario())
    assert forgotten == 0  # nothing kept is served again, from the moment of the clear
    assert set_aside == 2 * 64  # answers and deadlines (no countdowns were stored)
    assert set_aside - after_one_turn <= 2
    assert left == 0


def test_clear_without_an_event_loop_frees_at_once() -> None:
    tables = KeptTables()
    tables.add_group(1)
    fill(tables, 1, 1_000)
    tables.clear()
    assert tables.retired == 0
    assert len(tables) == 0
