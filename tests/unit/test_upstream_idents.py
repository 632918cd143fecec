"""The IDs of the questions sent upstream (``resolver.upstream.idents``): read from the
kernel's CSPRNG in batches, and never shared with a forked worker."""

from __future__ import annotations

import os

from resolver.upstream import idents


def test_ids_are_16_bit_and_a_batch_runs_out_into_the_next() -> None:
    drawn = [idents.query_id() for _ in range(3 * idents.BATCH_BYTES // 2)]
    assert all(0 <= ident < 65536 for ident in drawn)
    # 6,144 draws over three batches of 16-bit values: a repeat-free or constant run
    # would mean the batch is not random (or reused).
    assert 3000 < len(set(drawn)) < len(drawn)


def test_a_forked_child_does_not_send_the_ids_its_parent_sends() -> None:
    idents.query_id()  # the parent holds IDs read ahead
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(reader)
        child = [idents.query_id() for _ in range(64)]
        os.write(writer, bytes(str(child), "ascii"))
        os._exit(0)
    os.close(writer)
    parent = [idents.query_id() for _ in range(64)]
    with os.fdopen(reader, "rb") as stream:
        child_text = stream.read().decode()
    os.waitpid(pid, 0)
    child = [int(part) for part in child_text.strip("[]").split(", ")]
    # With the read-ahead inherited, the two would send the same 64 IDs in order.
    assert sum(a == b for a, b in zip(parent, child, strict=True)) < 8
