"""A flow whose capture holds the ServerHello but not the ClientHello (a gap, or a capture
that started late): a record with the client fields null and the server's side filled,
the anomaly kept, and every sink and the report take it (docs/output.md)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from tests.factory import pcap, server_flight, server_hello_body, tcp_frame
from tlsprobe import iter_records
from tlsprobe.fingerprint.ja3 import md5_hex
from tlsprobe.report import make_report
from tlsprobe.sinks.csv import CsvSink
from tlsprobe.sinks.jsonl import JsonlSink
from tlsprobe.sinks.table import TableSink

C, S = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
HELLO_LEN = 300  # the client's bytes that were not captured


def _capture(tmp_path: Path) -> Path:
    sh = server_hello_body(0x0303, 0xC02F, [])
    flight = server_flight([], server_hello=sh)
    frames = [
        tcp_frame(C, S, 40000, 8443, 1000, 0, 0x02),
        tcp_frame(S, C, 8443, 40000, 5000, 1001, 0x12),
        tcp_frame(C, S, 40000, 8443, 1001, 5001, 0x10),
        # the client's ClientHello (seq 1001, 300 bytes) is missing from the capture
        tcp_frame(S, C, 8443, 40000, 5001, 1001 + HELLO_LEN, 0x18, flight),
        tcp_frame(C, S, 40000, 8443, 1001 + HELLO_LEN, 5001 + len(flight), 0x10),
    ]
    path = tmp_path / "server-only.pcap"
    path.write_bytes(pcap(frames))
    return path


@pytest.fixture
def record(tmp_path: Path) -> dict[str, Any]:
    (rec,) = [r.to_dict() for r in iter_records([str(_capture(tmp_path))])]
    return rec


def test_record_with_server_side_only(record: dict[str, Any]) -> None:
    assert (record["src_ip"], record["src_port"], record["dst_port"]) == ("10.0.0.1", 40000, 8443)
    for key in ("sni", "tls_version", "ja3", "ja3_string", "ja4", "ja4_r", "ja4_o", "ja4_ro", "client_hello",
                "retry_client_hello", "evidence"):
        assert record[key] is None, key
    assert record["alpn"] == []
    assert (record["client_hello_segments"], record["client_hello_bytes"], record["client_hello_records"]) == (0, 0, 0)
    assert record["ja3s_string"] == "771,49199,"
    assert record["ja3s"] == md5_hex("771,49199,")
    assert record["ja4s"] == "t120000_c02f_000000000000"
    assert record["server_hello"]["cipher"] == "0xc02f"
    assert record["outcome"] == "server_hello"
    assert record["anomalies"] == ["tls.server_hello.without_client_hello"]
    assert record["ja4t"] == "65535_00_00_00" and record["ja4ts"] == "65535_00_00_00"
    assert record["interception"] is None


def test_every_sink_takes_it(record: dict[str, Any], tmp_path: Path) -> None:
    buf = io.StringIO()
    sink = JsonlSink(buf)
    sink.write(record)
    sink.close()
    assert json.loads(buf.getvalue())["ja4s"] == record["ja4s"]

    buf = io.StringIO()
    sink = CsvSink(buf)
    sink.write(record)
    sink.close()
    (row,) = csv.DictReader(io.StringIO(buf.getvalue()))
    assert row["ja4s"] == record["ja4s"] and row["ja4"] == "" and row["sni"] == ""

    buf = io.StringIO()
    sink = TableSink(buf)
    sink.write(record)
    sink.close()
    assert "40000" in buf.getvalue()


def test_report_counts_it(tmp_path: Path) -> None:
    capture = _capture(tmp_path)
    jsonl = tmp_path / "hs.jsonl"
    jsonl.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in iter_records([str(capture)])))
    for source in (capture, jsonl):
        out = tmp_path / f"report-{source.suffix[1:]}"
        make_report([str(source)], str(out))
        md = (out / "report.md").read_text()
        assert "8443" in md
