"""Issue 15: "the RPZ feed survives 100 transfers under query load with no query-path
stall over 50 ms". A real ``aiwall serve`` carries a 50,000-name list as an RPZ zone
(about 100,000 records); two clients transfer it 100 times in all while another asks
ordinary questions. Every transfer must bring the whole zone at the serial served, and
the event loop must never stall 50 ms (``aiwall_loop_stall_max_seconds``)."""

from __future__ import annotations

import socket
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rcode
import dns.xfr
import dns.zone
import pytest

from tests.integration.test_one_server import config_for
from tests.peers.aiwall import Aiwall

ZONE = "rpz.aiwall.internal"
NAMES = 50_000
TRANSFERS = 100


def _read(sock: socket.socket, count: int) -> bytes:
    data = bytearray()
    while len(data) < count:
        more = sock.recv(count - len(data))
        assert more, "the server closed the connection mid-transfer"
        data += more
    return bytes(data)


def raw_axfr(address: tuple[str, int], soa: bytes) -> tuple[int, int]:
    """One AXFR read with no parsing beyond the headers: (records, messages). The zone
    starts and ends with ``soa`` (aiwall writes names uncompressed)."""
    query = dns.message.make_query(ZONE, "AXFR").to_wire()
    records = messages = 0
    with socket.create_connection(address, timeout=30) as sock:
        sock.sendall(struct.pack("!H", len(query)) + query)
        while True:
            length = struct.unpack("!H", _read(sock, 2))[0]
            message = _read(sock, length)
            flags, qdcount, ancount = struct.unpack_from("!HHH", message, 2)
            assert flags & 0x000F == 0, f"rcode {flags & 0xF}"
            assert len(message) <= 65535
            if messages == 0:
                assert qdcount == 1
                question_end = message.index(b"\x00", 12) + 5
                assert message[question_end:].startswith(soa)
            records += ancount
            messages += 1
            if records > 1 and message.endswith(soa):
                return records, messages


@pytest.mark.slow
def test_100_transfers_of_a_large_zone_under_query_load(
    tmp_path: Path, upstream: Any, catalog_dir: Path
) -> None:
    listed = tmp_path / "big.txt"
    listed.write_text("".join(f"n{i}.stress-ai.test\n" for i in range(NAMES)))
    config = config_for(
        [upstream.server_spec],
        1,
        blocking={"lists": [str(listed)]},
        state={"directory": str(tmp_path / "state")},
        rpz=[{"zone": ZONE, "allow_transfer": ["127.0.0.1/32"]}],
    )
    server = Aiwall(config, tmp_path, catalog_dir=catalog_dir)
    try:
        server.wait_serving(120)
        host, port = server.address
        # The reference: one transfer read by dnspython, every record parsed.
        reference = dns.zone.Zone(ZONE)
        query, _ = dns.xfr.make_query(reference)
        dns.query.inbound_xfr(host, reference, query, port=port, timeout=30, lifetime=120)
        expected = sum(len(rdataset) for _, rdataset in reference.iterate_rdatasets()) + 1
        assert expected > 2 * NAMES
        # The SOA record as the server writes it, from its own bytes.
        soa_query = dns.message.make_query(ZONE, "SOA").to_wire()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.settimeout(3)
            udp.sendto(soa_query, (host, port))
            soa = udp.recv(512)[len(soa_query) :]
        assert struct.unpack_from("!I", soa, len(soa) - 20)[0] == reference.get_soa().serial

        stop = threading.Event()
        answered: list[float] = []

        def ask() -> None:
            names = ["n7.stress-ai.test", "resolves.example"]
            i = 0
            while not stop.is_set():
                started = time.monotonic()
                reply = dns.query.udp(
                    dns.message.make_query(names[i % 2], "A"), host, port=port, timeout=2
                )
                assert reply.rcode() == (dns.rcode.NXDOMAIN if i % 2 == 0 else dns.rcode.NOERROR)
                answered.append(time.monotonic() - started)
                i += 1
                time.sleep(0.002)

        asker = ThreadPoolExecutor(1)
        asking = asker.submit(ask)
        started = time.monotonic()
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(lambda _: raw_axfr((host, port), soa), range(TRANSFERS)))
        print(f"{TRANSFERS} transfers in {time.monotonic() - started:.1f} s")
        stop.set()
        asking.result(timeout=10)
        asker.shutdown()
        assert [records for records, _ in results] == [expected] * TRANSFERS
        assert all(messages > 1 for _, messages in results)  # many RRs per message, many messages
        assert len(answered) > 100
        assert server.metric("aiwall_rpz_transfers_total", kind="axfr", result="ok") == (
            TRANSFERS + 1
        )
        worst = server.metric("aiwall_loop_stall_max_seconds")
        print(f"worst stall {worst * 1000:.1f} ms, worst answer {max(answered) * 1000:.1f} ms")
        assert worst < 0.050, f"the event loop stalled {worst * 1000:.0f} ms"
    finally:
        server.stop()
