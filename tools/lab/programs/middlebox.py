"""Userspace router with an on-path / in-line censorship middlebox, for ``tp-router``.

The lab router's kernel forwarding is switched off and this program forwards
instead: one ``AF_PACKET`` socket on each router interface, every IPv4/IPv6 frame
whose destination lies in the other side's network is copied across with the
Ethernet addresses rewritten (out interface -> next hop), the TTL / hop limit
decremented and the IPv4 header checksum fixed. TCP payloads are never changed.
Frames for the router itself (ARP, neighbour discovery, a local proxy) are left
to the kernel.

The router<->server link is given a one-way delay (``--delay-ms``): frames sent
out of the server-side interface and frames received from it wait that long in a
queue. The kernel has no netem, so the delay lives here; it makes the real
server measurably slower (RTT ~ 2 x delay) than an injector sitting in the router.

A JSON rule file (``--rules``, re-read on SIGHUP) says what the middlebox does::

    {"local_ports": [443],            # c2s TCP to these ports is left to the kernel
     "rules": [{
        "name": "gfw", "ports": [8443],
        "trigger": "tls_sni",          # tls_sni | http_host | payload | first_payload_once
        "match": ["blocked.tlsprobe.test"],   # exact names or ".suffix"
        "single_segment_only": true,   # a hello longer than its segment -> no action
        "require_tcp_header_len": 20,  # Henan: only packets without TCP options
        "forward_trigger": true,       # on-path (true) or in-line (false, dropped)
        "after": "pass",               # pass | block (drop the flow both ways) | blackhole
        "delay_ms": 0,                 # injector reaction time
        "inject": [{"to": "client", "flags": "RA", "count": 3, "ttl": 101,
                    "ip_id": 4242, "df": 1, "window": 0, "payload": ""}]}]}

``ip_id`` may also be ``"random"`` (a fresh random value per injected packet) or
``"increment"`` (``ip_id_base`` + a counter, +1 per injected packet; the counter is
the rule's own unless specs name a shared ``counter``).
A rule with ``"trigger": "quic_sni"`` applies to UDP: the client's QUIC Initial is
decrypted (RFC 9001 Initial keys, via ``tlsprobe.wire.quic``), and when its SNI
matches, that datagram and every later UDP datagram between the client and that
server:port is dropped for ``residual_s`` seconds (GFW-style residual blocking).
A rule with ``"trigger": "quic_drop_once"`` drops only the first client datagram of a
connection whose Initial carries a listed SNI and lets everything after it through
(one lost Initial: the client retransmits).
Top-level ``local_ips`` are left to the router's kernel like ``local_ports`` (an
intercepting proxy that owns that address); ``local_dsts`` lists ``[IP, PORT]``
pairs whose client-to-server TCP is left to the kernel (a transparent proxy that
intercepts only some ports of some servers: policy routing delivers those SYNs to
the proxy's ``IP_TRANSPARENT`` listener, every other flow to the same address is
forwarded to the real server); ``ttl_wander`` lists
``{"server": IP, "port": P, "max_extra": 2, "seed": N}``: forwarded packets from that
server:port get an extra TTL decrement drawn from 0..max_extra per packet (a path
whose length wanders, e.g. ECMP).

An inject spec may also imitate the server's own kernel: ``"window": "server"``
(the last window the server advertised in a non-SYN segment of this flow; the
client's own window of the trigger before that - same kernel defaults), ``"tcp_timestamps": true``
(NOP NOP TS with TSval = the server's last TSval advanced by the elapsed
milliseconds, TSecr = the client's last TSval; only when the flow negotiated
timestamps) and ``"flow_label": "server"`` (IPv6: the server's flow label).
ICMP and ICMPv6 (errors such as port unreachable) are forwarded like any other
packet between the two networks.

``ttl``/``ip_id``/``df``/``window`` may be ``"copy"``: taken from the triggering
client packet (as received, before the TTL decrement) like USTC webcontrol, which
copies the client's IP header and swaps the addresses. ``payload`` is hex, or
``payload_text`` literal text. Injected segments carry no TCP options (unless
``tcp_timestamps``); sequence
numbers are exact (``seq`` = the trigger's ack number towards the client, the
trigger's end towards the server) and advance over injected payload and FIN.
A ``"block"`` flow whose client later sends FIN gets that FIN acknowledged.

Every action is reported as one JSON line on stdout (``ready``, ``reloaded``,
``trigger``, ``inject``, ``drop``). Stdlib only; run as root::

    ip netns exec tp-router python3 middlebox.py --rules rules.json \\
        --client-if eth-client --client-mac 02:.. --server-if eth-server --server-mac 02:.. \\
        --client-net 10.77.1.0/24 --client-net fd77:1::/64 \\
        --server-net 10.77.2.0/24 --server-net fd77:2::/64 --delay-ms 40
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import ipaddress
import json
import random
import select
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
PACKET_OUTGOING = 4
IPPROTO_TCP = 6
IPPROTO_UDP = 17
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
FLAG_BITS = {"F": FIN, "S": SYN, "R": RST, "P": PSH, "A": ACK}

IpNet = ipaddress.IPv4Network | ipaddress.IPv6Network


def emit(event: str, **fields: Any) -> None:
    """Print one JSON event line (with a monotonic-ish wall-clock timestamp)."""
    print(json.dumps({"event": event, "t": round(time.time(), 6), **fields}), flush=True)


def mac_bytes(text: str) -> bytes:
    """``aa:bb:..`` -> 6 bytes."""
    return bytes(int(part, 16) for part in text.split(":"))


def checksum(data: bytes) -> int:
    """RFC 1071 Internet checksum."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


# -- parsing ---------------------------------------------------------------------------


@dataclass
class Tcp:
    """The fields of one IPv4/IPv6 TCP packet that the middlebox needs."""

    version: int
    src: str
    dst: str
    src_raw: bytes
    dst_raw: bytes
    ttl: int
    ip_id: int
    df: int
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    window: int
    tcp_header_len: int
    payload: bytes
    ts_val: int | None = None  # TCP timestamps option, when present
    ts_ecr: int | None = None
    flow_label: int = 0  # IPv6 only


def tcp_timestamps(options: bytes) -> tuple[int, int] | None:
    """(TSval, TSecr) of a TCP option block, or ``None``."""
    pos = 0
    while pos < len(options):
        kind = options[pos]
        if kind == 0:
            break
        if kind == 1:
            pos += 1
            continue
        if pos + 1 >= len(options) or options[pos + 1] < 2:
            break
        length = options[pos + 1]
        if kind == 8 and length == 10 and pos + 10 <= len(options):
            val, ecr = struct.unpack("!II", options[pos + 2 : pos + 10])
            return val, ecr
        pos += length
    return None


def parse_tcp(ip: bytes) -> Tcp | None:
    """Parse an IP packet (no link header); ``None`` unless it is an unfragmented TCP packet."""
    if not ip:
        return None
    version = ip[0] >> 4
    if version == 4:
        ihl = (ip[0] & 0x0F) * 4
        total, ip_id, frag = struct.unpack("!HHH", ip[2:8])
        if ip[9] != IPPROTO_TCP or frag & 0x3FFF:  # a fragment (offset or MF set)
            return None
        ttl, src_raw, dst_raw = ip[8], ip[12:16], ip[16:20]
        df = 1 if frag & 0x4000 else 0
        seg = ip[ihl:total]
    elif version == 6:
        if ip[6] != IPPROTO_TCP:  # extension headers are not needed in the lab
            return None
        plen = struct.unpack("!H", ip[4:6])[0]
        ttl, src_raw, dst_raw, ip_id, df = ip[7], ip[8:24], ip[24:40], 0, 0
        seg = ip[40 : 40 + plen]
    else:
        return None
    if len(seg) < 20:
        return None
    sport, dport, seq, ack, off_flags, window = struct.unpack("!HHIIHH", seg[:16])
    thl = (off_flags >> 12) * 4
    ts = tcp_timestamps(seg[20:thl])
    return Tcp(
        version=version,
        src=str(ipaddress.ip_address(src_raw)),
        dst=str(ipaddress.ip_address(dst_raw)),
        src_raw=src_raw,
        dst_raw=dst_raw,
        ttl=ttl,
        ip_id=ip_id,
        df=df,
        sport=sport,
        dport=dport,
        seq=seq,
        ack=ack,
        flags=off_flags & 0x3F,
        window=window,
        tcp_header_len=thl,
        payload=seg[thl:],
        ts_val=ts[0] if ts else None,
        ts_ecr=ts[1] if ts else None,
        flow_label=struct.unpack("!I", ip[0:4])[0] & 0xFFFFF if version == 6 else 0,
    )


@dataclass
class Udp:
    """The fields of one unfragmented IPv4/IPv6 UDP datagram the middlebox needs."""

    src: str
    dst: str
    sport: int
    dport: int
    payload: bytes


def parse_udp(ip: bytes) -> Udp | None:
    """Parse an IP packet; ``None`` unless it is an unfragmented UDP datagram."""
    if not ip:
        return None
    version = ip[0] >> 4
    if version == 4:
        ihl = (ip[0] & 0x0F) * 4
        total, _, frag = struct.unpack("!HHH", ip[2:8])
        if ip[9] != IPPROTO_UDP or frag & 0x3FFF:
            return None
        src_raw, dst_raw, seg = ip[12:16], ip[16:20], ip[ihl:total]
    elif version == 6:
        if ip[6] != IPPROTO_UDP:
            return None
        src_raw, dst_raw, seg = ip[8:24], ip[24:40], ip[40 : 40 + struct.unpack("!H", ip[4:6])[0]]
    else:
        return None
    if len(seg) < 8:
        return None
    sport, dport = struct.unpack("!HH", seg[:4])
    return Udp(str(ipaddress.ip_address(src_raw)), str(ipaddress.ip_address(dst_raw)), sport, dport, seg[8:])


def quic_initial_sni(datagram: bytes) -> str | None:
    """SNI of the ClientHello in a client's QUIC Initial datagram, or ``None``.

    Decrypts the Initial packets with the keys derived from the Destination Connection
    ID (RFC 9001 5.2) using tlsprobe's wire helpers; only the CRYPTO bytes from offset
    0 that this one datagram carries are parsed (a hello spread over several
    datagrams is let through, like a single-datagram DPI).
    """
    try:
        from tlsprobe.wire import quic
    except ImportError:  # pragma: no cover - the lab runs with tlsprobe importable
        return None
    chunks: dict[int, bytes] = {}
    try:
        for header in quic.iter_datagram(datagram):
            if header.packet_type != "initial":
                continue
            client_keys, _ = quic.derive_initial_keys(header.version, header.dcid)
            packet = quic.open_initial(datagram, header, client_keys)
            for frame in quic.parse_frames(packet.payload):
                if frame.type == 0x06:
                    chunks[frame.offset] = frame.data
    except Exception:  # anything undecodable is simply not a trigger
        return None
    data, pos = b"", 0
    while pos in chunks:
        data += chunks[pos]
        pos += len(chunks[pos])
    if not data:
        return None
    status, sni = parse_sni(b"\x16\x03\x01" + struct.pack("!H", len(data)) + data)
    return sni if status == "ok" else None


def parse_sni(data: bytes) -> tuple[str, str | None]:
    """Return (status, sni) for a TCP payload: status ``ok``, ``incomplete`` or ``not_hello``.

    Like webcontrol and the devices in the catalog, only this one segment is looked
    at: a record longer than the segment is ``incomplete`` (fail-open).
    """
    if len(data) < 5 or data[0] != 0x16 or data[1] != 3:
        return "not_hello", None
    record_len = struct.unpack("!H", data[3:5])[0]
    if len(data) < 5 + record_len:
        return "incomplete", None
    body = data[5 : 5 + record_len]
    try:
        if body[0] != 1:
            return "not_hello", None
        pos = 4 + 2 + 32
        pos += 1 + body[pos]
        pos += 2 + struct.unpack("!H", body[pos : pos + 2])[0]
        pos += 1 + body[pos]
        end = pos + 2 + struct.unpack("!H", body[pos : pos + 2])[0]
        pos += 2
        while pos + 4 <= end:
            etype, elen = struct.unpack("!HH", body[pos : pos + 4])
            if etype == 0:
                ext = body[pos + 4 : pos + 4 + elen]
                name_len = struct.unpack("!H", ext[3:5])[0]
                return "ok", ext[5 : 5 + name_len].decode("ascii", "replace")
            pos += 4 + elen
    except (IndexError, struct.error):
        return "not_hello", None
    return "ok", None


HTTP_METHODS = (b"GET ", b"POST ", b"HEAD ", b"PUT ", b"OPTIONS ", b"DELETE ")


def parse_host(data: bytes) -> str | None:
    """Host header of a plaintext HTTP request in one segment (port stripped), else ``None``."""
    if not data.startswith(HTTP_METHODS):
        return None
    for line in data.split(b"\r\n")[1:]:
        if not line:
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"host":
            host = value.strip().decode("ascii", "replace")
            return host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return None


def is_ip_literal(name: str) -> bool:
    """True for an IPv4/IPv6 literal (devices in the catalog let these pass)."""
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


def name_matches(name: str, patterns: list[str]) -> bool:
    """Exact name match, or suffix match for patterns that start with a dot."""
    name = name.lower().rstrip(".")
    return any(name == p or (p.startswith(".") and name.endswith(p)) for p in patterns)


# -- building forged segments ------------------------------------------------------------


def build_ip_tcp(
    version: int,
    src: bytes,
    dst: bytes,
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    window: int,
    payload: bytes,
    ttl: int,
    ip_id: int,
    df: int,
    options: bytes = b"",
    flow_label: int = 0,
) -> bytes:
    """An IPv4 or IPv6 packet carrying one TCP segment (``options`` padded to 4 bytes; struct only)."""
    options += b"\0" * (-len(options) % 4)
    offset = (20 + len(options)) // 4
    tcp = struct.pack(
        "!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, offset << 4, flags, window, 0, 0
    ) + options
    seg_len = len(tcp) + len(payload)
    if version == 4:
        pseudo = src + dst + struct.pack("!BBH", 0, IPPROTO_TCP, seg_len)
    else:
        pseudo = src + dst + struct.pack("!IxxxB", seg_len, IPPROTO_TCP)
    csum = checksum(pseudo + tcp + payload)
    tcp = tcp[:16] + struct.pack("!H", csum) + tcp[18:]
    if version == 4:
        header = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + seg_len, ip_id & 0xFFFF, 0x4000 if df else 0, ttl, IPPROTO_TCP, 0, src, dst
        )
        header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    else:
        header = struct.pack("!IHBB16s16s", 6 << 28 | flow_label & 0xFFFFF, seg_len, IPPROTO_TCP, ttl, src, dst)
    return header + tcp + payload


# -- rules and flows ---------------------------------------------------------------------


@dataclass
class Flow:
    """Per-connection state, keyed by (client ip, client port, server ip, server port)."""

    fired: bool = False
    state: str = "pass"  # pass | block | blackhole
    to_client_seq: int = 0  # next sequence number in the server->client direction
    to_client_ack: int = 0
    seen_payload: bool = False
    dropped_once: bool = False
    server_ts: tuple[int, float] | None = None  # (last TSval from the server, when seen)
    client_ts: int | None = None  # last TSval from the client
    server_window: int | None = None  # last window of a non-SYN server segment (scaled, as sent)
    server_flow_label: int = 0


@dataclass(order=True)
class Pending:
    """A frame waiting in the delay line."""

    due: float
    order: int
    kind: str = field(compare=False)  # "send" (out of iface) | "recv" (from iface, not yet processed)
    iface: str = field(compare=False)
    frame: bytes = field(compare=False)


class Middlebox:
    """The forwarding loop plus the rule engine."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rules_path = Path(args.rules) if args.rules else None
        self.rules: list[dict[str, Any]] = []
        self.local_ports: set[int] = set()
        self.client_nets: list[IpNet] = [ipaddress.ip_network(n) for n in args.client_net]
        self.server_nets: list[IpNet] = [ipaddress.ip_network(n) for n in args.server_net]
        self.delay = args.delay_ms / 1000.0
        self.socks: dict[str, socket.socket] = {}
        self.own_mac: dict[str, bytes] = {}
        self.next_hop = {args.client_if: mac_bytes(args.client_mac), args.server_if: mac_bytes(args.server_mac)}
        self.other = {args.client_if: args.server_if, args.server_if: args.client_if}
        for ifname in (args.client_if, args.server_if):
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            sock.bind((ifname, 0))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            self.socks[ifname] = sock
            self.own_mac[ifname] = mac_bytes(Path(f"/sys/class/net/{ifname}/address").read_text().strip())
        self.flows: dict[tuple[str, int, str, int], Flow] = {}
        self.queue: list[Pending] = []
        self.counter = 0
        self.reload_requested = False
        self.rng = random.Random()
        self.local_ips: set[str] = set()
        self.wander: dict[tuple[str, int], tuple[int, random.Random]] = {}
        self.quic_blocked: dict[tuple[str, str, int], float] = {}  # (client, server, port) -> until
        self.quic_dropped_once: set[tuple[str, int, str, int]] = set()
        self.local_dsts: set[tuple[str, int]] = set()
        self.ip_id_counters: dict[str, int] = {}
        self.load_rules()

    # -- configuration -------------------------------------------------------------

    def load_rules(self) -> None:
        """(Re)read the rule file; forget all flow state."""
        doc: dict[str, Any] = {}
        if self.rules_path:
            doc = json.loads(self.rules_path.read_text())
        self.rules = list(doc.get("rules", []))
        self.local_ports = set(doc.get("local_ports", []))
        self.local_ips = {str(ipaddress.ip_address(a)) for a in doc.get("local_ips", [])}
        self.local_dsts = {(str(ipaddress.ip_address(a)), int(p)) for a, p in doc.get("local_dsts", [])}
        self.wander = {
            (str(ipaddress.ip_address(w["server"])), int(w["port"])): (
                int(w.get("max_extra", 2)),
                random.Random(w.get("seed", 0)),
            )
            for w in doc.get("ttl_wander", [])
        }
        self.flows.clear()
        self.quic_blocked.clear()
        self.quic_dropped_once.clear()
        self.ip_id_counters.clear()

    def on_sighup(self, *_: object) -> None:
        """Signal handler: reload at the next loop turn."""
        self.reload_requested = True

    # -- helpers -------------------------------------------------------------------------

    def in_nets(self, addr: str, nets: list[IpNet]) -> bool:
        """Is ``addr`` inside one of ``nets``?"""
        ip = ipaddress.ip_address(addr)
        return any(ip.version == n.version and ip in n for n in nets)

    def send_now(self, ifname: str, ip: bytes) -> None:
        """Put an IP packet on the wire of ``ifname`` with the right Ethernet header."""
        ethertype = ETH_P_IP if ip[0] >> 4 == 4 else ETH_P_IPV6
        frame = self.next_hop[ifname] + self.own_mac[ifname] + struct.pack("!H", ethertype) + ip
        self.socks[ifname].send(frame)

    def send(self, ifname: str, ip: bytes, extra_delay: float = 0.0) -> None:
        """Send out of ``ifname``; the server-side link adds the configured delay."""
        delay = extra_delay + (self.delay if ifname == self.args.server_if else 0.0)
        if delay <= 0:
            self.send_now(ifname, ip)
            return
        self.counter += 1
        heapq.heappush(self.queue, Pending(time.monotonic() + delay, self.counter, "send", ifname, ip))

    # -- the loop --------------------------------------------------------------------------

    def run(self) -> None:
        """Forward until SIGTERM."""
        emit("ready", rules=[r.get("name") for r in self.rules], delay_ms=self.args.delay_ms)
        fds = {sock.fileno(): name for name, sock in self.socks.items()}
        while True:
            if self.reload_requested:
                self.reload_requested = False
                self.load_rules()
                emit("reloaded", rules=[r.get("name") for r in self.rules], local_ports=sorted(self.local_ports))
            now = time.monotonic()
            while self.queue and self.queue[0].due <= now:
                item = heapq.heappop(self.queue)
                if item.kind == "send":
                    self.send_now(item.iface, item.frame)
                else:
                    self.process(item.iface, item.frame)
            timeout = max(0.0, self.queue[0].due - time.monotonic()) if self.queue else 0.5
            try:
                ready, _, _ = select.select(list(fds), [], [], timeout)
            except InterruptedError:
                continue
            for fd in ready:
                ifname = fds[fd]
                frame, addr = self.socks[ifname].recvfrom(65535)
                if addr[2] == PACKET_OUTGOING:
                    continue
                if ifname == self.args.server_if and self.delay > 0:
                    self.counter += 1
                    heapq.heappush(
                        self.queue, Pending(time.monotonic() + self.delay, self.counter, "recv", ifname, frame)
                    )
                else:
                    self.process(ifname, frame)

    def process(self, ifname: str, frame: bytes) -> None:
        """Route one received frame: ignore, forward, or hand it to the rule engine."""
        if len(frame) < 34:
            return
        ethertype = struct.unpack("!H", frame[12:14])[0]
        if ethertype not in (ETH_P_IP, ETH_P_IPV6):
            return
        ip = bytearray(frame[14:])
        if ethertype == ETH_P_IP:
            total = struct.unpack("!H", ip[2:4])[0]
            del ip[total:]
            dst = str(ipaddress.ip_address(bytes(ip[16:20])))
        else:
            del ip[40 + struct.unpack("!H", ip[4:6])[0] :]
            dst = str(ipaddress.ip_address(bytes(ip[24:40])))
        from_client = ifname == self.args.client_if
        target_nets = self.server_nets if from_client else self.client_nets
        if not self.in_nets(dst, target_nets):
            return  # for the router itself, or not routable here
        if from_client and dst in self.local_ips:
            return  # an address the router itself answers for (an intercepting proxy)
        tcp = parse_tcp(bytes(ip))
        if tcp and from_client and (tcp.dport in self.local_ports or (tcp.dst, tcp.dport) in self.local_dsts):
            return  # policy routing delivers it to a local (transparent proxy) socket
        if tcp and not self.inspect(tcp, from_client, bytes(ip)):
            return
        if tcp is None and not self.inspect_udp(bytes(ip), from_client):
            return
        extra = 0
        if tcp and not from_client and self.wander:
            wander = self.wander.get((tcp.src, tcp.sport))
            if wander:
                extra = wander[1].randint(0, wander[0])
        self.forward(ifname, ip, extra)

    def inspect_udp(self, ip: bytes, from_client: bool) -> bool:
        """QUIC SNI rules with residual blocking; return whether to forward the datagram."""
        quic_rules = [r for r in self.rules if r.get("trigger") in ("quic_sni", "quic_drop_once")]
        if not quic_rules:
            return True
        udp = parse_udp(ip)
        if udp is None:
            return True
        key = (udp.src, udp.dst, udp.dport) if from_client else (udp.dst, udp.src, udp.sport)
        now = time.monotonic()
        until = self.quic_blocked.get(key)
        if until is not None and now < until:
            emit("drop", flow=[key[0], udp.sport if from_client else udp.dport, key[1], key[2]], why="quic residual",
                 proto="udp", len=len(udp.payload))
            return False
        if not from_client:
            return True
        for rule in quic_rules:
            ports = rule.get("ports")
            if ports and udp.dport not in ports:
                continue
            conn = (udp.src, udp.sport, udp.dst, udp.dport)
            if rule.get("trigger") == "quic_drop_once" and conn in self.quic_dropped_once:
                continue
            sni = quic_initial_sni(udp.payload)
            if not sni or is_ip_literal(sni) or not name_matches(sni, [p.lower() for p in rule.get("match", [])]):
                continue
            if rule.get("trigger") == "quic_drop_once":
                self.quic_dropped_once.add(conn)
                emit("trigger", rule=rule.get("name"), flow=list(conn), sni=sni, proto="udp")
                emit("drop", flow=list(conn), why=f"rule {rule.get('name')} (once)", proto="udp",
                     len=len(udp.payload))
                return False
            self.quic_blocked[key] = now + float(rule.get("residual_s", 0))
            emit("trigger", rule=rule.get("name"), flow=[udp.src, udp.sport, udp.dst, udp.dport], sni=sni,
                 proto="udp", residual_s=rule.get("residual_s", 0))
            emit("drop", flow=[udp.src, udp.sport, udp.dst, udp.dport], why=f"rule {rule.get('name')}",
                 proto="udp", len=len(udp.payload))
            return False
        return True

    def forward(self, ifname: str, ip: bytearray, extra_hops: int = 0) -> None:
        """Decrement TTL / hop limit (by 1 + ``extra_hops``), fix the IPv4 checksum, send out of the other side."""
        hops = 1 + extra_hops
        if ip[0] >> 4 == 4:
            if ip[8] <= hops:
                return
            ip[8] -= hops
            ip[10:12] = b"\0\0"
            ip[10:12] = struct.pack("!H", checksum(bytes(ip[: (ip[0] & 0x0F) * 4])))
        else:
            if ip[7] <= hops:
                return
            ip[7] -= hops
        self.send(self.other[ifname], bytes(ip))

    # -- rule engine ---------------------------------------------------------------------

    def inspect(self, tcp: Tcp, from_client: bool, ip: bytes) -> bool:
        """Apply the rules to one TCP packet; return whether to forward it."""
        key = (tcp.src, tcp.sport, tcp.dst, tcp.dport) if from_client else (tcp.dst, tcp.dport, tcp.src, tcp.sport)
        flow = self.flows.get(key)
        if flow is None:
            if not from_client or not tcp.flags & SYN:
                return True  # not a connection the lab opened while these rules were loaded
            flow = self.flows[key] = Flow()
        if from_client:
            if tcp.ts_val is not None:
                flow.client_ts = tcp.ts_val
        else:
            if tcp.ts_val is not None:
                flow.server_ts = (tcp.ts_val, time.monotonic())
            if not tcp.flags & SYN:  # a SYN's window is never scaled; later ones are
                flow.server_window = tcp.window
            flow.server_flow_label = tcp.flow_label
        if flow.state == "block":
            if from_client and tcp.flags & FIN:
                self.ack_client_fin(key, flow, tcp)
            self.log_drop(key, tcp, "flow blocked")
            return False
        if not from_client:
            return True
        if flow.state == "blackhole" and tcp.payload:
            self.log_drop(key, tcp, "blackhole")
            return False
        if not tcp.payload or flow.fired:
            return True
        first = not flow.seen_payload
        flow.seen_payload = True
        for rule in self.rules:
            ports = rule.get("ports")
            if (ports and tcp.dport not in ports) or str(rule.get("trigger")).startswith("quic_"):
                continue
            matched, detail = self.matches(rule, tcp, first, flow)
            if not matched:
                continue
            flow.fired = True
            emit("trigger", rule=rule.get("name"), flow=list(key), **detail)
            return self.act(rule, key, flow, tcp, ip)
        return True

    def matches(self, rule: dict[str, Any], tcp: Tcp, first: bool, flow: Flow) -> tuple[bool, dict[str, Any]]:
        """Does ``rule`` fire on this client payload segment?"""
        need_thl = rule.get("require_tcp_header_len")
        if need_thl and tcp.tcp_header_len != need_thl:
            return False, {}
        trigger = rule.get("trigger", "tls_sni")
        patterns = [p.lower() for p in rule.get("match", [])]
        if trigger == "tls_sni":
            status, sni = parse_sni(tcp.payload)
            if status == "incomplete" and not rule.get("single_segment_only", True):
                status = "ok"
            if status != "ok" or not sni or is_ip_literal(sni) or not name_matches(sni, patterns):
                return False, {}
            return True, {"sni": sni, "hello_len": len(tcp.payload)}
        if trigger == "http_host":
            host = parse_host(tcp.payload)
            if not host or is_ip_literal(host) or not name_matches(host, patterns):
                return False, {}
            return True, {"host": host}
        if trigger == "payload":
            return first, {"len": len(tcp.payload)}
        if trigger == "first_payload_once":
            if first and not flow.dropped_once:
                flow.dropped_once = True
                return True, {"len": len(tcp.payload)}
            return False, {}
        raise ValueError(f"unknown trigger {trigger!r}")

    def act(self, rule: dict[str, Any], key: tuple[str, int, str, int], flow: Flow, tcp: Tcp, ip: bytes) -> bool:
        """Inject what the rule says; return whether the trigger itself is forwarded."""
        forward = bool(rule.get("forward_trigger", True))
        if rule.get("trigger") == "first_payload_once":
            flow.fired = False  # later segments (the retransmission) pass untouched
        flow.state = rule.get("after", "pass")
        if not forward:
            self.log_drop(key, tcp, f"rule {rule.get('name')}")
        flow.to_client_seq = tcp.ack
        flow.to_client_ack = tcp.seq + len(tcp.payload)
        to_server_seq = tcp.seq + len(tcp.payload)
        extra = float(rule.get("delay_ms", 0)) / 1000.0
        if forward:
            # the trigger goes first, so an injection towards the server follows it
            self.forward(self.args.client_if, bytearray(ip))
        for spec in rule.get("inject", []):
            flags = sum(FLAG_BITS[c] for c in spec.get("flags", "RA"))
            if "payload_text" in spec:
                payload = spec["payload_text"].encode()
            else:
                payload = bytes.fromhex(spec.get("payload", ""))
            ttl = tcp.ttl if spec.get("ttl", 64) == "copy" else int(spec.get("ttl", 64))
            ip_id_mode = spec.get("ip_id", 0)
            df = tcp.df if spec.get("df", 0) == "copy" else int(spec.get("df", 0))
            wspec = spec.get("window", 0)
            if wspec == "server":
                # before the server sent anything but its SYN-ACK, the trigger's own window stands in: the
                # lab's server runs the same kernel defaults as the client and advertises the same at that point
                window = tcp.window if flow.server_window is None else flow.server_window
            else:
                window = tcp.window if wspec == "copy" else int(wspec)
            count = int(spec.get("count", 1))
            if spec.get("to", "client") == "client":
                ack = flow.to_client_ack  # set even without the ACK flag, as webcontrol does
                ids = [self.next_ip_id(rule, ip_id_mode, spec, tcp) for _ in range(count)]
                options = b""
                if spec.get("tcp_timestamps") and flow.server_ts is not None:
                    # the server's clock (1 kHz, as Linux) at the moment the packet leaves
                    val = flow.server_ts[0] + round((time.monotonic() + extra - flow.server_ts[1]) * 1000)
                    options = b"\x01\x01\x08\x0a" + struct.pack("!II", val & 0xFFFFFFFF, flow.client_ts or 0)
                label = flow.server_flow_label if spec.get("flow_label") == "server" else 0
                for ip_id in ids:
                    packet = build_ip_tcp(
                        tcp.version, tcp.dst_raw, tcp.src_raw, tcp.dport, tcp.sport, flow.to_client_seq, ack,
                        flags, window, payload, ttl, ip_id, df, options, label,
                    )
                    self.send(self.args.client_if, packet, extra)
                flow.to_client_seq += len(payload) + (1 if flags & FIN else 0)
                target = "client"
            else:
                ids = [self.next_ip_id(rule, ip_id_mode, spec, tcp) for _ in range(count)]
                for ip_id in ids:
                    packet = build_ip_tcp(
                        tcp.version, tcp.src_raw, tcp.dst_raw, tcp.sport, tcp.dport, to_server_seq, tcp.ack,
                        flags, window, payload, ttl, ip_id, df,
                    )
                    self.send(self.args.server_if, packet, extra)
                target = "server"
            emit(
                "inject",
                rule=rule.get("name"),
                flow=list(key),
                to=target,
                flags=spec.get("flags", "RA"),
                count=count,
                ttl=ttl,
                ip_id=ids if tcp.version == 4 else None,
                df=df,
                window=window,
                payload_len=len(payload),
            )
        return False  # already forwarded above when it had to be

    def next_ip_id(self, rule: dict[str, Any], mode: Any, spec: dict[str, Any], tcp: Tcp) -> int:
        """IP ID of one injected packet: a constant, ``copy``, ``random`` or ``increment``."""
        if mode == "copy":
            return tcp.ip_id
        if mode == "random":
            return self.rng.randrange(0, 0x10000)
        if mode == "increment":
            name = str(spec.get("counter", rule.get("name")))  # one box's rules may share a counter
            value = self.ip_id_counters.get(name, int(spec.get("ip_id_base", 0)))
            self.ip_id_counters[name] = (value + 1) & 0xFFFF
            return value
        return int(mode)

    def ack_client_fin(self, key: tuple[str, int, str, int], flow: Flow, tcp: Tcp) -> None:
        """A blocked flow's client closes: acknowledge its FIN like the far end would."""
        ack = tcp.seq + len(tcp.payload) + 1
        packet = build_ip_tcp(
            tcp.version,
            tcp.dst_raw,
            tcp.src_raw,
            tcp.dport,
            tcp.sport,
            flow.to_client_seq,
            ack,
            ACK,
            0,
            b"",
            64,
            0,
            0,
        )
        self.send(self.args.client_if, packet)
        emit("inject", rule="fin-ack", flow=list(key), to="client", flags="A", count=1)

    def log_drop(self, key: tuple[str, int, str, int], tcp: Tcp, why: str) -> None:
        """Report a dropped packet."""
        flags = "".join(c for c, bit in FLAG_BITS.items() if tcp.flags & bit)
        emit("drop", flow=list(key), why=why, flags=flags, len=len(tcp.payload))


def main() -> int:
    """Parse arguments, forward until SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", help="JSON rule file (re-read on SIGHUP)")
    parser.add_argument("--client-if", required=True)
    parser.add_argument("--client-mac", required=True, help="MAC of the client-side next hop")
    parser.add_argument("--server-if", required=True)
    parser.add_argument("--server-mac", required=True, help="MAC of the server-side next hop")
    parser.add_argument("--client-net", action="append", required=True)
    parser.add_argument("--server-net", action="append", required=True)
    parser.add_argument("--delay-ms", type=float, default=0.0, help="one-way delay of the server-side link")
    args = parser.parse_args()
    box = Middlebox(args)
    signal.signal(signal.SIGHUP, box.on_sighup)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with contextlib.suppress(KeyboardInterrupt):
        box.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
