"""The answer cache's entries as bytes (``handlers.cache_entry``): every field comes back
as it went in, whatever the CNAME chain, offsets and served copy."""

from __future__ import annotations

import pytest

from resolver.handlers.cache_entry import (
    Entry,
    cache_key,
    message_length,
    pack,
    served_anew,
    ttl_offsets,
    unpack,
)


@pytest.mark.parametrize(
    "cnames",
    [(), (b"\x03cdn\x07example\x00",), (b"\x00", b"\x01a" * 100 + b"\x00", b"\x02bb\x00")],
)
@pytest.mark.parametrize("served", [b"", b"\x12\x34" + b"\xff" * 60])
def test_an_entry_comes_back_as_it_went_in(cnames: tuple[bytes, ...], served: bytes) -> None:
    entry = Entry(
        stored=1234.5,
        expires=1534.25,
        recheck_after=0.0,
        served_age=-1 if not served else 7,
        rcode=3,
        ttl_offsets=(30, 46, 65_535),
        cnames=cnames,
        message=b"\x12\x34" + b"\x00" * 60,
        served=served,
    )
    data = pack(entry)
    assert isinstance(data, bytes)
    assert unpack(data) == entry
    assert message_length(data) == 62


def test_keys_differ_by_name_type_and_flags() -> None:
    keys = {
        cache_key(b"\x01a\x00", 1, 0),
        cache_key(b"\x01a\x00", 28, 0),
        cache_key(b"\x01a\x00", 1, 1),
        cache_key(b"\x01b\x00", 1, 0),
        cache_key(b"\x01a\x01b\x00", 1, 0),
    }
    assert len(keys) == 5


@pytest.mark.parametrize("served", [b"", b"\x12\x34" + b"\xff" * 60])
@pytest.mark.parametrize("cnames", [(), (b"\x03cdn\x07example\x00",)])
def test_a_new_served_copy_changes_only_the_copy_and_its_age(
    cnames: tuple[bytes, ...], served: bytes
) -> None:
    entry = Entry(1.5, 301.5, 31.0, -1 if not served else 2, 0, (12, 28), cnames, b"m" * 40, served)
    data = pack(entry)
    message_end = len(data) - len(served)
    again = served_anew(data, message_end, 9, b"s" * 40)
    assert again == pack(entry._replace(served_age=9, served=b"s" * 40))
    assert unpack(again) == entry._replace(served_age=9, served=b"s" * 40)


@pytest.mark.parametrize("count", [0, 1, 64, 65, 300])
def test_any_number_of_ttl_offsets_is_read_back(count: int) -> None:
    offsets = tuple(range(12, 12 + 16 * count, 16))
    entry = Entry(0.0, 60.0, 0.0, -1, 0, offsets, (), b"\x00" * 12, b"")
    data = pack(entry)
    assert ttl_offsets(data, count) == offsets
    assert unpack(data) == entry
