"""The answer cache's entries as bytes (``handlers.cache_entry``): every field comes back
as it went in, whatever the CNAME chain, offsets and served copy."""

from __future__ import annotations

import pytest

from resolver.handlers.cache_entry import Entry, cache_key, message_length, pack, unpack


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
