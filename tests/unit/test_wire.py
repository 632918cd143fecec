"""Raw wire reading and writing, checked against dnspython as an independent reader."""

from __future__ import annotations

import signal
import struct
from collections.abc import Iterator
from contextlib import contextmanager

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

from resolver.dns import wire
from resolver.dns.edns import Edns, read_opt

# --- helpers: build messages by hand, without compression, so offsets are known ---------


def name_wire(text: str) -> bytes:
    return dns.name.from_text(text).to_wire()


def rdata(rdtype: str, text: str) -> bytes:
    return dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(rdtype), text).to_wire()


def rr(owner: str, rdtype: str, ttl: int, text: str) -> bytes:
    body = rdata(rdtype, text)
    code = dns.rdatatype.from_text(rdtype)
    return name_wire(owner) + wire.RR_FIXED.pack(code, 1, ttl, len(body)) + body


def opt(payload: int = 1232, ttl: int = 0, body: bytes = b"", owner: bytes = b"\x00") -> bytes:
    return owner + wire.RR_FIXED.pack(wire.TYPE_OPT, payload, ttl, len(body)) + body


def question(name: str = "example.com", qtype: int = wire.TYPE_A) -> bytes:
    return name_wire(name) + struct.pack("!HH", qtype, wire.CLASS_IN)


def message(
    *,
    flags: int = wire.QR,
    questions: tuple[bytes, ...] = (),
    answers: tuple[bytes, ...] = (),
    authority: tuple[bytes, ...] = (),
    additional: tuple[bytes, ...] = (),
    ident: int = 0x4242,
) -> bytes:
    header = wire.HEADER.pack(
        ident, flags, len(questions), len(answers), len(authority), len(additional)
    )
    return header + b"".join(questions + answers + authority + additional)


def all_rrsets(msg: dns.message.Message) -> list[dns.rrset.RRset]:
    return [*msg.answer, *msg.authority, *msg.additional]


@contextmanager
def no_hang(seconds: float = 5.0) -> Iterator[None]:
    """Turn a runaway loop into a failure instead of a stuck test run."""

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError("did not stop")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def rewrite_ttls(data: bytes, offsets: tuple[int, ...], values: list[int]) -> bytes:
    out = bytearray(data)
    for offset, value in zip(offsets, values, strict=True):
        wire.U32.pack_into(out, offset, value)
    return bytes(out)


# --- read_question_name ---------------------------------------------------------------


def test_question_name_end_and_label_offsets():
    data = dns.message.make_query("www.example.com", "A").to_wire()
    end, starts = wire.read_question_name(data, 12)
    # 3www 7example 3com 0: labels start at 0, 4 and 12 relative to the name.
    assert starts == (0, 4, 12)
    assert data[12:end] == name_wire("www.example.com")
    assert data[end : end + 4] == struct.pack("!HH", wire.TYPE_A, wire.CLASS_IN)


def test_question_root_name_has_no_labels():
    data = dns.message.make_query(".", "NS").to_wire()
    assert wire.read_question_name(data, 12) == (13, ())


def test_question_offsets_are_relative_to_the_start_offset():
    data = b"\xff" * 5 + name_wire("a.bc")
    end, starts = wire.read_question_name(data, 5)
    assert (end, starts) == (len(data), (0, 2))


def test_compression_pointer_in_question_is_rejected():
    data = wire.HEADER.pack(1, 0, 1, 0, 0, 0) + b"\xc0\x0c" + b"\x00\x01\x00\x01"
    with pytest.raises(wire.WireError):
        wire.read_question_name(data, 12)


@pytest.mark.parametrize("label_type", [0x40, 0x80, 0xC0])
def test_label_types_above_63_are_rejected_in_question(label_type):
    data = b"\x03www" + bytes([label_type]) + b"\x00" * 70
    with pytest.raises(wire.WireError):
        wire.read_question_name(data, 0)


def test_question_name_of_255_bytes_is_accepted_and_256_rejected():
    longest = b"".join(bytes([63]) + b"a" * 63 for _ in range(3)) + b"\x3d" + b"b" * 61 + b"\x00"
    assert len(longest) == 255
    assert wire.read_question_name(longest, 0)[0] == 255
    too_long = b"".join(bytes([63]) + b"a" * 63 for _ in range(3)) + b"\x3e" + b"b" * 62 + b"\x00"
    assert len(too_long) == 256
    with pytest.raises(wire.WireError):
        wire.read_question_name(too_long, 0)


@pytest.mark.parametrize("data", [b"", b"\x03ww", b"\x03www", b"\x03www\x07example"])
def test_truncated_question_name_is_rejected(data):
    with pytest.raises(wire.WireError):
        wire.read_question_name(data, 0)


# --- skip_name / read_name ------------------------------------------------------------


def test_skip_name_stops_after_a_compression_pointer():
    data = name_wire("example.com") + b"\x03www\xc0\x00" + b"tail"
    start = len(name_wire("example.com"))
    assert wire.skip_name(data, start) == start + 6
    assert wire.skip_name(data, 0) == start


@pytest.mark.parametrize(
    "data",
    [b"", b"\x03ab", b"\x03www\xc0", b"\x03www\x80\x00", b"\x41" + b"a" * 65 + b"\x00"],
    ids=["empty", "cut label", "cut pointer", "label type 0x80", "label type 0x40"],
)
def test_skip_name_rejects_bad_names(data):
    with pytest.raises(wire.WireError):
        wire.skip_name(data, 0)


def test_read_name_follows_pointers_and_lowercases():
    base = name_wire("EXAMPLE.Com")
    data = base + b"\x03WwW\xc0\x00"
    assert wire.read_name(data, len(base)) == name_wire("www.example.com")
    # The result is what dnspython gets for the same name in canonical (lowercase) form.
    assert wire.read_name(data, 0) == dns.name.from_text("example.com").canonicalize().to_wire()


def test_read_name_follows_a_chain_of_pointers():
    data = name_wire("com") + b"\x07example\xc0\x00" + b"\x03www\xc0\x05"
    assert wire.read_name(data, 15) == name_wire("www.example.com")


@pytest.mark.parametrize(
    "data",
    [b"\xc0\x00", b"\xc0\x02\xc0\x00", b"\x01a\xc0\x00", b"\x01a\x01b\xc0\x02"],
    ids=["self", "two pointers", "label then self", "label then back"],
)
def test_read_name_pointer_loops_raise(data):
    with no_hang(), pytest.raises(wire.WireError):
        wire.read_name(data, 0)


def test_read_name_rejects_a_decompressed_name_over_255_bytes():
    # Each part is a legal 200-byte name fragment, but together they exceed 255 bytes.
    first = b"".join(bytes([49]) + b"a" * 49 for _ in range(4)) + b"\x00"
    data = first + b"".join(bytes([49]) + b"b" * 49 for _ in range(2)) + b"\xc0\x00"
    with pytest.raises(wire.WireError):
        wire.read_name(data, len(first))


@pytest.mark.parametrize(
    "data",
    [b"\x03www", b"\x03www\xc0", b"\x03www\x80\x00", b"\x05ab", b"\x41" + b"a" * 65 + b"\x00"],
    ids=["cut label", "cut pointer", "0x80 type", "cut length", "0x40 type with bytes after"],
)
def test_read_name_rejects_cut_and_reserved(data):
    with pytest.raises(wire.WireError):
        wire.read_name(data, 0)


# --- text/wire names -------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["example.com", "chat.deepseek.com", "a.b.c.d.e", "xn--bcher-kva.example", "_dmarc.x"]
)
def test_text_to_name_agrees_with_dnspython_and_round_trips(text):
    encoded = wire.text_to_name(text)
    assert encoded == name_wire(text)
    assert wire.name_to_text(encoded) == text
    starts = wire.label_starts(encoded)
    assert len(starts) == text.count(".") + 1
    # Each label start holds that label's length byte, and labels are in order.
    assert [encoded[s + 1 : s + 1 + encoded[s]].decode() for s in starts] == text.split(".")


def test_text_to_name_lowercases_and_ignores_trailing_dot_and_spaces():
    assert wire.text_to_name("  Chat.DeepSeek.COM. ") == b"\x04chat\x08deepseek\x03com\x00"


@pytest.mark.parametrize("text", ["", ".", "  "])
def test_root_name(text):
    assert wire.text_to_name(text) == b"\x00"
    assert wire.name_to_text(b"\x00") == ""
    assert wire.label_starts(b"\x00") == ()


@pytest.mark.parametrize(
    "text",
    ["a..b", "a" * 64 + ".com", ".".join(["a" * 60] * 5)],
    ids=["empty label", "long label", "long name"],
)
def test_text_to_name_rejects_bad_names(text):
    with pytest.raises(wire.WireError):
        wire.text_to_name(text)


def test_label_starts_match_read_question_name():
    encoded = wire.text_to_name("one.two.three.example")
    assert wire.label_starts(encoded) == wire.read_question_name(encoded, 0)[1]


def test_name_to_text_escapes_so_dnspython_reads_the_same_labels():
    labels = (b"a.b", b"back\\slash", b"sp ace", b"\x00\xff", b"ok")
    encoded = b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"
    text = wire.name_to_text(encoded)
    assert dns.name.from_text(text).labels == (*labels, b"")


# --- read_opt ---------------------------------------------------------------------------


def read_opt_of(data: bytes) -> tuple[Edns | None, str]:
    _, _, qd, an, ns, ar = wire.HEADER.unpack_from(data)
    assert qd == 1
    end = wire.read_question_name(data, 12)[0] + 4
    return read_opt(data, end, (an, ns, ar))


@pytest.mark.parametrize(
    ("payload", "expected"), [(4096, 4096), (1232, 1232), (512, 512), (100, 512), (0, 512)]
)
def test_read_opt_payload_floor_is_512(payload, expected):
    data = dns.message.make_query("example.com", "A", use_edns=0, payload=payload).to_wire()
    edns, problem = read_opt_of(data)
    assert problem == ""
    assert edns == Edns(payload=expected, version=0, do=False)


def test_read_opt_version_and_do_bit():
    query = dns.message.make_query("example.com", "A", use_edns=1, want_dnssec=True)
    edns, problem = read_opt_of(query.to_wire())
    assert problem == ""
    assert edns is not None
    assert (edns.version, edns.do) == (1, True)


def test_read_opt_without_opt():
    data = dns.message.make_query("example.com", "A", use_edns=False).to_wire()
    assert read_opt_of(data) == (None, "")


def test_read_opt_skips_other_additional_records():
    data = message(
        flags=0,
        questions=(question(),),
        additional=(rr("ns.example.", "A", 5, "192.0.2.1"), opt(payload=2000)),
    )
    edns, problem = read_opt_of(data)
    assert problem == ""
    assert edns is not None
    assert edns.payload == 2000


def test_two_opt_records_are_a_problem():
    data = message(flags=0, questions=(question(),), additional=(opt(), opt()))
    edns, problem = read_opt_of(data)
    assert edns is None
    assert "more than one OPT" in problem


def test_opt_with_non_root_owner_is_a_problem():
    data = message(
        flags=0, questions=(question(),), additional=(opt(owner=name_wire("example.com")),)
    )
    edns, problem = read_opt_of(data)
    assert edns is None
    assert "root" in problem


@pytest.mark.parametrize("section", ["answers", "authority"])
def test_opt_outside_additional_is_a_problem(section):
    data = message(flags=0, questions=(question(),), **{section: (opt(),)})
    edns, problem = read_opt_of(data)
    assert edns is None
    assert "additional" in problem


def test_read_opt_cut_record_raises():
    data = message(flags=0, questions=(question(),), additional=(opt(body=b"\x00\x0f"),))
    with pytest.raises(wire.WireError):
        read_opt_of(data[:-1])
    with pytest.raises(wire.WireError):
        read_opt_of(data[:-8])


# --- opt_record / ede_option, read back by dnspython -------------------------------------


def with_opt(record: bytes, rcode: int = 0) -> dns.message.Message:
    data = message(flags=wire.QR | rcode, questions=(question(),), additional=(record,))
    return dns.message.from_wire(data)


@pytest.mark.parametrize("do", [True, False])
def test_opt_record_read_by_dnspython(do):
    msg = with_opt(wire.opt_record(do=do))
    assert msg.edns == 0
    assert msg.payload == wire.EDNS_PAYLOAD
    assert bool(msg.ednsflags & dns.flags.DO) is do
    assert msg.options == ()
    assert msg.rcode() == dns.rcode.NOERROR


def test_opt_record_extended_rcode_makes_badvers():
    msg = with_opt(wire.opt_record(do=False, extended_rcode=wire.BADVERS >> 4))
    assert msg.rcode() == dns.rcode.BADVERS


def test_ede_option_read_by_dnspython():
    options = wire.ede_option(wire.EDE_BLOCKED, "blocked: DeepSeek (chat)")
    msg = with_opt(wire.opt_record(do=False, options=options))
    (error,) = msg.extended_errors()
    assert error.code == dns.edns.EDECode.BLOCKED
    assert error.text == "blocked: DeepSeek (chat)"


def test_ede_option_long_text_is_cut_to_valid_utf8():
    # 3-byte characters: a plain cut at 200 bytes would split one (200 = 66 * 3 + 2).
    text = "\u20ac" * 100
    msg = with_opt(wire.opt_record(do=False, options=wire.ede_option(wire.EDE_BLOCKED, text)))
    (error,) = msg.extended_errors()
    assert error.text == "\u20ac" * 66


def test_ede_option_with_empty_text():
    msg = with_opt(wire.opt_record(do=False, options=wire.ede_option(wire.EDE_PROHIBITED, "")))
    (error,) = msg.extended_errors()
    assert error.code == dns.edns.EDECode.PROHIBITED
    assert not error.text


# --- scan_response ----------------------------------------------------------------------


def cname_response() -> dns.message.Message:
    query = dns.message.make_query("www.example.com", "A", use_edns=0)
    response = dns.message.make_response(query)
    response.answer.append(
        dns.rrset.from_text("www.example.com.", 300, "IN", "CNAME", "Target.EXAMPLE.com.")
    )
    response.answer.append(dns.rrset.from_text("target.example.com.", 60, "IN", "A", "192.0.2.1"))
    response.authority.append(
        dns.rrset.from_text("example.net.", 20, "IN", "NS", "ns.example.net.")
    )
    response.additional.append(dns.rrset.from_text("ns.example.net.", 100, "IN", "A", "192.0.2.53"))
    return response


def test_scan_ttl_offsets_point_at_each_ttl():
    response = cname_response()
    data = response.to_wire()
    scan = wire.scan_response(data)
    # Four records besides the OPT: one offset each.
    assert len(scan.ttl_offsets) == 4
    rewritten = dns.message.from_wire(rewrite_ttls(data, scan.ttl_offsets, [11, 22, 33, 44]))
    assert [rrset.ttl for rrset in all_rrsets(rewritten)] == [11, 22, 33, 44]
    # Nothing else moved: same records, and the OPT's flags and payload are untouched.
    assert [rrset.to_text().lower().split()[3:] for rrset in all_rrsets(rewritten)] == [
        rrset.to_text().lower().split()[3:] for rrset in all_rrsets(response)
    ]
    assert (rewritten.edns, rewritten.payload, rewritten.ednsflags) == (
        response.edns,
        response.payload,
        response.ednsflags,
    )


def test_scan_ttl_offsets_of_a_multi_record_rrset():
    query = dns.message.make_query("example.com", "A", use_edns=False)
    response = dns.message.make_response(query)
    response.answer.append(
        dns.rrset.from_text("example.com.", 300, "IN", "A", "192.0.2.1", "192.0.2.2", "192.0.2.3")
    )
    data = response.to_wire()
    scan = wire.scan_response(data)
    assert len(scan.ttl_offsets) == 3
    assert scan.opt_start == scan.opt_end == -1
    for index in range(3):
        values = [500] * 3
        values[index] = 7
        # dnspython keeps the smallest TTL of an RRset: only a real TTL field can lower it.
        assert (
            dns.message.from_wire(rewrite_ttls(data, scan.ttl_offsets, values)).answer[0].ttl == 7
        )


def test_scan_min_ttl_is_over_answer_records_only():
    scan = wire.scan_response(cname_response().to_wire())
    # Answer TTLs are 300 and 60; the authority (20) and additional (100) do not count.
    assert scan.min_ttl == 60
    assert scan.negative_ttl is None


def test_scan_cname_targets_are_decompressed_and_lowercase():
    data = cname_response().to_wire()
    # dnspython compresses the target against the question's "example.com": a pointer follows.
    assert data[data.index(b"\x06Target") + 7] >= 0xC0
    scan = wire.scan_response(data)
    assert scan.cnames == (dns.name.from_text("target.example.com.").to_wire(),)


def test_scan_opt_position_and_extended_rcode():
    query = dns.message.make_query("example.com", "A", use_edns=0)
    response = dns.message.make_response(query)
    response.set_rcode(dns.rcode.BADVERS)
    data = response.to_wire()
    scan = wire.scan_response(data)
    assert scan.rcode == wire.BADVERS
    assert scan.ttl_offsets == ()
    assert scan.min_ttl is None
    assert data[scan.opt_start] == 0
    assert wire.U16.unpack_from(data, scan.opt_start + 1)[0] == wire.TYPE_OPT
    assert scan.opt_end == len(data)


def nxdomain_with_soa(soa_ttl: int, minimum: int) -> bytes:
    query = dns.message.make_query("nope.example.com", "A", use_edns=False)
    response = dns.message.make_response(query)
    response.set_rcode(dns.rcode.NXDOMAIN)
    response.authority.append(
        dns.rrset.from_text(
            "example.com.",
            soa_ttl,
            "IN",
            "SOA",
            f"ns.example.com. admin.example.com. 1 7200 3600 1209600 {minimum}",
        )
    )
    return response.to_wire()


@pytest.mark.parametrize(("soa_ttl", "minimum", "expected"), [(900, 300, 300), (60, 300, 60)])
def test_scan_negative_ttl_is_min_of_soa_ttl_and_minimum(soa_ttl, minimum, expected):
    scan = wire.scan_response(nxdomain_with_soa(soa_ttl, minimum))
    assert scan.rcode == wire.NXDOMAIN
    assert scan.negative_ttl == expected
    assert scan.min_ttl is None
    assert len(scan.ttl_offsets) == 1


def test_scan_soa_in_answer_is_not_a_negative_ttl():
    query = dns.message.make_query("example.com", "SOA", use_edns=False)
    response = dns.message.make_response(query)
    response.answer.append(
        dns.rrset.from_text(
            "example.com.", 900, "IN", "SOA", "ns.example.com. a.example.com. 1 2 3 4 5"
        )
    )
    scan = wire.scan_response(response.to_wire())
    assert scan.negative_ttl is None
    assert scan.min_ttl == 900


def test_scan_soa_in_additional_is_not_a_negative_ttl():
    data = message(
        questions=(question(),),
        additional=(rr("example.", "SOA", 30, "ns.example. a.example. 1 2 3 4 5"),),
    )
    scan = wire.scan_response(data)
    assert scan.negative_ttl is None
    assert len(scan.ttl_offsets) == 1


def test_scan_soa_with_wrong_rdata_length_raises():
    soa = rdata("SOA", "ns.example. a.example. 1 2 3 4 5")
    bad = name_wire("example.") + wire.RR_FIXED.pack(wire.TYPE_SOA, 1, 60, len(soa) + 2) + soa
    data = message(questions=(question(),), authority=(bad + b"\x00\x00",))
    with pytest.raises(wire.WireError):
        wire.scan_response(data)


def test_scan_cname_outside_answer_is_not_collected():
    data = message(
        questions=(question(),),
        authority=(rr("a.example.", "CNAME", 5, "b.example."),),
    )
    assert wire.scan_response(data).cnames == ()


@pytest.mark.parametrize("cut", [1, 4, 11, 20])
def test_scan_cut_response_raises(cut):
    data = cname_response().to_wire()
    with pytest.raises(wire.WireError):
        wire.scan_response(data[:-cut])


def test_scan_trailing_bytes_raise():
    with pytest.raises(wire.WireError):
        wire.scan_response(cname_response().to_wire() + b"\x00")


def test_scan_count_beyond_records_raises():
    data = bytearray(cname_response().to_wire())
    wire.U16.pack_into(data, 6, 3)  # ANCOUNT 2 -> 3
    with pytest.raises(wire.WireError):
        wire.scan_response(bytes(data))


def test_scan_shorter_than_header_raises():
    with pytest.raises(wire.WireError):
        wire.scan_response(b"\x00" * 11)


# --- without_opt ------------------------------------------------------------------------


def check_without_opt(data: bytes, records: int) -> None:
    scan = wire.scan_response(data)
    assert scan.opt_start >= 0
    stripped, offsets = wire.without_opt(data, scan)
    assert len(stripped) == len(data) - (scan.opt_end - scan.opt_start)
    msg = dns.message.from_wire(stripped)
    assert msg.edns == -1
    assert wire.HEADER.unpack_from(stripped)[5] == wire.HEADER.unpack_from(data)[5] - 1
    assert len(offsets) == records
    values = [1000 + index for index in range(records)]
    rewritten = dns.message.from_wire(rewrite_ttls(stripped, offsets, values))
    assert [rrset.ttl for rrset in all_rrsets(rewritten)] == values


def test_without_opt_at_the_end():
    check_without_opt(cname_response().to_wire(), 4)


@pytest.mark.parametrize("position", [0, 1, 2])
def test_without_opt_anywhere_in_additional(position):
    additional = [rr("a.example.", "A", 1, "192.0.2.1"), rr("b.example.", "AAAA", 2, "2001:db8::1")]
    additional.insert(position, opt(payload=4096, ttl=0x8000))
    data = message(
        questions=(question("example.com"),),
        answers=(rr("example.com.", "A", 3, "192.0.2.9"),),
        authority=(rr("example.com.", "NS", 4, "ns.example.com."),),
        additional=tuple(additional),
    )
    check_without_opt(data, 4)
    stripped, _ = wire.without_opt(data, wire.scan_response(data))
    names = [rrset.name.to_text() for rrset in dns.message.from_wire(stripped).additional]
    assert names == ["a.example.", "b.example."]


def test_without_opt_without_an_opt_changes_nothing():
    query = dns.message.make_query("example.com", "A", use_edns=False)
    response = dns.message.make_response(query)
    response.answer.append(dns.rrset.from_text("example.com.", 5, "IN", "A", "192.0.2.1"))
    data = response.to_wire()
    scan = wire.scan_response(data)
    assert wire.without_opt(data, scan) == (data, scan.ttl_offsets)
