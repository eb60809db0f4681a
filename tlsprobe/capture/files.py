"""Streaming readers for pcap (micro/nano, both byte orders, modified) and pcapng, gzip'd or not.

They yield ``(timestamp, linktype, frame_bytes)`` and never hold more than one read
chunk plus one record in memory.  Damage inside a readable capture becomes anomaly
counts; a file that is not a capture at all raises :class:`CaptureError`.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import sys
import threading
import zlib
from collections.abc import Iterator
from typing import BinaryIO, cast

from tlsprobe.anomalies import AnomalyLog
from tlsprobe.errors import CaptureError
from tlsprobe.limits import DEFAULT_LIMITS, Limits

Packet = tuple[float, int, bytes]

CHUNK = 1 << 20
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
_PCAP_MAGICS = {
    # magic (as read little-endian): (byte order, nanosecond, modified-pcap extra bytes)
    0xA1B2C3D4: ("<", False, 0),
    0xD4C3B2A1: (">", False, 0),
    0xA1B23C4D: ("<", True, 0),
    0x4D3CB2A1: (">", True, 0),
    0xA1B2CD34: ("<", False, 8),
    0x34CDB2A1: (">", False, 8),
}


# Smallest total length of the pcapng blocks whose fixed fields are read: header and
# trailer (12 bytes) plus IDB 8, EPB 20, obsolete packet block 20, SPB 4.
_MIN_BLOCK = {1: 20, 2: 32, 3: 16, 6: 32}


class CaptureFile:
    """One capture file (or ``-`` for stdin) as a stream of packets."""

    def __init__(self, path: str, log: AnomalyLog | None = None, limits: Limits = DEFAULT_LIMITS) -> None:
        self.path = path
        self.log = log if log is not None else AnomalyLog()
        self.limits = limits
        self.format = "unknown"
        self.compressed = False
        self.linktypes: set[int] = set()

    def _open(self) -> BinaryIO:
        try:
            raw = sys.stdin.buffer if self.path == "-" else open(self.path, "rb")  # noqa: SIM115
        except OSError as exc:
            raise CaptureError(f"{self.path}: cannot open: {exc.strerror or exc}") from None
        f = cast(io.BufferedReader, raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw))
        try:
            head = f.peek(4)[:4]
        except OSError as exc:
            raise CaptureError(f"{self.path}: cannot read: {exc.strerror or exc}") from None
        if head[:2] == b"\x1f\x8b":
            self.compressed = True
            return cast(BinaryIO, io.BufferedReader(cast(io.RawIOBase, gzip.GzipFile(fileobj=f))))
        return cast(BinaryIO, f)

    def __iter__(self) -> Iterator[Packet]:
        f = self._open()
        try:
            try:
                head = f.read(24)
            except (OSError, EOFError, zlib.error) as exc:
                raise CaptureError(f"{self.path}: cannot read: {exc}") from None
            if len(head) < 4:
                raise CaptureError(f"{self.path}: not a pcap or pcapng capture (file is {len(head)} bytes)")
            if head[:4] == PCAPNG_MAGIC:
                self.format = "pcapng"
                yield from self._pcapng(f, head)
                return
            magic = struct.unpack("<I", head[:4])[0]
            if magic not in _PCAP_MAGICS:
                raise CaptureError(f"{self.path}: not a pcap or pcapng capture (magic {head[:4].hex()})")
            if len(head) < 24:
                raise CaptureError(f"{self.path}: pcap file header truncated ({len(head)} bytes)")
            self.format = "pcap"
            order, nano, extra = _PCAP_MAGICS[magic]
            linktype = struct.unpack(order + "I", head[20:24])[0] & 0x0FFFFFFF
            self.linktypes.add(linktype)
            yield from self._pcap(f, order, nano, extra, linktype)
        finally:
            if f is not sys.stdin.buffer:
                f.close()

    def _read(self, f: BinaryIO) -> bytes:
        try:
            return f.read(CHUNK)
        except (OSError, EOFError, zlib.error, gzip.BadGzipFile):
            self.log.add("capture.truncated")
            return b""

    def _pcap(self, f: BinaryIO, order: str, nano: bool, extra: int, linktype: int) -> Iterator[Packet]:
        unpack = struct.Struct(order + "IIII").unpack_from
        hlen = 16 + extra
        scale = 1e-9 if nano else 1e-6
        maxrec = self.limits.max_capture_record
        buf = b""
        pos = 0
        cut = 0
        log = self.log
        while True:
            chunk = self._read(f)
            if not chunk:
                break
            buf = buf[pos:] + chunk if pos < len(buf) else chunk
            pos = 0
            n = len(buf)
            while pos + hlen <= n:
                sec, frac, caplen, origlen = unpack(buf, pos)
                if caplen > maxrec:
                    log.add("capture.bad_record")
                    log.add("capture.snaplen_cut", cut)
                    return
                end = pos + hlen + caplen
                if end > n:
                    break
                if caplen < origlen:
                    cut += 1
                yield sec + frac * scale, linktype, buf[pos + hlen : end]
                pos = end
        if pos < len(buf):
            log.add("capture.truncated")
        if cut:
            log.add("capture.snaplen_cut", cut)

    def _pcapng(self, f: BinaryIO, head: bytes) -> Iterator[Packet]:
        """pcapng blocks: SHB, IDB, EPB, SPB, OPB; other blocks are skipped."""
        buf = head
        pos = 0
        order = "<"
        ifaces: list[tuple[int, float, float]] = []  # (linktype, ts_divisor, ts_offset)
        cut = 0
        log = self.log
        maxblock = self.limits.max_capture_record + 64
        while True:
            if len(buf) - pos < 12:
                chunk = self._read(f)
                if not chunk:
                    break
                buf = buf[pos:] + chunk
                pos = 0
                continue
            btype = buf[pos : pos + 4]
            if btype == PCAPNG_MAGIC:
                bom = buf[pos + 8 : pos + 12]
                if bom == b"\x4d\x3c\x2b\x1a":
                    order = "<"
                elif bom == b"\x1a\x2b\x3c\x4d":
                    order = ">"
                else:
                    log.add("capture.bad_record")
                    break
                ifaces = []
            btype_n, blen = struct.unpack_from(order + "II", buf, pos)
            if blen < 12 or blen % 4:
                log.add("capture.bad_record")
                break
            if blen > maxblock and btype_n in (2, 3, 6):
                log.add("capture.bad_record")
                break
            if blen > 16 * maxblock:
                log.add("capture.bad_record")
                break
            while len(buf) - pos < blen:
                chunk = self._read(f)
                if not chunk:
                    break
                buf = buf[pos:] + chunk
                pos = 0
            if len(buf) - pos < blen:
                log.add("capture.truncated")
                break
            body = pos + 8
            bend = pos + blen - 4
            if blen < _MIN_BLOCK.get(btype_n, 12):  # too short for its own fixed fields
                log.add("capture.bad_record")
                pos += blen
                continue
            if btype_n == 6 or btype_n == 2:  # enhanced / obsolete packet block
                if btype_n == 6:
                    ifid, tsh, tsl, caplen, origlen = struct.unpack_from(order + "IIIII", buf, body)
                else:
                    ifid, _drops, tsh, tsl, caplen, origlen = struct.unpack_from(order + "HHIIII", buf, body)
                data_at = body + 20
                if ifid >= len(ifaces) or data_at + caplen > bend:
                    log.add("capture.bad_record")
                else:
                    linktype, div, off = ifaces[ifid]
                    if caplen < origlen:
                        cut += 1
                    yield ((tsh << 32) | tsl) / div + off, linktype, buf[data_at : data_at + caplen]
            elif btype_n == 3:  # simple packet block: interface 0, no timestamp
                (origlen,) = struct.unpack_from(order + "I", buf, body)
                caplen = min(origlen, bend - body - 4)
                if ifaces:
                    if caplen < origlen:
                        cut += 1
                    yield 0.0, ifaces[0][0], buf[body + 4 : body + 4 + caplen]
                else:
                    log.add("capture.bad_record")
            elif btype_n == 1:  # interface description
                if len(ifaces) < self.limits.max_capture_interfaces:
                    ifaces.append(self._idb(buf, body, bend, order))
                else:
                    log.add("capture.too_many_interfaces")
            pos += blen
        if cut:
            log.add("capture.snaplen_cut", cut)

    def _idb(self, buf: bytes, body: int, bend: int, order: str) -> tuple[int, float, float]:
        linktype = struct.unpack_from(order + "H", buf, body)[0]
        self.linktypes.add(linktype)
        div, off = 1e6, 0.0
        p = body + 8
        while p + 4 <= bend:
            code, olen = struct.unpack_from(order + "HH", buf, p)
            if code == 0 or p + 4 + olen > bend:
                break
            val = buf[p + 4 : p + 4 + olen]
            if code == 9 and olen >= 1:
                r = val[0]
                div = float(2 ** (r & 0x7F)) if r & 0x80 else float(10 ** r)
            elif code == 14 and olen == 8:
                off = float(struct.unpack(order + "q", val)[0])
            p += 4 + ((olen + 3) & ~3)
        return linktype, div, off


class TrackedCapture(CaptureFile):
    """A :class:`CaptureFile` whose read position can be sampled from another thread.

    It keeps a duplicate of the reader's descriptor: the duplicate shares the file
    offset, and stays valid (so can never name another file) until :meth:`release`.
    For a gzip'd capture the offset counts compressed bytes, like the file size.
    """

    def __init__(self, path: str, log: AnomalyLog | None = None,
                 limits: Limits = DEFAULT_LIMITS) -> None:
        super().__init__(path, log, limits)
        self._fd: int | None = None
        self._lock = threading.Lock()

    def _open(self) -> BinaryIO:
        f = super()._open()
        if self.path != "-":
            try:
                fd: int | None = os.dup(f.fileno())
            except (OSError, AttributeError, ValueError):
                fd = None
            with self._lock:
                self._fd = fd
        return f

    def position(self) -> int | None:
        """Bytes of the file read so far, or ``None`` if unknown."""
        with self._lock:
            if self._fd is None:
                return None
            try:
                return os.lseek(self._fd, 0, os.SEEK_CUR)
            except OSError:
                return None

    def release(self) -> None:
        """Close the duplicate descriptor (idempotent)."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
