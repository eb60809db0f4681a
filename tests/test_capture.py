"""Capture formats and damaged files, built from the real demo capture's packets."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import pytest

from tlsprobe import Analyzer, CaptureError, iter_records
from tlsprobe.capture.files import CaptureFile

IP_TYPES = (b"\x08\x00", b"\x86\xdd")
DEMO = Path(__file__).resolve().parents[1] / "pcaps" / "demo.pcap"


def demo_packets() -> list[tuple[int, int, bytes, int]]:
    """(sec, usec, frame, original length) of every demo packet."""
    raw = DEMO.read_bytes()
    out, pos = [], 24
    while pos + 16 <= len(raw):
        sec, usec, caplen, origlen = struct.unpack_from("<IIII", raw, pos)
        out.append((sec, usec, raw[pos + 16 : pos + 16 + caplen], origlen))
        pos += 16 + caplen
    return out


def pcap_bytes(order: str = "<", nano: bool = False, linktype: int = 1, strip: int = 0) -> bytes:
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = bytearray(struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 262144, linktype))
    for sec, usec, frame, _orig in demo_packets():
        if strip and frame[12:14] not in IP_TYPES:
            continue  # a raw-IP link carries IP only (drop ARP)
        frame = frame[strip:]
        frac = usec * 1000 if nano else usec
        out += struct.pack(order + "IIII", sec, frac, len(frame), len(frame)) + frame
    return bytes(out)


def _block(btype: int, body: bytes) -> bytes:
    body += b"\x00" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack("<II", btype, n) + body + struct.pack("<I", n)


def pcapng_two_interfaces() -> bytes:
    """Interface 0 Ethernet (µs), interface 1 raw IP with nanosecond resolution."""
    shb = _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    idb0 = _block(1, struct.pack("<HHI", 1, 0, 262144))
    tsresol = struct.pack("<HHB3x", 9, 1, 9) + struct.pack("<HH", 0, 0)
    idb1 = _block(1, struct.pack("<HHI", 101, 0, 262144) + tsresol)
    out = bytearray(shb + idb0 + idb1)
    for i, (sec, usec, frame, _orig) in enumerate(demo_packets()):
        if i % 2 and frame[12:14] in IP_TYPES:
            ts = (sec * 1_000_000_000) + usec * 1000
            data, ifid = frame[14:], 1
        else:
            ts = sec * 1_000_000 + usec
            data, ifid = frame, 0
        out += _block(6, struct.pack("<IIIII", ifid, ts >> 32, ts & 0xFFFFFFFF, len(data), len(data)) + data)
    return bytes(out)


def summary(path: Path) -> tuple[list[dict[str, object]], Analyzer]:
    an = Analyzer()
    recs = [r.to_dict() for r in iter_records([str(path)], analyzer=an)]
    return recs, an


BASELINE = {(d["src_port"], d["sni"], d["ja4"]) for d in (r.to_dict() for r in iter_records([str(DEMO)]))}


@pytest.mark.parametrize(
    "name,data",
    [
        ("big-endian.pcap", lambda: pcap_bytes(">")),
        ("nanosecond.pcap", lambda: pcap_bytes(nano=True)),
        ("raw-ip.pcap", lambda: pcap_bytes(linktype=101, strip=14)),
        ("two-interfaces.pcapng", pcapng_two_interfaces),
        ("demo.pcap.gz", lambda: gzip.compress(DEMO.read_bytes())),
    ],
)
def test_formats_give_the_same_handshakes(tmp_path: Path, name: str, data: object) -> None:
    p = tmp_path / name
    p.write_bytes(data())  # type: ignore[operator]
    recs, an = summary(p)
    assert {(r["src_port"], r["sni"], r["ja4"]) for r in recs} == BASELINE
    assert not an.log.counts


def test_timestamps_survive_every_format(tmp_path: Path) -> None:
    base = sorted(r.ts for r in iter_records([str(DEMO)]))
    p = tmp_path / "x.pcapng"
    p.write_bytes(pcapng_two_interfaces())
    assert sorted(r.ts for r in iter_records([str(p)])) == pytest.approx(base, abs=1e-6)


@pytest.mark.parametrize("cut", [30, 100, 1000, 5000, 20000, 50000, 80000])
def test_truncated_file_keeps_what_it_has(tmp_path: Path, cut: int) -> None:
    p = tmp_path / "cut.pcap"
    p.write_bytes(DEMO.read_bytes()[:cut])
    recs, an = summary(p)
    assert an.log.counts["capture.truncated"] == 1
    assert len(recs) <= len(BASELINE)


def test_truncated_pcapng(tmp_path: Path) -> None:
    data = pcapng_two_interfaces()
    p = tmp_path / "cut.pcapng"
    p.write_bytes(data[: len(data) // 2 + 3])
    _recs, an = summary(p)
    assert an.log.counts["capture.truncated"] == 1


def test_garbage_after_valid_header(tmp_path: Path) -> None:
    p = tmp_path / "garbage.pcap"
    p.write_bytes(DEMO.read_bytes()[:24] + bytes(range(256)) * 50)
    recs, an = summary(p)
    assert recs == [] and an.log.counts["capture.bad_record"] == 1


def test_garbage_after_valid_records(tmp_path: Path) -> None:
    p = tmp_path / "tail.pcap"
    p.write_bytes(DEMO.read_bytes() + b"\xff" * 40)
    recs, an = summary(p)
    assert len(recs) == len(BASELINE) and an.log.counts["capture.bad_record"] == 1


def test_snaplen_cut_packets_are_counted(tmp_path: Path) -> None:
    out = bytearray(DEMO.read_bytes()[:24])
    for sec, usec, frame, orig in demo_packets():
        cut = frame[:96]
        out += struct.pack("<IIII", sec, usec, len(cut), orig) + cut
    p = tmp_path / "snap.pcap"
    p.write_bytes(bytes(out))
    _recs, an = summary(p)
    assert an.log.counts["capture.snaplen_cut"] > 0


@pytest.mark.parametrize("content", [b"", b"hello", b"not a capture at all, just text\n" * 10, b"\x1f\x8bjunk"])
def test_not_a_capture_raises_one_clear_error(tmp_path: Path, content: bytes) -> None:
    p = tmp_path / "bad.pcap"
    p.write_bytes(content)
    with pytest.raises(CaptureError) as exc:
        list(CaptureFile(str(p)))
    assert str(p) in str(exc.value) and "\n" not in str(exc.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="cannot open"):
        list(iter_records([str(tmp_path / "nope.pcap")]))


def test_server_handshake_cut_off_is_an_anomaly(tmp_path: Path) -> None:
    from tests import factory as f

    ch = f.record(22, f.handshake(1, f.client_hello_body(extensions=[f.sni_ext(b"cut.example")])))
    sh = f.record(22, f.handshake(2, f.server_hello_body(extensions=[f.ext(0xFF01, b"\x00")])), 0x0303)
    p = tmp_path / "cut-server.pcap"
    p.write_bytes(f.pcap(f.handshake_frames(ch, sh[: len(sh) // 2])))
    recs, an = summary(p)
    assert len(recs) == 1 and recs[0]["sni"] == "cut.example"
    assert recs[0]["server_hello"] is None
    assert recs[0]["anomalies"] == ["tls.handshake.truncated"]
    assert an.log.counts["tls.handshake.truncated"] == 1
    p.write_bytes(f.pcap(f.handshake_frames(ch, sh)))
    recs, _ = summary(p)
    assert recs[0]["server_hello"]["cipher"] == "0x1301" and recs[0]["anomalies"] == []
