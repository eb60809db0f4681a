"""Frame bytes -> one transport-layer :class:`Segment`, innermost addresses first.

Functions work over ``(buf, offset)`` with precompiled structs and build one object per
TCP/UDP packet; nothing else is allocated on the way.  Tunnels (GRE, ERSPAN, VXLAN,
Geneve, GTP-U, MPLS, IP-in-IP, PPPoE) are unwrapped and the inner packet is reported.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from tlsprobe.anomalies import AnomalyLog
from tlsprobe.decode.fragments import FragmentTable
from tlsprobe.limits import DEFAULT_LIMITS, Limits

PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ICMP = 1  # Segment.proto of an ICMP/ICMPv6 error, addressed as the packet it quotes

_IP4 = struct.Struct("!BBHHHBBH4s4s")
_TCP = struct.Struct("!HHIIBBH")
_UDP = struct.Struct("!HH")
_U16 = struct.Struct("!H")
_U32LE = struct.Struct("<I")
_U32BE = struct.Struct("!I")

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
_VLAN_TYPES = frozenset((0x8100, 0x88A8, 0x9100, 0x9200))
_IPV6_EXT = frozenset((0, 43, 60, 135, 139, 140))

# link types (LINKTYPE_*)
LT_NULL, LT_ETHERNET, LT_PPP, LT_RAW, LT_LOOP = 0, 1, 9, 101, 108
LT_PPP_HDLC, LT_PPPOE, LT_C_HDLC, LT_SLL, LT_RAW4, LT_RAW6, LT_SLL2 = 50, 51, 104, 113, 228, 229, 276
LINKTYPES = {
    LT_NULL: "null", LT_ETHERNET: "ethernet", LT_PPP: "ppp", LT_RAW: "raw", 12: "raw", 14: "raw",
    LT_LOOP: "loop", LT_PPP_HDLC: "ppp-hdlc", LT_PPPOE: "pppoe", LT_C_HDLC: "cisco-hdlc",
    LT_SLL: "linux-sll", LT_RAW4: "raw-ipv4", LT_RAW6: "raw-ipv6", LT_SLL2: "linux-sll2",
}


@dataclass(slots=True)
class Segment:
    """One TCP or UDP packet with the IP and transport fields later stages use."""

    ip_version: int
    src: bytes
    dst: bytes
    proto: int
    sport: int
    dport: int
    ttl: int
    ip_id: int
    df: bool
    flags: int
    seq: int
    ack: int
    window: int
    options: bytes
    payload: bytes
    tunnelled: bool = False
    flow_label: int = 0  # IPv6 only: constant per connection on Linux, 0 from most injectors
    # ICMP errors (proto PROTO_ICMP): src/dst/ports are those of the quoted packet (the
    # flow it reports on), flags = type << 8 | code, window = the quoted protocol, and
    # icmp_from = the address that sent the error.
    icmp_from: bytes = b""


class Decoder:
    """Decodes frames of any supported link type; owns IP fragment reassembly."""

    __slots__ = ("fragments", "limits", "log", "unknown_linktypes")

    def __init__(self, log: AnomalyLog, limits: Limits = DEFAULT_LIMITS) -> None:
        self.log = log
        self.limits = limits
        self.fragments = FragmentTable(limits, log)
        self.unknown_linktypes: set[int] = set()

    def decode(self, linktype: int, buf: bytes, ts: float) -> Segment | None:
        """The transport segment inside a frame, or None (not TCP/UDP, damaged, a fragment)."""
        try:
            if linktype == LT_ETHERNET:
                return self._ether(buf, 0, ts, 0)
            return self._link(linktype, buf, ts)
        except (struct.error, IndexError):
            self.log.add("decode.truncated")
            return None

    def _link(self, linktype: int, buf: bytes, ts: float) -> Segment | None:
        if linktype in (LT_RAW, 12, 14, LT_RAW4, LT_RAW6):
            return self._ip(buf, 0, len(buf), ts, 0)
        if linktype == LT_SLL:
            return self._ethertype(_U16.unpack_from(buf, 14)[0], buf, 16, ts, 0)
        if linktype == LT_SLL2:
            return self._ethertype(_U16.unpack_from(buf, 0)[0], buf, 20, ts, 0)
        if linktype in (LT_NULL, LT_LOOP):
            fam = (_U32BE if linktype == LT_LOOP else _U32LE).unpack_from(buf, 0)[0]
            if fam > 0xFFFF:  # written with the other byte order
                fam = _U32BE.unpack_from(buf, 0)[0] if linktype == LT_NULL else _U32LE.unpack_from(buf, 0)[0]
            if fam in (2, 24, 28, 30, 10, 23):
                return self._ip(buf, 4, len(buf), ts, 0)
            return None
        if linktype in (LT_PPP, LT_PPP_HDLC):
            off = 2 if buf[0] == 0xFF and buf[1] == 0x03 else 0
            return self._ppp(buf, off, ts, 0)
        if linktype == LT_PPPOE:
            return self._ppp(buf, 6, ts, 0)
        if linktype == LT_C_HDLC:
            return self._ethertype(_U16.unpack_from(buf, 2)[0], buf, 4, ts, 0)
        if linktype not in self.unknown_linktypes:
            self.unknown_linktypes.add(linktype)
        self.log.add("capture.unknown_linktype")
        return None

    def _ppp(self, buf: bytes, off: int, ts: float, depth: int) -> Segment | None:
        proto = buf[off]
        if proto & 1:  # protocol field compressed to one byte
            off += 1
        else:
            proto = _U16.unpack_from(buf, off)[0]
            off += 2
        if proto in (0x0021, 0x0057):
            return self._ip(buf, off, len(buf), ts, depth)
        return None

    def _ether(self, buf: bytes, off: int, ts: float, depth: int) -> Segment | None:
        etype = (buf[off + 12] << 8) | buf[off + 13]
        return self._ethertype(etype, buf, off + 14, ts, depth)

    def _ethertype(self, etype: int, buf: bytes, off: int, ts: float, depth: int) -> Segment | None:
        while etype in _VLAN_TYPES:
            etype = (buf[off + 2] << 8) | buf[off + 3]
            off += 4
        if etype in (ETH_IPV4, ETH_IPV6):
            return self._ip(buf, off, len(buf), ts, depth)
        if etype == 0x8864:  # PPPoE session
            return self._ppp(buf, off + 6, ts, depth)
        if etype in (0x8847, 0x8848):
            return self._mpls(buf, off, ts, depth)
        return None

    def _mpls(self, buf: bytes, off: int, ts: float, depth: int) -> Segment | None:
        while True:
            bottom = buf[off + 2] & 1
            off += 4
            if bottom:
                break
        nibble = buf[off] >> 4
        if nibble in (4, 6):
            return self._ip(buf, off, len(buf), ts, depth)
        if nibble == 0:  # pseudowire control word, then Ethernet
            return self._ether(buf, off + 4, ts, depth + 1)
        return None

    def _ip(self, buf: bytes, off: int, end: int, ts: float, depth: int) -> Segment | None:
        if depth > self.limits.max_tunnel_depth:
            self.log.add("decode.tunnel_depth")
            return None
        v = buf[off] >> 4
        if v == 4:
            return self._ip4(buf, off, end, ts, depth)
        if v == 6:
            return self._ip6(buf, off, end, ts, depth)
        self.log.add("decode.bad_ip")
        return None

    def _ip4(self, buf: bytes, off: int, end: int, ts: float, depth: int) -> Segment | None:
        vihl, _tos, total, ip_id, frag, ttl, proto, _ck, src, dst = _IP4.unpack_from(buf, off)
        ihl = (vihl & 0x0F) * 4
        if ihl < 20 or total < ihl:
            self.log.add("decode.bad_ip")
            return None
        ip_end = min(off + total, end)
        l4 = off + ihl
        if frag & 0x3FFF:  # MF set or offset non-zero
            whole = self.fragments.add(
                (4, src, dst, proto, ip_id), (frag & 0x1FFF) * 8, bool(frag & 0x2000), buf[l4:ip_end], ts
            )
            if whole is None:
                return None
            buf, l4, ip_end = whole, 0, len(whole)
        return self._l4(4, src, dst, proto, ttl, ip_id, bool(frag & 0x4000), buf, l4, ip_end, ts, depth)

    def _ip6(self, buf: bytes, off: int, end: int, ts: float, depth: int) -> Segment | None:
        plen = _U16.unpack_from(buf, off + 4)[0]
        nxt = buf[off + 6]
        hlim = buf[off + 7]
        label = _U32BE.unpack_from(buf, off)[0] & 0xFFFFF
        src = buf[off + 8 : off + 24]
        dst = buf[off + 24 : off + 40]
        if len(dst) < 16:
            raise IndexError
        p = off + 40
        ip_end = min(p + plen, end) if plen else end  # jumbograms carry length 0
        frag_id = 0
        for _ in range(8):
            if nxt in _IPV6_EXT:
                nxt, p = buf[p], p + (buf[p + 1] + 1) * 8
            elif nxt == 51:  # AH: length in 4-octet units minus 2
                nxt, p = buf[p], p + (buf[p + 1] + 2) * 4
            elif nxt == 44:
                fnext = buf[p]
                fo = _U16.unpack_from(buf, p + 2)[0]
                frag_id = _U32BE.unpack_from(buf, p + 4)[0]
                p += 8
                if fo & 0xFFF9:  # offset non-zero or more fragments
                    whole = self.fragments.add(
                        (6, src, dst, fnext, frag_id), fo & 0xFFF8, bool(fo & 1), buf[p:ip_end], ts
                    )
                    if whole is None:
                        return None
                    buf, p, ip_end = whole, 0, len(whole)
                nxt = fnext
            else:
                break
        if p > ip_end:
            self.log.add("decode.truncated")
            return None
        return self._l4(6, src, dst, nxt, hlim, frag_id, False, buf, p, ip_end, ts, depth, label)

    @staticmethod
    def _icmp(ipv: int, sender: bytes, ttl: int, buf: bytes, p: int, end: int, depth: int) -> Segment | None:
        """An ICMP destination-unreachable / time-exceeded (ICMPv6 1 / 3) quoting a TCP or
        UDP packet: a Segment addressed as the quoted packet; other ICMP is not used."""
        icmp_type, code = buf[p], buf[p + 1]
        q = p + 8
        if ipv == 4 and icmp_type in (3, 11) and end - q >= 28 and buf[q] >> 4 == 4:
            ihl = (buf[q] & 0x0F) * 4
            proto, src, dst = buf[q + 9], buf[q + 12 : q + 16], buf[q + 16 : q + 20]
            l4 = q + ihl
        elif ipv == 6 and icmp_type in (1, 3) and end - q >= 44 and buf[q] >> 4 == 6:
            proto, src, dst = buf[q + 6], buf[q + 8 : q + 24], buf[q + 24 : q + 40]
            l4 = q + 40
        else:
            return None
        if proto not in (PROTO_TCP, PROTO_UDP) or l4 + 4 > end:
            return None
        sport, dport = _UDP.unpack_from(buf, l4)
        return Segment(ipv, src, dst, PROTO_ICMP, sport, dport, ttl, 0, False, icmp_type << 8 | code, 0, 0, proto,
                       b"", b"", depth > 0, 0, sender)

    def _l4(
        self, ipv: int, src: bytes, dst: bytes, proto: int, ttl: int, ip_id: int, df: bool,
        buf: bytes, p: int, end: int, ts: float, depth: int, label: int = 0,
    ) -> Segment | None:
        if proto == PROTO_TCP:
            sport, dport, seq, ack, doff, flags, win = _TCP.unpack_from(buf, p)
            hl = (doff >> 4) * 4
            if hl < 20:
                self.log.add("decode.truncated")
                return None
            return Segment(
                ipv, src, dst, PROTO_TCP, sport, dport, ttl, ip_id, df, flags, seq, ack, win,
                buf[p + 20 : p + hl], buf[p + hl : end], depth > 0, label,
            )
        if proto == PROTO_UDP:
            sport, dport = _UDP.unpack_from(buf, p)
            if dport == 4789 or (dport == 4790 and buf[p + 8] & 0x08):  # VXLAN (GPE checks I flag)
                return self._ether(buf, p + 16, ts, depth + 1)
            if dport == 6081:  # Geneve
                optlen = (buf[p + 8] & 0x3F) * 4
                ptype = _U16.unpack_from(buf, p + 10)[0]
                inner = p + 16 + optlen
                if ptype == 0x6558:
                    return self._ether(buf, inner, ts, depth + 1)
                return self._ethertype(ptype, buf, inner, ts, depth + 1)
            if dport == 2152 or sport == 2152:  # GTP-U
                return self._gtp(buf, p + 8, end, ts, depth + 1)
            return Segment(
                ipv, src, dst, PROTO_UDP, sport, dport, ttl, ip_id, df, 0, 0, 0, 0, b"", buf[p + 8 : end], depth > 0,
                label,
            )
        if proto == 1 or proto == 58:
            return self._icmp(ipv, src, ttl, buf, p, end, depth)
        if proto == 47:
            return self._gre(buf, p, end, ts, depth + 1)
        if proto in (4, 41):  # IP-in-IP, IPv6-in-IP
            return self._ip(buf, p, end, ts, depth + 1)
        return None

    def _gre(self, buf: bytes, p: int, end: int, ts: float, depth: int) -> Segment | None:
        flags = _U16.unpack_from(buf, p)[0]
        ptype = _U16.unpack_from(buf, p + 2)[0]
        q = p + 4
        if flags & 0x8000:  # checksum present
            q += 4
        if flags & 0x2000:  # key
            q += 4
        seq_present = bool(flags & 0x1000)
        if seq_present:
            q += 4
        if ptype == 0x88BE:  # ERSPAN type II (type I has no sequence number and no header)
            return self._ether(buf, q + 8 if seq_present else q, ts, depth)
        if ptype == 0x22EB:  # ERSPAN type III, optional 8-byte platform sub-header
            return self._ether(buf, q + 12 + (8 if buf[q + 11] & 1 else 0), ts, depth)
        if ptype == 0x6558:
            return self._ether(buf, q, ts, depth)
        if ptype in (ETH_IPV4, ETH_IPV6):
            return self._ip(buf, q, end, ts, depth)
        if ptype in (0x8847, 0x8848):
            return self._mpls(buf, q, ts, depth)
        return None

    def _gtp(self, buf: bytes, p: int, end: int, ts: float, depth: int) -> Segment | None:
        flags = buf[p]
        if flags >> 5 != 1 or buf[p + 1] != 0xFF:  # GTPv1, T-PDU only
            return None
        q = p + 8
        if flags & 0x07:
            nxt = buf[q + 3]
            q += 4
            while nxt:
                ln = buf[q] * 4
                if ln == 0:
                    return None
                nxt = buf[q + ln - 1]
                q += ln
        return self._ip(buf, q, end, ts, depth)
