"""IPv4 and IPv6 fragment reassembly, bounded in datagrams, bytes and time."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from tlsprobe.anomalies import AnomalyLog
from tlsprobe.limits import Limits

MAX_DATAGRAM = 65535


class _Pending:
    __slots__ = ("first_ts", "parts", "size", "total")

    def __init__(self, ts: float) -> None:
        self.parts: dict[int, bytes] = {}
        self.total: int | None = None
        self.first_ts = ts
        self.size = 0


class FragmentTable:
    """Datagrams under reassembly, keyed by (version, src, dst, proto, id)."""

    __slots__ = ("limits", "log", "pending")

    def __init__(self, limits: Limits, log: AnomalyLog) -> None:
        self.limits = limits
        self.log = log
        self.pending: OrderedDict[tuple[Any, ...], _Pending] = OrderedDict()

    def add(self, key: tuple[Any, ...], offset: int, more: bool, data: bytes, ts: float) -> bytes | None:
        """Add one fragment; return the whole transport payload once every byte is in."""
        self._expire(ts)
        p = self.pending.get(key)
        if p is None:
            if len(self.pending) >= self.limits.max_ip_fragment_datagrams:
                self.pending.popitem(last=False)
                self.log.add("ip.fragment.cap_exceeded")
            p = self.pending[key] = _Pending(ts)
        if offset + len(data) > MAX_DATAGRAM:
            self.log.add("ip.fragment.cap_exceeded")
            del self.pending[key]
            return None
        if offset in p.parts:
            if p.parts[offset] != data:
                self.log.add("ip.fragment.overlap")
            return None
        p.parts[offset] = data
        p.size += len(data)
        if not more:
            p.total = offset + len(data)
        if p.total is None or p.size < p.total:
            return None
        out = bytearray(p.total)
        covered = 0
        for off in sorted(p.parts):
            part = p.parts[off]
            if off < covered:
                self.log.add("ip.fragment.overlap")
            out[off : off + len(part)] = part
            covered = max(covered, off + len(part))
        del self.pending[key]
        if covered < p.total or len(out) != p.total:
            self.log.add("ip.fragment.overlap")
            return None
        return bytes(out)

    def _expire(self, ts: float) -> None:
        timeout = self.limits.ip_fragment_timeout
        while self.pending:
            key, p = next(iter(self.pending.items()))
            if ts - p.first_ts <= timeout:
                break
            del self.pending[key]
            self.log.add("ip.fragment.incomplete")

    def flush(self) -> None:
        """End of input: every datagram still pending is incomplete."""
        if self.pending:
            self.log.add("ip.fragment.incomplete", len(self.pending))
            self.pending.clear()
