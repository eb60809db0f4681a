"""Real captures of link types, encapsulations and formats (tools/lab/make_edge_pcaps.py):
IPv4 fragments, 802.1Q and QinQ, Linux cooked v1/v2 (tcpdump -i any), nanosecond pcap,
two-interface pcapng.  Each connection must come out as its scenario label says."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tlsprobe import Analyzer, iter_records

EDGE = Path(__file__).resolve().parents[1] / "pcaps" / "edge"
LABELS = sorted(EDGE.glob("*.labels.json"))
VERSIONS = {"TLSv1.3": "1.3", "TLSv1.2": "1.2"}


def _cases() -> list[tuple[str, dict[str, Any]]]:
    return [(p.name, c) for p in LABELS for c in json.loads(p.read_text())["connections"]]


def _analyse(capture: str) -> tuple[dict[tuple[str, int], dict[str, Any]], Analyzer]:
    an = Analyzer()
    recs = [r.to_dict() for r in iter_records([str(EDGE / capture)], analyzer=an)]
    return {(r["src_ip"], r["src_port"]): r for r in recs}, an


@pytest.mark.parametrize("labels", LABELS, ids=lambda p: p.name.removesuffix(".labels.json"))
def test_every_connection_and_no_other(labels: Path) -> None:
    meta = json.loads(labels.read_text())
    records, an = _analyse(meta["capture"])
    assert set(records) == {(c["client_ip"], c["client_port"]) for c in meta["connections"]}
    assert not an.log.counts, dict(an.log.counts)


@pytest.mark.parametrize(("capture_labels", "conn"), _cases(), ids=lambda v: v if isinstance(v, str) else v["scenario"])
def test_connection_matches_label(capture_labels: str, conn: dict[str, Any]) -> None:
    capture = json.loads((EDGE / capture_labels).read_text())["capture"]
    rec = _analyse(capture)[0][(conn["client_ip"], conn["client_port"])]
    assert (rec["dst_ip"], rec["dst_port"]) == (conn["server_ip"], conn["server_port"])
    assert rec["ip_version"] == conn["ip_version"]
    assert rec["sni"] == conn["sni"]
    assert rec["alpn"] == conn["alpn_offered"]
    assert rec["server_hello"]["version"] == VERSIONS[conn["tls_version"]]
    assert rec["client_hello_segments"] == conn["hello_tcp_segments"]
    assert rec["anomalies"] == []


def test_fragmented_hellos_really_were_fragmented() -> None:
    meta = json.loads((EDGE / "ipv4-fragments.labels.json").read_text())
    assert sum(1 for c in meta["connections"] if c.get("fragmented")) >= 2
    # without fragment reassembly the fragmented hellos would be lost
    records, _ = _analyse(meta["capture"])
    assert all((c["client_ip"], c["client_port"]) in records for c in meta["connections"] if c.get("fragmented"))


def test_nanosecond_timestamps_are_read_as_nanoseconds() -> None:
    import struct

    from tlsprobe.capture.files import CaptureFile

    raw = (EDGE / "nanosecond.pcap").read_bytes()
    assert raw[:4] == bytes.fromhex("4d3cb2a1")  # nanosecond magic, little-endian
    expected, pos = [], 24
    while pos < len(raw):
        sec, nsec, caplen, _ = struct.unpack_from("<IIII", raw, pos)
        assert nsec < 1_000_000_000
        expected.append(sec + nsec / 1e9)
        pos += 16 + caplen
    got = [ts for ts, _lt, _buf in CaptureFile(str(EDGE / "nanosecond.pcap"))]
    assert got == pytest.approx(expected, abs=1e-6, rel=0)
    assert any(e * 1e9 % 1000 for e in expected)  # the file really has sub-microsecond stamps
    records, _ = _analyse("nanosecond.pcap")
    assert {round(r["ts"], 6) for r in records.values()} <= {round(e, 6) for e in expected}
