"""QUIC connections: Initial packets decrypted, CRYPTO reassembled, hellos parsed.

Only long-header packets are looked at, and only the first Initials of each direction
(bounded by ``Limits.max_quic_initials``): once the ClientHello (and the server's
ServerHello) are in, a connection is finished and later datagrams are skipped before
any cryptography.
"""

from __future__ import annotations

from typing import Any

from tlsprobe.errors import WireError
from tlsprobe.limits import Limits
from tlsprobe.model import EXT_QUIC_TRANSPORT_PARAMETERS, ClientHello, ServerHello
from tlsprobe.wire import quic, tls


class QuicTracker:
    """One QUIC connection (a UDP 4-tuple), client side = sender of the first Initial."""

    __slots__ = (
        "after_ch",
        "anomalies",
        "await_new_dcid",
        "buffered",
        "ch_bytes",
        "ch_ts",
        "client",
        "client_hello",
        "crypto",
        "datagrams",
        "done",
        "first_dir_ts",
        "first_ts",
        "icmp",
        "initials",
        "key_dcid",
        "keys",
        "last_dir_ts",
        "last_ts",
        "latency",
        "limits",
        "linger",
        "retried",
        "scid",
        "server_hello",
        "version",
    )

    def __init__(self, limits: Limits, ts: float) -> None:
        self.limits = limits
        self.client: int | None = None
        self.version = 0
        self.key_dcid: bytes | None = None  # the DCID the Initial keys derive from (changes after a Retry)
        self.scid = b""
        self.keys: tuple[quic.InitialKeys, quic.InitialKeys] | None = None
        self.crypto = (quic.CryptoAssembler(limits.max_quic_crypto_bytes),
                       quic.CryptoAssembler(limits.max_quic_crypto_bytes))
        self.initials = [0, 0]
        self.client_hello: ClientHello | None = None
        self.server_hello: ServerHello | None = None
        self.ch_ts: float | None = None
        self.ch_bytes = 0
        self.anomalies: list[str] = []
        self.first_ts = ts
        self.last_ts = ts
        self.done = False
        self.retried = False
        self.await_new_dcid = False
        self.buffered = 0  # CRYPTO bytes charged to the run's QUIC budget
        self.datagrams = [0, 0]  # per direction (0: the first sender's)
        self.first_dir_ts: list[float | None] = [None, None]
        self.last_dir_ts = [ts, ts]
        self.after_ch = 0  # client datagrams after the one that completed its hello
        self.icmp: dict[str, Any] | None = None  # first ICMP error about the connection
        self.latency = QuicLatency()
        # datagrams still looked at (by type only) after the hellos, waiting for JA4L's
        # client Handshake packet; 0: not waiting
        self.linger = 0

    def buffered_bytes(self) -> int:
        """Bytes the CRYPTO reassembly of both directions holds now."""
        return self.crypto[0].allocated + self.crypto[1].allocated

    def release(self) -> None:
        """The record is out: drop keys, buffers and hellos (the tracker stays as a
        marker so later datagrams of the connection are skipped)."""
        self.done = True
        self.keys = None
        for a in self.crypto:
            a.clear()
        self.client_hello = None
        self.server_hello = None

    def note(self, code: str) -> None:
        if code not in self.anomalies:
            self.anomalies.append(code)

    def datagram(self, d: int, data: bytes, ts: float, ttl: int = 0) -> None:
        """One UDP payload from direction ``d`` (``ttl``: its IP TTL or hop limit, for JA4L)."""
        self.last_ts = ts
        self.datagrams[d] += 1
        self.last_dir_ts[d] = ts
        if self.first_dir_ts[d] is None:
            self.first_dir_ts[d] = ts
        if d == self.client and self.ch_ts is not None:
            self.after_ch += 1
        if self.linger:
            self._late(d, data, ts)
            return
        self.latency.datagram(d == (self.client if self.client is not None else d), quic.first_packet_type(data),
                              ts, ttl)
        try:
            for header in quic.iter_datagram(data):
                self._packet(d, data, header, ts)
                if self.done or self.linger:
                    return
        except WireError as exc:
            self.note(exc.code)

    def _late(self, d: int, data: bytes, ts: float) -> None:
        """A datagram after the hellos while JA4L waits: only its first packet's type is read."""
        self.linger -= 1
        self.latency.datagram(d == self.client, quic.first_packet_type(data), ts, 0)
        if self.latency.complete or not self.linger:
            self.linger = 0
            self.done = True

    def _hellos_in(self) -> None:
        """Both hellos are in: finished, unless JA4L still waits for its later packets."""
        lat = self.latency
        if lat.client is not None and lat.server is not None and not lat.complete:
            self.linger = self.limits.max_quic_latency_datagrams
        else:
            self.done = True

    def _packet(self, d: int, data: bytes, header: quic.LongHeader, ts: float) -> None:
        if header.packet_type == "retry":
            # A client acts on one Retry only (RFC 9000 17.2.5.2): its next Initial goes to
            # a new DCID, and the keys of both directions derive from that one.
            if self.client is not None and d != self.client and not self.retried:
                self.retried = True
                self.await_new_dcid = True
                self.crypto = (quic.CryptoAssembler(self.limits.max_quic_crypto_bytes),
                               quic.CryptoAssembler(self.limits.max_quic_crypto_bytes))
            return
        if header.packet_type != "initial":
            return
        if self.client is None:
            self.client = d
        if d == self.client:
            # Initial keys come from the DCID of the client's first Initial, and change
            # only after a Retry (RFC 9001 5.2); later client Initials may go to the
            # server's chosen connection ID but keep the same keys.
            if self.key_dcid is None or (self.await_new_dcid and header.dcid != self.key_dcid):
                self.key_dcid = header.dcid
                self.await_new_dcid = False
                self.keys = None
            self.scid = header.scid
        if self.key_dcid is None or (d != self.client and self.await_new_dcid):
            return  # no keys yet for the server's side
        if self.initials[d] >= self.limits.max_quic_initials:
            self.note("quic.initial.cap_exceeded")
            return
        self.initials[d] += 1
        if self.keys is None or self.version != header.version:
            self.version = header.version
            self.keys = quic.derive_initial_keys(header.version, self.key_dcid)
        keys = self.keys[0] if d == self.client else self.keys[1]
        packet = quic.open_initial(data, header, keys)
        assembler = self.crypto[d]
        frames = quic.parse_frames(packet.payload)
        if (self.client_hello if d == self.client else self.server_hello) is not None:
            return  # this side's hello is in: its later CRYPTO bytes are not kept
        for frame in frames:
            if frame.type == 0x06:
                assembler.add(frame.offset, frame.data)
        if assembler.overflow:
            self.note("quic.crypto.cap_exceeded")
        if d == self.client:
            self._client_hello(assembler.contiguous(), ts)
            if self.client_hello is not None:
                assembler.clear()
        else:
            self._server_hello(assembler.contiguous())
            if self.server_hello is not None:
                assembler.clear()
        if self.client_hello is not None and self.server_hello is not None:
            self._hellos_in()

    def _client_hello(self, hs: bytes, ts: float) -> None:
        body = _message(hs, tls.HS_CLIENT_HELLO, self.limits)
        if body is None:
            return
        self.client_hello = tls.parse_client_hello(body, 0x0303, self.limits)
        self.ch_ts = ts
        self.ch_bytes = len(body) + 4
        for code in self.client_hello.anomalies:
            self.note(code)

    def _server_hello(self, hs: bytes) -> None:
        body = _message(hs, tls.HS_SERVER_HELLO, self.limits)
        if body is not None:
            self.server_hello = tls.parse_server_hello(body, 0x0303, self.limits)

    def outcome(self, now: float, silence_after: float) -> str:
        """``server_hello``; ``icmp_unreachable`` when an ICMP error came back; ``silence``
        when the client sent again after its hello, ``silence_after`` seconds have passed (by
        ``now``) and nothing came back; else ``incomplete``."""
        if self.server_hello is not None:
            return "server_hello"
        if self.icmp is not None:
            return "icmp_unreachable"
        c = self.client or 0
        if self.datagrams[1 - c] == 0 and self.ch_ts is not None and self.after_ch >= 1 and (
                now - self.ch_ts >= silence_after):
            return "silence"
        return "incomplete"

    def evidence(self) -> dict[str, Any]:
        """The record's ``evidence`` for QUIC: what the client sent and what came back."""
        c = self.client or 0
        ch_ts = self.ch_ts if self.ch_ts is not None else self.first_ts
        reply = self.first_dir_ts[1 - c]
        return {
            "client_datagrams": self.datagrams[c],
            "server_datagrams": self.datagrams[1 - c],
            "client_datagrams_after_hello": self.after_ch,
            "client_active_ms": round((self.last_dir_ts[c] - ch_ts) * 1000, 3),
            "first_reply_ms": round((reply - ch_ts) * 1000, 3) if reply is not None else None,
            "icmp": self.icmp,
            "tells": [],
        }

    def quic_fields(self) -> dict[str, Any]:
        """The record's ``quic`` object: version, connection ID lengths, transport parameters."""
        params: dict[str, Any] | None = None
        ch = self.client_hello
        if ch is not None:
            raw = next((data for t, data in ch.extensions if t == EXT_QUIC_TRANSPORT_PARAMETERS), None)
            if raw is not None:
                try:
                    params = quic.decode_transport_parameters(raw)
                except WireError:
                    self.note("quic.tp.malformed")
        return {
            "version": f"0x{self.version:08x}",
            "dcid_length": len(self.key_dcid or b""),
            "scid_length": len(self.scid),
            "client_initials": self.initials[self.client or 0],
            "server_initials": self.initials[1 - (self.client or 0)],
            "transport_parameters": params,
        }


class QuicLatency:
    """The packets FoxIO's JA4L reads in a QUIC handshake, by the type of each datagram's
    first packet: A the client's first Initial (and its TTL), B the server's first Initial
    after it (and its TTL), C the server's last Handshake before D, the client's first
    Handshake (technical_details/JA4L.md; FoxIO's rust/ja4/src/time/udp.rs)."""

    __slots__ = ("client", "client_handshake", "complete", "server", "server_handshake")

    def __init__(self) -> None:
        self.client: tuple[float, int] | None = None  # A
        self.server: tuple[float, int] | None = None  # B
        self.server_handshake: float | None = None  # C
        self.client_handshake: float | None = None  # D
        self.complete = False

    def datagram(self, from_client: bool, kind: str | None, ts: float, ttl: int) -> None:
        if self.complete or kind is None:
            return
        if self.client is None:
            if from_client and kind == "initial":
                self.client = (ts, ttl)
        elif self.server is None:
            if not from_client and kind == "initial":
                self.server = (ts, ttl)
        elif kind == "handshake":
            if not from_client:
                self.server_handshake = ts
            elif self.server_handshake is not None:
                self.client_handshake = ts
                self.complete = True


def _message(hs: bytes, want: int, limits: Limits) -> bytes | None:
    """The body of the first handshake message if it is complete and of type ``want``."""
    if len(hs) < 4 or hs[0] != want:
        return None
    n = (hs[1] << 16) | (hs[2] << 8) | hs[3]
    if n > limits.max_handshake_bytes:
        raise WireError("tls.handshake.oversized", f"{n} bytes")
    return hs[4 : 4 + n] if len(hs) >= 4 + n else None
