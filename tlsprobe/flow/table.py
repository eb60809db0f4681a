"""The flow table: TCP flows keyed by directional 4-tuple, with idle and size eviction."""

from __future__ import annotations

from collections import deque

from tlsprobe.flow.evidence import FlowEvidence
from tlsprobe.flow.opening import TcpOpening
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


def _stopped() -> TcpDirection:
    d = TcpDirection()
    d.stopped = True
    return d


# the reassembly state of every finished flow: shared, stopped, never written
_DONE_DIRS = (_stopped(), _stopped())


class Flow:
    """One TCP connection.  Direction 0 sent the first packet we saw.

    Kept small (~600 bytes with its two keys): handshake state is created only when the
    first payload arrives and dropped when the handshake is in.
    """

    __slots__ = (
        "buffered", "ch_segments", "ch_ts", "client", "deadline", "dirs", "done", "ev", "first_ts", "hs",
        "ip_version", "key", "last_ts", "opening", "rkey", "tunnelled", "watch",
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
        self.buffered = 0  # bytes charged to the run's buffer budget (see Analyzer._account)
        self.opening: TcpOpening | None = None  # first SYN / SYN-ACK / ACK (JA4T, JA4TS, JA4L)

    def evidence(self) -> FlowEvidence:
        if self.ev is None:
            self.ev = FlowEvidence()
        return self.ev

    def buffered_bytes(self) -> int:
        """What this flow holds in buffers now: out-of-order segments (payload plus
        ~128 bytes of bookkeeping each), record and handshake-message buffers, server
        plaintext kept, segments tracked while the hello is assembled (~100 bytes each),
        and the parsed hellos and certificates waiting for the record (approximately)."""
        n = 0
        for d in self.dirs:
            if d.ooo:
                n += d.ooo_bytes + 128 * len(d.ooo)
        hs = self.hs
        if hs is not None:
            for p in hs.parsers:
                n += len(p.buf) + len(p.hs_buf)
            n += len(hs.plaintext) + 100 * (len(hs.segs[0]) + len(hs.segs[1])) + hs.held
        return n

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
        self.opening = None
        self.watch = False
        self.dirs = _DONE_DIRS  # a finished flow is only a marker for skipping its packets


class FlowTable:
    """Flows reachable by either direction's key.

    ``queue`` holds the flows in the order they were added, each with its ``last_ts`` when
    queued; :meth:`victim` takes from its front and gives a flow seen since it was queued
    a second chance at the back (the CLOCK approximation of least-recently-seen), so
    choosing whom to evict costs O(1) amortised instead of a sort of the whole table.
    Flows removed by other means leave stale entries, skipped and compacted away.
    """

    __slots__ = ("by_key", "count", "limits", "queue")

    def __init__(self, limits: Limits) -> None:
        self.by_key: dict[bytes, Flow] = {}
        self.limits = limits
        self.count = 0
        self.queue: deque[tuple[Flow, float]] = deque()

    def __len__(self) -> int:
        return self.count

    def add(self, flow: Flow) -> None:
        self.by_key[flow.key] = flow
        self.by_key[flow.rkey] = flow
        self.count += 1
        queue = self.queue
        queue.append((flow, flow.last_ts))
        if len(queue) > 2 * self.count + 1024:  # mostly stale entries: compact (amortised O(1))
            by_key = self.by_key
            self.queue = deque(e for e in queue if by_key.get(e[0].key) is e[0])

    def remove(self, flow: Flow) -> None:
        if self.by_key.get(flow.key) is flow:
            del self.by_key[flow.key]
            self.count -= 1
        if self.by_key.get(flow.rkey) is flow:
            del self.by_key[flow.rkey]

    def flows(self) -> list[Flow]:
        return [f for k, f in self.by_key.items() if k is f.key or k == f.key]

    def idle(self, now: float) -> list[Flow]:
        """Flows with no packet for the idle timeout."""
        cutoff = now - self.limits.flow_idle_timeout
        return [f for f in self.flows() if f.last_ts < cutoff]

    def victim(self) -> Flow | None:
        """The flow to evict when the table is full: the least recently seen, approximately
        (the oldest in the queue that has had no packet since it was queued)."""
        queue, by_key = self.queue, self.by_key
        while queue:
            flow, seen = queue.popleft()
            if by_key.get(flow.key) is not flow:
                continue  # removed meanwhile
            if flow.last_ts > seen:
                queue.append((flow, flow.last_ts))  # seen since it was queued: second chance
                continue
            return flow
        return None
