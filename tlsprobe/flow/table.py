"""The flow table: TCP flows keyed by directional 4-tuple, with idle and size eviction."""

from __future__ import annotations

from tlsprobe.flow.tcp import TcpDirection
from tlsprobe.handshake import HandshakeTracker
from tlsprobe.limits import Limits


def reverse_key(key: bytes, addr_len: int) -> bytes:
    """The key of the opposite direction: swap addresses and ports."""
    a = key[:addr_len]
    b = key[addr_len : 2 * addr_len]
    ports = key[2 * addr_len :]
    return b + a + ports[2:4] + ports[0:2]


class Flow:
    """One TCP connection.  Direction 0 sent the first packet we saw."""

    __slots__ = (
        "a_ip",
        "a_port",
        "b_ip",
        "b_port",
        "ch_segments",
        "ch_ts",
        "dirs",
        "done",
        "first_ts",
        "hs",
        "ip_version",
        "key",
        "last_ts",
        "packets",
        "rkey",
        "segs",
        "tunnelled",
    )

    def __init__(self, key: bytes, rkey: bytes, ip_version: int, a_ip: bytes, b_ip: bytes,
                 a_port: int, b_port: int, ts: float, limits: Limits) -> None:
        self.key = key
        self.rkey = rkey
        self.ip_version = ip_version
        self.a_ip = a_ip
        self.b_ip = b_ip
        self.a_port = a_port
        self.b_port = b_port
        self.first_ts = ts
        self.last_ts = ts
        self.dirs = (TcpDirection(), TcpDirection())
        self.hs: HandshakeTracker | None = HandshakeTracker(limits, None)
        self.done = False
        # (start offset, end offset, ts) of segments per direction while a hello is assembled
        self.segs: tuple[list[tuple[int, int, float]], list[tuple[int, int, float]]] = ([], [])
        self.tunnelled = False
        self.packets = 0
        self.ch_ts: float | None = None  # capture time of the ClientHello's first segment
        self.ch_segments = 1

    def release(self) -> None:
        """Drop per-flow analysis state once the handshake is in; keep the key for skipping."""
        self.done = True
        self.hs = None
        self.segs = ([], [])
        for d in self.dirs:
            d.ooo.clear()
            d.stopped = True


class FlowTable:
    """Flows reachable by either direction's key."""

    __slots__ = ("by_key", "count", "limits", "next_sweep")

    def __init__(self, limits: Limits) -> None:
        self.by_key: dict[bytes, Flow] = {}
        self.limits = limits
        self.next_sweep = 0.0
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
