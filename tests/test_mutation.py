"""Damaged real captures never raise: bytes flipped, lengths forced to 0 or 0xFFFF,
records cut short.  The result is records and anomalies, or one CaptureError when the
file header itself is destroyed."""

from __future__ import annotations

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
                assert isinstance(d["ja4"], str)
        except CaptureError as exc:
            assert "\n" not in str(exc)  # only when the file header was hit: one clear line
        damaged += bool(an.log.counts)
    assert damaged > 50  # the mutations really damage what is parsed
