"""Write packets as they arrive: classic pcap for one link type, pcapng for several.

Both writers take the ``(timestamp, linktype, frame)`` packets every source yields, keep
no packets in memory, and leave a file that every reader accepts after each
:meth:`flush` (the header first, then whole records).
"""

from __future__ import annotations

import struct
from typing import BinaryIO

from tlsprobe.errors import CaptureError

SNAPLEN = 262144
_PCAP_HEADER = struct.Struct("<IHHiIII")
_PCAP_RECORD = struct.Struct("<IIII")
_BLOCK_HEAD = struct.Struct("<II")
_OPT = struct.Struct("<HH")


class PcapWriter:
    """Classic pcap, microsecond timestamps, little-endian, one link type."""

    def __init__(self, path: str, linktype: int, snaplen: int = SNAPLEN) -> None:
        self.path = path
        self.linktype = linktype
        self.snaplen = snaplen
        self.packets = 0
        self._f = _create(path)
        self._f.write(_PCAP_HEADER.pack(0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype))

    def write(self, ts: float, linktype: int, frame: bytes, ifname: str | None = None) -> None:
        """Append one frame (``linktype`` and ``ifname`` are the file's: one link type)."""
        sec = int(ts)
        usec = min(999999, round((ts - sec) * 1e6))
        data = frame[: self.snaplen]
        self._f.write(_PCAP_RECORD.pack(sec, usec, len(data), len(frame)))
        self._f.write(data)
        self.packets += 1

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        self._f.close()


class PcapNgWriter:
    """pcapng with one Interface Description Block per interface (each its own link
    type and name), nanosecond timestamps."""

    def __init__(self, path: str, snaplen: int = SNAPLEN) -> None:
        self.path = path
        self.snaplen = snaplen
        self.packets = 0
        self._ifaces: dict[tuple[str | None, int], int] = {}
        self._f = _create(path)
        shb_body = struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)
        self._block(0x0A0D0D0A, shb_body)

    def _block(self, btype: int, body: bytes) -> None:
        total = 12 + len(body)
        self._f.write(_BLOCK_HEAD.pack(btype, total) + body + struct.pack("<I", total))

    def _interface(self, ifname: str | None, linktype: int) -> int:
        key = (ifname, linktype)
        index = self._ifaces.get(key)
        if index is None:
            index = self._ifaces[key] = len(self._ifaces)
            options = b""
            if ifname:
                name = ifname.encode()[:255]
                options += _OPT.pack(2, len(name)) + _pad(name)  # if_name
            options += _OPT.pack(9, 1) + _pad(b"\x09")  # if_tsresol: 10^-9
            options += _OPT.pack(0, 0)
            self._block(1, struct.pack("<HHI", linktype, 0, self.snaplen) + options)
        return index

    def write(self, ts: float, linktype: int, frame: bytes, ifname: str | None = None) -> None:
        """Append one frame captured on ``ifname`` with link type ``linktype``."""
        index = self._interface(ifname, linktype)
        ns = round(ts * 1e9)
        data = frame[: self.snaplen]
        body = struct.pack("<IIIII", index, ns >> 32, ns & 0xFFFFFFFF, len(data), len(frame)) + _pad(data)
        self._block(6, body)
        self.packets += 1

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def _pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def _create(path: str) -> BinaryIO:
    try:
        return open(path, "wb")
    except OSError as exc:
        raise CaptureError(f"cannot write {path}: {exc.strerror or exc}") from None


Writer = PcapWriter | PcapNgWriter


def open_writer(path: str, linktypes: set[int]) -> Writer:
    """pcapng when ``path`` ends in ``.pcapng`` or the interfaces have different link
    types; classic pcap otherwise."""
    if path.endswith(".pcapng") or len(linktypes) != 1:
        return PcapNgWriter(path)
    return PcapWriter(path, next(iter(linktypes)))
