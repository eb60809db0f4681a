"""TLS record layer over one direction of a byte stream (sans-IO).

:class:`RecordStream` is fed contiguous stream bytes and yields events: whole handshake
messages (reassembled across records), other records (alerts, change_cipher_spec,
application data), a plaintext preamble skipped before TLS began (STARTTLS, HTTP
CONNECT, SOCKS, ...), or the verdict that the stream is not TLS.

It finds TLS by content, never by port: a stream that starts with a record header is TLS;
otherwise it scans for a hello record (``16 03 0x LL LL 01|02``) within a bounded
preamble.
"""

from __future__ import annotations

from dataclasses import dataclass

from tlsprobe.limits import DEFAULT_LIMITS, Limits

CT_CHANGE_CIPHER_SPEC = 20
CT_ALERT = 21
CT_HANDSHAKE = 22
CT_APPLICATION_DATA = 23
CT_HEARTBEAT = 24


@dataclass(slots=True)
class HandshakeMessage:
    """One handshake message; ``start``/``end`` are stream offsets of the records carrying it."""

    msg_type: int
    body: bytes
    record_version: int
    start: int
    end: int
    records: int
    sslv2: bool = False


@dataclass(slots=True)
class Record:
    """A non-handshake record (its first payload bytes only)."""

    content_type: int
    version: int
    offset: int
    length: int
    head: bytes


@dataclass(slots=True)
class Preamble:
    """Plaintext that preceded the first TLS record on this direction."""

    offset: int
    length: int
    head: bytes


@dataclass(slots=True)
class NotTls:
    """The stream stopped looking like TLS at ``offset``; parsing of it has ended."""

    offset: int
    head: bytes  # the bytes from ``offset`` that were buffered (at most NOT_TLS_KEEP)
    reason: str


# Plaintext kept from the point a stream stopped being TLS (an HTTP block page's
# status line, headers and the start of its body fit).
NOT_TLS_KEEP = 8192

Event = HandshakeMessage | Record | Preamble | NotTls

_DETECT, _SCAN, _RECORDS, _DONE = range(4)

# Stream openings of protocols that never switch to TLS on the same connection: an SSH
# banner, or an HTTP request other than CONNECT (HTTP CONNECT tunnels TLS, and a
# server's "HTTP/1.1 200" reply to it must not end the scan).
NEVER_TLS = (b"SSH-", b"GET ", b"POST ", b"HEAD ", b"PUT ", b"DELETE ", b"OPTIONS ", b"PATCH ", b"TRACE ")


class RecordStream:
    """Incremental record-layer parser for one direction.

    ``want`` is the handshake type that may start TLS when scanning a plaintext
    preamble (1 for a client, 2 for a server, 0 when the role is unknown).
    """

    __slots__ = (
        "anomalies",
        "base",
        "buf",
        "consumed_any",
        "hs_buf",
        "hs_records",
        "hs_start",
        "hs_version",
        "limits",
        "mode",
        "scan_pos",
        "strict",
        "want",
    )

    def __init__(self, want: int = 0, limits: Limits = DEFAULT_LIMITS) -> None:
        self.buf = bytearray()
        self.base = 0  # stream offset of buf[0]
        self.mode = _DETECT
        self.want = want
        self.limits = limits
        self.anomalies: list[str] = []
        self.scan_pos = 0
        self.hs_buf = bytearray()
        self.hs_start = 0
        self.hs_records = 0
        self.hs_version = 0
        self.consumed_any = False
        self.strict = False  # the peer's hello is out: anything but TLS now ends the stream

    @property
    def done(self) -> bool:
        return self.mode == _DONE

    def stop(self) -> None:
        """Stop parsing (the caller has what it needs); drop buffers."""
        self.mode = _DONE
        self.buf = bytearray()
        self.hs_buf = bytearray()

    def expect_tls(self) -> list[Event]:
        """The peer has sent its hello, so this direction must answer in TLS from now on.

        Plaintext buffered so far (a STARTTLS "ready" line, a proxy's "200 Connection
        established") is a preamble; bytes that come after it and do not start a TLS
        record end the stream at once (a block page, an HTTP error) instead of being
        scanned for a hello.
        """
        events: list[Event] = []
        if self.mode in (_DETECT, _SCAN):
            if self.buf:
                events.append(Preamble(self.base, len(self.buf), bytes(self.buf[:256])))
                self._consume(len(self.buf))
            self.mode = _DETECT
        self.strict = True
        return events

    def prepend(self, data: bytes) -> bool:
        """Put bytes in front of everything fed so far, if nothing was consumed yet."""
        if self.consumed_any or self.mode == _DONE:
            return False
        self.buf[0:0] = data
        self.base -= len(data)
        self.mode = _DETECT
        self.scan_pos = 0
        return True

    def feed(self, data: bytes) -> list[Event]:
        """Add contiguous stream bytes and return the events they complete."""
        if self.mode == _DONE:
            return []
        self.buf += data
        events: list[Event] = []
        while self.mode != _DONE:
            if self.mode == _RECORDS:
                if not self._records(events):
                    break
            elif self.mode == _DETECT:
                if not self._detect(events):
                    break
            elif not self._scan(events):
                break
        return events

    # -- modes -----------------------------------------------------------------

    def _consume(self, n: int) -> None:
        del self.buf[:n]
        self.base += n
        self.consumed_any = True

    def _end(self, events: list[Event], offset_in_buf: int, reason: str) -> None:
        head = bytes(self.buf[offset_in_buf : offset_in_buf + NOT_TLS_KEEP])
        events.append(NotTls(self.base + offset_in_buf, head, reason))
        self.stop()

    def _detect(self, events: list[Event]) -> bool:
        buf = self.buf
        if self.strict and buf:
            b0 = buf[0]
            if b0 & 0x80 and len(buf) >= 3 and buf[2] == 4:  # SSLv2 SERVER-HELLO
                events.append(HandshakeMessage(4, b"", 0x0002, self.base, self.base + len(buf), 1, sslv2=True))
                self.stop()
                return False
            if not (CT_CHANGE_CIPHER_SPEC <= b0 <= CT_HEARTBEAT) or (len(buf) >= 2 and buf[1] != 3):
                if b0 & 0x80 and len(buf) < 3:
                    return False
                self._end(events, 0, "not TLS after the peer's hello")
                return False
        if len(buf) < 6:
            return False
        b0 = buf[0]
        if CT_CHANGE_CIPHER_SPEC <= b0 <= CT_HEARTBEAT and buf[1] == 3 and buf[2] <= 4:
            self.mode = _RECORDS
            return True
        if b0 & 0x80 and buf[2] == 1 and buf[3] in (0, 3) and self.want != 2:
            return self._sslv2(events)
        if buf.startswith(NEVER_TLS):
            self._end(events, 0, "plaintext protocol without STARTTLS")
            return False
        self.mode = _SCAN
        return True

    def _sslv2(self, events: list[Event]) -> bool:
        buf = self.buf
        length = ((buf[0] & 0x7F) << 8) | buf[1]
        if len(buf) < 2 + length:
            return False
        body = bytes(buf[2 : 2 + length])
        events.append(HandshakeMessage(1, body, 0x0002, self.base, self.base + 2 + length, 1, sslv2=True))
        self._consume(2 + length)
        self.mode = _RECORDS
        return True

    def _scan(self, events: list[Event]) -> bool:
        buf = self.buf
        limit = self.limits.max_preamble_bytes
        pos = self.scan_pos
        while True:
            i = buf.find(b"\x16\x03", pos)
            if i < 0 or i + 6 > len(buf):
                if i < 0:
                    self.scan_pos = max(0, len(buf) - 1)
                else:
                    self.scan_pos = i
                if len(buf) > limit:
                    self._end(events, 0, "no TLS record within the preamble limit")
                return False
            length = (buf[i + 3] << 8) | buf[i + 4]
            hs_type = buf[i + 5]
            if buf[i + 2] <= 4 and 4 <= length <= self.limits.max_record_bytes and (
                hs_type == self.want or (self.want == 0 and hs_type in (1, 2))
            ):
                if i:
                    events.append(Preamble(self.base, i, bytes(buf[: min(i, 256)])))
                    self._consume(i)
                self.mode = _RECORDS
                return True
            pos = i + 1

    def _records(self, events: list[Event]) -> bool:
        buf = self.buf
        if len(buf) < 5:
            return False
        ctype = buf[0]
        version = (buf[1] << 8) | buf[2]
        length = (buf[3] << 8) | buf[4]
        if not (CT_CHANGE_CIPHER_SPEC <= ctype <= CT_HEARTBEAT) or buf[1] != 3 or buf[2] > 4:
            if ctype in (CT_HANDSHAKE, CT_ALERT) and buf[1] == 3:
                self.anomalies.append("tls.record.bad_version")
            self._end(events, 0, "not a TLS record header")
            return False
        if length > self.limits.max_record_bytes:
            self.anomalies.append("tls.record.oversized")
            self._end(events, 0, "record length beyond the protocol maximum")
            return False
        if len(buf) < 5 + length:
            return False
        offset = self.base
        payload = bytes(buf[5 : 5 + length])
        self._consume(5 + length)
        if ctype == CT_HANDSHAKE:
            if length == 0:
                self.anomalies.append("tls.record.empty")
                return True
            return self._handshake(payload, version, offset, offset + 5 + length, events)
        events.append(Record(ctype, version, offset, length, payload[:64]))
        return True

    def _handshake(self, payload: bytes, version: int, start: int, end: int, events: list[Event]) -> bool:
        if not self.hs_buf:
            self.hs_start = start
            self.hs_records = 0
            self.hs_version = version
        self.hs_buf += payload
        self.hs_records += 1
        hs = self.hs_buf
        while len(hs) >= 4:
            mlen = (hs[1] << 16) | (hs[2] << 8) | hs[3]
            if mlen > self.limits.max_handshake_bytes:
                self.anomalies.append("tls.handshake.oversized")
                self._end(events, 0, "handshake message beyond the parse limit")
                return False
            if len(hs) < 4 + mlen:
                break
            events.append(
                HandshakeMessage(hs[0], bytes(hs[4 : 4 + mlen]), self.hs_version, self.hs_start, end, self.hs_records)
            )
            del hs[: 4 + mlen]
            # a following message in the same record starts inside this record
            self.hs_start = start if hs else end
            self.hs_records = 1 if hs else 0
        return True

    def pending_handshake(self) -> bool:
        """True while a handshake message is partly buffered."""
        return bool(self.hs_buf) or (self.mode == _RECORDS and bool(self.buf) and self.buf[0] == CT_HANDSHAKE)
