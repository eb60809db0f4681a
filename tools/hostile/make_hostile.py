"""Hostile captures built to exhaust memory or time (issue 7, bounded resources).

Every shape is written packet by packet (a classic pcap, Ethernet, microsecond
timestamps 10 us apart: a 100,000 packets/s flood, so nothing goes idle and every bound
is reached by size, not by time).  Nothing is built in memory; any size can be made.

    syn           one SYN per flow, every flow distinct (a SYN flood)
    syn-hello     SYN + the first 1,400 bytes of a 1.9 KB post-quantum-sized ClientHello
                  per flow (flow state with a partial hello buffered: the heavy case)
    hello         SYN + a complete 1.9 KB ClientHello per flow, never answered
    ooo           one flow: handshake, then segments of 1,400 bytes beyond a 1,400-byte
                  gap that is never filled (100 MB = 75,000 packets)
    ooo-flows     2,000 flows interleaved, each with segments beyond a never-filled gap
                  (what the per-direction cap alone does not bound)
    big-record    SYN + a TLS record header claiming 65,535 bytes (> 2^14 + 2048)
    big-hello     SYN + a ClientHello claiming 16 MB, spread over 16 KB records
    hello-cap     2,000 flows interleaved, each sending a ClientHello that claims
                  just under the handshake parse limit (256 KB) over 16 KB records
    quic          one QUIC v1 Initial per flow, distinct 4-tuples and DCIDs, encrypted
                  with the Initial keys of its DCID: a complete ClientHello, padded
    quic-partial  the same, carrying only the first 1,100 bytes of a 1.9 KB ClientHello
    quic-gap      the same, CRYPTO frame at offset 60,000 (nothing at offset 0)
    frag          IPv4 first fragments (MF set, offset 0) of 1,480 bytes, distinct
                  (source, IP ID): datagrams that never complete
    mix           syn-hello, hello-cap, quic-partial, quic-gap and frag in turn, packet
                  by packet: every table and budget filling at once

    python3 tools/hostile/make_hostile.py syn --packets 1000000 -o /tmp/syn.pcap
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tests.factory import alpn_ext, client_hello_body, ext, handshake, record, sni_ext, u16, u16_list_ext, vec
from tlsprobe.wire.quic import QUIC_V1, derive_initial_keys

EPOCH = 1_700_000_000
STEP_US = 10  # 100,000 packets per second
MAC = b"\x02\x00\x00\x00\x00\x01" + b"\x02\x00\x00\x00\x00\x02"
SERVER = bytes([192, 0, 2, 1])
_REC = struct.Struct("<IIII")
_IP = struct.Struct("!BBHHHBBH4s4s")
_TCP = struct.Struct("!HHIIBBHHH")
_UDP = struct.Struct("!HHHH")
SYN, ACK, PSH = 0x02, 0x10, 0x08

Frame = bytes


class PcapWriter:
    """Classic pcap, Ethernet, one record per ``write``."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh
        self.n = 0
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))

    def write(self, frame: Frame) -> None:
        us = self.n * STEP_US
        self.fh.write(_REC.pack(EPOCH + us // 1_000_000, us % 1_000_000, len(frame), len(frame)))
        self.fh.write(frame)
        self.n += 1


def client_addr(i: int) -> bytes:
    """A distinct IPv4 client address per index (10.0.0.0/8 and up, never the server)."""
    return (0x0A000000 + 1 + (i >> 8)).to_bytes(4, "big")


def client_port(i: int) -> int:
    return 1024 + (i & 0xFF) * 251 % 64000


def ipv4(src: bytes, dst: bytes, proto: int, body: bytes, ip_id: int = 1, frag: int = 0x4000,
         total: int | None = None) -> Frame:
    ip = _IP.pack(0x45, 0, total if total is not None else 20 + len(body), ip_id & 0xFFFF, frag, 64, proto, 0, src,
                  dst)
    return MAC + b"\x08\x00" + ip + body


def tcp(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int,
        payload: bytes = b"") -> Frame:
    seg = _TCP.pack(sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags, 65535, 0, 0) + payload
    return ipv4(src, dst, 6, seg)


def udp(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> Frame:
    return ipv4(src, dst, 17, _UDP.pack(sport, dport, 8 + len(payload), 0) + payload)


def pq_client_hello(sni: bytes = b"www.example.com", extra: list[bytes] | None = None) -> bytes:
    """A ClientHello handshake message of about 1.9 KB: an X25519MLKEM768 key share
    (1,216 + 32 bytes), as Chrome and Firefox send today."""
    key_share = ext(51, vec(u16(0x11EC) + vec(bytes(1216), 2) + u16(29) + vec(bytes(32), 2), 2))
    exts = [sni_ext(sni), alpn_ext(b"h2", b"http/1.1"), u16_list_ext(10, [0x11EC, 29, 23]),
            ext(11, b"\x01\x00"), u16_list_ext(13, [0x0403, 0x0804, 0x0401]),
            ext(43, b"\x04\x03\x04\x03\x03"), key_share, *(extra or [])]
    return handshake(1, client_hello_body(ciphers=[0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F], extensions=exts,
                                          session_id=bytes(32)))


# -- TCP shapes ---------------------------------------------------------------------------


def syn(n: int) -> Iterator[Frame]:
    for i in range(n):
        yield tcp(client_addr(i), SERVER, client_port(i), 443, 1000 + i, 0, SYN)


def syn_hello(n: int) -> Iterator[Frame]:
    rec = record(22, pq_client_hello())
    head = rec[:1400]
    for i in range(n // 2):
        c, p = client_addr(i), client_port(i)
        yield tcp(c, SERVER, p, 443, 1000, 0, SYN)
        yield tcp(c, SERVER, p, 443, 1001, 1, ACK | PSH, head)
    if n % 2:
        yield tcp(client_addr(n), SERVER, 999, 443, 1000, 0, SYN)


def hello(n: int) -> Iterator[Frame]:
    """SYN + a complete 1.9 KB ClientHello per flow (one segment); no server ever answers:
    every flow holds a parsed hello while it waits."""
    rec = record(22, pq_client_hello())
    for i in range(n // 2):
        c, p = client_addr(i), client_port(i)
        yield tcp(c, SERVER, p, 443, 1000, 0, SYN)
        yield tcp(c, SERVER, p, 443, 1001, 1, ACK | PSH, rec)
    if n % 2:
        yield tcp(client_addr(n), SERVER, 999, 443, 1000, 0, SYN)


def _handshake3(c: bytes, p: int) -> Iterator[Frame]:
    yield tcp(c, SERVER, p, 443, 1000, 0, SYN)
    yield tcp(SERVER, c, 443, p, 5000, 1001, SYN | ACK)
    yield tcp(c, SERVER, p, 443, 1001, 5001, ACK)


def ooo(n: int) -> Iterator[Frame]:
    """One flow; every data segment lies beyond the first 1,400 bytes, which never come."""
    c, p = client_addr(0), 40000
    yield from _handshake3(c, p)
    payload = bytes(1400)
    for k in range(n - 3):
        yield tcp(c, SERVER, p, 443, 1001 + 1400 * (k + 1), 5001, ACK | PSH, payload)


def ooo_flows(n: int, flows: int = 2000) -> Iterator[Frame]:
    flows = max(1, min(flows, n // 4))
    for f in range(flows):
        yield from _handshake3(client_addr(f), client_port(f) + f % 7)
    payload = bytes(1400)
    for k in range(n - 3 * flows):
        f, r = k % flows, k // flows
        yield tcp(client_addr(f), SERVER, client_port(f) + f % 7, 443, 1001 + 1400 * (r + 1), 5001, ACK | PSH,
                  payload)


def big_record(n: int) -> Iterator[Frame]:
    body = b"\x16\x03\x01\xff\xff" + bytes(1395)
    for i in range(n // 2):
        c, p = client_addr(i), client_port(i)
        yield tcp(c, SERVER, p, 443, 1000, 0, SYN)
        yield tcp(c, SERVER, p, 443, 1001, 1, ACK | PSH, body)
    if n % 2:
        yield tcp(client_addr(n), SERVER, 999, 443, 1000, 0, SYN)


def _claimed_hello_stream(claim: int) -> Iterator[bytes]:
    """TCP payloads (1,400 bytes) of a ClientHello claiming ``claim`` body bytes, framed
    in 16 KB handshake records, sent until the claim is met."""
    msg_head = b"\x01" + claim.to_bytes(3, "big")
    left = claim + 4
    stream = bytearray()
    first = True
    while left > 0:
        n = min(16384, left)
        payload = (msg_head + bytes(n - 4)) if first else bytes(n)
        first = False
        stream += record(22, payload)
        left -= n
        while len(stream) >= 1400:
            yield bytes(stream[:1400])
            del stream[:1400]
    if stream:
        yield bytes(stream)


def big_hello(n: int) -> Iterator[Frame]:
    """Flows of SYN + a ClientHello claiming 16 MB, one flow after another."""
    sent = i = 0
    while sent < n:
        c, p = client_addr(i), client_port(i)
        yield tcp(c, SERVER, p, 443, 1000, 0, SYN)
        sent += 1
        seq = 1001
        for chunk in _claimed_hello_stream(0xFFFFFF):
            if sent >= n or seq - 1001 >= 256 * 1024 + 32 * 1024:
                break
            yield tcp(c, SERVER, p, 443, seq, 1, ACK | PSH, chunk)
            seq += len(chunk)
            sent += 1
        i += 1


def hello_cap(n: int, flows: int = 2000, claim: int = 255 * 1024) -> Iterator[Frame]:
    """``flows`` flows in parallel, each sending a ClientHello claiming ``claim`` bytes."""
    flows = max(1, min(flows, n // 4))
    for f in range(flows):
        yield from _handshake3(client_addr(f), client_port(f) + f % 7)
    chunks = list(_claimed_hello_stream(claim))  # one flow's payloads (~260 KB), shared by all
    sent = 3 * flows
    k = 0
    while sent < n:
        r, f = divmod(k, flows)
        if r >= len(chunks):
            r %= len(chunks)  # keep going: retransmissions of the same stream
        seq = 1001 + 1400 * r
        yield tcp(client_addr(f), SERVER, client_port(f) + f % 7, 443, seq, 5001, ACK | PSH, chunks[r])
        sent += 1
        k += 1


# -- QUIC ---------------------------------------------------------------------------------


def _seal_initial(dcid: bytes, scid: bytes, pn: int, frames: bytes, size: int = 1200) -> bytes:
    """A protected QUIC v1 client Initial (RFC 9001 5.3/5.4) padded to ``size`` bytes."""
    client, _ = derive_initial_keys(QUIC_V1, dcid)
    pn_len = 4
    header_wo_len = bytes([0xC0 | (pn_len - 1)]) + QUIC_V1.to_bytes(4, "big") + bytes([len(dcid)]) + dcid + \
        bytes([len(scid)]) + scid + b"\x00"  # token length 0
    length = size - len(header_wo_len) - 2  # 2-byte length varint
    plain_len = length - pn_len - 16
    payload = frames + bytes(max(0, plain_len - len(frames)))  # PADDING frames
    header = header_wo_len + (0x4000 | length).to_bytes(2, "big") + pn.to_bytes(pn_len, "big")
    nonce = (int.from_bytes(client.iv, "big") ^ pn).to_bytes(12, "big")
    ct = AESGCM(client.key).encrypt(nonce, payload, header)
    sample = ct[4 - pn_len : 20 - pn_len]
    enc = Cipher(algorithms.AES(client.hp), modes.ECB()).encryptor()
    mask = enc.update(sample) + enc.finalize()
    out = bytearray(header + ct)
    out[0] ^= mask[0] & 0x0F
    pn_off = len(header) - pn_len
    for j in range(pn_len):
        out[pn_off + j] ^= mask[1 + j]
    return bytes(out)


def _crypto_frame(offset: int, data: bytes) -> bytes:
    return b"\x06" + (0x80000000 | offset).to_bytes(4, "big") + (0x4000 | len(data)).to_bytes(2, "big") + data


def _quic(n: int, frames: Callable[[int], bytes]) -> Iterator[Frame]:
    for i in range(n):
        dcid = i.to_bytes(8, "big")
        scid = (i ^ 0x5A5A5A5A).to_bytes(8, "big")
        yield udp(client_addr(i), SERVER, client_port(i), 443, _seal_initial(dcid, scid, 0, frames(i)))


def quic(n: int) -> Iterator[Frame]:
    """Complete ClientHellos (SNI, ALPN h3, QUIC transport parameters, X25519)."""
    tp = ext(57, b"\x01\x04\x80\x00\x75\x30\x04\x04\x80\x10\x00\x00")
    key_share = ext(51, vec(u16(29) + vec(bytes(32), 2), 2))
    exts = [sni_ext(b"www.example.com"), alpn_ext(b"h3"), u16_list_ext(10, [29, 23]),
            u16_list_ext(13, [0x0403, 0x0804]), ext(43, b"\x02\x03\x04"), key_share, tp]
    ch = handshake(1, client_hello_body(ciphers=[0x1301, 0x1302, 0x1303], extensions=exts))
    frame = _crypto_frame(0, ch)
    return _quic(n, lambda i: frame)


def quic_partial(n: int) -> Iterator[Frame]:
    frame = _crypto_frame(0, pq_client_hello()[:1100])
    return _quic(n, lambda i: frame)


def quic_gap(n: int) -> Iterator[Frame]:
    frame = _crypto_frame(60000, bytes(1000))
    return _quic(n, lambda i: frame)


# -- IP fragments ---------------------------------------------------------------------------


def frag(n: int) -> Iterator[Frame]:
    """First fragments only (MF, offset 0), 1,480 bytes of a 3,000-byte TCP datagram."""
    body = _TCP.pack(40000, 443, 1, 0, 5 << 4, ACK | PSH, 65535, 0, 0) + bytes(1460)
    for i in range(n):
        yield ipv4(client_addr(i >> 16), SERVER, 6, body, ip_id=i & 0xFFFF, frag=0x2000)


def mix(n: int) -> Iterator[Frame]:
    """Every attack on memory at once, packet by packet in turn: partial hellos filling the
    flow table and handshake limit, unfinished big hellos filling the buffer budget,
    QUIC Initials with partial hellos, CRYPTO frames at a high offset, incomplete fragments."""
    parts = [syn_hello(n), hello_cap(n), quic_partial(n), quic_gap(n), frag(n)]
    servers = [bytes([192, 0, 2, 10 + k]) for k in range(len(parts))]  # one server each: no shared flows
    sent = 0
    while sent < n:
        for g, server in zip(parts, servers, strict=True):
            if sent >= n:
                break
            frame = bytearray(next(g))
            if frame[26:30] == SERVER:
                frame[26:30] = server  # a server-to-client packet
            else:
                frame[30:34] = server
            yield bytes(frame)
            sent += 1


SHAPES: dict[str, Callable[[int], Iterator[Frame]]] = {
    "syn": syn,
    "syn-hello": syn_hello,
    "hello": hello,
    "ooo": ooo,
    "ooo-flows": ooo_flows,
    "big-record": big_record,
    "big-hello": big_hello,
    "hello-cap": hello_cap,
    "quic": quic,
    "quic-partial": quic_partial,
    "quic-gap": quic_gap,
    "frag": frag,
    "mix": mix,
}


def write(shape: str, packets: int, path: str | os.PathLike[str]) -> int:
    """Write ``packets`` packets of ``shape`` to ``path``; returns the packet count."""
    with open(path, "wb", buffering=1 << 20) as fh:
        w = PcapWriter(fh)
        for frame in SHAPES[shape](packets):
            w.write(frame)
    return w.n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("shape", choices=sorted(SHAPES))
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args(argv)
    n = write(args.shape, args.packets, args.output)
    print(f"{args.output}: {n} packets, {os.path.getsize(args.output):,} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
