"""The flow table: TCP flows keyed by directional 4-tuple, with idle and size eviction."""

from __future__ import annotations

from tlsprobe.flow.evidence import FlowEvidence
from tlsprobe.flow.tcp import TcpDirection
from tlsprobe.handshake import HandshakeTracker
from tlsprobe.limits import Limits


def reverse_key(key: bytes, addr_len: int) -> bytes:
    """The key of the opposite direction: swap addresses and ports."""
    a = key[:addr_len]
    b = key[addr_len : 2 * addr_len]
    ports = key[2 * addr_len :]
    return b + a + ports[2:4] + ports[0:2]


def key_endpoint(key: bytes, ip_version: int, d: int) -> tuple[bytes, int]:
    """(address, port) of the sender of direction ``d`` of a directional flow key
    (``src + dst + sport + dport``; direction 0 is the key's own)."""
    n = 4 if ip_version == 4 else 16
    if d == 0:
        return key[:n], (key[2 * n] << 8) | key[2 * n + 1]
    return key[n : 2 * n], (key[2 * n + 2] << 8) | key[2 * n + 3]


class Flow:
    """One TCP connection.  Direction 0 sent the first packet we saw.

    Kept small (~600 bytes with its two keys): handshake state is created only when the
    first payload arrives and dropped when the handshake is in.
    """

    __slots__ = (
        "ch_segments", "ch_ts", "client", "deadline", "dirs", "done", "ev", "first_ts", "hs", "ip_version",
        "key", "last_ts", "rkey", "tunnelled", "watch",
    )

    def __init__(self, key: bytes, rkey: bytes, ip_version: int, ts: float) -> None:
        self.key = key
        self.rkey = rkey
        self.ip_version = ip_version
        self.first_ts = ts
        self.last_ts = ts
        self.dirs = (TcpDirection(), TcpDirection())
        self.hs: HandshakeTracker | None = None
        self.client: int | None = None  # direction of the client, once known (SYN)
        self.done = False
        self.tunnelled = False
        self.ch_ts: float | None = None  # capture time of the ClientHello's first segment
        self.ch_segments = 1
        self.ev: FlowEvidence | None = None  # created at the SYN or SYN-ACK
        self.watch = False  # every packet matters now: the fast path must not skip bare ACKs
        self.deadline: float | None = None  # capture time when the evidence window closes

    def evidence(self) -> FlowEvidence:
        if self.ev is None:
            self.ev = FlowEvidence()
        return self.ev

    def handshake(self, limits: Limits, http: bool = False) -> HandshakeTracker:
        """The handshake tracker, created on first use."""
        if self.hs is None:
            self.hs = HandshakeTracker(limits, self.client, http)
        return self.hs

    def set_client(self, d: int) -> None:
        self.client = d
        if self.hs is not None and self.hs.client is None:
            self.hs.set_client(d)

    def endpoint(self, d: int) -> tuple[bytes, int]:
        """(address, port) of the side that sends direction ``d``."""
        return key_endpoint(self.key, self.ip_version, d)

    def release(self) -> None:
        """Drop per-flow analysis state once the handshake is in; keep the key for skipping."""
        self.done = True
        self.hs = None
        self.ev = None
        self.watch = False
        for d in self.dirs:
            d.ooo = None
            d.stopped = True


class FlowTable:
    """Flows reachable by either direction's key."""

    __slots__ = ("by_key", "count", "limits")

    def __init__(self, limits: Limits) -> None:
        self.by_key: dict[bytes, Flow] = {}
        self.limits = limits
        self.count = 0

    def __len__(self) -> int:
        return self.count

    def add(self, flow: Flow) -> None:
        self.by_key[flow.key] = flow
        self.by_key[flow.rkey] = flow
        self.count += 1

    def remove(self, flow: Flow) -> None:
        if self.by_key.pop(flow.key, None) is not None:
            self.count -= 1
        self.by_key.pop(flow.rkey, None)

    def flows(self) -> list[Flow]:
        return [f for k, f in self.by_key.items() if k is f.key or k == f.key]

    def idle(self, now: float) -> list[Flow]:
        """Flows with no packet for the idle timeout."""
        cutoff = now - self.limits.flow_idle_timeout
        return [f for f in self.flows() if f.last_ts < cutoff]

    def oldest(self, n: int) -> list[Flow]:
        """The n least recently seen flows, finished ones first."""
        flows = self.flows()
        flows.sort(key=lambda f: (not f.done, f.last_ts))
        return flows[:n]
