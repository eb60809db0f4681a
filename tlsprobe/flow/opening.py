"""The TCP opening of a flow as FoxIO's JA4T, JA4TS and JA4L read it.

Kept apart from the evidence (whose ``syn``/``synack`` are the latest ones, the baseline
the detectors compare with): FoxIO takes the **first** SYN, the first SYN-ACK after it
and the first ACK after that.  Filled only by SYN, SYN-ACK and the packet that follows
the SYN-ACK, so it adds nothing to the per-packet cost of an established flow.
"""

from __future__ import annotations

from dataclasses import dataclass

from tlsprobe.flow.evidence import PacketFacts


@dataclass(slots=True)
class TcpOpening:
    """First SYN (no ACK), first SYN-ACK, and the time of the first ACK without SYN after it."""

    syn: PacketFacts | None = None
    synack: PacketFacts | None = None
    ack_ts: float | None = None
