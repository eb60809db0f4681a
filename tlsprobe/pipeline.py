"""The analysis pipeline: packets in, handshake records out.

    source --(ts, linktype, frame)--> Decoder --Segment--> FlowTable + TcpDirection
      --contiguous bytes--> HandshakeTracker (RecordStream, hello parsers)
      --> HandshakeRecord (fingerprints computed from it)

:class:`Analyzer` is push-based (``packet()``, then ``finish()``) so offline files and
live capture drive the same code; finished records queue up in ``ready``.
"""

from __future__ import annotations

import struct
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from tlsprobe.anomalies import AnomalyLog
from tlsprobe.capture.files import CaptureFile, Packet
from tlsprobe.decode.packet import PROTO_TCP, Decoder, Segment
from tlsprobe.flow.table import Flow, FlowTable, reverse_key
from tlsprobe.handshake import HandshakeTracker
from tlsprobe.limits import DEFAULT_LIMITS, Limits
from tlsprobe.record import HandshakeRecord, ip_text

TH_FIN, TH_SYN, TH_RST, TH_ACK = 0x01, 0x02, 0x04, 0x10
_PORTS = struct.Struct("!HH")
# Ethernet type, IPv4 version/IHL, IPv4 flags/fragment offset, IPv4 protocol
_FAST_HEADER = struct.Struct("!12xHB5xHxB")


@dataclass(slots=True)
class Stats:
    """Run counters for the summary."""

    packets: int = 0
    tcp_packets: int = 0
    udp_packets: int = 0
    other_packets: int = 0
    skipped_fast: int = 0
    flows: int = 0
    handshakes: int = 0
    non_standard_port: int = 0
    evicted: int = 0
    files: int = 0
    started: float = field(default_factory=time.monotonic)

    def counters(self) -> dict[str, int]:
        """The integer counters (for merging the stats of several workers)."""
        return {
            "packets": self.packets, "tcp_packets": self.tcp_packets, "udp_packets": self.udp_packets,
            "other_packets": self.other_packets, "skipped_fast": self.skipped_fast, "flows": self.flows,
            "handshakes": self.handshakes, "non_standard_port": self.non_standard_port, "evicted": self.evicted,
            "files": self.files,
        }

    def as_dict(self, anomalies: AnomalyLog) -> dict[str, object]:
        return {
            "files": self.files,
            "packets": self.packets,
            "tcp_packets": self.tcp_packets,
            "udp_packets": self.udp_packets,
            "other_packets": self.other_packets,
            "flows": self.flows,
            "handshakes": self.handshakes,
            "non_standard_port": self.non_standard_port,
            "anomalies": dict(sorted(anomalies.counts.items())),
            "seconds": round(time.monotonic() - self.started, 3),
        }


class Analyzer:
    """Owns the flow table; turns packets into handshake records."""

    def __init__(self, limits: Limits = DEFAULT_LIMITS, partition: tuple[int, int] = (0, 1)) -> None:
        """``partition`` (i, n): analyse only the flows whose port hash is i modulo n, so
        n analysers over the same input share the work (see :mod:`tlsprobe.parallel`).
        Partition 0 alone counts packet-level facts (packets, capture and decode anomalies)."""
        self.limits = limits
        self.partition = partition
        self.log = AnomalyLog()
        # packet-level anomalies: counted once, by partition 0
        self.packet_log = self.log if partition[0] == 0 else AnomalyLog()
        self.decoder = Decoder(self.packet_log, limits)
        self.table = FlowTable(limits)
        self.stats = Stats()
        self.ready: deque[HandshakeRecord] = deque()
        self.capture_name: str | None = None
        self._next_sweep = 0.0

    # -- packets -------------------------------------------------------------

    def packets(self, source: Iterable[Packet]) -> Iterator[HandshakeRecord]:
        """Run every packet of ``source`` through; yield records as they complete."""
        stats = self.stats
        by_key = self.table.by_key
        ready = self.ready
        decode = self.decoder.decode
        fast_unpack = _FAST_HEADER.unpack_from
        payload_end = l4 = 0
        part, nparts = self.partition
        primary = part == 0
        for ts, linktype, buf in source:
            stats.packets += 1
            # Fast path: Ethernet + IPv4/IPv6 + TCP, unfragmented, no extension headers,
            # no SYN, on a flow we track: skipped before any decoding when the flow is
            # finished, or when the packet carries no payload (ACKs, FINs).
            if linktype == 1 and len(buf) >= 54:
                etype, vihl, frag, proto = fast_unpack(buf)
                flow = None
                if etype == 0x0800:
                    if proto == 6 and not frag & 0x3FFF:
                        l4 = (vihl & 0x0F) * 4 + 14
                        if len(buf) >= l4 + 20:
                            if nparts > 1 and (buf[l4 + 1] ^ buf[l4 + 3]) % nparts != part:
                                continue  # another partition's flow
                            flow = by_key.get(buf[26:34] + buf[l4 : l4 + 4])
                            payload_end = 14 + ((buf[16] << 8) | buf[17])
                elif etype == 0x86DD and buf[20] == 6 and len(buf) >= 74:
                    l4 = 54
                    if nparts > 1 and (buf[55] ^ buf[57]) % nparts != part:
                        continue
                    flow = by_key.get(buf[22:54] + buf[54:58])
                    payload_end = 54 + ((buf[18] << 8) | buf[19])
                if (
                    flow is not None
                    and not buf[l4 + 13] & 0x02  # no SYN
                    and (flow.done or (payload_end <= l4 + (buf[l4 + 12] >> 4) * 4 and not buf[l4 + 13] & 0x05))
                ):
                    flow.last_ts = ts
                    stats.skipped_fast += 1
                    continue
            seg = decode(linktype, buf, ts)
            if seg is None:
                if primary:
                    stats.other_packets += 1
                continue
            if nparts > 1 and ((seg.sport ^ seg.dport) & 0xFF) % nparts != part:
                continue
            if seg.proto == PROTO_TCP:
                stats.tcp_packets += 1
                self._tcp(seg, ts)
            else:
                stats.udp_packets += 1
            if ts >= self._next_sweep:
                self._sweep(ts)
            while ready:
                yield ready.popleft()

    def finish(self) -> Iterator[HandshakeRecord]:
        """End of input: emit every handshake still open, in time order."""
        pending = []
        for flow in self.table.flows():
            rec = self._close(flow)
            if rec is not None:
                pending.append(rec)
        self.table = FlowTable(self.limits)
        self.decoder.fragments.flush()
        pending.sort(key=lambda r: r.ts)
        self.ready.extend(pending)
        while self.ready:
            yield self.ready.popleft()

    # -- TCP -------------------------------------------------------------------

    def _tcp(self, seg: Segment, ts: float) -> None:
        key = seg.src + seg.dst + _PORTS.pack(seg.sport, seg.dport)
        table = self.table
        flow = table.by_key.get(key)
        flags = seg.flags
        if flow is not None and flow.done and flags & (TH_SYN | TH_ACK) == TH_SYN:
            table.remove(flow)  # the 4-tuple is reused by a new connection
            flow = None
        if flow is None:
            if not seg.payload and not flags & TH_SYN:
                return  # a bare ACK/FIN/RST of a flow we do not track starts nothing
            flow = self._new_flow(key, seg, ts)
        flow.last_ts = ts
        flow.packets += 1
        if flow.done:
            return  # finished flows stay in the table (until idle) so stragglers are skipped
        d = 0 if key == flow.key else 1
        direction = flow.dirs[d]
        if flags & TH_SYN:
            direction.syn(seg.seq)
            if not flags & TH_ACK and flow.client is None:
                flow.set_client(d)
        if seg.payload:
            self._data(flow, flow.handshake(self.limits), d, seg, ts)
        if flags & TH_FIN:
            direction.fin = True
        hs = flow.hs
        if flags & TH_RST or (flags & TH_FIN and flow.dirs[1 - d].fin) or (hs is not None and hs.finished):
            self._complete(flow)

    def _new_flow(self, key: bytes, seg: Segment, ts: float) -> Flow:
        table = self.table
        if len(table) >= self.limits.max_flows:
            self._evict(table.oldest(max(1, self.limits.max_flows // 10)), evicted=True)
        flow = Flow(key, reverse_key(key, len(seg.src)), seg.ip_version, ts)
        flow.tunnelled = seg.tunnelled
        table.add(flow)
        self.stats.flows += 1
        if seg.flags & (TH_SYN | TH_ACK) == TH_SYN | TH_ACK:  # SYN-ACK first: the other side is the client
            flow.client = 1
        return flow

    def _data(self, flow: Flow, hs: HandshakeTracker, d: int, seg: Segment, ts: float) -> None:
        direction = flow.dirs[d]
        seq = (seg.seq + 1) & 0xFFFFFFFF if seg.flags & TH_SYN else seg.seq  # SYN data (TFO)
        chunks, before = direction.segment(seq, seg.payload, ts, self.limits)
        if direction.overflow:
            direction.overflow = False
            hs.note("tcp.reassembly.cap_exceeded")
        parser = hs.parsers[d]
        track = hs.client_hello is None
        segs = hs.segs[d]
        if before is not None and track and parser.prepend(before):
            # the flow's real first bytes arrived late: parse again from them
            segs.insert(0, (direction.isn_offset, direction.isn_offset + len(before), ts))
            chunks.insert(0, (direction.isn_offset, b"", ts))
        for off, data, cts in chunks:
            if track and data and len(segs) < self.limits.max_tracked_segments:
                segs.append((off, off + len(data), cts))
            msg = hs.feed(d, data)
            if msg is not None:
                self._hello_position(flow, hs, d, msg.start, msg.end)
            if parser.done:
                break

    def _hello_position(self, flow: Flow, hs: HandshakeTracker, d: int, start: int, end: int) -> None:
        """Remember when the ClientHello began and how many segments carried it."""
        covering = [s for s in hs.segs[d] if s[0] < end and s[1] > start]
        hs.segs = ([], [])
        if covering:
            flow.ch_ts = covering[0][2]
            flow.ch_segments = len(covering)

    # -- completion ----------------------------------------------------------

    def _complete(self, flow: Flow) -> None:
        rec = self._record(flow)
        flow.release()
        if rec is not None:
            self.ready.append(rec)

    def _close(self, flow: Flow) -> HandshakeRecord | None:
        if flow.done:
            return None
        rec = self._record(flow)
        flow.release()
        return rec

    def _record(self, flow: Flow) -> HandshakeRecord | None:
        hs = flow.hs
        if hs is None:
            return None
        if hs.midstream:
            self.log.add("tcp.midstream")
        for code in hs.anomalies:
            self.log.add(code)
        ch = hs.client_hello
        if ch is None or hs.client is None or hs.ch_msg is None:
            return None
        c = hs.client
        cdir = flow.dirs[c]
        anomalies = list(hs.anomalies)
        if not hs.server_done and hs.parsers[1 - c].pending_handshake():
            anomalies.append("tls.handshake.truncated")
            self.log.add("tls.handshake.truncated")
        if cdir.has_gap or flow.dirs[1 - c].has_gap:
            anomalies.append("tcp.reassembly.gap")
            self.log.add("tcp.reassembly.gap")
        cip, cport = flow.endpoint(c)
        sip, sport = flow.endpoint(1 - c)
        msg = hs.ch_msg
        rec = HandshakeRecord(
            ts=flow.ch_ts if flow.ch_ts is not None else flow.first_ts,
            src_ip=ip_text(cip),
            src_port=cport,
            dst_ip=ip_text(sip),
            dst_port=sport,
            client_hello=ch,
            ip_version=flow.ip_version,
            server_hello=hs.server_hello,
            hello_retry_request=hs.hrr,
            retry_client_hello=hs.retry_hello,
            certificates=hs.certificates,
            client_hello_segments=flow.ch_segments,
            client_hello_bytes=msg.end - msg.start,
            client_hello_records=msg.records,
            preamble_bytes=hs.preamble[c],
            server_alert=hs.server_alert,
            tcp_syn_seen=cdir.syn_seen,
            tunnelled=flow.tunnelled,
            capture=self.capture_name,
            anomalies=anomalies,
        )
        self.stats.handshakes += 1
        if rec.non_standard_port:
            self.stats.non_standard_port += 1
        return rec

    # -- eviction ------------------------------------------------------------

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + self.limits.sweep_interval
        self._evict(self.table.idle(now), evicted=False)

    def _evict(self, flows: list[Flow], evicted: bool) -> None:
        for flow in flows:
            if evicted and not flow.done:
                self.log.add("flow.evicted")
                if flow.hs is not None:
                    flow.hs.note("flow.evicted")
            rec = self._close(flow)
            self.table.remove(flow)
            self.stats.evicted += 1
            if rec is not None:
                self.ready.append(rec)


def iter_records(paths: Iterable[str], limits: Limits = DEFAULT_LIMITS,
                 analyzer: Analyzer | None = None) -> Iterator[HandshakeRecord]:
    """Every handshake in the captures at ``paths`` (``-`` is stdin), in one flow table.

    Raises :class:`~tlsprobe.errors.CaptureError` for a file that cannot be read at all.
    """
    an = analyzer or Analyzer(limits)
    for path in paths:
        an.capture_name = path
        yield from an.packets(CaptureFile(path, an.packet_log, limits))
        an.stats.files += 1
    yield from an.finish()
