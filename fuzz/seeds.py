"""Seed corpora for the fuzz targets, extracted with tlsprobe itself from real captures.

Sources: every capture under ``pcaps/`` and ``../shared/corpus`` (when present), plus
hellos built by ``tests/factory.py``.  Each target gets inputs in its own framing
(see the target's docstring and :func:`_common.chunks`).
"""

from __future__ import annotations

import hashlib
import struct
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from _common import ROOT, frame_chunks

from tlsprobe.anomalies import AnomalyLog
from tlsprobe.capture.files import CaptureFile
from tlsprobe.decode.packet import LINKTYPES, PROTO_TCP, Decoder
from tlsprobe.errors import CaptureError, WireError
from tlsprobe.wire import quic, tls
from tlsprobe.wire.records import HandshakeMessage, RecordStream

CORPUS = ROOT.parent / "shared" / "corpus"
MAX_SEEDS = 400
PACKETS_PER_SEED_PCAP = 48
_DECODE_LINKTYPES = [*sorted(LINKTYPES), 1, 1, 1, 1, 147]  # as in fuzz_decode.py


def captures() -> list[Path]:
    out: list[Path] = []
    for base in (ROOT / "pcaps", CORPUS):
        if base.is_dir():
            out += sorted(p for p in base.rglob("*") if p.suffix in (".pcap", ".pcapng", ".cap") and p.is_file())
    return out


def _pcap(linktype: int, packets: list[tuple[float, bytes]]) -> bytes:
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype))
    for ts, frame in packets:
        out += struct.pack("<IIII", int(ts), int((ts % 1) * 1e6), len(frame), len(frame)) + frame
    return bytes(out)


class Extracted:
    """Everything the targets are seeded with, from one pass over the captures."""

    def __init__(self) -> None:
        self.pcaps: list[bytes] = []
        self.frames: list[bytes] = []
        self.streams: list[bytes] = []  # handshake-target framing, per TCP flow
        self.records: list[bytes] = []  # tls-target stream mode
        self.bodies: list[bytes] = []  # tls-target hello mode
        self.certs: list[bytes] = []
        self.http: list[bytes] = []
        self.quic: list[bytes] = []

    def run(self, paths: list[Path]) -> Extracted:
        for path in paths:
            try:
                self._capture(path)
            except CaptureError:
                continue
        self._factory()
        return self

    def _capture(self, path: Path) -> None:
        dec = Decoder(AnomalyLog())
        by_lt: dict[int, list[tuple[float, bytes]]] = defaultdict(list)
        tcp: dict[bytes, list[tuple[int, bytes]]] = defaultdict(list)  # flow -> (direction, payload)
        udp: dict[bytes, list[tuple[int, bytes]]] = defaultdict(list)
        frames = 0
        first: dict[bytes, bytes] = {}
        for n, (ts, lt, frame) in enumerate(CaptureFile(str(path), AnomalyLog())):
            if n >= 20_000:
                break
            if len(by_lt[lt]) < PACKETS_PER_SEED_PCAP:
                by_lt[lt].append((ts, frame))
            if frames < 12 and lt in _DECODE_LINKTYPES and len(frame) < 4096:
                self.frames.append(bytes([_DECODE_LINKTYPES.index(lt)]) + struct.pack("!H", len(frame)) + frame)
                frames += 1
            seg = dec.decode(lt, frame, ts)
            if seg is None or not seg.payload:
                continue
            a, b = seg.src + struct.pack("!H", seg.sport), seg.dst + struct.pack("!H", seg.dport)
            key = min(a, b) + max(a, b)
            table = tcp if seg.proto == PROTO_TCP else udp
            if key not in table and len(table) > 200:
                continue
            sender = first.setdefault(key, a)
            table[key].append((0 if sender == a else 1, seg.payload))
            if seg.payload.startswith((b"HTTP/", b"GET ", b"POST ", b"CONNECT ")):
                self.http.append(seg.payload[:4096])
        for lt, pkts in by_lt.items():
            data = _pcap(lt, pkts)
            while len(data) > 65536 and len(pkts) > 2:
                pkts = pkts[: len(pkts) // 2]
                data = _pcap(lt, pkts)
            self.pcaps.append(data)
        for flow in list(tcp.values())[:60]:
            self._tcp_flow(flow)
        for flow in list(udp.values())[:40]:
            self._udp_flow(flow)

    def _tcp_flow(self, parts: list[tuple[int, bytes]]) -> None:
        parts = parts[:40]
        framed = frame_chunks(parts)
        if len(framed) <= 32768:
            self.streams.append(b"\x00" + framed)
        streams: list[bytearray] = [bytearray(), bytearray()]
        for d, p in parts:
            streams[d] += p
        for d, data in enumerate(streams):
            if not data:
                continue
            rs = RecordStream(want=1 if d == 0 else 2)
            if data[:1] == b"\x16" and len(data) <= 16384:
                self.records.append(bytes([1 + 2 * (1 if d == 0 else 2)]) + frame_chunks([(0, bytes(data))]))
            for ev in rs.feed(bytes(data)):
                if isinstance(ev, HandshakeMessage) and ev.msg_type in (1, 2, 11) and not ev.sslv2:
                    self.bodies.append(b"\x00" + ev.body[:16384])
                    if ev.msg_type == 11:
                        try:
                            ders, _ = tls.parse_certificate_list(ev.body)
                        except WireError:
                            continue
                        self.certs += ders

    def _udp_flow(self, parts: list[tuple[int, bytes]]) -> None:
        parts = [(d, p) for d, p in parts if p[:1] and p[0] & 0x80][:4]
        if not parts:
            return
        self.quic.append(b"\x00" + frame_chunks(parts))
        for _d, payload in parts[:2]:
            try:
                for header in quic.iter_datagram(payload):
                    if header.packet_type != "initial" or quic.initial_salt(header.version) is None:
                        continue
                    for keys in quic.derive_initial_keys(header.version, header.dcid):
                        try:
                            pkt = quic.open_initial(payload, header, keys)
                        except WireError:
                            continue
                        self.quic.append(b"\x01" + frame_chunks([(0, pkt.payload)]))
                        self._quic_params(pkt.payload)
            except WireError:
                continue

    def _quic_params(self, payload: bytes) -> None:
        try:
            frames = quic.parse_frames(payload)
        except WireError:
            return
        asm = quic.CryptoAssembler()
        for f in frames:
            if f.type == 0x06:
                asm.add(f.offset, f.data)
        hs = asm.contiguous()
        if len(hs) > 4 and hs[0] == 1:
            try:
                ch = tls.parse_client_hello(hs[4:])
            except WireError:
                return
            for etype, data in ch.extensions:
                if etype in (57, 0xFFA5):
                    self.quic.append(b"\x02" + data)

    def _factory(self) -> None:
        import sys

        sys.path.insert(0, str(ROOT))
        from tests import factory as f

        body = f.client_hello_body(extensions=[f.sni_ext(b"example.com"), f.alpn_ext(b"h2", b"http/1.1"),
                                               f.u16_list_ext(10, [0x0A0A, 29, 23]), f.u16_list_ext(43, [0x0304], 1),
                                               f.u16_list_ext(13, [0x0403, 0x0804])])
        self.bodies += [b"\x00" + body, b"\x00" + f.server_hello_body(extensions=[f.u16_list_ext(43, [0x0304])][:0])]
        rec = f.record(22, f.handshake(1, body))
        self.records.append(b"\x03" + frame_chunks([(0, rec[:7]), (0, rec[7:])]))
        self.streams.append(b"\x00" + frame_chunks([(0, b"EHLO x\r\n"), (1, b"220 ready\r\n"), (0, rec),
                                                    (1, f.record(22, f.handshake(2, f.server_hello_body())))]))
        self.http += [b"HTTP/1.1 403 Forbidden\r\nServer: x\r\nContent-Type: text/html\r\n\r\n<title>Blocked</title>",
                      b"GET / HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\n\r\n"]
        self.quic.append(b"\x01" + frame_chunks([(0, b"\x06\x00" + bytes([0x40 | (len(f.handshake(1, body)) >> 8),
                                                                          len(f.handshake(1, body)) & 0xFF])
                                                   + f.handshake(1, body))]))
        pem = (ROOT / "pcaps" / "demo-ca.pem")
        if pem.exists():
            from cryptography import x509
            from cryptography.hazmat.primitives.serialization import Encoding

            self.certs.append(x509.load_pem_x509_certificate(pem.read_bytes()).public_bytes(Encoding.DER))


def for_target(ex: Extracted, target: str) -> list[bytes]:
    seeds = {
        "capture": ex.pcaps,
        "pipeline": ex.pcaps,
        "decode": ex.frames,
        "tls": ex.bodies + ex.records,
        "handshake": ex.streams,
        "quic": ex.quic,
        "x509": ex.certs,
        "http": ex.http,
    }[target]
    return list(_dedupe(seeds))[:MAX_SEEDS] or [b""]


def _dedupe(items: list[bytes]) -> Iterator[bytes]:
    seen: set[str] = set()
    for it in items:
        h = hashlib.sha1(it).hexdigest()
        if h not in seen:
            seen.add(h)
            yield it


def write(ex: Extracted, target: str, directory: Path) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    seeds = for_target(ex, target)
    for s in seeds:
        (directory / f"seed-{hashlib.sha1(s).hexdigest()[:16]}").write_bytes(s)
    return len(seeds)
