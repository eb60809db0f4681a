"""One bounded cursor for every read from the wire.

Every read checks its bounds and raises :class:`~tlsprobe.errors.WireError` with a
stable anomaly code; no ``IndexError`` or ``struct.error`` ever leaves this module.
"""

from __future__ import annotations

from tlsprobe.errors import WireError


class Cursor:
    """A read position over an immutable byte string, bounded by ``end``."""

    __slots__ = ("buf", "code", "end", "pos")

    def __init__(self, buf: bytes, pos: int = 0, end: int | None = None, code: str = "wire.truncated") -> None:
        self.buf = buf
        self.pos = pos
        self.end = len(buf) if end is None else min(end, len(buf))
        self.code = code

    def remaining(self) -> int:
        return self.end - self.pos

    def _need(self, n: int) -> int:
        p = self.pos
        if n < 0 or p + n > self.end:
            raise WireError(self.code, f"need {n} bytes at offset {p}, have {self.end - p}")
        self.pos = p + n
        return p

    def u8(self) -> int:
        p = self._need(1)
        return self.buf[p]

    def u16(self) -> int:
        p = self._need(2)
        b = self.buf
        return (b[p] << 8) | b[p + 1]

    def u24(self) -> int:
        p = self._need(3)
        b = self.buf
        return (b[p] << 16) | (b[p + 1] << 8) | b[p + 2]

    def u32(self) -> int:
        p = self._need(4)
        return int.from_bytes(self.buf[p : p + 4], "big")

    def take(self, n: int) -> bytes:
        p = self._need(n)
        return bytes(self.buf[p : p + n])

    def rest(self) -> bytes:
        return self.take(self.end - self.pos)

    def block(self, length_bytes: int) -> Cursor:
        """A sub-cursor over a length-prefixed block (1, 2 or 3 length bytes)."""
        if length_bytes == 1:
            n = self.u8()
        elif length_bytes == 2:
            n = self.u16()
        else:
            n = self.u24()
        p = self._need(n)
        return Cursor(self.buf, p, p + n, self.code)

    def u16_list(self, length_bytes: int = 2) -> tuple[int, ...]:
        """A length-prefixed list of 16-bit values; an odd length is malformed."""
        blk = self.block(length_bytes)
        n = blk.remaining()
        if n % 2:
            raise WireError(self.code, "odd length for a list of 16-bit values")
        b, p = blk.buf, blk.pos
        return tuple((b[i] << 8) | b[i + 1] for i in range(p, p + n, 2))

    def expect_end(self, code: str) -> None:
        if self.pos != self.end:
            raise WireError(code, f"{self.end - self.pos} trailing bytes")
