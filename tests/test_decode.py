"""Decoder units the real captures cannot reach: IPv6 fragments (Linux TCP never emits
them) and IPv6 extension-header chains, plus fragment limits and overlaps."""

from __future__ import annotations

import struct

from tests import factory as f
from tlsprobe.anomalies import AnomalyLog
from tlsprobe.decode.packet import Decoder

SRC6 = bytes.fromhex("fd770001000000000000000000000002")
DST6 = bytes.fromhex("fd770002000000000000000000000002")


def _tcp(payload: bytes) -> bytes:
    return struct.pack("!HHIIBBHHH", 40000, 8443, 1, 0, 5 << 4, 0x18, 65535, 0, 0) + payload


def _ip6(next_header: int, payload: bytes) -> bytes:
    return struct.pack("!IHBB", 6 << 28, len(payload), next_header, 64) + SRC6 + DST6 + payload


def _frag6(next_header: int, offset: int, more: bool, ident: int, data: bytes) -> bytes:
    return struct.pack("!BBHI", next_header, 0, offset | int(more), ident) + data


HELLO = f.record(
    22, f.handshake(1, f.client_hello_body(extensions=[f.sni_ext(b"frag6.example"), f.ext(21, bytes(300))]))
)


def test_ipv6_fragments_reassemble_in_any_order() -> None:
    whole = _tcp(HELLO)
    parts = [whole[:64], whole[64:128], whole[128:]]
    frags = [
        _ip6(44, _frag6(6, 0, True, 7, parts[0])),
        _ip6(44, _frag6(6, 64, True, 7, parts[1])),
        _ip6(44, _frag6(6, 128, False, 7, parts[2])),
    ]
    log = AnomalyLog()
    dec = Decoder(log)
    out = [dec.decode(101, frags[i], 1.0) for i in (2, 0, 1)]
    assert out[:2] == [None, None]
    seg = out[2]
    assert seg is not None and seg.payload == HELLO and seg.dport == 8443 and seg.ip_version == 6
    assert not log.counts


def test_ipv6_extension_header_chain() -> None:
    hop_by_hop = bytes([60, 0]) + b"\x01\x04\x00\x00\x00\x00"  # next: destination options
    dest_opts = bytes([6, 0]) + b"\x01\x04\x00\x00\x00\x00"  # next: TCP
    seg = Decoder(AnomalyLog()).decode(101, _ip6(0, hop_by_hop + dest_opts + _tcp(HELLO)), 1.0)
    assert seg is not None and seg.payload == HELLO


def test_fragments_that_never_complete_are_counted() -> None:
    log = AnomalyLog()
    dec = Decoder(log)
    whole = _tcp(HELLO)
    assert dec.decode(101, _ip6(44, _frag6(6, 0, True, 9, whole[:64])), 1.0) is None
    dec.decode(101, _ip6(44, _frag6(6, 0, True, 10, whole[:64])), 100.0)  # 99 s later: 9 expired
    assert log.counts["ip.fragment.incomplete"] == 1
    dec.fragments.flush()
    assert log.counts["ip.fragment.incomplete"] == 2


def test_fragment_past_64k_is_dropped() -> None:
    log = AnomalyLog()
    dec = Decoder(log)
    assert dec.decode(101, _ip6(44, _frag6(6, 65528, False, 11, b"x" * 64)), 1.0) is None
    assert log.counts["ip.fragment.cap_exceeded"] == 1
