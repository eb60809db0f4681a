#!/usr/bin/env python3
"""Build a large synthetic packet capture around real TLS ClientHellos.

The capture is a classic pcap (Ethernet, microsecond timestamps) that looks like a busy
network link: thousands of interleaved TCP connections, most packets being mid-flow data.
Every TLS connection carries a *real* ClientHello taken, at run time, from the public
captures in ``../shared/corpus`` beside the checkout (``--corpus`` elsewhere; read-only,
never copied into the repository): tshark
extracts the TLS record(s) of each ClientHello and of the ServerHello answering it, and
tshark's JA3 / SNI for each hello become the ground truth. Each extracted hello is replayed
alone in a clean flow and re-read by tshark, and is kept only if tshark gives the same JA3,
JA3 string and SNI as on the original capture.

QUIC connections (about 5 % of the flows, ``--quic-share``) replay real QUIC Initial
datagrams from the same corpus: for each QUIC connection whose client Initial(s) carry a
ClientHello, tshark gives the UDP payloads of the client's Initial datagrams up to the one
completing the ClientHello (several for post-quantum / fragmented hellos) and of the
server's Initial datagram(s) up to its ServerHello (none after a Retry), plus its SNI and
JA3 (JA4 comes from the corpus' expected values when a third party gave one). The
datagrams are replayed with their bytes unchanged (Initial keys depend only on the DCID
inside them), so new addresses and ports are fine; a harvested connection is kept only if
tshark reads the same ClientHello back from a clean replay.

What the capture contains (all deterministic for a given ``--seed``):

* TLS connections (about 80 % of the flows) on port 443 and on 8443, 2053, 8080, 5228,
  4433 and random high ports; ~20 % over IPv6. Most start with a 3-way handshake, some
  start mid-flow (no SYN) but still carry their ClientHello. About 10 % of the
  ClientHellos are split over 2-3 TCP segments (some of them sent out of order), a few
  ClientHello segments are retransmitted, some sequence numbers wrap around 2**32. The
  server answers with the hello's own real ServerHello record (or generic TLS records),
  then both sides exchange TLS application-data records (bulk downloads use 16 KiB records
  cut into MSS segments, interactive traffic uses one record per segment) with ACKs, then
  FIN or RST.
* QUIC connections (IPv4 and IPv6, UDP port 443 mostly, also 8443, 4433 and random high
  ports): the real Initial datagrams, then 3-10 short-header 1-RTT-like datagrams (random
  bytes, first byte 0x40-0x7f) in both directions. The same corpus connection (same DCID)
  is replayed in many flows.
* TLS connections already running when the capture starts (no SYN, no hellos, the first
  server segment usually inside a record): nothing there may be reported.
* Non-TLS noise: plain HTTP, SSH (banners, KEXINIT, encrypted data), other cleartext and
  binary TCP services, DNS over UDP, NTP, RTP-like UDP, ICMP/ICMPv6 echo and ARP.

IPv4 header, TCP, UDP and ICMP checksums are correct; timestamps are strictly ordered.

Outputs ``FILE`` plus ``FILE.truth.jsonl`` (one line per TLS or QUIC flow, with
``"transport": "tcp"`` or ``"quic"``: client -> server addresses and ports, SNI and JA3 of
its ClientHello as tshark computed them on the original capture, and how the hello was
sent) and ``FILE.meta.json`` (counts and parameters).

The capture is written while it is generated: only the flow plan (a few hundred bytes per
flow) and the currently active flows are kept in memory.

Usage::

    python bench/make_capture.py                     # 1,000,000 packets -> bench/out/bench.pcap
    python bench/make_capture.py --packets 50000 -o /tmp/small.pcap --seed 7

Python 3.10+ standard library only; tshark is needed for harvesting the hellos (the
harvest is cached in ``bench/out/harvest-cache.json``, keyed by the corpus files and the
tshark version; ``--no-cache`` forces a fresh harvest).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import heapq
import ipaddress
import itertools
import json
import math
import os
import random
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_OUTPUT = BENCH_DIR / "out" / "bench.pcap"
DEFAULT_CORPUS = BENCH_DIR.parent.parent / "shared" / "corpus"  # ../shared/corpus beside the checkout
DEFAULT_CACHE = BENCH_DIR / "out" / "harvest-cache.json"
HARVEST_FORMAT = 4  # bump when the harvest logic changes (invalidates caches)

CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap")
EPOCH_US = 1_735_689_600 * 1_000_000  # 2025-01-01T00:00:00Z: start of the synthetic capture
MASK32 = 0xFFFFFFFF

# pcap and header layouts
_PCAP_HDR = struct.Struct("<IHHiIII")
_PCAP_REC = struct.Struct("<IIII")
_IP4 = struct.Struct("!BBHHHBBH")  # version/IHL .. checksum, addresses appended
_IP6 = struct.Struct("!IHBB")  # version/class/label, payload length, next header, hop limit
_TCP_HEAD = struct.Struct("!HHIIBBH")  # ports, seq, ack, offset, flags, window
_CSUM_URG = struct.Struct("!HH")
_UDP = struct.Struct("!HHHH")
_TS_PAIR = struct.Struct("!II")

TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK = 0x01, 0x02, 0x04, 0x08, 0x10
PSH_ACK = TCP_PSH | TCP_ACK
PROTO_ICMP, PROTO_TCP, PROTO_UDP, PROTO_ICMP6 = 1, 6, 17, 58

GATEWAY_MAC = bytes.fromhex("001a2b3c4d5e")
BROADCAST_MAC = b"\xff" * 6
POOL_SIZE = 1 << 20
TLS_CCS = b"\x14\x03\x03\x00\x01\x01"
HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")

# Destination ports of TLS flows and their weights ("high" = random port 10000-60999).
TLS_PORTS: tuple[tuple[int | str, float], ...] = (
    (443, 0.70),
    (8443, 0.05),
    (2053, 0.03),
    (8080, 0.04),
    (5228, 0.04),
    (4433, 0.04),
    ("high", 0.10),
)
# Flow kinds and their share of all flows.
FLOW_MIX: tuple[tuple[str, float], ...] = (
    ("tls", 0.785),
    ("tls-midflow", 0.015),  # TLS already running when the capture starts: no hello, no truth
    ("http", 0.05),
    ("ssh", 0.025),
    ("tcp", 0.015),
    ("dns", 0.06),
    ("ntp", 0.01),
    ("udp", 0.01),
    ("icmp", 0.02),
    ("arp", 0.01),
)
IPV6_SHARE = 0.20
QUIC_SHARE = 0.05  # default share of QUIC flows (--quic-share); the other kinds shrink to fit
# Destination UDP ports of QUIC flows ("high" = random port 10000-60999).
QUIC_PORTS: tuple[tuple[int | str, float], ...] = (
    (443, 0.85),
    (8443, 0.04),
    (4433, 0.04),
    ("high", 0.07),
)
QUIC_V2 = 0x6B3343CF


# --------------------------------------------------------------------------------------
# Harvesting real ClientHellos / ServerHellos with tshark
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hello:
    """A real ClientHello: its TLS record(s), tshark's reading of it and its server reply."""

    records: bytes  # the complete TLS record(s) carrying the ClientHello handshake message
    ja3: str
    ja3_full: str
    sni: str | None
    source: str  # "<folder>/<capture>#<frame>" in the corpus
    ja4: str | None = None  # third-party JA4 from the corpus' expected values, if known
    ja4_source: str | None = None
    server_hello: bytes | None = None  # record(s) of the ServerHello answering it (same flow)
    ccs: bool = True  # send ChangeCipherSpec records after the hellos (not for TLS 1.3 drafts)


@dataclass(frozen=True)
class QuicConn:
    """A real QUIC connection start: the UDP payloads of its Initial datagrams.

    ``datagrams`` holds, in their original order, the client's Initial datagrams up to the
    one completing the ClientHello and the server's Initial datagrams up to the one
    completing the ServerHello (none after a Retry; only the first one when tshark saw no
    ServerHello), each as ``(from_client, udp_payload)`` with the bytes unchanged.
    """

    datagrams: tuple[tuple[bool, bytes], ...]
    ja3: str | None  # tshark's JA3 of the ClientHello (not standardised for QUIC)
    ja3_full: str | None
    sni: str | None
    source: str  # "<folder>/<capture>#<frame completing the ClientHello>"
    version: int = 1
    ja4: str | None = None  # third-party JA4 from the corpus' expected values, if known
    ja4_source: str | None = None

    @property
    def client_datagrams(self) -> int:
        """Number of client Initial datagrams."""
        return sum(c for c, _ in self.datagrams)


@dataclass
class Harvest:
    """Everything taken from the corpus: distinct ClientHellos with their ServerHellos."""

    hellos: list[Hello]
    stats: dict[str, Any] = field(default_factory=dict)
    quic: list[QuicConn] = field(default_factory=list)


_HARVEST_FIELDS = (
    "frame.number",
    "tcp.stream",
    "tls.handshake.ja3",
    "tls.handshake.ja3_full",
    "tls.handshake.extensions_server_name",
    "tcp.reassembled.data",
    "tcp.payload",
)


def _tshark_version(tshark: str) -> str:
    """Return tshark's first version line (e.g. ``TShark (Wireshark) 4.0.17 ...``)."""
    out = subprocess.run([tshark, "--version"], capture_output=True, text=True, check=True)
    return out.stdout.splitlines()[0].strip()


def _handshake_runs(data: bytes, hs_type: int) -> list[tuple[bytes, bytes]]:
    """Find complete handshake messages of ``hs_type`` in a TCP byte stream.

    Returns ``(records, message)`` pairs: ``records`` are the TLS record(s) that carry the
    message (a message split over several records keeps all of them; a trailing record
    that also holds later messages is cut to the end of this one), ``message`` is the
    handshake message itself (4-byte header + body).
    """
    found: list[tuple[bytes, bytes]] = []
    n = len(data)
    i = data.find(b"\x16\x03")
    while 0 <= i <= n - 9:
        ok = False
        if data[i + 2] <= 4 and data[i + 5] == hs_type:
            rec_len = int.from_bytes(data[i + 3 : i + 5], "big")
            need = 4 + int.from_bytes(data[i + 6 : i + 9], "big")
            if 0 < rec_len <= 18432 and 38 <= need <= 1 << 17:
                out = bytearray()
                msg = bytearray()
                j = i
                while len(msg) < need and j + 5 <= n:
                    if data[j] != 0x16 or data[j + 1] != 3 or data[j + 2] > 4:
                        break
                    length = int.from_bytes(data[j + 3 : j + 5], "big")
                    if length == 0 or j + 5 + length > n:
                        break
                    frag = data[j + 5 : j + 5 + length]
                    take = min(length, need - len(msg))
                    msg += frag[:take]
                    out += data[j : j + 3] + take.to_bytes(2, "big") + frag[:take]
                    j += 5 + length
                if len(msg) == need:
                    found.append((bytes(out), bytes(msg)))
                    ok = True
                    i = data.find(b"\x16\x03", j)
        if not ok:
            i = data.find(b"\x16\x03", i + 1)
    return found


def _split_agg(value: str) -> list[str]:
    """Split a tshark field aggregated with ``|`` (empty string -> empty list)."""
    return value.split("|") if value else []


def _expected_ja4(capture: Path) -> dict[int, tuple[str, str]]:
    """Map frame number -> (JA4, provenance) from the corpus' expected-values JSON."""
    exp = capture.parent / "expected" / f"{capture.name}.json"
    result: dict[int, tuple[str, str]] = {}
    if not exp.is_file():
        return result
    data = json.loads(exp.read_text())
    for flow in data.get("flows", []):
        if flow.get("transport") != "tcp" or flow.get("proto") != "tls":
            continue
        if "ja4" in flow.get("conflicts", {}):
            continue
        prov = ",".join(flow.get("provenance", {}).get("ja4", [])) or "unknown"
        if flow.get("client_hellos"):
            for ch in flow["client_hellos"]:
                if ch.get("ja4") and ch.get("frame"):
                    src = ch.get("ja4_source") or prov
                    result[int(ch["frame"])] = (str(ch["ja4"]), str(src))
        elif flow.get("client_hello_frames") and flow.get("ja4"):
            result[int(flow["client_hello_frames"][0])] = (str(flow["ja4"]), prov)
    return result


def _harvest_file(tshark: str, corpus: Path, capture: Path) -> dict[str, Any]:
    """Run tshark on one corpus capture and extract ClientHello / ServerHello candidates."""
    decode_as: list[str] = []
    exp = capture.parent / "expected" / f"{capture.name}.json"
    if exp.is_file():
        for rule in json.loads(exp.read_text()).get("tshark_decode_as", []):
            decode_as += ["-d", rule]
    cmd = [
        tshark, "-n", "-r", str(capture),
        "-o", "tcp.desegment_tcp_streams:TRUE",
        "-o", "tcp.reassemble_out_of_order:TRUE",
        *decode_as,
        "-Y", "tcp && (tls.handshake.type == 1 || tls.handshake.type == 2)",
        "-T", "fields", "-E", "separator=/t", "-E", "occurrence=a",
        "-E", "aggregator=|", "-E", "quote=n",
    ]  # fmt: skip
    for name in _HARVEST_FIELDS:
        cmd += ["-e", name]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    rel = capture.relative_to(corpus).as_posix()
    ja4_map = _expected_ja4(capture)
    hellos: list[dict[str, Any]] = []
    server_hellos: dict[str, list[tuple[int, str]]] = {}  # tcp.stream -> [(frame, records)]
    ambiguous = 0
    for line in proc.stdout.splitlines():
        cols = line.split("\t")
        if len(cols) < len(_HARVEST_FIELDS):
            cols += [""] * (len(_HARVEST_FIELDS) - len(cols))
        frame, stream, ja3s, ja3_fulls, snis, reassembled, payload = cols[:7]
        blobs = [bytes.fromhex(h) for h in _split_agg(reassembled) + _split_agg(payload) if h]
        chs: list[bytes] = []
        for blob in blobs:
            for records, _msg in _handshake_runs(blob, 1):
                if records not in chs:
                    chs.append(records)
            for records, msg in _handshake_runs(blob, 2):
                if msg[6:38] != HRR_RANDOM and len(records) <= 4000:
                    server_hellos.setdefault(stream, []).append((int(frame), records.hex()))
        ja3_list = _split_agg(ja3s)
        if not ja3_list:
            continue
        full_list = _split_agg(ja3_fulls)
        sni_list = _split_agg(snis)
        if len(chs) == len(ja3_list):
            pairs = list(zip(chs, ja3_list, strict=True))
        elif len(chs) == 1 and len(set(ja3_list)) == 1:
            pairs = [(chs[0], ja3_list[0])]
        else:
            ambiguous += 1
            continue
        for k, (records, ja3) in enumerate(pairs):
            sni: str | None = None
            sni_known = False
            if len(sni_list) == len(pairs):
                sni, sni_known = sni_list[k], True
            elif not sni_list:
                sni, sni_known = None, True
            ja4 = ja4_map.get(int(frame))
            hellos.append(
                {
                    "stream": stream,
                    "frame": int(frame),
                    "records": records.hex(),
                    "ja3": ja3,
                    "ja3_full": full_list[k] if len(full_list) == len(pairs) else None,
                    "sni": sni,
                    "sni_known": sni_known,
                    "source": f"{rel}#{frame}",
                    "ja4": ja4[0] if ja4 else None,
                    "ja4_source": ja4[1] if ja4 else None,
                }
            )
    for h in hellos:  # the first ServerHello of the same TCP stream after the ClientHello
        replies = [r for f, r in server_hellos.get(h.pop("stream"), []) if f > h["frame"]]
        h["server_hello"] = replies[0] if replies else None
    return {
        "file": rel,
        "hellos": hellos,
        "ambiguous_frames": ambiguous,
        "tshark_rc": proc.returncode,
    }


_QUIC_FIELDS = (
    "frame.number",
    "udp.stream",
    "udp.srcport",
    "udp.dstport",
    "udp.payload",
    "tls.handshake.type",
    "tls.handshake.ja3",
    "tls.handshake.ja3_full",
    "tls.handshake.extensions_server_name",
)


def _quic_long_type(payload: bytes) -> tuple[int, str | None]:
    """(version, "initial" / "retry" / None) of the first QUIC packet of a UDP payload."""
    if len(payload) < 7 or not payload[0] & 0x80:
        return 0, None  # short header (or too short)
    version = int.from_bytes(payload[1:5], "big")
    if version == 0:
        return 0, None  # version negotiation
    bits = (payload[0] >> 4) & 3
    initial, retry = (1, 0) if version == QUIC_V2 else (0, 3)
    return version, "initial" if bits == initial else "retry" if bits == retry else None


def _expected_quic_ja4(capture: Path) -> dict[int, tuple[str, str]]:
    """Map ClientHello frame number -> (JA4, provenance) for the QUIC flows of the corpus'
    expected-values JSON."""
    exp = capture.parent / "expected" / f"{capture.name}.json"
    result: dict[int, tuple[str, str]] = {}
    if not exp.is_file():
        return result
    for flow in json.loads(exp.read_text()).get("flows", []):
        if flow.get("proto") != "quic" or not flow.get("ja4") or "ja4" in flow.get("conflicts", {}):
            continue
        if flow.get("client_hello_frames"):
            prov = ",".join(flow.get("provenance", {}).get("ja4", [])) or "unknown"
            result[int(flow["client_hello_frames"][0])] = (str(flow["ja4"]), prov)
    return result


def _harvest_quic_file(tshark: str, corpus: Path, capture: Path) -> dict[str, Any]:
    """Run tshark on one corpus capture and extract the Initial datagrams of each QUIC
    connection (UDP stream) whose client Initial(s) carry a ClientHello."""
    decode_as: list[str] = []
    exp = capture.parent / "expected" / f"{capture.name}.json"
    if exp.is_file():
        for rule in json.loads(exp.read_text()).get("tshark_decode_as", []):
            decode_as += ["-d", rule]
    cmd = [
        tshark, "-n", "-r", str(capture), *decode_as, "-Y", "quic",
        "-T", "fields", "-E", "separator=/t", "-E", "occurrence=a",
        "-E", "aggregator=|", "-E", "quote=n",
    ]  # fmt: skip
    for name in _QUIC_FIELDS:
        cmd += ["-e", name]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    rel = capture.relative_to(corpus).as_posix()
    ja4_map = _expected_quic_ja4(capture)
    # udp.stream -> [(frame, src port, dst port, payload, handshake types, ja3, ja3_full, sni)]
    streams: dict[str, list[tuple[int, int, int, bytes, list[str], str, str, str]]] = {}
    for line in proc.stdout.splitlines():
        cols = [*line.split("\t"), *[""] * len(_QUIC_FIELDS)][: len(_QUIC_FIELDS)]
        frame, stream, sport, dport, payload, hs_types, ja3s, ja3_fulls, snis = cols
        if not (frame and stream and sport and dport and payload):
            continue
        last = lambda v: _split_agg(v)[-1]  # noqa: E731 - innermost UDP header when tunnelled
        streams.setdefault(last(stream), []).append(
            (
                int(frame), int(last(sport)), int(last(dport)), bytes.fromhex(last(payload)),
                _split_agg(hs_types), ja3s, ja3_fulls, snis,
            )
        )  # fmt: skip
    conns: list[dict[str, Any]] = []
    skipped: list[str] = []
    for pkts in streams.values():
        ch = next((p for p in pkts if "1" in p[4]), None)
        if ch is None:
            continue
        ch_frame, cport, sport = ch[0], ch[1], ch[2]
        if cport == sport:
            skipped.append(f"{rel}#{ch_frame}: same port on both sides")
            continue
        ja3_list, full_list, sni_list = _split_agg(ch[5]), _split_agg(ch[6]), _split_agg(ch[7])
        if len(ja3_list) > 1 or ch[4].count("1") > 1:
            skipped.append(f"{rel}#{ch_frame}: several ClientHellos in one frame")
            continue
        sh_frame = next((p[0] for p in pkts if p[1] == sport and "2" in p[4]), None)
        datagrams: list[tuple[bool, bytes]] = []
        server_initials = 0
        retry = False
        version = 0
        for frame, src, _dst, payload, *_rest in pkts:
            ver, kind = _quic_long_type(payload)
            if src == cport and frame <= ch_frame and kind == "initial":
                datagrams.append((True, payload))
                version = ver
            elif src == sport and kind == "retry" and (sh_frame is None or frame < sh_frame):
                retry = True
            elif (
                src == sport
                and kind == "initial"
                and not retry
                and (server_initials == 0 if sh_frame is None else frame <= sh_frame)
            ):
                datagrams.append((False, payload))
                server_initials += 1
        if retry:  # the server's Initials use keys from the client's post-Retry DCID: leave them out
            datagrams = [d for d in datagrams if d[0]]
        if not any(c for c, _ in datagrams):
            skipped.append(f"{rel}#{ch_frame}: no client Initial datagram")
            continue
        ja4 = ja4_map.get(ch_frame)
        conns.append(
            {
                "datagrams": [[c, d.hex()] for c, d in datagrams],
                "ja3": ja3_list[0] if ja3_list else None,
                "ja3_full": full_list[0] if full_list else None,
                "sni": sni_list[0] if sni_list else None,
                "source": f"{rel}#{ch_frame}",
                "version": version,
                "ja4": ja4[0] if ja4 else None,
                "ja4_source": ja4[1] if ja4 else None,
            }
        )
    return {"file": rel, "conns": conns, "skipped": skipped, "tshark_rc": proc.returncode}


_SEVERITY_ERROR = 0x00800000  # Wireshark expert-info severity "error"


def _validate_hellos(tshark: str, hellos: list[Hello]) -> list[dict[str, Any]]:
    """Replay each hello in its own clean synthetic TLS flow and read it back with tshark.

    The flows are made by the same generator as the benchmark capture (handshake,
    ClientHello, server flight, a few application-data records, FIN). Returns, per hello,
    tshark's JA3 / JA3 full string / SNI, the number of ClientHellos it dissected and
    whether any packet of the flow got an expert-info error (malformed or protocol error).
    """
    pools = Pools(random.Random("validate"))
    harvest = Harvest(hellos)
    with tempfile.TemporaryDirectory(prefix="tlsprobe-harvest-") as tmp:
        path = Path(tmp) / "validate.pcap"
        with path.open("wb") as fh:
            fh.write(pcap_global_header())
            for idx, hello in enumerate(hellos):
                spec = FlowSpec(idx=idx, kind="tls", start=idx * 10.0, seed=idx, hello=idx)
                spec.cmac = b"\x02\x00" + idx.to_bytes(4, "big")
                spec.cip = bytes([10, 99]) + (idx + 1).to_bytes(2, "big")
                spec.sip = bytes([192, 0, 2, 1])
                spec.cport, spec.sport = 40000 + idx % 20000, 443
                spec.c_isn, spec.s_isn = 1000 * idx, 7000 * idx + 5
                spec.use_sh = hello.server_hello is not None
                spec.ch_segs = [
                    (o, min(spec_mss(spec), len(hello.records) - o))
                    for o in range(0, len(hello.records), spec_mss(spec))
                ]
                spec.ch_order = list(range(len(spec.ch_segs)))
                spec.flight_extra = 800
                spec.flight_segs = math.ceil(_flight_len(spec, hello) / spec_mss(spec))
                spec.n_data, spec.duration = 6, 1.0
                for t, frame in tls_flow(spec, pools, harvest):
                    write_packet(fh, t, frame)
        cmd = [
            tshark, "-n", "-r", str(path),
            "-T", "fields", "-E", "separator=/t", "-E", "occurrence=a", "-E", "aggregator=|",
            "-e", "tcp.stream", "-e", "tls.handshake.ja3", "-e", "tls.handshake.ja3_full",
            "-e", "tls.handshake.extensions_server_name", "-e", "_ws.expert.severity",
        ]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, check=False).stdout
    result = [{"ja3": "", "ja3_full": "", "sni": None, "count": 0, "error": False} for _ in hellos]
    for line in out.splitlines():
        stream, ja3, ja3_full, sni, severity = [*line.split("\t"), "", "", "", ""][:5]
        if not stream:
            continue
        r = result[int(stream)]
        if any(v and int(v) >= _SEVERITY_ERROR for v in severity.split("|")):
            r["error"] = True
        if ja3:
            r["count"] += 1
            if r["count"] == 1:
                r.update(ja3=ja3, ja3_full=ja3_full, sni=sni or None)
    return result


def _validate_quic(tshark: str, conns: list[QuicConn]) -> list[dict[str, Any]]:
    """Replay each QUIC connection alone in a clean synthetic UDP flow (port 443, the same
    generator as the benchmark) and read it back with tshark.

    Returns, per connection, the number of ClientHellos tshark dissected and the JA3 / JA3
    full string / SNI of the first one.
    """
    pools = Pools(random.Random("validate"))
    harvest = Harvest([], quic=conns)
    with tempfile.TemporaryDirectory(prefix="tlsprobe-harvest-") as tmp:
        path = Path(tmp) / "validate-quic.pcap"
        with path.open("wb") as fh:
            fh.write(pcap_global_header())
            for idx in range(len(conns)):
                spec = FlowSpec(idx=idx, kind="quic", start=idx * 10.0, seed=idx, quic=idx, rounds=2)
                spec.cmac = b"\x02\x00" + idx.to_bytes(4, "big")
                spec.cip = bytes([10, 98]) + (idx + 1).to_bytes(2, "big")
                spec.sip = bytes([192, 0, 2, 2])
                spec.cport, spec.sport = 40000 + idx % 20000, 443
                spec.duration = 1.0
                for t, frame in quic_flow(spec, pools, harvest):
                    write_packet(fh, t, frame)
        cmd = [
            tshark, "-n", "-r", str(path), "-Y", "tls.handshake.type == 1",
            "-T", "fields", "-E", "separator=/t", "-E", "occurrence=a", "-E", "aggregator=|",
            "-e", "udp.stream", "-e", "tls.handshake.ja3", "-e", "tls.handshake.ja3_full",
            "-e", "tls.handshake.extensions_server_name",
        ]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, check=False).stdout
    result = [{"ja3": None, "ja3_full": None, "sni": None, "count": 0} for _ in conns]
    for line in out.splitlines():
        stream, ja3, ja3_full, sni = [*line.split("\t"), "", "", ""][:4]
        if not stream:
            continue
        r = result[int(stream)]
        r["count"] += 1
        if r["count"] == 1:
            r.update(ja3=ja3 or None, ja3_full=ja3_full or None, sni=sni or None)
    return result


def _parse_sni(records: bytes) -> str | None:
    """Return the server_name of a ClientHello given as TLS record(s) (None if absent)."""
    msg = bytearray()
    i = 0
    while i + 5 <= len(records):
        length = int.from_bytes(records[i + 3 : i + 5], "big")
        msg += records[i + 5 : i + 5 + length]
        i += 5 + length
    p = 4 + 2 + 32
    p += 1 + msg[p]  # session id
    p += 2 + int.from_bytes(msg[p : p + 2], "big")  # cipher suites
    p += 1 + msg[p]  # compression methods
    if p + 2 > len(msg):
        return None
    end = p + 2 + int.from_bytes(msg[p : p + 2], "big")
    p += 2
    while p + 4 <= end:
        etype = int.from_bytes(msg[p : p + 2], "big")
        elen = int.from_bytes(msg[p + 2 : p + 4], "big")
        if etype == 0 and elen >= 5:
            name_len = int.from_bytes(msg[p + 7 : p + 9], "big")
            return bytes(msg[p + 9 : p + 9 + name_len]).decode("utf-8", "replace")
        p += 4 + elen
    return None


def _corpus_files(corpus: Path) -> list[Path]:
    """All capture files of the corpus, byte-identical duplicates removed, sorted."""
    files = sorted(
        p for p in corpus.rglob("*") if p.is_file() and p.suffix in CAPTURE_SUFFIXES and "expected" not in p.parts
    )
    unique: list[Path] = []
    digests: set[str] = set()
    for p in files:
        digest = hashlib.sha256(p.read_bytes()).hexdigest()
        if digest not in digests:
            digests.add(digest)
            unique.append(p)
    return unique


def _accept_quic(tshark: str, results: list[dict[str, Any]]) -> tuple[list[QuicConn], dict[str, Any]]:
    """Deduplicate the harvested QUIC connections (by their client datagrams) and keep those
    that tshark reads back, replayed alone, with one ClientHello and the same JA3 and SNI."""
    candidates: list[QuicConn] = []
    seen: set[tuple[bytes, ...]] = set()
    total = 0
    for res in results:
        for c in res["conns"]:
            total += 1
            conn = QuicConn(**{**c, "datagrams": tuple((bool(f), bytes.fromhex(d)) for f, d in c["datagrams"])})
            key = tuple(d for f, d in conn.datagrams if f)
            if key not in seen:
                seen.add(key)
                candidates.append(conn)
    checks = _validate_quic(tshark, candidates) if candidates else []
    accepted: list[QuicConn] = []
    rejected: list[str] = []
    for conn, ck in zip(candidates, checks, strict=True):
        if ck["count"] == 1 and ck["ja3"] == conn.ja3 and ck["sni"] == (conn.sni or None):
            accepted.append(conn)
        else:
            rejected.append(f"{conn.source}: replayed {ck}")
    stats = {
        "client_hellos_seen": total,
        "distinct": len(candidates),
        "accepted": len(accepted),
        "rejected": rejected,
        "skipped": [s for r in results for s in r["skipped"]],
        "multi_datagram_hellos": sum(q.client_datagrams > 1 for q in accepted),
        "with_server_initial": sum(q.client_datagrams < len(q.datagrams) for q in accepted),
        "versions": sorted({f"0x{q.version:08x}" for q in accepted}),
        "with_ja3": sum(q.ja3 is not None for q in accepted),
        "with_third_party_ja4": sum(q.ja4 is not None for q in accepted),
    }
    return accepted, stats


def harvest(
    corpus: Path = DEFAULT_CORPUS,
    tshark: str = "tshark",
    cache: Path | None = DEFAULT_CACHE,
    log: Callable[[str], None] = lambda _msg: None,
) -> Harvest:
    """Harvest distinct real ClientHellos (with tshark's JA3/SNI) and ServerHellos.

    Runs tshark over every capture of ``corpus`` (TCP reassembly, including out-of-order
    segments, enabled), keeps the TLS record(s) that carry each ClientHello, and keeps a
    hello only if tshark computes the same JA3 and SNI when the extracted bytes are
    replayed alone. Results are cached in ``cache`` (keyed by tshark version and the
    corpus files' names, sizes and mtimes).
    """
    files = _corpus_files(corpus)
    version = _tshark_version(tshark)
    key_src = [HARVEST_FORMAT, version] + [
        [p.relative_to(corpus).as_posix(), p.stat().st_size, p.stat().st_mtime_ns] for p in files
    ]
    key = hashlib.sha256(json.dumps(key_src).encode()).hexdigest()
    if cache is not None and cache.is_file():
        try:
            data = json.loads(cache.read_text())
        except (OSError, ValueError):
            data = {}
        if data.get("key") == key:
            try:
                hellos = []
                for h in data["hellos"]:
                    h["records"] = bytes.fromhex(h["records"])
                    sh = h["server_hello"]
                    h["server_hello"] = bytes.fromhex(sh) if sh else None
                    hellos.append(Hello(**h))
            except (KeyError, TypeError, ValueError):
                log(f"harvest: ignoring unreadable cache {cache}")
            else:
                quic = [
                    QuicConn(
                        **{
                            **q,
                            "datagrams": tuple((bool(c), bytes.fromhex(d)) for c, d in q["datagrams"]),
                        }
                    )
                    for q in data["quic"]
                ]
                log(f"harvest: using cache {cache}")
                return Harvest(hellos=hellos, stats=data["stats"], quic=quic)
    t0 = time.perf_counter()
    workers = max(1, min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda p: _harvest_file(tshark, corpus, p), files))
        quic_results = list(pool.map(lambda p: _harvest_quic_file(tshark, corpus, p), files))
    candidates: list[dict[str, Any]] = []
    seen_records: set[str] = set()
    ch_total = 0
    for res in results:
        for h in res["hellos"]:
            ch_total += 1
            if h["records"] not in seen_records:
                seen_records.add(h["records"])
                candidates.append(h)
    # Round 1: the hello with its own ServerHello and ChangeCipherSpec records. Flows that
    # tshark flags with errors (TLS 1.3 drafts reject CCS, some replies only make sense
    # with the real server's other records) are retried without CCS, then without the
    # ServerHello (generic TLS records only).
    variants = [
        Hello(
            records=bytes.fromhex(c["records"]),
            ja3=c["ja3"],
            ja3_full=c["ja3_full"] or "",
            sni=c["sni"],
            source=c["source"],
            ja4=c["ja4"],
            ja4_source=c["ja4_source"],
            server_hello=bytes.fromhex(c["server_hello"]) if c["server_hello"] else None,
        )
        for c in candidates
    ]
    checks = _validate_hellos(tshark, variants)
    first_checks = list(checks)
    changes: list[dict[str, Any]] = [{"ccs": False}, {"ccs": True, "server_hello": None}]
    changes.append({"ccs": False})
    for change in changes:
        redo = [i for i, ck in enumerate(checks) if ck["error"]]
        if not redo:
            break
        retry = [dataclasses.replace(variants[i], **change) for i in redo]
        for i, ck, v in zip(redo, _validate_hellos(tshark, retry), retry, strict=True):
            checks[i] = ck
            variants[i] = v
    hellos: list[Hello] = []
    rejected: list[str] = []
    sni_text_differs = 0
    for cand, check, variant in zip(candidates, first_checks, variants, strict=True):
        ok = check["count"] == 1 and check["ja3"] == cand["ja3"]
        if ok and cand["sni_known"]:
            ok = (cand["sni"] or None) == check["sni"]
        if ok and cand["ja3_full"] is not None:
            ok = cand["ja3_full"] == check["ja3_full"]
        if not ok:
            rejected.append(cand["source"])
            continue
        if _parse_sni(variant.records) != check["sni"]:
            sni_text_differs += 1
        hellos.append(dataclasses.replace(variant, ja3=check["ja3"], ja3_full=check["ja3_full"], sni=check["sni"]))
    quic, quic_stats = _accept_quic(tshark, quic_results)
    stats: dict[str, Any] = {
        "tshark": version,
        "corpus": str(corpus),
        "capture_files": len(files),
        "client_hellos_seen": ch_total,
        "distinct_client_hellos": len(candidates),
        "accepted_client_hellos": len(hellos),
        "rejected_client_hellos": rejected,
        "ambiguous_frames": sum(r["ambiguous_frames"] for r in results),
        "sni_text_differs_from_raw": sni_text_differs,
        "with_server_hello": sum(h.server_hello is not None for h in hellos),
        "server_hello_dropped": sum(
            c["server_hello"] is not None and h.server_hello is None for c, h in zip(candidates, variants, strict=True)
        ),
        "without_ccs": sum(not h.ccs for h in hellos),
        "flows_with_tshark_errors": [h.source for h, ck in zip(variants, checks, strict=True) if ck["error"]],
        "quic": quic_stats,
        "harvest_seconds": round(time.perf_counter() - t0, 2),
    }
    log(
        f"harvest: {len(files)} files, {ch_total} ClientHellos, {len(candidates)} distinct, "
        f"{len(hellos)} accepted ({stats['with_server_hello']} with their ServerHello), "
        f"{stats['harvest_seconds']} s; QUIC: {quic_stats['client_hellos_seen']} connections with a "
        f"ClientHello, {quic_stats['distinct']} distinct, {len(quic)} accepted"
    )
    result = Harvest(hellos, stats, quic)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "key": key,
            "stats": stats,
            "hellos": [
                {
                    **dataclasses.asdict(h),
                    "records": h.records.hex(),
                    "server_hello": h.server_hello.hex() if h.server_hello else None,
                }
                for h in hellos
            ],
            "quic": [{**dataclasses.asdict(q), "datagrams": [[c, d.hex()] for c, d in q.datagrams]} for q in quic],
        }
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload))
        tmp.replace(cache)
    return result


# --------------------------------------------------------------------------------------
# Packet crafting
# --------------------------------------------------------------------------------------


def pcap_global_header(snaplen: int = 262144) -> bytes:
    """Classic pcap file header: microsecond timestamps, Ethernet link type."""
    return _PCAP_HDR.pack(0xA1B2C3D4, 2, 4, 0, 0, snaplen, 1)


def write_packet(fh: BinaryIO, t: float, frame: bytes) -> None:
    """Append one pcap record with timestamp ``EPOCH + t`` seconds."""
    sec, usec = divmod(EPOCH_US + int(t * 1e6), 1_000_000)
    fh.write(_PCAP_REC.pack(sec, usec, len(frame), len(frame)))
    fh.write(frame)


class Half:
    """Link and IP header material for one direction (src -> dst) of a conversation.

    Checksums use the identity "one's-complement sum == value mod 0xFFFF", so a whole
    payload is summed with one ``int.from_bytes`` instead of a Python loop.
    """

    __slots__ = ("addr_sum", "addrs", "eth", "ip4_sum", "ipid", "label", "ttl", "v6")

    def __init__(self, src_mac: bytes, dst_mac: bytes, src_ip: bytes, dst_ip: bytes, ttl: int, ipid: int) -> None:
        self.v6 = len(src_ip) == 16
        self.eth = dst_mac + src_mac + (b"\x86\xdd" if self.v6 else b"\x08\x00")
        self.addrs = src_ip + dst_ip
        self.addr_sum = int.from_bytes(self.addrs, "big") % 0xFFFF
        self.ttl = ttl
        self.ipid = ipid & 0xFFFF
        self.label = (ipid * 2654435761) & 0xFFFFF
        self.ip4_sum = 0x4500 + 0x4000 + (ttl << 8) + self.addr_sum

    def ip(self, proto: int, length: int) -> bytes:
        """Ethernet + IP header for an upper-layer payload of ``length`` bytes."""
        if self.v6:
            return self.eth + _IP6.pack(0x60000000 | self.label, length, proto, self.ttl) + self.addrs
        total = 20 + length
        ident = self.ipid
        self.ipid = (ident + 1) & 0xFFFF
        csum = -(self.ip4_sum + proto + total + ident) % 0xFFFF
        return self.eth + _IP4.pack(0x45, 0, total, ident, 0x4000, self.ttl, proto, csum) + self.addrs

    def tcp(
        self,
        sport: int,
        dport: int,
        seq: int,
        ack: int,
        flags: int,
        win: int,
        opts: bytes,
        payload: bytes,
    ) -> bytes:
        """A full Ethernet/IP/TCP frame with a correct TCP checksum."""
        hlen = 20 + len(opts)
        head = _TCP_HEAD.pack(sport, dport, seq, ack, hlen << 2, flags, win)
        plen = len(payload)
        total = self.addr_sum + PROTO_TCP + hlen + plen + int.from_bytes(head, "big")
        if opts:
            total += int.from_bytes(opts, "big")
        if plen:
            total += int.from_bytes(payload, "big") << (8 if plen & 1 else 0)
        csum = -total % 0xFFFF  # 0 rather than 0xFFFF when the sum is zero (RFC 1624)
        return b"".join((self.ip(PROTO_TCP, hlen + plen), head, _CSUM_URG.pack(csum, 0), opts, payload))

    def udp(self, sport: int, dport: int, payload: bytes) -> bytes:
        """A full Ethernet/IP/UDP frame with a correct UDP checksum."""
        length = 8 + len(payload)
        total = self.addr_sum + PROTO_UDP + 2 * length + sport + dport
        if payload:
            total += int.from_bytes(payload, "big") << (8 if len(payload) & 1 else 0)
        csum = 0xFFFF - total % 0xFFFF  # never 0 (that would mean "no checksum")
        return self.ip(PROTO_UDP, length) + _UDP.pack(sport, dport, length, csum) + payload

    def icmp_echo(self, reply: bool, ident: int, seq: int, body: bytes) -> bytes:
        """ICMP (IPv4) or ICMPv6 echo request / reply."""
        if self.v6:
            proto, typ = PROTO_ICMP6, (129 if reply else 128)
        else:
            proto, typ = PROTO_ICMP, (0 if reply else 8)
        msg = struct.pack("!BBHHH", typ, 0, 0, ident, seq) + body
        total = int.from_bytes(msg, "big") << (8 if len(msg) & 1 else 0)
        if self.v6:
            total += self.addr_sum + proto + len(msg)
        csum = -total % 0xFFFF
        return self.ip(proto, len(msg)) + msg[:2] + csum.to_bytes(2, "big") + msg[4:]


_TS_KIND = b"\x01\x01\x08\x0a"


class TcpEnd:
    """One side of a simulated TCP connection: header material plus sequence state."""

    __slots__ = ("dport", "half", "mss", "peer", "seq", "sport", "ts_base", "use_ts", "win")

    def __init__(self, half: Half, sport: int, dport: int, isn: int, use_ts: bool) -> None:
        self.half = half
        self.sport = sport
        self.dport = dport
        self.seq = isn & MASK32
        self.use_ts = use_ts
        self.ts_base = (isn * 7919) & MASK32
        self.win = 502 if use_ts else 1026  # scaled by 2**7 and 2**8
        mtu_room = 1440 if half.v6 else 1460
        self.mss = mtu_room - (12 if use_ts else 0)  # payload bytes per full segment
        self.peer: TcpEnd = self

    def tsval(self, t: float) -> int:
        """TCP timestamp value (1 kHz clock) at time ``t``."""
        return (self.ts_base + int(t * 1000)) & MASK32

    def syn_options(self, t: float, reply: bool = False) -> bytes:
        """Options of a SYN (or SYN-ACK if ``reply``): Linux-like with timestamps, else
        Windows-like."""
        mss = (1440 if self.half.v6 else 1460).to_bytes(2, "big")
        if self.use_ts:
            tsecr = self.peer.tsval(t - 0.001) if reply else 0
            return b"\x02\x04" + mss + b"\x04\x02\x08\x0a" + _TS_PAIR.pack(self.tsval(t), tsecr) + (b"\x01\x03\x03\x07")
        return b"\x02\x04" + mss + b"\x01\x03\x03\x08\x01\x01\x04\x02"

    def seg(
        self,
        t: float,
        flags: int,
        payload: bytes = b"",
        seq: int | None = None,
        opts: bytes | None = None,
    ) -> bytes:
        """Build the next segment; advances the sequence number unless ``seq`` is given."""
        if seq is None:
            seq = self.seq
            step = len(payload) + (1 if flags & (TCP_SYN | TCP_FIN) else 0)
            self.seq = (seq + step) & MASK32
        ack = self.peer.seq if flags & TCP_ACK else 0
        if opts is None:
            opts = b""
            if self.use_ts:
                opts = _TS_KIND + _TS_PAIR.pack(self.tsval(t), self.peer.tsval(t - 0.001))
        return self.half.tcp(self.sport, self.dport, seq, ack, flags, self.win, opts, payload)


class TcpConn:
    """A client/server pair of :class:`TcpEnd` objects."""

    __slots__ = ("c", "s")

    def __init__(self, c: TcpEnd, s: TcpEnd) -> None:
        self.c = c
        self.s = s
        c.peer = s
        s.peer = c

    @classmethod
    def make(
        cls,
        cmac: bytes,
        cip: bytes,
        sip: bytes,
        cport: int,
        sport: int,
        c_isn: int,
        s_isn: int,
        use_ts: bool,
        c_ttl: int = 64,
        s_ttl: int = 57,
    ) -> TcpConn:
        """Build a connection between ``cip:cport`` (behind ``cmac``) and ``sip:sport``."""
        ch = Half(cmac, GATEWAY_MAC, cip, sip, c_ttl, c_isn >> 16)
        sh = Half(GATEWAY_MAC, cmac, sip, cip, s_ttl, s_isn >> 16)
        return cls(TcpEnd(ch, cport, sport, c_isn, use_ts), TcpEnd(sh, sport, cport, s_isn, use_ts))


# --------------------------------------------------------------------------------------
# Payload pools and TLS record streams
# --------------------------------------------------------------------------------------

_WORD_TEXT = """
the of and to in is for on with that this from by are at as be or an it was have not
div span class href src img script style title html body head meta link data value
user session account order item price cart search query page index api v1 v2 json
content type length cache control accept encoding gzip keep alive connection server
lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt
"""
_WORDS = tuple(_WORD_TEXT.split())


class Pools:
    """Seeded byte pools that payloads are sliced from (fast and deterministic)."""

    def __init__(self, rng: random.Random) -> None:
        self.rand = rng.randbytes(POOL_SIZE)
        parts: list[str] = []
        size = 0
        while size < POOL_SIZE:
            w = rng.choice(_WORDS)
            if rng.random() < 0.08:
                w = f'<{w} class="{rng.choice(_WORDS)}">'
            elif rng.random() < 0.05:
                w += "\r\n"
            parts.append(w)
            size += len(w) + 1
        self.text = " ".join(parts).encode()[:POOL_SIZE]

    def random(self, rng: random.Random, n: int) -> bytes:
        """``n`` random-looking bytes (like ciphertext)."""
        o = rng.randrange(POOL_SIZE - n)
        return self.rand[o : o + n]

    def binary(self, rng: random.Random, n: int) -> bytes:
        """``n`` random bytes that do not start like a TLS handshake record."""
        p = self.random(rng, n)
        return b"\x00" + p[1:] if p[:1] == b"\x16" else p

    def words(self, rng: random.Random, n: int) -> bytes:
        """``n`` bytes of HTML-ish text."""
        o = rng.randrange(POOL_SIZE - n)
        return self.text[o : o + n]


class TlsStream:
    """One direction of a TLS connection's application-data record stream.

    ``take(n)`` returns the next ``n`` bytes of the stream, so record boundaries fall
    wherever they fall relative to TCP segments. Interactive streams start a new record
    exactly filling the segment when at a record boundary (one record per segment); bulk
    streams use large (mostly 16 KiB) records that span many segments.
    """

    __slots__ = ("bulk", "left", "pending", "pools")

    def __init__(self, pools: Pools, bulk: bool) -> None:
        self.pools = pools
        self.bulk = bulk
        self.pending = b""
        self.left = 0

    def take(self, rng: random.Random, n: int) -> bytes:
        """Next ``n`` bytes of the record stream."""
        parts: list[bytes] = []
        need = n
        while need > 0:
            if self.pending:
                chunk = self.pending[:need]
                self.pending = self.pending[need:]
                parts.append(chunk)
                need -= len(chunk)
            elif self.left:
                k = min(self.left, need)
                parts.append(self.pools.random(rng, k))
                self.left -= k
                need -= k
            else:
                if self.bulk:
                    size = 16401 if rng.random() < 0.8 else rng.randint(500, 16401)
                elif need > 21:
                    size = need - 5
                else:
                    size = rng.randint(22, 1400)
                self.pending = b"\x17\x03\x03" + size.to_bytes(2, "big")
                self.left = size
        return b"".join(parts)


# --------------------------------------------------------------------------------------
# Flow plan
# --------------------------------------------------------------------------------------


@dataclass
class FlowSpec:
    """Everything needed to generate one flow; its packet count is fixed by the plan."""

    idx: int
    kind: str
    start: float
    seed: int
    v6: bool = False
    cmac: bytes = b""
    cip: bytes = b""
    sip: bytes = b""
    cport: int = 0
    sport: int = 0
    rtt: float = 0.03
    overhead: int = 0  # packets outside the data phase
    n_data: int = 0  # data-phase packets (filled in after all overheads are known)
    weight: float = 0.0  # share of the data-phase packets
    duration: float = 1.0
    # TCP
    syn: bool = True
    use_ts: bool = True
    c_isn: int = 0
    s_isn: int = 0
    close_rst: bool = False
    # TLS
    hello: int = -1
    ch_segs: list[tuple[int, int]] = field(default_factory=list)  # (offset, length)
    ch_order: list[int] = field(default_factory=list)
    ch_retx: int | None = None
    use_sh: bool = False  # server flight starts with the hello's real ServerHello
    flight_extra: int = 0  # bytes of TLS records after ServerHello/CCS in the server flight
    flight_segs: int = 0
    # QUIC
    quic: int = -1  # index into Harvest.quic
    # UDP / ICMP / ARP (QUIC: short-header datagrams after the Initials)
    rounds: int = 0


def _pick(rng: random.Random, table: Sequence[tuple[Any, float]]) -> Any:
    """Weighted choice from ``(value, weight)`` pairs."""
    x = rng.random() * sum(w for _v, w in table)
    for value, weight in table:
        x -= weight
        if x < 0:
            return value
    return table[-1][0]


def _mss(v6: bool, use_ts: bool) -> int:
    """Payload bytes per full-size segment."""
    return (1440 if v6 else 1460) - (12 if use_ts else 0)


def spec_mss(spec: FlowSpec) -> int:
    """Payload bytes per full-size segment of the flow ``spec``."""
    return _mss(spec.v6, spec.use_ts)


def _flight_len(spec: FlowSpec, hello: Hello) -> int:
    """Bytes of the server's first flight (ServerHello, CCS, encrypted handshake record)."""
    sh = hello.server_hello if spec.use_sh and hello.server_hello else b""
    return len(sh) + (len(TLS_CCS) if hello.ccs else 0) + spec.flight_extra


class AddressBook:
    """Client hosts (with MACs) and server addresses, reused across flows like real hosts."""

    def __init__(self, rng: random.Random, flows: int) -> None:
        n_clients = max(16, flows // 12)
        n_servers = max(32, flows // 6)
        self.clients4 = [
            (bytes([10, rng.randrange(0, 64), rng.randrange(256), rng.randrange(1, 255)]),
             b"\x02" + rng.randbytes(5))
            for _ in range(n_clients)
        ]  # fmt: skip
        self.clients6 = [
            (bytes.fromhex("20010db8c000") + rng.randbytes(10), b"\x02" + rng.randbytes(5))
            for _ in range(max(4, n_clients // 4))
        ]
        firsts = (23, 34, 35, 52, 54, 104, 142, 151, 157, 185, 199, 203)
        self.servers4 = [
            bytes([rng.choice(firsts), rng.randrange(256), rng.randrange(256), rng.randrange(1, 255)])
            for _ in range(n_servers)
        ]
        self.servers6 = [bytes.fromhex("20010db85000") + rng.randbytes(10) for _ in range(max(8, n_servers // 4))]
        self.used: set[tuple[bytes, int, bytes, int]] = set()

    def pick(
        self,
        rng: random.Random,
        v6: bool,
        sport: int,
        cport_range: tuple[int, int] = (32768, 60999),
    ) -> tuple[bytes, bytes, bytes, int]:
        """Return (client MAC, client IP, server IP, client port) for a new unique flow."""
        clients = self.clients6 if v6 else self.clients4
        servers = self.servers6 if v6 else self.servers4
        while True:
            cip, cmac = clients[int(len(clients) * rng.random() ** 1.5)]
            sip = servers[int(len(servers) * rng.random() ** 3)]
            cport = rng.randint(*cport_range)
            key = (cip, cport, sip, sport)
            if key not in self.used:
                self.used.add(key)
                return cmac, cip, sip, cport


def _plan_tls(spec: FlowSpec, rng: random.Random, harvest: Harvest) -> None:
    """Fill in the TLS-specific parts of ``spec`` and its overhead packet count."""
    hello_idx = rng.randrange(len(harvest.hellos))
    spec.hello = hello_idx
    length = len(harvest.hellos[hello_idx].records)
    mss = _mss(spec.v6, spec.use_ts)
    cuts: set[int] = set(range(mss, length, mss))  # natural MSS segmentation
    if rng.random() < 0.10 and length > 2:
        extra = 1 if rng.random() < 0.7 else 2
        cuts.update(rng.sample(range(1, length), min(extra, length - 1)))
    edges = [0, *sorted(cuts), length]
    spec.ch_segs = [(a, b - a) for a, b in itertools.pairwise(edges)]
    order = list(range(len(spec.ch_segs)))
    if len(order) > 1 and rng.random() < 0.3:  # some split hellos arrive out of order
        k = rng.randrange(len(order) - 1)
        order[k], order[k + 1] = order[k + 1], order[k]
    spec.ch_order = order
    spec.ch_retx = rng.randrange(len(order)) if rng.random() < 0.03 else None
    hello = harvest.hellos[hello_idx]
    spec.use_sh = hello.server_hello is not None and rng.random() < 0.9
    spec.flight_extra = rng.randint(300, 5000)
    spec.flight_segs = math.ceil(_flight_len(spec, hello) / mss)
    spec.overhead = (
        (3 if spec.syn else 0)
        + len(spec.ch_segs)
        + (1 if spec.ch_retx is not None else 0)
        + spec.flight_segs
        + 1  # client CCS + Finished
        + (1 if spec.close_rst else 3)
    )


def plan_flows(
    packets: int, flows: int, seed: int, harvest: Harvest, quic_share: float = QUIC_SHARE
) -> tuple[list[FlowSpec], float]:
    """Plan all flows so that together they emit exactly ``packets`` packets.

    A share ``quic_share`` of the flows are QUIC connections (when QUIC connections were
    harvested); the other flows follow ``FLOW_MIX``.

    Returns the flow specs sorted by start time and the nominal capture duration.
    """
    rng = random.Random(f"plan-{seed}")
    book = AddressBook(rng, flows)
    duration = max(60.0, packets / 2000.0)
    starts = sorted(rng.uniform(0.0, duration * 0.95) for _ in range(flows))
    specs: list[FlowSpec] = []
    for idx, start in enumerate(starts):
        quic = rng.random() < quic_share and bool(harvest.quic)
        kind = "quic" if quic else _pick(rng, FLOW_MIX)
        spec = FlowSpec(idx=idx, kind=kind, start=start, seed=rng.getrandbits(64))
        spec.v6 = kind != "arp" and rng.random() < IPV6_SHARE
        spec.rtt = min(0.5, max(0.001, rng.lognormvariate(math.log(0.03), 0.8)))
        spec.use_ts = rng.random() < 0.7
        spec.c_isn = rng.getrandbits(32)
        spec.s_isn = rng.getrandbits(32)
        if rng.random() < 0.04:  # client sequence numbers wrap inside / right after the hello
            spec.c_isn = (1 << 32) - rng.randint(1, 2500)
        if rng.random() < 0.04:  # server sequence numbers wrap during the data phase
            spec.s_isn = (1 << 32) - rng.randint(1, 300_000)
        spec.close_rst = rng.random() < 0.1
        if kind == "tls":
            port = _pick(rng, TLS_PORTS)
            spec.sport = rng.randint(10000, 60999) if port == "high" else int(port)
            spec.syn = rng.random() >= 0.08
            spec.weight = rng.lognormvariate(0.0, 1.2)
            _plan_tls(spec, rng, harvest)
        elif kind == "quic":
            port = _pick(rng, QUIC_PORTS)
            spec.sport = rng.randint(10000, 60999) if port == "high" else int(port)
            spec.quic = rng.randrange(len(harvest.quic))
            spec.rounds = rng.randint(3, 10)  # short-header datagrams after the Initials
            spec.overhead = len(harvest.quic[spec.quic].datagrams) + spec.rounds
        elif kind == "tls-midflow":
            spec.sport = 443 if rng.random() < 0.8 else int(_pick(rng, TLS_PORTS[1:-1]))
            spec.syn = False
            spec.weight = rng.lognormvariate(0.0, 1.2)
            spec.overhead = 1 if spec.close_rst else 3
        elif kind == "http":
            spec.sport = _pick(rng, ((80, 0.85), (8080, 0.1), (8000, 0.05)))
            spec.weight = 0.5 * rng.lognormvariate(0.0, 1.2)
            spec.overhead = 3 + 1 + (1 if spec.close_rst else 3)
        elif kind == "ssh":
            spec.sport = 22 if rng.random() < 0.9 else 2222
            spec.weight = 0.5 * rng.lognormvariate(0.0, 1.2)
            spec.overhead = 3 + 4 + (1 if spec.close_rst else 3)
        elif kind == "tcp":
            spec.sport = rng.choice((21, 23, 25, 110, 143, 3306, 5432, 6379, 9000))
            spec.weight = 0.3 * rng.lognormvariate(0.0, 1.0)
            spec.overhead = 3 + (1 if spec.close_rst else 3)
        elif kind in ("dns", "ntp", "icmp"):
            spec.sport = {"dns": 53, "ntp": 123, "icmp": 0}[kind]
            spec.rounds = rng.randint(1, 4)
            spec.overhead = 2 * spec.rounds
        elif kind == "udp":
            spec.sport = rng.randint(10000, 60999)
            spec.rounds = rng.randint(4, 30)
            spec.overhead = spec.rounds
        else:  # arp
            spec.overhead = 2
        if kind in ("tls", "tls-midflow", "http", "ssh", "tcp", "quic"):
            cmac, spec.cip, spec.sip, spec.cport = book.pick(rng, spec.v6, spec.sport)
        elif kind in ("dns", "ntp", "udp"):
            cmac, spec.cip, spec.sip, spec.cport = book.pick(rng, spec.v6, spec.sport, (1024, 65535))
        else:
            cmac, spec.cip, spec.sip, _ = book.pick(rng, spec.v6, 0, (1, 65535))
        spec.cmac = cmac
        specs.append(spec)
    fixed = sum(s.overhead for s in specs)
    remaining = packets - fixed
    if remaining < 0:
        raise SystemExit(
            f"--packets {packets} is too small for {flows} flows (they need at least {fixed} "
            f"packets); use fewer --flows"
        )
    total_w = sum(s.weight for s in specs)
    if total_w <= 0:
        raise SystemExit("no flow can carry data packets; use more --flows")
    assigned = 0
    for s in specs:
        s.n_data = int(remaining * s.weight / total_w)
        assigned += s.n_data
    carriers = [s for s in specs if s.weight > 0]
    for _ in range(remaining - assigned):
        rng.choice(carriers).n_data += 1
    for s in specs:
        wanted = min(max(0.2, rng.lognormvariate(math.log(12.0), 1.0)), duration * 1.05 - s.start)
        s.duration = max(0.05, wanted)
    return specs, duration


# --------------------------------------------------------------------------------------
# Flow generators (each yields (time, frame) with non-decreasing times)
# --------------------------------------------------------------------------------------

Packets = Iterator[tuple[float, bytes]]
PayloadFn = Callable[[random.Random, int, bool], bytes]


def _handshake(
    c: TcpEnd, s: TcpEnd, t: float, rtt: float, rng: random.Random
) -> Generator[tuple[float, bytes], None, float]:
    """TCP 3-way handshake; returns the time after the final ACK."""
    yield t, c.seg(t, TCP_SYN, opts=c.syn_options(t))
    t += rtt
    yield t, s.seg(t, TCP_SYN | TCP_ACK, opts=s.syn_options(t, reply=True))
    t += rng.uniform(0.00005, 0.0008)
    yield t, c.seg(t, TCP_ACK)
    return t + rng.uniform(0.00005, 0.002)


def _close(c: TcpEnd, s: TcpEnd, t: float, rtt: float, rst: bool, rng: random.Random) -> Packets:
    """Connection teardown: RST (1 packet) or FIN / FIN-ACK / ACK (3 packets)."""
    if rst:
        yield t, c.seg(t, TCP_RST | TCP_ACK)
        return
    yield t, c.seg(t, TCP_FIN | TCP_ACK)
    t += rtt
    yield t, s.seg(t, TCP_FIN | TCP_ACK)
    t += rng.uniform(0.00005, 0.001)
    yield t, c.seg(t, TCP_ACK)


def _data_phase(
    c: TcpEnd,
    s: TcpEnd,
    t: float,
    budget: int,
    gap: float,
    rng: random.Random,
    c_payload: PayloadFn,
    s_payload: PayloadFn,
) -> Generator[tuple[float, bytes], None, float]:
    """Exactly ``budget`` packets of request/response traffic with ACKs; returns end time.

    Client requests are 1-2 segments; responses are a heavy-tailed number of segments
    (full-size when the flow is a bulk transfer) with a client ACK every second segment.
    """
    bulk = rng.random() < 0.6
    retx_p = 0.004 if rng.random() < 0.2 else 0.0
    c_max, s_max = c.mss, s.mss
    while budget > 0:
        for k in range(1 if rng.random() < 0.8 else 2):
            n = rng.randint(100, min(700, c_max)) if rng.random() < 0.85 else rng.randint(100, c_max)
            yield t, c.seg(t, PSH_ACK, c_payload(rng, n, k == 0))
            budget -= 1
            t += rng.expovariate(1.0 / (gap * 0.1))
            if budget == 0:
                return t
        t += rng.expovariate(1.0 / (gap * 0.3))
        if rng.random() < 0.3:
            yield t, s.seg(t, TCP_ACK)
            budget -= 1
            if budget == 0:
                return t
        n_resp = min(budget, max(1, int(rng.paretovariate(1.2))))
        for k in range(n_resp):
            n = s_max if bulk else rng.randint(100, s_max)
            seq = s.seq
            payload = s_payload(rng, n, k == 0)
            yield t, s.seg(t, PSH_ACK, payload)
            budget -= 1
            t += rng.expovariate(1.0 / (gap * 0.05))
            if budget and retx_p and rng.random() < retx_p:
                t += rng.uniform(0.2, 0.4)
                yield t, s.seg(t, PSH_ACK, payload, seq=seq)  # retransmission
                budget -= 1
            if budget and (k & 1 or k == n_resp - 1):
                t += rng.uniform(0.00002, 0.0005)
                yield t, c.seg(t, TCP_ACK)
                budget -= 1
            if budget == 0:
                return t
        t += rng.expovariate(1.0 / (gap * 2.0))
    return t


def tls_flow(spec: FlowSpec, pools: Pools, harvest: Harvest) -> Packets:
    """A TLS connection around one real ClientHello."""
    rng = random.Random(spec.seed)
    conn = TcpConn.make(spec.cmac, spec.cip, spec.sip, spec.cport, spec.sport, spec.c_isn, spec.s_isn, spec.use_ts)
    c, s = conn.c, conn.s
    t, rtt = spec.start, spec.rtt
    if spec.syn:
        t = yield from _handshake(c, s, t, rtt, rng)
    hello = harvest.hellos[spec.hello].records
    base = c.seq
    for i in spec.ch_order:
        off, ln = spec.ch_segs[i]
        yield t, c.seg(t, PSH_ACK, hello[off : off + ln], seq=(base + off) & MASK32)
        t += rng.uniform(0.00001, 0.0003)
    c.seq = (base + len(hello)) & MASK32
    if spec.ch_retx is not None:
        t += rng.uniform(0.2, 0.3)
        off, ln = spec.ch_segs[spec.ch_retx]
        yield t, c.seg(t, PSH_ACK, hello[off : off + ln], seq=(base + off) & MASK32)
    t += rtt
    # Server flight: real ServerHello record (or none: generic records only), CCS, then
    # one application-data record standing for the encrypted rest of the handshake.
    h = harvest.hellos[spec.hello]
    sh = h.server_hello if spec.use_sh and h.server_hello else b""
    ccs = TLS_CCS if h.ccs else b""
    enc = spec.flight_extra - 5
    flight = b"".join((sh, ccs, b"\x17\x03\x03", enc.to_bytes(2, "big"), pools.random(rng, enc)))
    mss = s.mss
    for i in range(spec.flight_segs):
        yield t, s.seg(t, PSH_ACK, flight[i * mss : (i + 1) * mss])
        t += rng.uniform(0.00001, 0.0004)
    t += rng.uniform(0.001, 0.02)
    yield t, c.seg(t, PSH_ACK, ccs + b"\x17\x03\x03\x00\x35" + pools.random(rng, 0x35))
    t += rtt
    c_stream = TlsStream(pools, bulk=False)
    s_stream = TlsStream(pools, bulk=rng.random() < 0.5)
    gap = spec.duration / (spec.n_data + 1)
    t = yield from _data_phase(
        c, s, t, spec.n_data, gap, rng,
        lambda r, n, _first: c_stream.take(r, n),
        lambda r, n, _first: s_stream.take(r, n),
    )  # fmt: skip
    yield from _close(c, s, t + rng.expovariate(1.0 / max(gap, 0.001)), rtt, spec.close_rst, rng)


def tls_midflow(spec: FlowSpec, pools: Pools) -> Packets:
    """A TLS connection already established when the capture starts (no SYN, no hellos).

    The first server segment usually starts inside a record. Nothing here may be reported
    as a handshake.
    """
    rng = random.Random(spec.seed)
    conn = TcpConn.make(spec.cmac, spec.cip, spec.sip, spec.cport, spec.sport, spec.c_isn, spec.s_isn, spec.use_ts)
    c, s = conn.c, conn.s
    c_stream = TlsStream(pools, bulk=False)
    s_stream = TlsStream(pools, bulk=rng.random() < 0.5)
    if rng.random() < 0.8:
        s_stream.left = rng.randint(1, 16000)  # the capture starts in the middle of a record
    gap = spec.duration / (spec.n_data + 1)
    t = yield from _data_phase(
        c, s, spec.start, spec.n_data, gap, rng,
        lambda r, n, _first: c_stream.take(r, n),
        lambda r, n, _first: s_stream.take(r, n),
    )  # fmt: skip
    yield from _close(c, s, t + gap, spec.rtt, spec.close_rst, rng)


_HTTP_PATHS = ("/", "/index.html", "/api/v1/items", "/static/app.js", "/img/logo.png", "/search")


def http_flow(spec: FlowSpec, pools: Pools) -> Packets:
    """A plain-text HTTP/1.1 keep-alive connection."""
    rng = random.Random(spec.seed)
    conn = TcpConn.make(spec.cmac, spec.cip, spec.sip, spec.cport, spec.sport, spec.c_isn, spec.s_isn, spec.use_ts)
    c, s = conn.c, conn.s
    t = yield from _handshake(c, s, spec.start, spec.rtt, rng)
    host = f"www.example{rng.randrange(1000)}.test"

    def request(r: random.Random, n: int, _first: bool) -> bytes:
        path = r.choice(_HTTP_PATHS)
        extra = pools.words(r, max(0, min(n, 600) - 120)).replace(b"\r\n", b"  ")
        return (
            (
                f"GET {path}?q={r.randrange(10**6)} HTTP/1.1\r\nHost: {host}\r\n"
                f"User-Agent: curl/8.5.0\r\nAccept: */*\r\nX-Pad: "
            ).encode()
            + extra
            + b"\r\n\r\n"
        )

    def response(r: random.Random, n: int, first: bool) -> bytes:
        if not first:
            body = pools.words(r, n)
            return b"  " + body[2:] if body[:1] in (b"\r", b"\n") else body
        head = (
            f"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {r.randrange(10**5)}"
            "\r\nConnection: keep-alive\r\n\r\n"
        ).encode()
        return head + pools.words(r, max(0, n - len(head)))

    yield t, c.seg(t, PSH_ACK, request(rng, 200, True))
    t += spec.rtt
    gap = spec.duration / (spec.n_data + 1)
    t = yield from _data_phase(c, s, t, spec.n_data, gap, rng, request, response)
    yield from _close(c, s, t + gap, spec.rtt, spec.close_rst, rng)


def _ssh_kexinit(rng: random.Random) -> bytes:
    """A plausible SSH binary packet holding SSH_MSG_KEXINIT."""
    lists = (
        "curve25519-sha256,ecdh-sha2-nistp256,diffie-hellman-group14-sha256",
        "ssh-ed25519,rsa-sha2-512,rsa-sha2-256",
        "chacha20-poly1305@openssh.com,aes128-ctr,aes256-gcm@openssh.com",
        "chacha20-poly1305@openssh.com,aes128-ctr,aes256-gcm@openssh.com",
        "umac-64-etm@openssh.com,hmac-sha2-256-etm@openssh.com",
        "umac-64-etm@openssh.com,hmac-sha2-256-etm@openssh.com",
        "none,zlib@openssh.com",
        "none,zlib@openssh.com",
        "",
        "",
    )
    body = b"\x14" + rng.randbytes(16)
    for item in lists:
        body += len(item).to_bytes(4, "big") + item.encode()
    body += b"\x00" + b"\x00\x00\x00\x00"
    pad = 8 - (len(body) + 5) % 8
    pad += 8 if pad < 4 else 0
    return (len(body) + pad + 1).to_bytes(4, "big") + bytes([pad]) + body + b"\x00" * pad


def ssh_flow(spec: FlowSpec, pools: Pools) -> Packets:
    """An SSH session: banners, KEXINITs, then encrypted traffic."""
    rng = random.Random(spec.seed)
    conn = TcpConn.make(spec.cmac, spec.cip, spec.sip, spec.cport, spec.sport, spec.c_isn, spec.s_isn, spec.use_ts)
    c, s = conn.c, conn.s
    t = yield from _handshake(c, s, spec.start, spec.rtt, rng)
    yield t, s.seg(t, PSH_ACK, b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n")
    t += rng.uniform(0.0005, 0.005)
    yield t, c.seg(t, PSH_ACK, b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n")
    t += rng.uniform(0.0001, 0.002)
    yield t, c.seg(t, PSH_ACK, _ssh_kexinit(rng))
    t += spec.rtt
    yield t, s.seg(t, PSH_ACK, _ssh_kexinit(rng))
    t += spec.rtt
    gap = spec.duration / (spec.n_data + 1)

    def encrypted(r: random.Random, n: int, _first: bool) -> bytes:
        return pools.binary(r, min(n, 600) if r.random() < 0.7 else n)

    t = yield from _data_phase(c, s, t, spec.n_data, gap, rng, encrypted, encrypted)
    yield from _close(c, s, t + gap, spec.rtt, spec.close_rst, rng)


def tcp_flow(spec: FlowSpec, pools: Pools) -> Packets:
    """Some other TCP service: cleartext (text) or binary, never TLS."""
    rng = random.Random(spec.seed)
    conn = TcpConn.make(spec.cmac, spec.cip, spec.sip, spec.cport, spec.sport, spec.c_isn, spec.s_isn, spec.use_ts)
    c, s = conn.c, conn.s
    t = yield from _handshake(c, s, spec.start, spec.rtt, rng)
    text = spec.sport in (21, 23, 25, 110, 143, 6379)

    def payload(r: random.Random, n: int, _first: bool) -> bytes:
        return pools.words(r, n) if text else pools.binary(r, n)

    gap = spec.duration / (spec.n_data + 1)
    t = yield from _data_phase(c, s, t, spec.n_data, gap, rng, payload, payload)
    yield from _close(c, s, t + gap, spec.rtt, spec.close_rst, rng)


def _dns_name(rng: random.Random, harvest: Harvest) -> str:
    """A domain name: often one of the harvested SNIs, otherwise made up."""
    if rng.random() < 0.5:
        sni = harvest.hellos[rng.randrange(len(harvest.hellos))].sni
        if sni and sni.isascii() and "." in sni:
            return sni
    return f"{rng.choice(_WORDS)}{rng.randrange(100)}.{rng.choice(('com', 'net', 'org', 'io'))}"


def _dns_message(ident: int, name: str, qtype: int, answer: bytes | None) -> bytes:
    """A DNS query (``answer`` None) or response with one answer record."""
    qname = b"".join(len(p).to_bytes(1, "big") + p.encode() for p in name.split(".") if p) + b"\0"
    flags, ancount = (0x0100, 0) if answer is None else (0x8180, 1)
    msg = struct.pack("!HHHHHH", ident, flags, 1, ancount, 0, 0) + qname + struct.pack("!HH", qtype, 1)
    if answer is not None:
        msg += b"\xc0\x0c" + struct.pack("!HHIH", qtype, 1, 300, len(answer)) + answer
    return msg


def udp_flow(spec: FlowSpec, pools: Pools, harvest: Harvest) -> Packets:
    """DNS lookups, NTP exchanges or an RTP-like one-way UDP stream."""
    rng = random.Random(spec.seed)
    c = Half(spec.cmac, GATEWAY_MAC, spec.cip, spec.sip, 64, rng.getrandbits(16))
    s = Half(GATEWAY_MAC, spec.cmac, spec.sip, spec.cip, 57, rng.getrandbits(16))
    t = spec.start
    if spec.kind == "udp":
        ssrc = rng.getrandbits(32)
        seq, ts = rng.getrandbits(16), rng.getrandbits(32)
        for i in range(spec.rounds):
            head = struct.pack("!BBHII", 0x80, 0, (seq + i) & 0xFFFF, (ts + 160 * i) & MASK32, ssrc)
            yield t, c.udp(spec.cport, spec.sport, head + pools.random(rng, 160))
            t += 0.02
        return
    for _ in range(spec.rounds):
        if spec.kind == "dns":
            ident = rng.getrandbits(16)
            name = _dns_name(rng, harvest)
            qtype = 28 if spec.v6 else 1
            rdata = rng.randbytes(16 if qtype == 28 else 4)
            yield t, c.udp(spec.cport, 53, _dns_message(ident, name, qtype, None))
            t += spec.rtt
            yield t, s.udp(53, spec.cport, _dns_message(ident, name, qtype, rdata))
        else:  # ntp
            req = b"\x23" + bytes(39) + rng.randbytes(8)
            yield t, c.udp(spec.cport, 123, req)
            t += spec.rtt
            resp = b"\x24\x02\x00\xe7" + rng.randbytes(20) + req[40:48] + rng.randbytes(16)
            yield t, s.udp(123, spec.cport, resp)
        t += rng.uniform(0.5, 5.0)


def quic_flow(spec: FlowSpec, pools: Pools, harvest: Harvest) -> Packets:
    """A QUIC connection: its real Initial datagrams (bytes unchanged, original order),
    then ``spec.rounds`` short-header 1-RTT-like datagrams (random bytes) both ways."""
    rng = random.Random(spec.seed)
    conn = harvest.quic[spec.quic]
    c = Half(spec.cmac, GATEWAY_MAC, spec.cip, spec.sip, 64, rng.getrandbits(16))
    s = Half(GATEWAY_MAC, spec.cmac, spec.sip, spec.cip, 57, rng.getrandbits(16))
    t = spec.start
    prev_client = True
    for from_client, payload in conn.datagrams:
        if prev_client and not from_client:
            t += spec.rtt
        elif not prev_client and from_client:
            t += rng.uniform(0.0001, 0.002)
        else:
            t += rng.uniform(0.00001, 0.0003)
        if from_client:
            yield t, c.udp(spec.cport, spec.sport, payload)
        else:
            yield t, s.udp(spec.sport, spec.cport, payload)
        prev_client = from_client
    t += spec.rtt
    gap = spec.duration / (spec.rounds + 1)
    for _ in range(spec.rounds):
        first = bytes([0x40 | rng.getrandbits(6)])
        if rng.random() < 0.4:
            n = rng.randint(30, 200) if rng.random() < 0.8 else rng.randint(200, 1200)
            yield t, c.udp(spec.cport, spec.sport, first + pools.random(rng, n - 1))
        else:
            n = rng.randint(100, 1350) if rng.random() < 0.5 else 1252
            yield t, s.udp(spec.sport, spec.cport, first + pools.random(rng, n - 1))
        t += rng.expovariate(1.0 / max(gap, 0.0001))


def icmp_flow(spec: FlowSpec, pools: Pools) -> Packets:
    """A few ICMP / ICMPv6 echo request/reply pairs (ping)."""
    rng = random.Random(spec.seed)
    c = Half(spec.cmac, GATEWAY_MAC, spec.cip, spec.sip, 64, rng.getrandbits(16))
    s = Half(GATEWAY_MAC, spec.cmac, spec.sip, spec.cip, 57, rng.getrandbits(16))
    ident = rng.getrandbits(16)
    body = pools.words(rng, 56)
    t = spec.start
    for i in range(spec.rounds):
        yield t, c.icmp_echo(False, ident, i + 1, body)
        t += spec.rtt
        yield t, s.icmp_echo(True, ident, i + 1, body)
        t += 1.0


def arp_flow(spec: FlowSpec) -> Packets:
    """ARP who-has (broadcast) and is-at."""
    gw_ip = spec.cip[:3] + b"\x01"
    req = (
        BROADCAST_MAC
        + spec.cmac
        + b"\x08\x06"
        + struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, spec.cmac, spec.cip, bytes(6), gw_ip)
    )
    rep = (
        spec.cmac
        + GATEWAY_MAC
        + b"\x08\x06"
        + struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 2, GATEWAY_MAC, gw_ip, spec.cmac, spec.cip)
    )
    yield spec.start, req + bytes(18)  # pad to the 60-byte Ethernet minimum
    yield spec.start + 0.0002, rep + bytes(18)


def flow_packets(spec: FlowSpec, pools: Pools, harvest: Harvest) -> Packets:
    """Dispatch to the generator for ``spec.kind``."""
    if spec.kind == "tls":
        return tls_flow(spec, pools, harvest)
    if spec.kind == "quic":
        return quic_flow(spec, pools, harvest)
    if spec.kind == "tls-midflow":
        return tls_midflow(spec, pools)
    if spec.kind == "http":
        return http_flow(spec, pools)
    if spec.kind == "ssh":
        return ssh_flow(spec, pools)
    if spec.kind == "tcp":
        return tcp_flow(spec, pools)
    if spec.kind in ("dns", "ntp", "udp"):
        return udp_flow(spec, pools, harvest)
    if spec.kind == "icmp":
        return icmp_flow(spec, pools)
    return arp_flow(spec)


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------


def _ip_text(raw: bytes) -> str:
    """Canonical text form of a 4- or 16-byte address."""
    return str(ipaddress.ip_address(raw))


def _quic_truth(s: FlowSpec, harvest: Harvest) -> dict[str, Any]:
    """Ground-truth line of a QUIC flow."""
    q = harvest.quic[s.quic]
    return {
        "flow": s.idx,
        "transport": "quic",
        "ip_version": 6 if s.v6 else 4,
        "src_ip": _ip_text(s.cip),
        "src_port": s.cport,
        "dst_ip": _ip_text(s.sip),
        "dst_port": s.sport,
        "sni": q.sni,
        "ja3": q.ja3,
        "ja3_full": q.ja3_full,
        "ja4": q.ja4,
        "ja4_source": q.ja4_source,
        "hello_source": q.source,
        "quic_version": f"0x{q.version:08x}",
        "client_initial_datagrams": q.client_datagrams,
        "server_initial_datagrams": len(q.datagrams) - q.client_datagrams,
        "short_header_datagrams": s.rounds,
        "flow_start": round(EPOCH_US / 1e6 + s.start, 6),
    }


def write_truth(path: Path, specs: list[FlowSpec], harvest: Harvest) -> int:
    """Write one JSON line per TLS or QUIC flow (client -> server); returns the line count."""
    n = 0
    with path.open("w") as fh:
        for s in specs:
            if s.kind == "quic":
                fh.write(json.dumps(_quic_truth(s, harvest), ensure_ascii=False) + "\n")
                n += 1
                continue
            if s.kind != "tls":
                continue
            h = harvest.hellos[s.hello]
            rec = {
                "flow": s.idx,
                "transport": "tcp",
                "ip_version": 6 if s.v6 else 4,
                "src_ip": _ip_text(s.cip),
                "src_port": s.cport,
                "dst_ip": _ip_text(s.sip),
                "dst_port": s.sport,
                "sni": h.sni,
                "ja3": h.ja3,
                "ja3_full": h.ja3_full,
                "ja4": h.ja4,
                "ja4_source": h.ja4_source,
                "hello_source": h.source,
                "hello_bytes": len(h.records),
                "syn": s.syn,
                "ch_segments": len(s.ch_segs),
                "ch_out_of_order": s.ch_order != sorted(s.ch_order),
                "ch_retransmitted": s.ch_retx is not None,
                "seq_wrap": (s.c_isn + len(h.records) + 1) > MASK32,
                "flow_start": round(EPOCH_US / 1e6 + s.start, 6),
            }
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
    return n


def write_capture(path: Path, specs: list[FlowSpec], pools: Pools, harvest: Harvest) -> dict[str, int]:
    """Generate and write all flows, interleaved in time, streaming to ``path``."""
    heap: list[tuple[float, int, bytes, Packets]] = []
    written = 0
    max_active = 0
    tie = 0
    with path.open("wb", buffering=1 << 22) as fh:
        fh.write(pcap_global_header())
        rec = _PCAP_REC.pack
        write = fh.write
        nxt = 0
        n_specs = len(specs)
        while heap or nxt < n_specs:
            if nxt < n_specs and (not heap or specs[nxt].start <= heap[0][0]):
                gen = flow_packets(specs[nxt], pools, harvest)
                nxt += 1
                first = next(gen, None)
                if first is not None:
                    heapq.heappush(heap, (first[0], tie, first[1], gen))
                    tie += 1
                    max_active = max(max_active, len(heap))
                continue
            t, _, frame, gen = heapq.heappop(heap)
            sec, usec = divmod(EPOCH_US + int(t * 1e6), 1_000_000)
            write(rec(sec, usec, len(frame), len(frame)))
            write(frame)
            written += 1
            item = next(gen, None)
            if item is not None:
                if item[0] < t:  # never go back in time (keeps the file sorted)
                    item = (t, item[1])
                heapq.heappush(heap, (item[0], tie, item[1], gen))
                tie += 1
    return {"packets": written, "max_concurrent_flows": max_active}


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--packets", type=int, default=1_000_000, help="packets (default 1,000,000)")
    ap.add_argument("--flows", type=int, default=None, help="flows (default packets / 50)")
    ap.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT, help="pcap to write")
    ap.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    ap.add_argument("--quic-share", type=float, default=QUIC_SHARE, help=f"share of QUIC flows (default {QUIC_SHARE})")
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="capture corpus to harvest")
    ap.add_argument("--tshark", default="tshark", help="tshark binary used for the harvest")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="harvest cache file")
    ap.add_argument("--no-cache", action="store_true", help="always harvest afresh")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    args = ap.parse_args(argv)

    def log(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr)

    flows = args.flows if args.flows is not None else max(1, args.packets // 50)
    if not 0.0 <= args.quic_share <= 1.0:
        raise SystemExit("--quic-share must be between 0 and 1")
    t0 = time.perf_counter()
    harvest_result = harvest(args.corpus, args.tshark, None if args.no_cache else args.cache, log=log)
    if not harvest_result.hellos:
        raise SystemExit("no ClientHello could be harvested from the corpus")
    t1 = time.perf_counter()
    if args.quic_share > 0 and not harvest_result.quic:
        log("warning: no QUIC connection could be harvested: the capture has no QUIC flows")
    specs, duration = plan_flows(args.packets, flows, args.seed, harvest_result, args.quic_share)
    pools = Pools(random.Random(f"pools-{args.seed}"))
    out: Path = args.output
    out.parent.mkdir(parents=True, exist_ok=True)
    truth_path = out.with_name(out.name + ".truth.jsonl")
    n_truth = write_truth(truth_path, specs, harvest_result)
    t2 = time.perf_counter()
    stats = write_capture(out, specs, pools, harvest_result)
    t3 = time.perf_counter()
    if stats["packets"] != args.packets:
        raise SystemExit(f"internal error: wrote {stats['packets']} packets, planned {args.packets}")
    kinds: dict[str, int] = {}
    for s in specs:
        kinds[s.kind] = kinds.get(s.kind, 0) + 1
    tls = [s for s in specs if s.kind == "tls"]
    quic = [s for s in specs if s.kind == "quic"]
    meta = {
        "capture": out.name,
        "seed": args.seed,
        "packets": stats["packets"],
        "flows": len(specs),
        "flows_by_kind": kinds,
        "truth_lines": n_truth,
        "tls_flows": len(tls),
        "quic_share": args.quic_share,
        "quic_flows": len(quic),
        "quic_packets": sum(s.overhead for s in quic),
        "quic_initial_datagrams": sum(len(harvest_result.quic[s.quic].datagrams) for s in quic),
        "quic_flows_ipv6": sum(s.v6 for s in quic),
        "quic_flows_by_port": {
            **{str(p): sum(s.sport == p for s in quic) for p in (443, 8443, 4433)},
            "other": sum(s.sport not in (443, 8443, 4433) for s in quic),
        },
        "distinct_quic_connections_used": len({s.quic for s in quic}),
        "tls_flows_ipv6": sum(s.v6 for s in tls),
        "tls_flows_without_syn": sum(not s.syn for s in tls),
        "tls_hellos_split": sum(len(s.ch_segs) > 1 for s in tls),
        "tls_hellos_out_of_order": sum(s.ch_order != sorted(s.ch_order) for s in tls),
        "tls_hellos_retransmitted": sum(s.ch_retx is not None for s in tls),
        "tls_flows_by_port": {
            **{str(p): sum(s.sport == p for s in tls) for p in (443, 8443, 2053, 8080, 5228, 4433)},
            "other": sum(s.sport not in (443, 8443, 2053, 8080, 5228, 4433) for s in tls),
        },
        "data_phase_packets": sum(s.n_data for s in specs),
        "nominal_duration_s": round(duration, 1),
        "max_concurrent_flows": stats["max_concurrent_flows"],
        "bytes": out.stat().st_size,
        "distinct_client_hellos_used": len({s.hello for s in tls}),
        "harvest": harvest_result.stats,
        "seconds": {
            "harvest": round(t1 - t0, 2),
            "plan": round(t2 - t1, 2),
            "write": round(t3 - t2, 2),
            "total": round(t3 - t0, 2),
        },
    }
    out.with_name(out.name + ".meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    log(
        f"wrote {out} ({meta['bytes'] / 1e6:.1f} MB): {stats['packets']:,} packets, "
        f"{len(specs):,} flows ({len(tls):,} TLS, {len(quic):,} QUIC), max {stats['max_concurrent_flows']} "
        f"concurrent; {truth_path.name}; {t3 - t0:.1f} s (write {t3 - t2:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
