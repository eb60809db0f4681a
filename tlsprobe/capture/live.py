"""Live capture: raw frames from network interfaces, through scapy's Linux packet sockets.

scapy opens the sockets (interface lookup, promiscuous mode, BPF filter compiled by
libpcap or tcpdump); frames are read here, with their kernel timestamps and the VLAN
tags the kernel stripped, and go on as bytes, never dissected.  :meth:`LiveCapture.batches` yields the frames
that are waiting - possibly none - at least every ``tick`` seconds, so the caller can
advance its timers while the network is quiet.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import socket
import struct
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from tlsprobe.capture.files import Packet
from tlsprobe.errors import CaptureError

SOL_PACKET = 263
PACKET_STATISTICS = 6
PACKET_OUTGOING = 4
PACKET_IGNORE_OUTGOING = 23
ARPHRD_LOOPBACK = 772
# Enough for a 64 KiB loopback frame (GRO/GSO can hand us larger than MTU frames).
RECV_SIZE = 262144
# Frames read from one socket before the others get their turn.
BATCH = 256
LINKTYPE_USER0 = 147
SO_TIMESTAMPNS = 35
PACKET_AUXDATA = 8
TP_STATUS_VLAN_VALID = 0x10
TP_STATUS_VLAN_TPID_VALID = 0x40
_TIMESPEC = struct.Struct("qq")
_AUXDATA = struct.Struct("IIIHHHH")  # struct tpacket_auxdata
_VLAN = struct.Struct("!HH")
_ANCILLARY = socket.CMSG_SPACE(16) + socket.CMSG_SPACE(_AUXDATA.size)

# ARPHRD_* (the socket's hardware type) -> LINKTYPE_* of the frames a raw packet
# socket returns.  Tunnels and tun devices hand over bare IP packets.
_LINKTYPES = {
    1: 1,  # ARPHRD_ETHER
    ARPHRD_LOOPBACK: 1,  # Linux loopback carries a zeroed Ethernet header
    512: 101,  # ARPHRD_PPP
    768: 101,  # ARPHRD_TUNNEL (ipip)
    769: 101,  # ARPHRD_TUNNEL6
    776: 101,  # ARPHRD_SIT
    778: 101,  # ARPHRD_IPGRE
    823: 101,  # ARPHRD_IP6GRE
    65534: 101,  # ARPHRD_NONE (tun, wireguard)
}


class LiveCaptureError(CaptureError):
    """Capture cannot start: no permission, no such interface, a bad filter."""


class InterfaceDown(CaptureError):
    """An interface went down (or away) during the capture."""


@dataclass(slots=True)
class _Socket:
    name: str
    linktype: int
    loopback: bool
    sock: Any  # scapy L2ListenSocket
    fd: socket.socket


def interface_names() -> list[str]:
    """The interfaces a capture can open (as scapy sees them), sorted."""
    _quiet_scapy()
    from scapy.interfaces import get_if_list

    return sorted(get_if_list())


def _quiet_scapy() -> None:
    logging.getLogger("scapy").setLevel(logging.ERROR)


def _open_error(name: str, exc: BaseException) -> LiveCaptureError:
    if isinstance(exc, PermissionError) or getattr(exc, "errno", None) in (errno.EPERM, errno.EACCES):
        return LiveCaptureError(
            f"no permission to capture on {name}: run as root, or grant the capability with "
            f"'sudo setcap cap_net_raw,cap_net_admin=eip {os.path.realpath(sys.executable)}'")
    if getattr(exc, "errno", None) == errno.ENETDOWN:
        return LiveCaptureError(f"interface {name} is down (bring it up: ip link set {name} up)")
    if getattr(exc, "errno", None) in (errno.ENODEV, errno.ENXIO):
        return LiveCaptureError(f"no such interface: {name} (see 'ip link')")
    text = " ".join(str(exc).split())
    if "filter" in text.lower():
        return LiveCaptureError(f"invalid capture filter: {text.removeprefix('Cannot set filter: ')}")
    return LiveCaptureError(f"cannot capture on {name}: {text}")


class LiveCapture:
    """Packet sockets on one or more interfaces (``any``: every interface now present)."""

    def __init__(self, interfaces: Sequence[str], bpf: str | None = None, promisc: bool = True,
                 buffer_bytes: int = 32 << 20) -> None:
        _quiet_scapy()
        try:
            from scapy.arch.linux import L2ListenSocket
        except ImportError as exc:  # pragma: no cover - scapy is a dependency; non-Linux
            raise LiveCaptureError(f"live capture needs scapy on Linux: {exc}") from None
        known = interface_names()
        names: list[str] = []
        optional: set[str] = set()  # found by "any": skipped when down
        for name in interfaces:
            wanted = known if name == "any" else [name]
            if name == "any":
                optional.update(n for n in known if n not in names)
            else:
                optional.discard(name)
            names.extend(n for n in wanted if n not in names)
        for name in names:
            if name not in known:
                raise LiveCaptureError(
                    f"no such interface: {name} (available: {', '.join(known) or 'none'}; 'any' for all)")
        self.bpf = bpf
        self._buffer = bytearray(RECV_SIZE)
        self._view = memoryview(self._buffer)
        self._sockets: list[_Socket] = []
        self.kernel_received = 0
        self.kernel_dropped = 0
        self.skipped: list[str] = []  # interfaces of "any" that were down
        self.lost: list[str] = []  # interfaces of "any" that went down while capturing
        self._optional = optional
        try:
            for name in names:
                try:
                    sock = L2ListenSocket(iface=name, filter=bpf, promisc=promisc)
                except Exception as exc:  # scapy raises its own types for filters and OSError otherwise
                    if name in optional and getattr(exc, "errno", None) == errno.ENETDOWN:
                        self.skipped.append(name)
                        continue
                    raise _open_error(name, exc) from None
                fd = sock.ins
                # scapy asks for both; make sure, since the frames are read here
                fd.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
                fd.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                _set_buffer(fd, buffer_bytes)
                fd.setblocking(False)
                hatype = fd.getsockname()[3]
                if hatype == ARPHRD_LOOPBACK:
                    # Loopback delivers every frame twice (out, then in): have the kernel
                    # keep the outgoing copies away (Linux >= 4.20) instead of reading
                    # and dropping them; the check in _drain covers older kernels.
                    with contextlib.suppress(OSError):
                        fd.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
                self._sockets.append(_Socket(name, _LINKTYPES.get(hatype, LINKTYPE_USER0),
                                             hatype == ARPHRD_LOOPBACK, sock, fd))
            if not self._sockets:
                raise LiveCaptureError(f"no interface to capture on is up (down: {', '.join(self.skipped)})")
        except BaseException:
            self.close()
            raise

    @property
    def interfaces(self) -> list[tuple[str, int]]:
        """(name, link type) of every open socket."""
        return [(s.name, s.linktype) for s in self._sockets]

    def batches(self, tick: float) -> Iterator[list[tuple[Packet, str]]]:
        """Yield lists of ``((ts, linktype, frame), interface)``; an empty list after
        ``tick`` seconds without traffic.

        An interface that ``any`` brought in and that goes down is dropped (listed in
        ``lost``) while others remain; a named one, or the last one, raises
        :class:`InterfaceDown`."""
        while True:
            fds = [s.fd for s in self._sockets]
            by_fd = {s.fd.fileno(): s for s in self._sockets}
            try:
                readable, _, _ = select.select(fds, [], [], tick)
            except InterruptedError:  # pragma: no cover - PEP 475 retries; kept for safety
                readable = []
            batch: list[tuple[Packet, str]] = []
            for fd in readable:
                s = by_fd[fd.fileno()]
                try:
                    self._drain(s, batch)
                except InterfaceDown:
                    if s.name not in self._optional or len(self._sockets) == 1:
                        raise
                    self.lost.append(s.name)
                    self.statistics()
                    self._sockets.remove(s)
                    with contextlib.suppress(OSError):
                        s.sock.close()
            yield batch

    def _drain(self, s: _Socket, batch: list[tuple[Packet, str]]) -> None:
        """Read what is queued on one socket (at most :data:`BATCH` frames).

        ``recvmsg_into`` a buffer allocated once: a fresh 256 KiB buffer per frame would
        cost more than analysing the frame.  The kernel timestamp and a VLAN tag it
        stripped come in the ancillary data (as scapy reads them; done here so that
        no per-frame scapy code runs)."""
        recv = s.fd.recvmsg_into
        buffers = [self._buffer]
        view = self._view
        linktype, name, loopback = s.linktype, s.name, s.loopback
        append = batch.append
        for _ in range(BATCH):
            try:
                size, ancillary, _flags, addr = recv(buffers, _ANCILLARY)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in (errno.ENETDOWN, errno.ENODEV, errno.ENXIO):
                    raise InterfaceDown(f"interface {name} went down: {exc.strerror}") from None
                raise
            if loopback and addr[2] == PACKET_OUTGOING:
                continue  # loopback shows every frame twice: keep the incoming copy
            frame = bytes(view[:size])
            ts = 0.0
            for level, kind, data in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
                    sec, nsec = _TIMESPEC.unpack_from(data)
                    ts = sec + nsec * 1e-9
                elif level == SOL_PACKET and kind == PACKET_AUXDATA and len(data) >= _AUXDATA.size:
                    status, _, _, _, _, tci, tpid = _AUXDATA.unpack_from(data)
                    if (tci or status & TP_STATUS_VLAN_VALID) and len(frame) >= 12:
                        if not status & TP_STATUS_VLAN_TPID_VALID:
                            tpid = 0x8100
                        frame = frame[:12] + _VLAN.pack(tpid, tci) + frame[12:]
            append(((ts or time.time(), linktype, frame), name))

    def statistics(self) -> tuple[int, int]:
        """(received, dropped) by the kernel for our sockets since the start."""
        for s in self._sockets:
            try:
                received, dropped = struct.unpack("II", s.fd.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
            except OSError:
                continue
            # the kernel resets the counters on every read
            self.kernel_received += received
            self.kernel_dropped += dropped
        return self.kernel_received, self.kernel_dropped

    def close(self) -> None:
        """Read the final kernel counters and close every socket (idempotent)."""
        try:
            self.statistics()
        finally:
            for s in self._sockets:
                with contextlib.suppress(OSError):
                    s.sock.close()
            self._sockets = []


def _set_buffer(fd: socket.socket, size: int) -> None:
    """A large kernel buffer absorbs bursts; SO_RCVBUFFORCE ignores rmem_max (root only)."""
    try:
        fd.setsockopt(socket.SOL_SOCKET, 33, size)  # SO_RCVBUFFORCE
    except OSError:
        fd.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


def can_capture() -> bool:
    """Whether this process may open packet sockets (root or CAP_NET_RAW)."""
    try:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    except OSError:
        return False
    s.close()
    return True

