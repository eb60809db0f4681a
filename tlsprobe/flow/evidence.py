"""What the client saw after its ClientHello: packet-level evidence for the detectors.

Measured against the flow's own baseline (the server's SYN-ACK): every server-direction
packet after the ClientHello with its delay (ms and in RTTs), TTL delta, IP ID, DF,
window, flags, options and payload; resets and races; the client's retransmissions of
the hello.  The outcome is the first server reaction: ``server_hello``, ``tls_alert``,
``rst``, ``fin``, ``plaintext`` or, when none came, ``silence`` (or ``incomplete`` when
the capture ended first).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tlsprobe.flow.tcp import seq_diff

TH_FIN, TH_SYN, TH_RST, TH_PSH, TH_ACK, TH_URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
OPT_TIMESTAMP = 8

# Route changes move a TTL by a hop or so; an injector elsewhere on the path differs more
# (interception-patterns.md section 6: |ttl - synack.ttl| >= 2).
TTL_TOLERANCE = 2
# A reply in less than 0.8 RTT came from something nearer than the server.
FASTER_THAN_RTT = 0.8
# Below this the RTT is too small to compare against (loopback, same LAN).
MIN_RTT_MS = 2.0


_TS_ONLY = b"\x01\x01\x08\x0a"  # NOP NOP Timestamps: the layout of most data segments


def option_kinds(opts: bytes) -> tuple[int, ...]:
    """TCP option kinds in order (NOP and EOL left out); stops at a malformed option."""
    if not opts:
        return ()
    if len(opts) == 12 and opts.startswith(_TS_ONLY):
        return (8,)
    return _option_kinds(opts)


def _option_kinds(opts: bytes) -> tuple[int, ...]:
    kinds = []
    i, n = 0, len(opts)
    while i < n:
        kind = opts[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= n or opts[i + 1] < 2:
            break
        kinds.append(kind)
        i += opts[i + 1]
    return tuple(kinds)


def flag_text(flags: int) -> str:
    """TCP flags as letters, e.g. ``"RA"``, ``"FPA"``, ``"SA"``."""
    return "".join(c for bit, c in ((TH_SYN, "S"), (TH_FIN, "F"), (TH_RST, "R"), (TH_PSH, "P"),
                                    (TH_ACK, "A"), (TH_URG, "U")) if flags & bit)


@dataclass(slots=True)
class PacketFacts:
    """The IP and TCP fields of one packet that tell a middlebox from the real peer."""

    ts: float
    ttl: int
    ip_id: int
    df: bool
    window: int
    flags: int
    options: tuple[int, ...]
    payload_len: int
    seq: int
    ack: int
    head: bytes  # first payload bytes (RST payloads are a fingerprint)
    seq_expected: bool | None = None  # seq is the next one the server's stream expects
    flow_label: int = 0  # IPv6 flow label (0 on IPv4)
    raw_options: bytes = b""  # the TCP options as sent: kept for SYNs and SYN-ACKs only (JA4T/JA4TS)


class FlowEvidence:
    """Evidence gathered on one flow; owned by the flow, filled by the pipeline."""

    __slots__ = (
        "ch_acked",
        "ch_end_seq",
        "ch_packet",
        "ch_retransmissions",
        "ch_ts",
        "client_rsts",
        "dropped_packets",
        "first_client_ts",
        "outcome",
        "outcome_ts",
        "race",
        "rst_count",
        "server_closed_at",
        "server_packets",
        "syn",
        "synack",
        "unanswered",
    )

    def __init__(self) -> None:
        self.syn: PacketFacts | None = None  # the client's SYN
        self.synack: PacketFacts | None = None  # the server's SYN-ACK: the baseline
        self.first_client_ts: float | None = None  # first client packet after the SYN-ACK
        self.ch_ts: float | None = None
        self.ch_packet: PacketFacts | None = None  # the segment that completed the hello
        self.ch_end_seq: int | None = None  # client sequence number just past the hello
        self.ch_retransmissions = 0
        self.ch_acked = False
        self.server_packets: list[PacketFacts] = []
        self.dropped_packets = 0  # server packets past the evidence limit
        self.outcome: str | None = None
        self.outcome_ts: float | None = None
        self.race = False
        self.rst_count = 0
        self.server_closed_at: float | None = None  # first server RST/FIN after the hello
        self.unanswered = False  # the silence window passed with no reaction
        self.client_rsts: list[PacketFacts] = []  # client-direction resets after the hello

    @property
    def rtt(self) -> float | None:
        """Handshake round trip: SYN to the client's next packet after the SYN-ACK.

        From the client side that is SYN->SYN-ACK, from the server side SYN-ACK->ACK:
        the sum is one RTT at either vantage point.
        """
        if self.syn is None or self.first_client_ts is None:
            return None
        return max(self.first_client_ts - self.syn.ts, 0.0)

    def set_outcome(self, kind: str, ts: float) -> None:
        """The first reaction wins; ``silence``/``incomplete`` have no reaction time."""
        if self.outcome is None:
            self.outcome = kind
            self.outcome_ts = None if kind in ("silence", "incomplete") else ts

    def server_packet(self, facts: PacketFacts, limit: int) -> None:
        """A server-direction packet after the ClientHello."""
        if len(self.server_packets) < limit:
            self.server_packets.append(facts)
        else:
            self.dropped_packets += 1
        flags = facts.flags
        if self.ch_end_seq is not None and flags & TH_ACK and seq_diff(facts.ack, self.ch_end_seq) >= 0:
            self.ch_acked = True
        if (facts.payload_len and not flags & TH_RST and self.server_closed_at is not None
                and not self._resent(facts)):
            # data from the "server" after it already reset or closed (a retransmission of a
            # segment it sent before is not: Linux resends its last segment, FIN and all)
            self.race = True
        if flags & TH_RST:
            self.rst_count += 1
            self.set_outcome("rst", facts.ts)
        elif flags & TH_FIN and not facts.payload_len:
            self.set_outcome("fin", facts.ts)
        if flags & (TH_RST | TH_FIN) and self.server_closed_at is None:
            self.server_closed_at = facts.ts

    def _resent(self, facts: PacketFacts) -> bool:
        """An earlier server segment had the same sequence number, length and first bytes."""
        return any(p is not facts and p.seq == facts.seq and p.payload_len == facts.payload_len
                   and p.head == facts.head for p in self.server_packets)

    def client_packet(self, facts: PacketFacts, limit: int) -> None:
        """A client-direction packet after the hello: resets are kept (a server-side
        capture sees forged resets aimed at the server here)."""
        if facts.flags & TH_RST and len(self.client_rsts) < limit:
            self.client_rsts.append(facts)

    @property
    def vantage(self) -> str | None:
        """Where the capture was taken: ``"client"`` when the SYN-ACK took the round trip
        (SYN -> SYN-ACK long), ``"server"`` when the ACK did; None without a handshake."""
        if self.syn is None or self.synack is None or self.first_client_ts is None:
            return None
        there = self.synack.ts - self.syn.ts
        back = self.first_client_ts - self.synack.ts
        return "client" if there >= back else "server"

    def client_retransmission(self) -> None:
        if self.outcome is None:
            self.ch_retransmissions += 1

    def to_dict(self) -> dict[str, Any]:
        """The ``evidence`` object of the record (see docs/output.md)."""
        rtt = self.rtt
        base = self.synack
        ch_ts = self.ch_ts or 0.0
        rtt_ms = round(rtt * 1000, 3) if rtt is not None else None
        packets = [self._packet(p, base, ch_ts, rtt) for p in self.server_packets]
        event = self._event_packet(packets)
        return {
            "rtt_ms": rtt_ms,
            "baseline": _facts(base) if base else None,
            "client_syn": _facts(self.syn) if self.syn else None,
            "client_hello_packet": _facts(self.ch_packet) if self.ch_packet else None,
            "ch_retransmissions": self.ch_retransmissions,
            "ch_acked": self.ch_acked,
            "server_packets": packets,
            "server_packets_dropped": self.dropped_packets,
            "outcome_packet": event,
            "rst_count": self.rst_count,
            "rst_with_payload": sum(1 for p in packets if "R" in p["flags"] and p["payload_len"]),
            "race": self.race,
            "unanswered_in_window": self.unanswered,
            "outcome_delay_ms": round((self.outcome_ts - ch_ts) * 1000, 3) if self.outcome_ts else None,
            "tells": self._tells(event, rtt_ms),
            "vantage": self.vantage,
            "client_rst": self._client_rst(),
        }

    def _client_rst(self) -> dict[str, Any] | None:
        """The first client-direction reset after the hello, against the client's SYN."""
        if not self.client_rsts:
            return None
        p, base = self.client_rsts[0], self.syn
        tells = []
        if base is not None:
            if abs(p.ttl - base.ttl) >= TTL_TOLERANCE:
                tells.append("ttl_mismatch")
            if p.df != base.df:
                tells.append("df_mismatch")
            if OPT_TIMESTAMP in base.options and OPT_TIMESTAMP not in p.options:
                tells.append("timestamps_missing")
            if base.flow_label and p.flow_label != base.flow_label:
                tells.append("flow_label_mismatch")
        if len(self.client_rsts) >= 2:
            tells.append("rst_burst")
        if p.payload_len:
            tells.append("rst_payload")
        return {
            "delay_ms": round((p.ts - (self.ch_ts or p.ts)) * 1000, 3),
            "ttl": p.ttl, "ttl_delta": p.ttl - base.ttl if base else None, "ip_id": p.ip_id, "df": p.df,
            "window": p.window, "flags": flag_text(p.flags), "options": list(p.options),
            "count": len(self.client_rsts), "tells": tells,
        }

    def _tells(self, event: dict[str, Any] | None, rtt_ms: float | None) -> list[str]:
        """Signs that the packet carrying the outcome did not come from the server's own stack.

        Each compares the packet with the server's SYN-ACK, the handshake RTT or the
        client's own packet (docs/detection.md explains each and its sources).
        """
        tells: list[str] = []
        if self.race:
            tells.append("race")
        if event is None:
            return tells
        base, ch = self.synack, self.ch_packet
        if event["ttl_delta"] is not None and abs(event["ttl_delta"]) >= TTL_TOLERANCE:
            tells.append("ttl_mismatch")
        if rtt_ms is not None and rtt_ms >= MIN_RTT_MS and event["delay_rtt"] is not None and (
            event["delay_rtt"] < FASTER_THAN_RTT
        ) and self.vantage != "server":  # at the server every answer is "fast"
            tells.append("faster_than_rtt")
        if event.get("df_differs"):
            tells.append("df_mismatch")
        if event.get("timestamps_missing"):
            tells.append("timestamps_missing")
        if base is not None and event["ip_id"] in (0, 1) and base.ip_id not in (0, 1) and not (event["df"] and base.df):
            tells.append("ip_id_fixed")
        if ch is not None and ch.ip_id and event["ip_id"] == ch.ip_id and (base is None or base.ip_id != ch.ip_id):
            # (a server whose own SYN-ACK already had the client's IP ID, e.g. a constant
            # ID on both sides of a synthetic capture, copies nothing)
            tells.append("ip_id_copied")
        if base is not None and base.flow_label and event["flow_label"] != base.flow_label:
            # IPv6 has no IP ID and no DF: the flow label is its per-connection constant
            tells.append("flow_label_mismatch")
        if "R" in event["flags"]:
            if event["payload_len"]:
                tells.append("rst_payload")
            if "A" not in event["flags"]:
                tells.append("rst_without_ack")
            if self.rst_count >= 2:
                tells.append("rst_burst")
        return tells

    def _event_packet(self, packets: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The packet that carried the outcome (first one at its time)."""
        if self.outcome_ts is None:
            return None
        for p, facts in zip(packets, self.server_packets, strict=True):
            if facts.ts >= self.outcome_ts and (facts.payload_len or facts.flags & (TH_RST | TH_FIN)):
                return p
        return None

    def _packet(self, p: PacketFacts, base: PacketFacts | None, ch_ts: float, rtt: float | None) -> dict[str, Any]:
        delay = p.ts - ch_ts
        d: dict[str, Any] = {
            "delay_ms": round(delay * 1000, 3),
            "delay_rtt": round(delay / rtt, 3) if rtt else None,
            "ttl": p.ttl,
            "ttl_delta": p.ttl - base.ttl if base else None,
            "ip_id": p.ip_id,
            "df": p.df,
            "flow_label": p.flow_label,
            "window": p.window,
            "flags": flag_text(p.flags),
            "options": list(p.options),
            "payload_len": p.payload_len,
            "payload_hex": p.head.hex() if p.flags & TH_RST and p.payload_len else None,
            "seq_expected": p.seq_expected,
            "acks_hello": (
                seq_diff(p.ack, self.ch_end_seq) >= 0 if self.ch_end_seq is not None and p.flags & TH_ACK else None
            ),
        }
        if base is not None:
            d["df_differs"] = p.df != base.df
            d["timestamps_missing"] = OPT_TIMESTAMP in base.options and OPT_TIMESTAMP not in p.options
        return d


def _facts(p: PacketFacts) -> dict[str, Any]:
    return {"ttl": p.ttl, "ip_id": p.ip_id, "df": p.df, "flow_label": p.flow_label, "window": p.window,
            "flags": flag_text(p.flags), "options": list(p.options)}
