"""dpkt as an oracle for the capture readers and the packet decoder, on every capture of
../shared/corpus: same packet count, timestamps, link types and frame bytes; and for a
sample of packets the same IP/TCP/UDP header fields and payload.

The one capture where the readers differ is documented in DPKT_DIFFERENCES (and in
docs/robustness.md); its check proves the difference is exactly that one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.corpus import CORPUS
from tlsprobe.anomalies import AnomalyLog
from tlsprobe.capture.files import PCAPNG_MAGIC, CaptureFile
from tlsprobe.decode.packet import PROTO_TCP, Decoder

dpkt = pytest.importorskip("dpkt")

pytestmark = [
    pytest.mark.skipif(not CORPUS.is_dir(), reason=f"corpus not found at {CORPUS}"),
    pytest.mark.filterwarnings("ignore:IP.off is deprecated"),  # dpkt's own decoders read it
]

# capture -> why dpkt yields one packet more than tlsprobe (its last record header is
# damaged: tlsprobe drops it as capture.bad_record, dpkt returns the bytes that are left)
DPKT_DIFFERENCES = {
    "suricata-verify/bug-1450-04.pcap": "last record header damaged (ts_usec >= 10^6, caplen past the end)",
}
SAMPLE = 400  # packets decoded by both per capture (evenly spread)
# UDP tunnels tlsprobe decodes through (VXLAN, VXLAN-GPE, Geneve, GTP-U): its segment is
# the inner packet's, or nothing when that is not TCP/UDP
TUNNEL_PORTS = {4789, 4790, 6081, 2152}


def _captures() -> list[Path]:
    if not CORPUS.is_dir():
        return []
    return sorted(p for p in CORPUS.glob("*/*") if p.is_file() and p.suffix in (".pcap", ".pcapng", ".cap"))


def _dpkt_read(path: Path) -> tuple[list[int], list[tuple[float, bytes]]]:
    with path.open("rb") as f:
        magic = f.read(4)
        f.seek(0)
        reader = dpkt.pcapng.Reader(f) if magic == PCAPNG_MAGIC else dpkt.pcap.Reader(f)
        return [reader.datalink()], [(float(ts), bytes(buf)) for ts, buf in reader]


@pytest.mark.parametrize("path", _captures(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_reader_matches_dpkt(path: Path) -> None:
    name = f"{path.parent.name}/{path.name}"
    log = AnomalyLog()
    ours = list(CaptureFile(str(path), log))
    linktypes, theirs = _dpkt_read(path)
    if name in DPKT_DIFFERENCES:
        assert len(theirs) == len(ours) + 1 and log.counts["capture.bad_record"] == 1
        last_ts, last = theirs[-1]
        assert len(last) < 65535 and not any(abs(last_ts - t) < 1e-6 for t, _, _ in ours)
        theirs = theirs[:-1]
    assert len(ours) == len(theirs)
    assert {lt for _, lt, _ in ours} <= set(linktypes)
    for i, ((ts, _, frame), (dts, dframe)) in enumerate(zip(ours, theirs, strict=True)):
        assert frame == dframe, f"frame {i + 1} bytes differ"
        assert abs(ts - dts) < 1e-6, f"frame {i + 1} time {ts!r} != {dts!r}"


def _dpkt_ip(linktype: int, buf: bytes) -> Any:
    """The outer IP packet as dpkt decodes it, or None for link types not compared."""
    if linktype == 1:
        pkt: Any = dpkt.ethernet.Ethernet(buf)
    elif linktype in (0, 108):
        pkt = dpkt.loopback.Loopback(buf)
    elif linktype in (101, 12, 14, 228, 229):
        pkt = dpkt.ip6.IP6(buf) if buf[0] >> 4 == 6 else dpkt.ip.IP(buf)
    elif linktype == 113:
        pkt = dpkt.sll.SLL(buf)
    elif linktype == 276:
        pkt = dpkt.sll2.SLL2(buf)
    elif linktype == 9:
        pkt = dpkt.ppp.PPP(buf)
    else:
        return None
    for _ in range(4):  # PPPoE -> PPP -> IP
        if isinstance(pkt, (dpkt.ip.IP, dpkt.ip6.IP6)):
            return pkt
        pkt = getattr(pkt, "data", None)
        if not isinstance(pkt, dpkt.Packet):
            return None
    return None


@pytest.mark.parametrize("path", _captures(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_decoder_matches_dpkt(path: Path) -> None:
    packets = list(CaptureFile(str(path), AnomalyLog()))
    step = max(1, len(packets) // SAMPLE)
    decoder = Decoder(AnomalyLog())
    compared = 0
    for ts, linktype, buf in packets[::step]:
        try:
            ip = _dpkt_ip(linktype, buf)
        except (dpkt.UnpackError, dpkt.NeedData):
            continue  # cut by the snap length, or not a packet dpkt decodes
        if ip is None:
            continue
        v4 = isinstance(ip, dpkt.ip.IP)
        if v4 and (ip._flags_offset & 0x3FFF):
            continue  # fragments: tlsprobe reassembles them, dpkt does not
        l4 = ip.data
        if not isinstance(l4, (dpkt.tcp.TCP, dpkt.udp.UDP)):
            continue  # ICMP, tunnels (tlsprobe goes to the inner packet), ...
        if isinstance(l4, dpkt.udp.UDP) and {l4.sport, l4.dport} & TUNNEL_PORTS:
            continue
        if v4 and ip.len == 0:
            # IPv4 total length 0 (TCP segmentation offload on the capturing host): dpkt and
            # Wireshark take the frame's length; tlsprobe drops the packet (decode.bad_ip).
            # browsers-x509.pcapng has 3, zeek/383379789-decrypt-crash.pcap some.
            log = AnomalyLog()
            assert Decoder(log).decode(linktype, buf, ts) is None and log.counts["decode.bad_ip"] == 1
            continue
        seg = decoder.decode(linktype, buf, ts)
        if seg is not None and seg.tunnelled:
            continue  # UDP tunnels (VXLAN, Geneve, GTP): tlsprobe decodes the inner packet
        assert seg is not None, f"tlsprobe decoded nothing where dpkt found {type(l4).__name__}"
        assert (seg.src, seg.dst) == (ip.src, ip.dst)
        assert seg.ip_version == (4 if v4 else 6)
        assert seg.ttl == (ip.ttl if v4 else ip.hlim)
        if v4:
            assert (seg.ip_id, seg.df) == (ip.id, bool(ip.off & 0x4000))
        assert (seg.sport, seg.dport) == (l4.sport, l4.dport)
        if isinstance(l4, dpkt.tcp.TCP):
            assert seg.proto == PROTO_TCP
            assert (seg.seq, seg.ack, seg.flags & 0xFF, seg.window) == (l4.seq, l4.ack, l4.flags & 0xFF, l4.win)
            assert seg.options == bytes(l4.opts)
            assert seg.payload == bytes(l4.data)
        else:
            assert seg.proto != PROTO_TCP
            assert seg.payload == bytes(l4.data)[: max(l4.ulen - 8, 0)]
        compared += 1
    has_ip = any(_safe_ip(lt, b) is not None for _, lt, b in packets[:50])
    assert compared > 0 or not has_ip, "no packet compared although dpkt decodes IP here"


def _safe_ip(linktype: int, buf: bytes) -> Any:
    """The packet's IP if dpkt decodes it to TCP/UDP that the decoder test compares."""
    try:
        ip = _dpkt_ip(linktype, buf)
    except (dpkt.UnpackError, dpkt.NeedData):
        return None
    if ip is None or (isinstance(ip, dpkt.ip.IP) and ip.len == 0):
        return None
    l4 = ip.data
    if isinstance(l4, dpkt.udp.UDP):
        return None if {l4.sport, l4.dport} & TUNNEL_PORTS else ip
    return ip if isinstance(l4, dpkt.tcp.TCP) else None
