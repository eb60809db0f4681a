"""Bounded resources (issue 7): hostile captures built to exhaust memory or time.

The generators of tools/hostile/make_hostile.py, at small scale with proportionally
small limits: every table, buffer, heap and cache stays at its limit and the right
anomalies are counted.  Then one moderately sized run per hostile shape with the default
limits, in a subprocess whose peak RSS must stay under the documented ceiling.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.factory import client_hello_body, handshake, record
from tests.test_capture import _block
from tlsprobe.anomalies import AnomalyLog
from tlsprobe.capture.files import CaptureFile, Packet
from tlsprobe.compare import PortComparison
from tlsprobe.fingerprint import compute
from tlsprobe.limits import (
    COMPARE_MAX_ENTRIES,
    COMPARE_MAX_MEMBERS,
    FINGERPRINT_CACHE_MAX_ITEMS,
    FINGERPRINT_CACHE_SIZE,
    Limits,
)
from tlsprobe.pipeline import Analyzer
from tlsprobe.record import Record
from tlsprobe.wire import tls, x509

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools" / "hostile"))

import make_hostile as mh  # noqa: E402

# The ceiling README.md and docs/robustness.md promise for one process with the default limits.
MEMORY_CEILING_MIB = 200


def packets(frames: Iterator[bytes]) -> Iterator[Packet]:
    for i, frame in enumerate(frames):
        yield mh.EPOCH + i * mh.STEP_US / 1e6, 1, frame


def run(an: Analyzer, frames: Iterator[bytes], check: object = None) -> list[Record]:
    """Every packet through ``an``; ``check(an)`` after each one."""
    out: list[Record] = []

    def source() -> Iterator[Packet]:
        for p in packets(frames):
            yield p
            if callable(check):
                check(an)

    out.extend(an.packets(source()))
    if callable(check):
        check(an)
    out.extend(an.finish())
    return out


def flow_bytes(an: Analyzer) -> int:
    return sum(f.buffered_bytes() for f in an.table.flows() if not f.done)


def counts(an: Analyzer) -> dict[str, int]:
    return dict(an.log.counts)


# -- TCP ------------------------------------------------------------------------------------


def test_syn_flood_table_stays_at_max_flows() -> None:
    lim = Limits(max_flows=100)

    def check(an: Analyzer) -> None:
        assert len(an.table) <= 100
        assert len(an.table.by_key) <= 200
        assert len(an.table.queue) <= 2 * len(an.table) + 1024

    an = Analyzer(lim)
    run(an, mh.syn(2000), check)
    assert an.stats.flows == 2000
    assert counts(an)["flow.evicted"] == 1900


def test_eviction_prefers_flows_not_seen_lately() -> None:
    """CLOCK: a flow with packets since it was queued gets a second chance."""
    an = Analyzer(Limits(max_flows=10))
    c0, p0 = mh.client_addr(0), mh.client_port(0)
    frames = list(mh.syn(10))
    # flow 0 sends data after the others were created: it was seen lately
    frames.append(mh.tcp(c0, mh.SERVER, p0, 443, 1001, 1, mh.ACK, b"x"))
    frames += [mh.tcp(mh.client_addr(100 + i), mh.SERVER, 5000 + i, 443, 1, 0, mh.SYN) for i in range(5)]
    list(an.packets(packets(iter(frames))))
    kept = {(f.key[:4], int.from_bytes(f.key[8:10], "big")) for f in an.table.flows()}
    assert (c0, p0) in kept  # the oldest flow, but seen lately
    assert not kept & {(mh.client_addr(i), mh.client_port(i)) for i in range(1, 6)}  # the next five oldest went
    assert counts(an)["flow.evicted"] == 5


def test_partial_hello_flood_caps_flows_in_handshake() -> None:
    lim = Limits(max_flows=500, max_handshake_flows=20)

    def check(an: Analyzer) -> None:
        assert len(an._active) <= 20
        assert sum(1 for f in an.table.flows() if f.hs is not None) <= 20

    an = Analyzer(lim)
    run(an, mh.syn_hello(2000), check)
    c = counts(an)
    assert c["flow.handshakes.cap_exceeded"] == 1000 - 20  # every flow past the first 20 pushes one out
    assert an.buffered == 0  # all released at the end


def test_complete_hello_flood_is_charged_for_its_parsed_hellos() -> None:
    """Hellos that are parsed and wait for an answer that never comes hold ~5 KB each."""
    budget = 100 * 1024

    def check(an: Analyzer) -> None:
        assert an.buffered <= budget
        assert an.buffered == flow_bytes(an)

    an = Analyzer(Limits(max_buffered_bytes=budget))
    recs = run(an, mh.hello(4000), check)
    assert len(recs) == 2000  # every hello reported, the cut ones too
    cut = [r for r in recs if "flow.buffers.cap_exceeded" in r.anomalies]
    assert len(cut) == counts(an)["flow.buffers.cap_exceeded"] > 1500
    assert all(r.client_hello.sni == "www.example.com" for r in cut)


def test_one_flow_out_of_order_forever_is_cut_once() -> None:
    lim = Limits(max_ooo_bytes=64 * 1024)

    def check(an: Analyzer) -> None:
        assert an.buffered <= 64 * 1024 + 128 * lim.max_ooo_segments
        assert an.buffered == flow_bytes(an)

    an = Analyzer(lim)
    run(an, mh.ooo(2000), check)
    assert counts(an) == {"tcp.reassembly.cap_exceeded": 1}


def test_many_flows_out_of_order_stay_within_the_buffer_budget() -> None:
    budget = 200 * 1024
    lim = Limits(max_buffered_bytes=budget)

    def check(an: Analyzer) -> None:
        assert an.buffered <= budget
        assert an.buffered == flow_bytes(an)

    an = Analyzer(lim)
    run(an, mh.ooo_flows(6000, flows=200), check)
    c = counts(an)
    assert c["flow.buffers.cap_exceeded"] > 0
    assert "tcp.reassembly.cap_exceeded" not in c  # the run-wide budget bites first


def test_big_hellos_in_parallel_stay_within_the_buffer_budget() -> None:
    budget = 300 * 1024
    lim = Limits(max_buffered_bytes=budget)

    def check(an: Analyzer) -> None:
        assert an.buffered <= budget
        assert an.buffered == flow_bytes(an)

    an = Analyzer(lim)
    run(an, mh.hello_cap(8000, flows=100, claim=200 * 1024), check)
    assert counts(an)["flow.buffers.cap_exceeded"] > 0


def test_oversized_record_and_hello_claims_are_refused_at_once() -> None:
    an = Analyzer(Limits())
    run(an, mh.big_record(200), lambda a: None)
    assert counts(an) == {"tls.record.oversized": 100}
    an = Analyzer(Limits())
    n_packets = 3000
    run(an, mh.big_hello(n_packets), lambda a: None)
    c = counts(an)
    assert c["tls.handshake.oversized"] == an.stats.flows
    assert an.stats.skipped_fast > n_packets * 0.9  # the rest of each flow skipped undecoded


def _hello_flows(n: int, rtt: float = 0.0) -> Iterator[bytes]:
    """SYN, SYN-ACK, ACK and a complete ClientHello per flow; the server never answers."""
    hello = record(22, handshake(1, client_hello_body()))
    for i in range(n):
        c, p = mh.client_addr(i), mh.client_port(i) + i % 5
        yield from mh._handshake3(c, p)
        yield mh.tcp(c, mh.SERVER, p, 443, 1001, 5001, mh.ACK | mh.PSH, hello)


def test_timer_heap_is_pruned_of_finished_flows() -> None:
    lim = Limits(max_handshake_flows=10)

    def check(an: Analyzer) -> None:
        assert len(an._deadlines) <= 2 * len(an._active) + 1024 + 1

    an = Analyzer(lim)
    recs = run(an, _hello_flows(3000), check)
    assert len(recs) == 3000  # every hello reported, cut or not
    assert counts(an)["flow.handshakes.cap_exceeded"] == 3000 - 10


def test_evidence_window_is_capped_whatever_the_rtt() -> None:
    lim = Limits()
    an = Analyzer(lim)
    c, p = mh.client_addr(0), 40000
    hello = record(22, handshake(1, client_hello_body()))
    frames = [
        mh.tcp(c, mh.SERVER, p, 443, 1000, 0, mh.SYN),
        mh.tcp(mh.SERVER, c, 443, p, 5000, 1001, mh.SYN | mh.ACK),
    ]
    pk = list(packets(iter(frames)))
    # the client's ACK a day after the SYN: an RTT of a day
    day = 86400.0
    pk.append((pk[0][0] + day, 1, mh.tcp(c, mh.SERVER, p, 443, 1001, 5001, mh.ACK)))
    pk.append((pk[0][0] + day, 1, mh.tcp(c, mh.SERVER, p, 443, 1001, 5001, mh.ACK | mh.PSH, hello)))
    list(an.packets(iter(pk)))
    (flow,) = an.table.flows()
    assert flow.deadline is not None
    assert flow.deadline - (pk[0][0] + day) <= lim.max_evidence_wait


# -- QUIC -----------------------------------------------------------------------------------


def test_quic_initial_flood_keeps_the_connection_table_at_its_limit() -> None:
    lim = Limits(max_quic_connections=50)

    def check(an: Analyzer) -> None:
        assert an.quic_count <= 50
        assert len(an.quic) <= 100

    an = Analyzer(lim)
    recs = run(an, mh.quic(600), check)
    assert len(recs) == 600  # every ClientHello reported: evicted ones without the server's answer
    assert {r.client_hello.sni for r in recs if r.client_hello is not None} == {"www.example.com"}
    assert counts(an)["quic.evicted"] == 550


def test_quic_crypto_at_a_high_offset_is_bounded_by_the_budget() -> None:
    budget = 256 * 1024

    def check(an: Analyzer) -> None:
        assert an.quic_buffered <= budget
        live = {id(t): t for t, _, _ in an.quic.values()}
        assert an.quic_buffered == sum(t.buffered_bytes() for t in live.values())

    an = Analyzer(Limits(max_quic_buffered_bytes=budget))
    run(an, mh.quic_gap(200), check)
    assert counts(an)["quic.evicted"] >= 200 - budget // 61000


def test_quic_partial_hellos() -> None:
    an = Analyzer(Limits(max_quic_connections=30))
    recs = run(an, mh.quic_partial(300), lambda a: None)
    assert recs == []  # no hello ever completes
    assert counts(an)["quic.evicted"] == 270


# -- IP fragments -----------------------------------------------------------------------------


def test_first_fragments_only_stay_within_datagrams_and_bytes() -> None:
    lim = Limits(max_ip_fragment_datagrams=100, max_ip_fragment_bytes=64 * 1024)

    def check(an: Analyzer) -> None:
        frags = an.decoder.fragments
        assert len(frags.pending) <= 100
        assert frags.held <= 64 * 1024
        assert frags.held == sum(p.size + 100 * len(p.parts) for p in frags.pending.values())

    an = Analyzer(lim)
    run(an, mh.frag(3000), check)
    c = counts(an)
    assert c["ip.fragment.cap_exceeded"] + c["ip.fragment.incomplete"] == 3000
    assert an.decoder.fragments.held == 0


def test_tiny_fragments_are_capped_per_datagram() -> None:
    lim = Limits(max_ip_fragment_parts=16)
    an = Analyzer(lim)
    frames = (mh.ipv4(mh.client_addr(0), mh.SERVER, 6, bytes(8), ip_id=7, frag=0x2000 | k) for k in range(100))
    run(an, frames, lambda a: None)
    assert an.decoder.fragments.held == 0
    assert counts(an)["ip.fragment.cap_exceeded"] >= 5


# -- capture files ----------------------------------------------------------------------------


def test_pcapng_interface_list_is_bounded(tmp_path: Path) -> None:
    shb = _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    idb = _block(1, struct.pack("<HHI", 1, 0, 262144))
    path = tmp_path / "ifaces.pcapng"
    path.write_bytes(shb + idb * 5000)
    log = AnomalyLog()
    assert list(CaptureFile(str(path), log, Limits(max_capture_interfaces=100))) == []
    assert log.counts == {"capture.too_many_interfaces": 4900}


# -- caches ---------------------------------------------------------------------------------


def test_fingerprint_cache_is_bounded_in_entries_and_entry_size() -> None:
    compute._client.clear()
    big = tls.parse_client_hello(client_hello_body(ciphers=list(range(1, FINGERPRINT_CACHE_MAX_ITEMS + 2))), 0x0303)
    compute.client_fingerprints(big)
    assert not compute._client  # too big to cache
    for i in range(FINGERPRINT_CACHE_SIZE + 10):
        ch = tls.parse_client_hello(client_hello_body(ciphers=[0x1301, 0x0100 + i % 60000]), 0x0303)
        compute.client_fingerprints(ch)
        assert len(compute._client) <= FINGERPRINT_CACHE_SIZE


def test_verify_cache_keys_are_digests() -> None:
    x509._VERIFIED.clear()
    chain = [bytes(100_000)]
    at = datetime(2024, 1, 1, tzinfo=timezone.utc)
    x509.verify_chain_cached(chain, "x" * 10_000, at)
    (key,) = x509._VERIFIED
    assert sum(len(k) for k in key if isinstance(k, bytes)) == 32
    for i in range(x509.VERIFY_CACHE_SIZE + 5):
        x509.verify_chain_cached([bytes([i % 256, i // 256])], "a.example", at)
        assert len(x509._VERIFIED) <= x509.VERIFY_CACHE_SIZE


def test_port_comparison_is_bounded_in_groups_and_members() -> None:
    pc = PortComparison()
    for i in range(COMPARE_MAX_MEMBERS * 3):  # one server:port, distinct SNIs
        pc.add({"src_ip": "10.0.0.1", "dst_ip": "192.0.2.1", "dst_port": 443, "sni": f"h{i}.example",
                "outcome": "rst"})
    assert len(pc.by_port[("192.0.2.1", 443)]) == COMPARE_MAX_MEMBERS
    assert pc.truncated
    pc = PortComparison()
    for i in range(COMPARE_MAX_ENTRIES):  # distinct clients, distinct SNIs
        pc.add({"src_ip": f"c{i}", "dst_ip": f"s{i % 1000}", "dst_port": 443, "sni": f"x{i}", "outcome": "rst"})
    held = sum(len(g) for t in (pc.by_name, pc.by_port) for g in t.values())
    assert held == pc.entries == COMPARE_MAX_ENTRIES


def test_live_port_comparison_ages_out_the_least_recent_groups() -> None:
    """A live capture runs for days: when the counters are full, old groups make room."""
    pc = PortComparison(age_out=True)

    def rec(client: str, port: int, outcome: str) -> dict[str, object]:
        return {"src_ip": client, "dst_ip": "192.0.2.1", "dst_port": port, "sni": "a.example", "outcome": outcome}

    pc.add(rec("keep", 443, "server_hello"))
    for i in range(COMPARE_MAX_ENTRIES * 2):
        pc.add(rec(f"c{i}", 443, "server_hello"))
        if i % 1000 == 0:
            pc.add(rec("keep", 443, "server_hello"))  # recently used: stays
        assert pc.entries <= COMPARE_MAX_ENTRIES
    pc.add(rec("keep", 8443, "rst"))
    assert not pc.truncated and pc.aged_out > 0
    assert [f["summary"] for f in pc.findings() if f["kind"] == "port"] == [
        "rst on port 8443 but not on 443 (SNI 'a.example', keep -> 192.0.2.1)"]
    held = sum(len(g) for t in (pc.by_name, pc.by_port) for g in t.values())
    assert held == pc.entries


def test_per_worker_limits_divide_the_tables() -> None:
    lim = Limits().per_worker(4)
    assert lim.max_flows * 4 <= Limits().max_flows
    assert lim.max_buffered_bytes * 4 <= Limits().max_buffered_bytes
    assert lim.max_quic_connections * 4 <= Limits().max_quic_connections
    assert Limits().per_worker(1) == Limits()


# -- peak memory of whole runs ------------------------------------------------------------------

# (shape, packets): enough for each shape to reach the default limit it attacks
SIZES = [
    ("syn", 45_000),  # > max_flows (40k)
    ("syn-hello", 20_000),  # 10k flows with a partial hello: > max_handshake_flows (8k)
    ("hello", 20_000),  # 10k flows waiting with a parsed hello: ~50 MB > max_buffered_bytes
    ("ooo", 15_000),  # 21 MB beyond a gap in one flow
    ("ooo-flows", 15_000),  # 21 MB beyond gaps in 2,000 flows: > max_buffered_bytes (16 MB)
    ("hello-cap", 15_000),  # 21 MB of unfinished hellos in 2,000 flows
    ("big-record", 5_000),
    ("big-hello", 5_000),
    ("quic", 6_500),  # > max_quic_connections (6k)
    ("quic-gap", 2_000),  # 2k x 61 KB of CRYPTO buffer: > max_quic_buffered_bytes (8 MB)
    ("frag", 5_000),  # 7 MB of first fragments: > max_ip_fragment_bytes (4 MB)
]


def _peak_rss_mib(capture: Path) -> tuple[float, str]:
    cmd = [sys.executable, "-m", "tlsprobe", "analyze", str(capture), "--format", "jsonl", "-j", "1"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, err
    return usage.ru_maxrss / 1024, err


@pytest.mark.parametrize(("shape", "n"), SIZES, ids=[s for s, _ in SIZES])
def test_peak_memory_of_a_hostile_capture(tmp_path: Path, shape: str, n: int) -> None:
    capture = tmp_path / f"{shape}.pcap"
    mh.write(shape, n, capture)
    rss, summary = _peak_rss_mib(capture)
    assert rss < MEMORY_CEILING_MIB, f"{shape}: {rss:.0f} MiB\n{summary}"
