"""TCP reassembly for one direction of a flow.

Delivers contiguous stream bytes in order, whatever order segments arrive in:
retransmissions and overlaps are trimmed (first copy wins), out-of-order segments wait
in a bounded buffer, sequence numbers wrap, and a flow whose SYN was not captured
starts at its first data segment (and may still grow backwards while nothing has been
consumed, when the earlier segment arrives late).
"""

from __future__ import annotations

from tlsprobe.limits import Limits

SEQ_MOD = 1 << 32
HALF = 1 << 31
# Larger than any receive window a handshake uses (64 KB unscaled, a few MB scaled is
# bulk data, not a handshake).
RESYNC_WINDOW = 1 << 22

Chunk = tuple[int, bytes, float]  # (stream offset, bytes, capture time)


def seq_diff(a: int, b: int) -> int:
    """Signed distance a - b in sequence space."""
    d = (a - b) & 0xFFFFFFFF
    return d - SEQ_MOD if d >= HALF else d


class TcpDirection:
    """Reassembly state for the bytes one endpoint sends."""

    __slots__ = (
        "fin",
        "isn_offset",
        "next_seq",
        "offset",
        "ooo",
        "ooo_bytes",
        "overflow",
        "retransmissions",
        "started",
        "stopped",
        "syn_seen",
    )

    def __init__(self) -> None:
        self.next_seq = 0
        self.offset = 0  # stream offset of next_seq
        self.syn_seen = False
        self.started = False
        self.ooo: dict[int, tuple[bytes, float]] | None = None  # created when first needed
        self.ooo_bytes = 0
        self.stopped = False
        self.retransmissions = 0
        self.overflow = False
        self.fin = False
        self.isn_offset = 0  # lowest offset delivered (negative after a backward prepend)

    def syn(self, seq: int) -> None:
        """A SYN from this side.  A new ISN before any data was delivered replaces the old
        one (a retried SYN or SYN-ACK, e.g. after a TCP Fast Open fallback)."""
        if not self.started or (self.syn_seen and self.offset == 0):
            self.next_seq = (seq + 1) & 0xFFFFFFFF
            self.syn_seen = True
            self.started = True

    def segment(self, seq: int, data: bytes, ts: float, limits: Limits) -> tuple[list[Chunk], bytes | None]:
        """Accept one segment's payload.

        Returns the chunks now deliverable in order, and the bytes that precede
        everything delivered so far (a late first segment of a flow without SYN),
        which the caller may prepend if its parser has consumed nothing yet.
        """
        if self.stopped or not data:
            return [], None
        if not self.started:
            self.started = True
            self.next_seq = seq
        d = seq_diff(seq, self.next_seq)
        if self.offset == 0 and not self.ooo and abs(d) > RESYNC_WINDOW:
            # Nothing delivered yet and far outside any window: the ISN we hold is stale
            # (several SYN-ACKs with different ISNs, e.g. a TCP Fast Open fallback).
            self.next_seq = seq
            d = 0
        if d < 0:
            if d + len(data) <= 0:
                self.retransmissions += 1
                if not self.syn_seen and self.offset + d + len(data) == self.isn_offset:
                    # contiguous with the first byte we have: the flow's real beginning
                    self.isn_offset -= len(data)
                    return [], data
                return [], None
            data = data[-d:]
            d = 0
        if d > 0:
            if self.ooo is None:
                self.ooo = {}
            elif seq in self.ooo:
                # A copy starting at a buffered segment's sequence number: keep the bytes
                # already held (first copy wins) plus whatever this one adds past them.
                old = self.ooo[seq][0]
                if len(data) <= len(old):
                    return [], None
                data = old + data[len(old) :]
                self.ooo_bytes -= len(old)
                del self.ooo[seq]
            if len(self.ooo) >= limits.max_ooo_segments or self.ooo_bytes + len(data) > limits.max_ooo_bytes:
                self.overflow = True
                self.stopped = True
                self.ooo = None
                self.ooo_bytes = 0
                return [], None
            self.ooo[seq] = (data, ts)
            self.ooo_bytes += len(data)
            return [], None
        out: list[Chunk] = [(self.offset, data, ts)]
        self._advance(len(data))
        if self.ooo:
            self._drain(out)
        return out, None

    def _advance(self, n: int) -> None:
        self.next_seq = (self.next_seq + n) & 0xFFFFFFFF
        self.offset += n

    def _drain(self, out: list[Chunk]) -> None:
        """Deliver the buffered segments the stream has reached: one pass in sequence
        order (O(k log k) for k buffered segments, not a rescan per delivered segment)."""
        ooo = self.ooo
        assert ooo is not None
        base = self.next_seq
        for s in sorted(ooo, key=lambda s: seq_diff(s, base)):
            d = seq_diff(s, self.next_seq)
            if d > 0:
                break  # a gap remains: the rest wait
            data, ts = ooo.pop(s)
            self.ooo_bytes -= len(data)
            if d + len(data) > 0:
                data = data[-d:] if d else data
                out.append((self.offset, data, ts))
                self._advance(len(data))

    @property
    def has_gap(self) -> bool:
        return bool(self.ooo)
