"""The analysis pipeline: packets in, handshake records out.

    source --(ts, linktype, frame)--> Decoder --Segment--> FlowTable + TcpDirection
      --contiguous bytes--> HandshakeTracker (RecordStream, hello parsers)
      --> HandshakeRecord (fingerprints computed from it)

:class:`Analyzer` is push-based (``packet()``, then ``finish()``) so offline files and
live capture drive the same code; finished records queue up in ``ready``.
"""

from __future__ import annotations

import heapq
import struct
import time
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TypeVar

from tlsprobe.anomalies import AnomalyLog
from tlsprobe.capture.files import CaptureFile, Packet
from tlsprobe.decode.packet import PROTO_ICMP, PROTO_TCP, PROTO_UDP, Decoder, Segment
from tlsprobe.detect.context import Context
from tlsprobe.detect.engine import RuleSet
from tlsprobe.fingerprint import ja4plus
from tlsprobe.flow.evidence import FlowEvidence, PacketFacts, option_kinds
from tlsprobe.flow.opening import TcpOpening
from tlsprobe.flow.quic import QuicLatency, QuicTracker
from tlsprobe.flow.table import Flow, FlowTable, key_endpoint, reverse_key
from tlsprobe.flow.tcp import seq_diff
from tlsprobe.handshake import HandshakeTracker
from tlsprobe.limits import CONTEXT_MAX_HELD, CONTEXT_SETTLE_S, DEFAULT_LIMITS, Limits
from tlsprobe.record import HandshakeRecord, HttpRecord, Record, alert_dict, ip_text
from tlsprobe.wire import quic
from tlsprobe.wire.http import parse_response
from tlsprobe.wire.x509 import verify_chain_cached

TH_FIN, TH_SYN, TH_RST, TH_ACK = 0x01, 0x02, 0x04, 0x10
_PORTS = struct.Struct("!HH")
R = TypeVar("R", HandshakeRecord, HttpRecord)


_BUILTIN: RuleSet | None = None


def builtin_rules() -> RuleSet:
    """The built-in rule packs, loaded once per process."""
    global _BUILTIN
    if _BUILTIN is None:
        _BUILTIN = RuleSet.load()
    return _BUILTIN


def _evidence(ev: FlowEvidence | None, hs: HandshakeTracker, sni: str | None) -> dict[str, object] | None:
    """The record's ``evidence``: packet facts plus what the server's bytes said."""
    if ev is None:
        return None
    out = ev.to_dict()
    out["alert"] = alert_dict(hs.server_alert) if hs.server_alert else None
    out["http"] = parse_response(bytes(hs.plaintext)) if hs.plaintext else None
    out["plaintext_head_hex"] = bytes(hs.plaintext[:32]).hex() if hs.plaintext else None
    out["certificate"] = (
        verify_chain_cached(hs.cert_ders, sni, datetime.fromtimestamp(ev.ch_ts or 0.0, tz=timezone.utc))
        if hs.cert_ders else None
    )
    return out


Opt = str | None


def _tcp_ja4plus(opening: TcpOpening | None) -> tuple[Opt, Opt, Opt, Opt]:
    """JA4T, JA4TS, JA4L-C and JA4L-S of a TCP flow from its opening packets (FoxIO License 1.1)."""
    if opening is None:
        return None, None, None, None
    syn, synack = opening.syn, opening.synack
    ja4t = ja4plus.ja4t(syn.window, syn.raw_options) if syn is not None else None
    if synack is None:
        return ja4t, None, None, None
    ja4ts = ja4plus.ja4t(synack.window, synack.raw_options)
    if syn is None or opening.ack_ts is None or synack.ts < syn.ts:
        return ja4t, ja4ts, None, None
    return (ja4t, ja4ts, ja4plus.ja4l(synack.ts, opening.ack_ts, syn.ttl),
            ja4plus.ja4l(syn.ts, synack.ts, synack.ttl))


def _quic_ja4l(lat: QuicLatency) -> tuple[Opt, Opt]:
    """JA4L-C and JA4L-S of a QUIC connection (FoxIO License 1.1): None until the client's
    Handshake packet came."""
    if (not lat.complete or lat.client is None or lat.server is None or lat.server_handshake is None
            or lat.client_handshake is None):
        return None, None
    return (ja4plus.ja4l(lat.server_handshake, lat.client_handshake, lat.client[1]),
            ja4plus.ja4l(lat.client[0], lat.server[0], lat.server[1]))


def _facts(seg: Segment, ts: float) -> PacketFacts:
    return PacketFacts(ts, seg.ttl, seg.ip_id, seg.df, seg.window, seg.flags, option_kinds(seg.options),
                       len(seg.payload), seg.seq, seg.ack, seg.payload[:16], flow_label=seg.flow_label)
def _server_hash(src: bytes, dst: bytes, sport: int, dport: int) -> int:
    """A hash of the server's address, the same in both directions: which worker owns a
    flow.  The server is the end with the lower port (ties: both addresses), so every
    flow to one server lands in one worker and the cross-flow context (per-server
    profiles) sees exactly what a single process sees."""
    if sport > dport:
        return dst[-1] ^ dst[-2]
    if sport < dport:
        return src[-1] ^ src[-2]
    return src[-1] ^ src[-2] ^ dst[-1] ^ dst[-2]


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
    intercepted: int = 0
    http_requests: int = 0
    files: int = 0
    started: float = field(default_factory=time.monotonic)

    def counters(self) -> dict[str, int]:
        """The integer counters (for merging the stats of several workers)."""
        return {
            "packets": self.packets, "tcp_packets": self.tcp_packets, "udp_packets": self.udp_packets,
            "other_packets": self.other_packets, "skipped_fast": self.skipped_fast, "flows": self.flows,
            "handshakes": self.handshakes, "non_standard_port": self.non_standard_port, "evicted": self.evicted,
            "intercepted": self.intercepted, "http_requests": self.http_requests,
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
            "intercepted": self.intercepted,
            "http_requests": self.http_requests,
            "anomalies": dict(sorted(anomalies.counts.items())),
            "seconds": round(time.monotonic() - self.started, 3),
        }


class Analyzer:
    """Owns the flow table; turns packets into handshake records."""

    def __init__(self, limits: Limits = DEFAULT_LIMITS, partition: tuple[int, int] = (0, 1),
                 rules: RuleSet | None = None, http: bool = False, context: Context | None = None,
                 settle: float = CONTEXT_SETTLE_S) -> None:
        """``partition`` (i, n): analyse only the flows whose server hash is i modulo n, so
        n analysers over the same input share the work (see :mod:`tlsprobe.parallel`).
        Partition 0 alone counts packet-level facts (packets, capture and decode anomalies).
        ``rules``: the detectors that fill each record's ``interception`` (default: the
        built-in packs; ``RuleSet()`` for none).  Plain HTTP requests are watched for
        block pages like a hello; an intercepted one is always a record (``kind: "http"``),
        and ``http`` makes every request one.  ``context``: the cross-flow stage records
        are judged against (default: a new :class:`~tlsprobe.detect.context.Context`);
        ``settle``: how long (capture seconds) a record the context may still decide is
        held for the flows around it."""
        self.limits = limits
        self.http = http
        self.rules = rules if rules is not None else builtin_rules()
        self.context = context if context is not None else Context()
        self.settle = settle
        self.partition = partition
        self.log = AnomalyLog()
        # packet-level anomalies: counted once, by partition 0
        self.packet_log = self.log if partition[0] == 0 else AnomalyLog()
        self.decoder = Decoder(self.packet_log, limits)
        self.table = FlowTable(limits)
        self.stats = Stats()
        self.ready: deque[Record] = deque()
        # records waiting for more context (Context.holds), with the time they are final
        self._held: deque[tuple[float, Record]] = deque()
        self.capture_name: str | None = None
        # QUIC connections by both directions' keys, oldest first (evicted from the front)
        self.quic: OrderedDict[bytes, tuple[QuicTracker, bytes, int]] = OrderedDict()
        self.quic_count = 0
        self.quic_buffered = 0  # CRYPTO bytes held by all QUIC connections
        # flows with handshake state, and flows holding buffered bytes: oldest first
        self._active: OrderedDict[Flow, None] = OrderedDict()
        self._buffering: OrderedDict[Flow, None] = OrderedDict()
        self.buffered = 0  # bytes held by all TCP flows (Flow.buffered_bytes)
        self._next_sweep = 0.0
        self._next_timer = 0.0
        self._deadlines: list[tuple[float, int, Flow]] = []  # heap of evidence windows closing
        self._now = 0.0

    # -- packets -------------------------------------------------------------

    def packets(self, source: Iterable[Packet]) -> Iterator[Record]:
        """Run every packet of ``source`` through; yield records as they complete."""
        stats = self.stats
        by_key = self.table.by_key
        ready = self.ready
        decode = self.decoder.decode
        fast_unpack = _FAST_HEADER.unpack_from
        payload_end = l4 = 0
        part, nparts = self.partition
        primary = part == 0
        held = self._held
        for ts, linktype, buf in source:
            stats.packets += 1
            if held and ts >= held[0][0]:  # by the packet clock: the same in every -j worker
                yield from self._settle(ts)
            if ts >= self._next_timer:
                self._timers(ts)
                if ready:
                    yield from self._drain()
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
                            if nparts > 1 and _server_hash(buf[26:30], buf[30:34], (buf[l4] << 8) | buf[l4 + 1],
                                                           (buf[l4 + 2] << 8) | buf[l4 + 3]) % nparts != part:
                                continue  # another partition's flow
                            flow = by_key.get(buf[26:34] + buf[l4 : l4 + 4])
                            payload_end = 14 + ((buf[16] << 8) | buf[17])
                elif etype == 0x86DD and buf[20] == 6 and len(buf) >= 74:
                    l4 = 54
                    if nparts > 1 and _server_hash(buf[22:38], buf[38:54], (buf[54] << 8) | buf[55],
                                                   (buf[56] << 8) | buf[57]) % nparts != part:
                        continue
                    flow = by_key.get(buf[22:54] + buf[54:58])
                    payload_end = 54 + ((buf[18] << 8) | buf[19])
                if (
                    flow is not None
                    and not buf[l4 + 13] & 0x02  # no SYN
                    and (
                        flow.done
                        or (not flow.watch and payload_end <= l4 + (buf[l4 + 12] >> 4) * 4 and not buf[l4 + 13] & 0x05)
                    )
                ):
                    flow.last_ts = ts
                    stats.skipped_fast += 1
                    continue
            seg = decode(linktype, buf, ts)
            if seg is None:
                if primary:
                    stats.other_packets += 1
                continue
            if nparts > 1 and _server_hash(seg.src, seg.dst, seg.sport, seg.dport) % nparts != part:
                continue
            if seg.proto == PROTO_TCP:
                stats.tcp_packets += 1
                self._tcp(seg, ts)
            elif seg.proto == PROTO_ICMP:
                self._icmp(seg, ts)
            else:
                stats.udp_packets += 1
                if seg.payload and seg.payload[0] & 0x80:  # long header: maybe a QUIC Initial
                    self._udp(seg, ts)
            if ready:
                yield from self._drain()

    def tick(self, now: float) -> Iterator[Record]:
        """The clock reached ``now`` with no packet: close the evidence windows and idle
        flows that ended by then (a live capture calls this while the network is quiet,
        so a verdict does not wait for the next packet)."""
        now = max(now, self._now)
        yield from self._settle(now)
        if now >= self._next_timer:
            self._timers(now)
        yield from self._drain()

    def _drain(self) -> Iterator[Record]:
        """Move finished records on: final ones out, unsettled ones (the context may still
        learn what decides them: :meth:`Context.holds`) held for their settle window."""
        ready, held, ctx = self.ready, self._held, self.context
        while ready:
            rec = ready.popleft()
            if rec.cached is not None and ctx.holds(rec.cached):
                if len(held) >= CONTEXT_MAX_HELD:
                    out = self._final(held.popleft()[1], rejudge=True)
                    if out is not None:
                        yield out
                held.append((rec.ts + self.settle, rec))
                continue
            out = self._final(rec, rejudge=False)
            if out is not None:
                yield out

    def _settle(self, now: float | None) -> Iterator[Record]:
        """Held records whose settle window ended by ``now`` (every one when None), judged
        with what the run has shown since."""
        held = self._held
        while held and (now is None or held[0][0] <= now):
            out = self._final(held.popleft()[1], rejudge=True)
            if out is not None:
                yield out

    def finish(self) -> Iterator[Record]:
        """End of input: emit every handshake still open, in time order.

        The open flows and QUIC connections are sorted by the time their record will
        carry, then closed one at a time as their records are taken: tens of thousands
        of open handshakes never become records all at once."""
        pending: list[Record] = sorted(self._drain(), key=lambda r: r.ts)
        opened: list[tuple[float, int, Flow | tuple[QuicTracker, bytes, int]]] = [
            (self._close_ts(f), id(f), f) for f in self.table.flows() if not f.done
        ]
        seen: set[int] = set()
        for entry in self.quic.values():
            tracker = entry[0]
            if not tracker.done and id(tracker) not in seen:
                seen.add(id(tracker))
                opened.append((tracker.ch_ts if tracker.ch_ts is not None else tracker.first_ts, id(tracker), entry))
        opened.sort(key=lambda e: (e[0], e[1]))
        i = 0
        for ts, _, obj in opened:
            while i < len(pending) and pending[i].ts <= ts:
                yield pending[i]
                i += 1
            if isinstance(obj, Flow):
                rec = self._close(obj)
                if rec is not None:
                    self.ready.append(rec)
            else:
                self._quic_done(*obj)
            yield from self._drain()
        yield from pending[i:]
        yield from self._settle(None)  # the held records, judged with everything the run showed
        self.quic.clear()
        self.quic_count = 0
        self.quic_buffered = 0
        self._deadlines = []
        self.table = FlowTable(self.limits)
        self.decoder.fragments.flush()

    @staticmethod
    def _close_ts(flow: Flow) -> float:
        """The ``ts`` the record of ``flow`` will carry when it is closed."""
        hs = flow.hs
        if hs is not None and hs.client_hello is None and hs.http_request is not None:
            ev = flow.ev
            return ev.ch_ts if ev is not None and ev.ch_ts is not None else flow.first_ts
        return flow.ch_ts if flow.ch_ts is not None else flow.first_ts

    # -- QUIC ------------------------------------------------------------------

    def _udp(self, seg: Segment, ts: float) -> None:
        """A UDP datagram with a long header: QUIC Initials on any port, found by content."""
        key = seg.src + seg.dst + _PORTS.pack(seg.sport, seg.dport)
        entry = self.quic.get(key)
        if entry is None:
            data = seg.payload
            if not quic.looks_like_quic_long(data) or quic.initial_salt(int.from_bytes(data[1:5], "big")) is None:
                return  # not QUIC, or a version whose Initials cannot be decrypted
            if self.quic_count >= self.limits.max_quic_connections:
                self._quic_evict_oldest()
            tracker = QuicTracker(self.limits, ts)
            rkey = reverse_key(key, len(seg.src))
            self.quic[key] = (tracker, key, seg.ip_version)
            self.quic[rkey] = (tracker, key, seg.ip_version)
            self.quic_count += 1
            entry = self.quic[key]
            self.stats.flows += 1
        tracker, first_key, ipv = entry
        if tracker.done:
            return
        tracker.datagram(0 if key == first_key else 1, seg.payload, ts, seg.ttl)
        if tracker.done:
            self._quic_done(tracker, first_key, ipv)
        n = tracker.buffered_bytes()
        if n != tracker.buffered:
            self.quic_buffered += n - tracker.buffered
            tracker.buffered = n
            while self.quic_buffered > self.limits.max_quic_buffered_bytes and self.quic:
                self._quic_evict_oldest()

    def _icmp(self, seg: Segment, ts: float) -> None:
        """An ICMP error about a QUIC connection (the quoted datagram's 4-tuple)."""
        if seg.window != PROTO_UDP or not self.quic:
            return
        entry = self.quic.get(seg.src + seg.dst + _PORTS.pack(seg.sport, seg.dport))
        if entry is None or entry[0].done or entry[0].icmp is not None:
            return
        entry[0].icmp = {"type": seg.flags >> 8, "code": seg.flags & 0xFF, "from": ip_text(seg.icmp_from),
                         "delay_ms": round((ts - (entry[0].ch_ts or entry[0].first_ts)) * 1000, 3)}

    def _quic_evict_oldest(self) -> None:
        """Drop the oldest QUIC connection (table or CRYPTO budget full); one still waiting
        for its hellos reports what it has (quic.evicted)."""
        _, (tracker, first_key, ipv) = self.quic.popitem(last=False)
        self.quic.pop(reverse_key(first_key, 4 if ipv == 4 else 16), None)
        self.quic_count -= 1
        if not tracker.done:
            tracker.note("quic.evicted")
            self._quic_done(tracker, first_key, ipv)

    def _quic_done(self, tracker: QuicTracker, first_key: bytes, ipv: int) -> None:
        tracker.done = True
        self.quic_buffered -= tracker.buffered
        tracker.buffered = 0
        for code in tracker.anomalies:
            self.log.add(code)
        ch = tracker.client_hello
        if ch is None or tracker.client is None:
            tracker.release()
            return
        cip, cport = key_endpoint(first_key, ipv, tracker.client)
        sip, sport = key_endpoint(first_key, ipv, 1 - tracker.client)
        rec = HandshakeRecord(
            ts=tracker.ch_ts if tracker.ch_ts is not None else tracker.first_ts,
            src_ip=ip_text(cip), src_port=cport, dst_ip=ip_text(sip), dst_port=sport,
            client_hello=ch, transport="quic", ip_version=ipv, server_hello=tracker.server_hello,
            client_hello_segments=max(1, tracker.initials[tracker.client]), client_hello_bytes=tracker.ch_bytes,
            client_hello_records=0,
            outcome=tracker.outcome(tracker.last_ts, self.limits.evidence_window),
            evidence=tracker.evidence(),
            quic=tracker.quic_fields(), capture=self.capture_name, anomalies=list(tracker.anomalies),
        )
        rec.ja4l_c, rec.ja4l_s = _quic_ja4l(tracker.latency)
        tracker.release()
        self.stats.handshakes += 1
        if rec.non_standard_port:
            self.stats.non_standard_port += 1
        self.ready.append(self._detect(rec))

    def _quic_flush(self, idle_before: float | None, linger_before: float | None = None) -> None:
        """Finish QUIC connections idle since ``idle_before`` (all of them when None); emit
        those whose JA4L wait saw nothing since ``linger_before`` (the marker stays)."""
        seen: set[int] = set()
        for tracker, first_key, ipv in list(self.quic.values()):
            if id(tracker) in seen:
                continue
            seen.add(id(tracker))
            if tracker.linger and not tracker.done and linger_before is not None and tracker.last_ts < linger_before:
                self._quic_done(tracker, first_key, ipv)
            if idle_before is not None and tracker.last_ts >= idle_before:
                continue
            if not tracker.done:
                self._quic_done(tracker, first_key, ipv)
            if self.quic.pop(first_key, None) is not None:
                self.quic_count -= 1
            self.quic.pop(reverse_key(first_key, 4 if ipv == 4 else 16), None)

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
        if flow.done:
            return  # finished flows stay in the table (until idle) so stragglers are skipped
        d = 0 if key == flow.key else 1
        direction = flow.dirs[d]
        hs = flow.hs
        if flags & TH_SYN:
            direction.syn(seg.seq)
            facts = _facts(seg, ts)
            facts.raw_options = seg.options
            if not flags & TH_ACK:
                if flow.client is None:
                    flow.set_client(d)
                flow.evidence().syn = facts
                if flow.opening is None:
                    flow.opening = TcpOpening(syn=facts)
            elif flow.client is None or flow.client != d:
                flow.evidence().synack = facts
                flow.watch = True  # until the client's next packet: the handshake RTT
                if flow.opening is None:
                    flow.opening = TcpOpening(synack=facts)
                elif flow.opening.synack is None:
                    flow.opening.synack = facts
        elif flow.watch:
            opening = flow.opening
            if opening is not None and opening.ack_ts is None and opening.synack is not None and flags & TH_ACK:
                opening.ack_ts = ts  # JA4L's "C": the first ACK after the SYN-ACK, either side
            if flow.client == d and flow.ev is not None and flow.ev.first_client_ts is None:
                flow.ev.first_client_ts = ts
                flow.watch = hs is not None and hs.triggered
        if flow.ev is not None and flow.ev.ch_ts is not None:
            self._after_hello(flow, flow.ev, d, seg, ts)
        if seg.payload and not flags & TH_RST:  # an RST's payload is diagnostic, not stream data
            if flow.hs is None:
                if len(self._active) >= self.limits.max_handshake_flows:
                    self._cut(next(iter(self._active)), "flow.handshakes.cap_exceeded")
                self._active[flow] = None
            hs = flow.handshake(self.limits, True)
            had_hello = hs.triggered
            self._data(flow, hs, d, seg, ts)
            if not had_hello and hs.triggered:
                self._hello_seen(flow, hs, seg, ts)
            if flow.ev is not None and hs.server_event is not None and flow.ev.outcome is None:
                flow.ev.set_outcome(hs.server_event, ts)
            self._account(flow)
            if flow.done:
                return  # cut to keep the buffer budget
        if flags & TH_FIN:
            direction.fin = True
        hs = flow.hs
        if hs is None or not hs.triggered:
            if flags & TH_RST or (flags & TH_FIN and flow.dirs[1 - d].fin) or (hs is not None and hs.finished):
                self._complete(flow)  # no handshake on this flow: nothing to wait for
            return
        ev = flow.evidence()  # exists once the hello is in
        if ev.outcome is None:
            if flags & TH_RST or (flags & TH_FIN and flow.dirs[1 - d].fin):
                ev.set_outcome("silence", ts)  # the client gave up without any reaction
                self._complete(flow)
            return
        # After a reset, alert or plaintext reply - or any answer when the capture was
        # taken at the server, where forged resets aimed at the server come after it -
        # keep watching a while for races and bursts.
        if ev.outcome != "server_hello" or (hs.finished and ev.vantage == "server"):
            if len(ev.server_packets) >= self.limits.max_evidence_packets or len(ev.client_rsts) >= 3:
                self._complete(flow)  # the evidence is full: more packets add nothing
            else:
                self._set_deadline(flow, ev.outcome_ts or ts, self._evidence_window(ev))
        elif hs.finished:
            self._complete(flow)

    def _hello_seen(self, flow: Flow, hs: HandshakeTracker, seg: Segment, ts: float) -> None:
        """The ClientHello is complete: start watching what the server does about it."""
        ev = flow.evidence()
        ev.ch_ts = flow.ch_ts if flow.ch_ts is not None else ts
        ev.ch_packet = _facts(seg, ts)
        assert hs.client is not None
        ev.ch_end_seq = flow.dirs[hs.client].next_seq
        flow.watch = True
        self._set_deadline(flow, ev.ch_ts, self._silence_window(ev))

    def _after_hello(self, flow: Flow, ev: FlowEvidence, d: int, seg: Segment, ts: float) -> None:
        hs = flow.hs
        if hs is None or hs.client is None:
            return
        if d == hs.client:
            if seg.payload and ev.ch_end_seq is not None and seq_diff(seg.seq, ev.ch_end_seq) < 0:
                ev.client_retransmission()
            if seg.flags & TH_RST:
                ev.client_packet(_facts(seg, ts), self.limits.max_evidence_packets)
            return
        facts = _facts(seg, ts)
        server_dir = flow.dirs[d]
        facts.seq_expected = server_dir.started and seg.seq == server_dir.next_seq
        ev.server_packet(facts, self.limits.max_evidence_packets)
        if seg.payload and hs.server_event == "plaintext" and not seg.flags & TH_RST:
            hs.more_plaintext(d, seg.payload)

    def _silence_window(self, ev: FlowEvidence) -> float:
        rtt = ev.rtt or 0.0
        lim = self.limits
        return min(max(lim.silence_window, lim.silence_window_rtts * rtt), lim.max_evidence_wait)

    def _evidence_window(self, ev: FlowEvidence) -> float:
        rtt = ev.rtt or 0.0
        lim = self.limits
        return min(max(lim.evidence_window, lim.evidence_window_rtts * rtt), lim.max_evidence_wait)

    # -- budgets ---------------------------------------------------------------

    def _account(self, flow: Flow) -> None:
        """Charge ``flow``'s buffered bytes to the run's budget; over it, cut the flows
        that have held bytes longest until it fits (Limits.max_buffered_bytes)."""
        n = flow.buffered_bytes()
        old = flow.buffered
        if n == old:
            return
        self.buffered += n - old
        flow.buffered = n
        if not n:
            self._buffering.pop(flow, None)
        elif not old:
            self._buffering[flow] = None
        while self.buffered > self.limits.max_buffered_bytes and self._buffering:
            self._cut(next(iter(self._buffering)), "flow.buffers.cap_exceeded")

    def _cut(self, flow: Flow, code: str) -> None:
        """End ``flow``'s analysis to keep a bound: its record (if its hello is in) says so."""
        if flow.hs is not None:
            flow.hs.note(code)  # counted in the log with the flow's other anomalies
        else:
            self.log.add(code)
        rec = self._close(flow)
        if rec is not None:
            self.ready.append(rec)

    def _release(self, flow: Flow) -> None:
        if flow.buffered:
            self.buffered -= flow.buffered
            flow.buffered = 0
            self._buffering.pop(flow, None)
        self._active.pop(flow, None)
        flow.release()

    def _set_deadline(self, flow: Flow, start: float, window: float) -> None:
        deadline = start + window
        if flow.deadline is not None and flow.deadline <= deadline:
            return
        flow.deadline = deadline
        heap = self._deadlines
        heapq.heappush(heap, (deadline, id(flow), flow))
        if len(heap) > 2 * len(self._active) + 1024:
            # entries of finished flows and moved deadlines linger until they come due:
            # drop them now and then so the heap stays as large as the live deadlines
            self._deadlines = [e for e in heap if not e[2].done and e[2].deadline == e[0]]
            heapq.heapify(self._deadlines)
        if deadline < self._next_timer:
            self._next_timer = deadline

    def _timers(self, now: float) -> None:
        """Close evidence windows that have passed; sweep idle flows now and then."""
        self._now = now
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            deadline, _, flow = heapq.heappop(heap)
            if flow.done or flow.deadline != deadline:
                continue  # finished meanwhile, or the deadline moved
            flow.deadline = None
            if flow.ev is not None and flow.ev.outcome is None:
                # Unanswered for the whole window: silence, unless the server still
                # answers later (a slow server); the flow stays until it closes or idles.
                flow.ev.unanswered = True
                continue
            self._complete(flow)
        if now >= self._next_sweep:
            self._sweep(now)
        self._next_timer = min(self._next_sweep, heap[0][0] if heap else self._next_sweep)

    def _new_flow(self, key: bytes, seg: Segment, ts: float) -> Flow:
        table = self.table
        if len(table) >= self.limits.max_flows:
            victim = table.victim()
            if victim is not None:
                self._evict([victim], evicted=True)
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
        self._release(flow)
        if rec is not None:
            self.ready.append(rec)

    def _close(self, flow: Flow) -> Record | None:
        if flow.done:
            return None
        ev = flow.ev
        if ev is not None and ev.ch_ts is not None and ev.outcome is None:
            # capture ended (or the flow was evicted) with no reaction to the hello
            ev.set_outcome("silence" if ev.unanswered else "incomplete", flow.last_ts)
        rec = self._record(flow)
        self._release(flow)
        return rec

    def _record(self, flow: Flow) -> Record | None:
        hs = flow.hs
        if hs is None:
            return None
        if hs.midstream:
            self.log.add("tcp.midstream")
        for code in hs.anomalies:
            self.log.add(code)
        ch = hs.client_hello
        if ch is None and hs.http_request is not None and hs.client is not None:
            return self._http_record(flow, hs)
        server_only = ch is None and (hs.server_hello is not None or hs.hrr is not None)
        if hs.client is None or (not server_only and (ch is None or hs.ch_msg is None)):
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
            client_hello_segments=flow.ch_segments if msg is not None else 0,
            client_hello_bytes=msg.end - msg.start if msg is not None else 0,
            client_hello_records=msg.records if msg is not None else 0,
            preamble_bytes=hs.preamble[c],
            server_alert=hs.server_alert,
            # without the ClientHello there is no "after the hello" to gather evidence on
            outcome=("server_hello" if server_only else
                     flow.ev.outcome or "incomplete" if flow.ev is not None else "incomplete"),
            evidence=_evidence(flow.ev, hs, ch.sni) if ch is not None else None,
            tcp_syn_seen=cdir.syn_seen,
            tunnelled=flow.tunnelled,
            capture=self.capture_name,
            anomalies=anomalies,
        )
        rec.ja4t, rec.ja4ts, rec.ja4l_c, rec.ja4l_s = _tcp_ja4plus(flow.opening)
        self.stats.handshakes += 1
        if rec.non_standard_port:
            self.stats.non_standard_port += 1
        return self._detect(rec)

    def _detect(self, rec: R) -> R:
        """Judge the record against the run's context and run the rules (a verdict that
        names a provider anchors its injector at once); :meth:`_final` learns from it."""
        d = rec.to_dict()
        ctx = self.context
        ctx.judge(d)
        verdict = ctx.refine(d, self.rules.evaluate(d) if self.rules else None)
        ctx.anchor(d, verdict)
        ctx.observe(d)
        rec.interception = d["interception"] = verdict
        rec.cached = d
        return rec

    def _final(self, rec: Record, rejudge: bool) -> Record | None:
        """The record as it goes out: judged again if it was held (the context has grown),
        learned from, counted; a plain HTTP request without a verdict goes out only with
        ``http``."""
        d = rec.cached
        if d is None:
            return rec
        ctx = self.context
        if rejudge:
            ctx.judge(d)
            verdict = ctx.refine(d, self.rules.evaluate(d) if self.rules else None)
            ctx.anchor(d, verdict)
            rec.interception = d["interception"] = verdict
        ctx.learn(d, rec.interception)
        if isinstance(rec, HttpRecord):
            if not self.http and rec.interception is None:
                return None
            self.stats.http_requests += 1
        if rec.interception is not None:
            self.stats.intercepted += 1
        return rec

    def _http_record(self, flow: Flow, hs: HandshakeTracker) -> HttpRecord:
        assert hs.client is not None and hs.http_request is not None
        c = hs.client
        cip, cport = flow.endpoint(c)
        sip, sport = flow.endpoint(1 - c)
        ev = flow.ev
        outcome = (ev.outcome if ev is not None else None) or "incomplete"
        rec = HttpRecord(
            ts=ev.ch_ts if ev is not None and ev.ch_ts is not None else flow.first_ts,
            src_ip=ip_text(cip), src_port=cport, dst_ip=ip_text(sip), dst_port=sport,
            request=hs.http_request, ip_version=flow.ip_version,
            outcome="http_response" if outcome == "plaintext" else outcome,
            evidence=_evidence(ev, hs, hs.http_request.get("host")),
            tcp_syn_seen=flow.dirs[c].syn_seen, tunnelled=flow.tunnelled, capture=self.capture_name,
            anomalies=list(hs.anomalies),
        )
        return self._detect(rec)

    # -- eviction ------------------------------------------------------------

    def _sweep(self, now: float) -> None:
        # on a fixed grid of capture time, not relative to this call: every -j worker (whose
        # timers run at different packets) then sweeps at the same packet as one process
        interval = self.limits.sweep_interval
        self._next_sweep = (now // interval + 1) * interval
        if self.quic:
            self._quic_flush(now - self.limits.flow_idle_timeout, now - self.limits.evidence_window)
        self._evict([f for f in self.table.idle(now) if f.deadline is None or f.done], evicted=False)

    def _evict(self, flows: list[Flow], evicted: bool) -> None:
        for flow in flows:
            if evicted and not flow.done:
                if flow.hs is not None:
                    flow.hs.note("flow.evicted")  # counted in the log with the flow's other anomalies
                else:
                    self.log.add("flow.evicted")
            rec = self._close(flow)
            self.table.remove(flow)
            self.stats.evicted += 1
            if rec is not None:
                self.ready.append(rec)


def iter_records(paths: Iterable[str], limits: Limits = DEFAULT_LIMITS,
                 analyzer: Analyzer | None = None) -> Iterator[Record]:
    """Every handshake in the captures at ``paths`` (``-`` is stdin), in one flow table.

    :class:`HandshakeRecord` objects, and :class:`HttpRecord` objects too when the
    ``analyzer`` was made with ``http=True``.  Raises
    :class:`~tlsprobe.errors.CaptureError` for a file that cannot be read at all.
    """
    an = analyzer or Analyzer(limits)
    for path in paths:
        an.capture_name = path
        yield from an.packets(CaptureFile(path, an.packet_log, limits))
        an.stats.files += 1
    yield from an.finish()
