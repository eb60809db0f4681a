"""Damaged real captures never raise: bytes flipped, lengths forced to 0 or 0xFFFF,
records cut short.  The result is records and anomalies, or one CaptureError when the
file header itself is destroyed."""

from __future__ import annotations

import itertools
import random
import struct
from pathlib import Path

import pytest

from tlsprobe import Analyzer, CaptureError, iter_records

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"
SEEDS = [ROOT / "pcaps" / "demo.pcap", ROOT / "pcaps" / "edge" / "ipv4-fragments.pcap"] + [
    p for p in (CORPUS / "arkime" / "arkime_synthetic.pcap", CORPUS / "foxio-ja4" / "tls-handshake.pcapng",
                CORPUS / "zeek" / "quic-multiple-initial-fragmented-crypto.pcap")
    if p.exists()
]


def _mutate(data: bytes, rnd: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(rnd.randint(1, 40)):
        op = rnd.random()
        pos = rnd.randrange(24, len(buf) - 2)
        if op < 0.6:
            buf[pos] ^= 1 << rnd.randrange(8)
        elif op < 0.8:
            struct.pack_into("!H", buf, pos, rnd.choice((0, 0xFFFF, 1, 0x4000)))
        elif op < 0.9:
            del buf[pos : pos + rnd.randint(1, 64)]
        else:
            buf[pos:pos] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 32)))
    if rnd.random() < 0.3:
        del buf[rnd.randrange(24, len(buf)) :]
    return bytes(buf)


@pytest.mark.parametrize("seed", SEEDS, ids=lambda p: p.name)
def test_mutated_captures_never_raise(seed: Path, tmp_path: Path) -> None:
    original = seed.read_bytes()
    rnd = random.Random(seed.name)
    damaged = 0
    for i in range(150):
        p = tmp_path / f"m{i}{seed.suffix}"
        p.write_bytes(_mutate(original, rnd))
        an = Analyzer()
        try:
            for rec in iter_records([str(p)], analyzer=an):
                d = rec.to_dict()
                # a ClientHello, only the server's side (the ClientHello was mutated away), or
                # an intercepted plain HTTP request (a record too, without a hello)
                assert isinstance(d["ja4"], str) or (d["kind"] == "http" and d["interception"]) or (
                    d["client_hello"] is None and "tls.server_hello.without_client_hello" in d["anomalies"])
        except CaptureError as exc:
            assert "\n" not in str(exc)  # only when the file header was hit: one clear line
        damaged += bool(an.log.counts)
    assert damaged > 50  # the mutations really damage what is parsed


# -- hostile captures end to end: the CLI on every mutant ---------------------------------------
#
# Each mutant goes through ``tlsprobe analyze`` (in process, exceptions propagating, and a
# sample as a subprocess): no traceback, exit 0 with anomalies for damaged content, exit 2
# with one error line when the library says the file is unreadable (CaptureError).

_REC = struct.Struct("<IIII")


def _records(data: bytes) -> tuple[bytes, list[bytes]]:
    """A little-endian microsecond pcap split into its file header and whole records."""
    assert data[:4] == b"\xd4\xc3\xb2\xa1"
    out, pos = [], 24
    while pos + 16 <= len(data):
        n = _REC.unpack_from(data, pos)[2]
        out.append(data[pos : pos + 16 + n])
        pos += 16 + n
    return data[:24], out


def _set16(rec: bytes, at: int, value: int) -> bytes:
    buf = bytearray(rec)
    if at + 2 <= len(buf):
        struct.pack_into("!H", buf, at, value)
    return bytes(buf)


def _cli_mutants(seed: Path, rnd: random.Random) -> list[tuple[str, bytes]]:
    data = seed.read_bytes()
    head, recs = _records(data)
    body = b"".join(recs)
    out: list[tuple[str, bytes]] = []
    # truncations at many offsets, in the file header too
    for cut in sorted({0, 3, 10, 23, 24, 30, *(rnd.randrange(24, len(data)) for _ in range(14))}):
        out.append((f"cut{cut}", data[:cut]))
    for i in range(6):  # bit flips in record headers (timestamps, caplen, origlen)
        rs = list(recs)
        for _ in range(3):
            j = rnd.randrange(len(rs))
            r = bytearray(rs[j])
            r[rnd.randrange(16)] ^= 1 << rnd.randrange(8)
            rs[j] = bytes(r)
        out.append((f"hdrflip{i}", head + b"".join(rs)))
    for i in range(6):  # bit flips in packet bytes: link, IP, TCP/UDP headers and TLS payloads
        rs = list(recs)
        for _ in range(20):
            j = rnd.randrange(len(rs))
            r = bytearray(rs[j])
            if len(r) > 17:
                r[rnd.randrange(16, min(len(r), 16 + (80 if i % 2 else len(r))))] ^= 1 << rnd.randrange(8)
            rs[j] = bytes(r)
        out.append((f"pktflip{i}", head + b"".join(rs)))
    for value in (0, 0xFFFF):
        # caplen of one record, IP total length and TLS record lengths of many packets
        rs = list(recs)
        j = rnd.randrange(len(rs))
        rs[j] = rs[j][:8] + struct.pack("<I", value) + rs[j][12:]
        out.append((f"caplen{value}", head + b"".join(rs)))
        rs = [_set16(r, 16 + 14 + 2, value) if rnd.random() < 0.3 else r for r in recs]
        out.append((f"iplen{value}", head + b"".join(rs)))
        rs = []
        for r in recs:
            at = r.find(b"\x16\x03", 16 + 54)
            rs.append(_set16(r, at + 3, value) if at > 0 else r)
        out.append((f"tlslen{value}", head + b"".join(rs)))
    dup = [r for r in recs for _ in range(1 + (rnd.random() < 0.3))]
    out.append(("duplicated", head + b"".join(dup)))
    shuffled = list(recs)
    rnd.shuffle(shuffled)
    out.append(("shuffled", head + b"".join(shuffled)))
    local = list(recs)  # reordered only nearby, as a capture point sees it
    for k in range(0, len(local) - 4, 4):
        chunk = local[k : k + 4]
        rnd.shuffle(chunk)
        local[k : k + 4] = chunk
    out.append(("reordered", head + b"".join(local)))
    out.append(("linktype", head[:20] + struct.pack("<I", 0xFFFF) + body))
    out.append(("magic", b"\x00" + head[1:] + body))
    out.append(("gzip-cut", __import__("gzip").compress(data)[: len(data) // 3]))
    return out


def _readable(path: Path) -> bool:
    try:
        for _ in iter_records([str(path)]):
            pass
    except CaptureError:
        return False
    return True


CLI_SEEDS = [ROOT / "pcaps" / "demo.pcap", ROOT / "pcaps" / "interception" / "block-pages.pcap",
             ROOT / "pcaps" / "interception" / "cert-substitution.pcap",
             ROOT / "pcaps" / "edge" / "ipv4-fragments.pcap"]


@pytest.mark.parametrize("seed", CLI_SEEDS, ids=lambda p: p.name)
def test_cli_on_mutated_captures(seed: Path, tmp_path: Path) -> None:
    import json

    from tests.test_cli import invoke

    rnd = random.Random(f"cli-{seed.name}")
    mutants = _cli_mutants(seed, rnd)
    damaged_without_anomaly = []
    seen: set[str] = set()
    head, recs = _records(seed.read_bytes())
    boundaries = set(itertools.accumulate([len(head), *map(len, recs)]))
    for i, (name, data) in enumerate(mutants):
        p = tmp_path / f"{name}.pcap"
        p.write_bytes(data)
        summ = tmp_path / f"{name}.json"
        fmt = ("jsonl", "csv", "table")[i % 3]
        extra = ["--http"] if i % 2 else []
        r = invoke("analyze", "-j", "1", "-f", fmt, "--summary-json", str(summ), *extra, str(p))
        assert "Traceback" not in r.stderr, (name, r.stderr)
        if not _readable(p):
            assert r.exit_code == 2, (name, r.stderr)
            errors = [ln for ln in r.stderr.splitlines() if ln.startswith("tlsprobe: error:")]
            assert len(errors) == 1 and p.name in errors[0], (name, r.stderr)
            continue
        assert r.exit_code == 0, (name, r.exit_code, r.stderr)
        if fmt == "jsonl":
            for line in r.stdout.splitlines():
                assert isinstance(json.loads(line)["anomalies"], list)
        anomalies = json.loads(summ.read_text())["anomalies"]
        if name.startswith(("cut", "caplen", "tlslen", "gzip")) and data != seed.read_bytes() and not anomalies:
            damaged_without_anomaly.append(name)
        if name.startswith("cut") and int(name[3:]) not in boundaries:
            assert anomalies.get("capture.truncated") == 1, (name, anomalies)
        seen.update(anomalies)
    # a cut that falls exactly on a record boundary is a clean, shorter capture
    assert len(damaged_without_anomaly) <= 2, damaged_without_anomaly
    # the damage reaches every layer: capture, decode and TLS anomalies all show up
    assert {"capture.truncated", "capture.unknown_linktype"} <= seen, seen
    assert any(c.startswith(("decode.", "tcp.", "ip.")) for c in seen), seen
    assert any(c.startswith("tls.") for c in seen), seen


def test_cli_subprocess_on_mutants(tmp_path: Path) -> None:
    """A sample of the mutants through ``python -m tlsprobe``: the real exit status and stderr."""
    from tests.test_cli import tlsprobe

    mutants = dict(_cli_mutants(CLI_SEEDS[0], random.Random("cli-subprocess")))
    for name, fmt, want in (("cut10", "jsonl", 2), ("magic", "table", 2), ("caplen65535", "csv", 0),
                            ("tlslen0", "jsonl", 0), ("shuffled", "table", 0), ("pktflip1", "csv", 0),
                            ("linktype", "jsonl", 0)):
        p = tmp_path / f"{name}.pcap"
        p.write_bytes(mutants[name])
        r = tlsprobe("analyze", "-f", fmt, str(p))
        assert "Traceback" not in r.stderr and "internal error" not in r.stderr, (name, r.stderr)
        assert r.returncode == want, (name, r.returncode, r.stderr)
        if want == 0:
            assert "anomalies" in r.stderr or name == "shuffled", (name, r.stderr)
