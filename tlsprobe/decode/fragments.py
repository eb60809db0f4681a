"""IPv4 and IPv6 fragment reassembly, bounded in datagrams, bytes and time."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from tlsprobe.anomalies import AnomalyLog
from tlsprobe.limits import Limits

MAX_DATAGRAM = 65535
PART_OVERHEAD = 100  # bytes of bookkeeping per fragment held (dict slot, bytes header)


class _Pending:
    __slots__ = ("first_ts", "parts", "size", "total")

    def __init__(self, ts: float) -> None:
        self.parts: dict[int, bytes] = {}
        self.total: int | None = None
        self.first_ts = ts
        self.size = 0


class FragmentTable:
    """Datagrams under reassembly, keyed by (version, src, dst, proto, id)."""

    __slots__ = ("held", "limits", "log", "pending")

    def __init__(self, limits: Limits, log: AnomalyLog) -> None:
        self.limits = limits
        self.log = log
        self.pending: OrderedDict[tuple[Any, ...], _Pending] = OrderedDict()
        self.held = 0  # bytes of all pending fragments, plus PART_OVERHEAD each

    def add(self, key: tuple[Any, ...], offset: int, more: bool, data: bytes, ts: float) -> bytes | None:
        """Add one fragment; return the whole transport payload once every byte is in."""
        self._expire(ts)
        p = self.pending.get(key)
        if p is None:
            if len(self.pending) >= self.limits.max_ip_fragment_datagrams:
                self._drop_oldest()
            p = self.pending[key] = _Pending(ts)
        old = p.parts.get(offset)
        if old is not None:
            if not data.startswith(old) and not old.startswith(data):
                self.log.add("ip.fragment.overlap")
            if len(data) <= len(old):
                return None
            # a longer copy from the same offset: keep the bytes held (first copy wins)
            # and add what it carries beyond them
            data = old + data[len(old) :]
        grow = len(data) - (len(old) if old is not None else 0)
        if (offset + len(data) > MAX_DATAGRAM or p.size + grow > MAX_DATAGRAM
                or (old is None and len(p.parts) >= self.limits.max_ip_fragment_parts)):
            # past the largest datagram, overlapping copies adding up beyond it, or tiny fragments
            self.log.add("ip.fragment.cap_exceeded")
            self._drop(key)
            return None
        p.parts[offset] = data
        p.size += grow
        self.held += grow + (PART_OVERHEAD if old is None else 0)
        while self.held > self.limits.max_ip_fragment_bytes and len(self.pending) > 1:
            self._drop_oldest()
        if key not in self.pending:
            return None
        if not more:
            p.total = offset + len(data)
        if p.total is None or p.size < p.total:
            return None
        parts = sorted(p.parts.items())
        covered = 0
        for off, part in parts:
            if off > covered:  # a hole: overlapping copies made the byte count look complete
                return None
            covered = max(covered, off + len(part))
        out = bytearray(p.total)
        covered = 0
        for off, part in parts:
            if off < covered:
                self.log.add("ip.fragment.overlap")
            out[off : off + len(part)] = part
            covered = max(covered, off + len(part))
        self._drop(key)
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
            self._drop(key)
            self.log.add("ip.fragment.incomplete")

    def _drop(self, key: tuple[Any, ...]) -> None:
        p = self.pending.pop(key)
        self.held -= p.size + PART_OVERHEAD * len(p.parts)

    def _drop_oldest(self) -> None:
        key = next(iter(self.pending))
        self._drop(key)
        self.log.add("ip.fragment.cap_exceeded")

    def flush(self) -> None:
        """End of input: every datagram still pending is incomplete."""
        if self.pending:
            self.log.add("ip.fragment.incomplete", len(self.pending))
            self.pending.clear()
            self.held = 0
