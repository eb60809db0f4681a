"""Per-flow handshake tracking: record-layer events in, one :class:`HandshakeRecord` out.

Knows which side is the client (SYN sender, else the sender of the ClientHello), parses
hellos and certificates as they complete, and says when the handshake is in: the server
answered with TLS 1.3 (the rest is encrypted), finished its TLS 1.2 flight, sent an alert,
changed cipher spec, or stopped speaking TLS.
"""

from __future__ import annotations

from typing import Any

from tlsprobe.errors import WireError
from tlsprobe.limits import Limits
from tlsprobe.model import CertificateInfo, ClientHello, ServerHello
from tlsprobe.wire import tls
from tlsprobe.wire.http import parse_request
from tlsprobe.wire.records import (
    CT_ALERT,
    CT_APPLICATION_DATA,
    CT_CHANGE_CIPHER_SPEC,
    NOT_TLS_KEEP,
    Event,
    HandshakeMessage,
    NotTls,
    Preamble,
    Record,
    RecordStream,
)
from tlsprobe.wire.x509 import describe_certificate

SSL2_SERVER_HELLO = 4
_TEXT = frozenset(range(0x20, 0x7F)) | {0x09, 0x0A, 0x0D}


class HandshakeTracker:
    """What the two directions of one flow have said so far."""

    __slots__ = (
        "anomalies",
        "cert_ders",
        "certificates",
        "ch_msg",
        "client",
        "client_hello",
        "held",
        "hrr",
        "http",
        "http_request",
        "limits",
        "midstream",
        "not_tls",
        "parsers",
        "plaintext",
        "preamble",
        "retry_hello",
        "segs",
        "server_alert",
        "server_done",
        "server_event",
        "server_hello",
        "text_preamble",
    )

    def __init__(self, limits: Limits, client: int | None, http: bool = False) -> None:
        self.limits = limits
        self.parsers = (RecordStream(0, limits), RecordStream(0, limits))
        self.client: int | None = None
        self.client_hello: ClientHello | None = None
        self.ch_msg: HandshakeMessage | None = None
        self.server_hello: ServerHello | None = None
        self.hrr: ServerHello | None = None
        self.retry_hello: ClientHello | None = None
        self.certificates: list[CertificateInfo] = []
        self.cert_ders: list[bytes] = []
        # the server's first reaction to the ClientHello, as the record layer saw it:
        # "server_hello", "tls_alert" or "plaintext" (RST/FIN are seen at the TCP layer)
        self.server_event: str | None = None
        self.plaintext = bytearray()  # non-TLS bytes the server sent after the hello (capped)
        self.server_done = False
        self.server_alert: tuple[int, int] | None = None
        self.http = http  # watch plain HTTP requests too
        self.http_request: dict[str, Any] | None = None
        self.preamble = [0, 0]
        self.text_preamble = [False, False]
        self.anomalies: list[str] = []
        self.not_tls = [False, False]
        self.midstream = False
        # (start offset, end offset, ts) of segments per direction while the hello is assembled
        self.segs: tuple[list[tuple[int, int, float]], list[tuple[int, int, float]]] = ([], [])
        # approximate bytes of the parsed hellos and certificates kept until the record is
        # out (charged with the flow's buffers: a hostile hello of 32k ciphers is ~1 MB)
        self.held = 0
        if client is not None:
            self.set_client(client)

    def set_client(self, d: int) -> None:
        self.client = d
        self.parsers[d].want = 1
        self.parsers[1 - d].want = 2

    def note(self, code: str) -> None:
        if code not in self.anomalies:
            self.anomalies.append(code)

    @property
    def finished(self) -> bool:
        """Nothing more to learn from this flow's handshake."""
        if self.midstream:
            return True
        if self.http_request is not None:
            return self.server_done
        if self.client_hello is None:
            if self.server_hello is not None or self.hrr is not None:
                return self.server_done or any(self.not_tls)  # a ServerHello whose ClientHello was not captured
            # Either side sending a preamble's worth of plaintext with no hello: not TLS.
            return any(self.not_tls) or (self.client is not None and self.parsers[self.client].done)
        return self.server_done

    def feed(self, d: int, data: bytes) -> HandshakeMessage | None:
        """Feed direction ``d``; returns the ClientHello message if this data completed it."""
        parser = self.parsers[d]
        if parser.done:
            return None
        events = parser.feed(data)
        if parser.anomalies:
            for code in parser.anomalies:
                self.note(code)
            parser.anomalies.clear()
        found = None
        for ev in events:
            if self._event(d, ev) and isinstance(ev, HandshakeMessage):
                found = ev
        return found

    def _event(self, d: int, ev: Event) -> bool:
        if isinstance(ev, HandshakeMessage):
            return self._message(d, ev)
        if isinstance(ev, Record):
            self._record(d, ev)
        elif isinstance(ev, Preamble):
            self.preamble[d] += ev.length
            self.text_preamble[d] = all(b in _TEXT for b in ev.head)
        elif isinstance(ev, NotTls):
            self.not_tls[d] = True
            if self.triggered and d != self.client:
                self.server_done = True
                self._react("plaintext")
                self.plaintext += ev.head
            elif self.http and self.client_hello is None and self.http_request is None and d != self.server_side:
                self._http_request(d, ev.head)
        return False

    @property
    def triggered(self) -> bool:
        """A ClientHello (or, when HTTP is tracked, an HTTP request) has been seen."""
        return self.client_hello is not None or self.http_request is not None

    @property
    def server_side(self) -> int | None:
        return None if self.client is None else 1 - self.client

    def _http_request(self, d: int, head: bytes) -> None:
        """A plain HTTP request (not CONNECT): watched like a ClientHello (block pages)."""
        req = parse_request(head)
        if req is None or req["method"] == "CONNECT":
            return
        if self.client is None:
            self.set_client(d)
        self.http_request = req
        for ev in self.parsers[1 - d].expect_tls():
            self._event(1 - d, ev)

    def _react(self, kind: str) -> None:
        if self.server_event is None:
            self.server_event = kind

    def more_plaintext(self, d: int, data: bytes) -> None:
        """Server bytes after its stream stopped being TLS (a block page's body)."""
        if d != self.client and self.plaintext and len(self.plaintext) < NOT_TLS_KEEP:
            self.plaintext += data[: NOT_TLS_KEEP - len(self.plaintext)]

    def _record(self, d: int, ev: Record) -> None:
        is_server = self.client is not None and d != self.client
        if ev.content_type == CT_APPLICATION_DATA and self.client_hello is None and self.server_hello is None:
            self.midstream = True
            return
        if not is_server or (self.client_hello is None and self.server_hello is None and self.hrr is None):
            return
        if ev.content_type == CT_ALERT and len(ev.head) >= 2 and self.server_alert is None:
            self.server_alert = (ev.head[0], ev.head[1])
            self._react("tls_alert")
            self._server_finished()
        elif ev.content_type == CT_APPLICATION_DATA or (ev.content_type == CT_CHANGE_CIPHER_SPEC and self.hrr is None):
            # after a HelloRetryRequest a compatibility CCS precedes the real ServerHello
            if self.server_hello is None and self.hrr is None:
                # the server answered in TLS but its ServerHello was not captured
                self.note("tls.server_hello.missing")
                self._react("server_hello")
            self._server_finished()

    def _server_finished(self) -> None:
        """The server's handshake is in: nothing more to parse in either direction (the
        client's next records are its key exchange and encrypted Finished)."""
        self.server_done = True
        for parser in self.parsers:
            if not parser.done:
                parser.stop()

    def _message(self, d: int, m: HandshakeMessage) -> bool:
        t = m.msg_type
        if t == tls.HS_CLIENT_HELLO:
            return self._client_hello(d, m)
        if self.client is None:
            if t == tls.HS_SERVER_HELLO:
                self.set_client(1 - d)
            else:
                return False
        if d == self.client:
            return False
        if self.client_hello is None and self.server_hello is None and self.hrr is None:
            if t != tls.HS_SERVER_HELLO:
                return False
            # The ClientHello was not captured (a gap, or the capture started late): the
            # server's side still gets a record, with the client fields null.
            self.note("tls.server_hello.without_client_hello")
        if t == tls.HS_SERVER_HELLO:
            self._server_hello(m)
        elif t == SSL2_SERVER_HELLO and m.sslv2:
            self._react("server_hello")
            self._server_finished()
        elif t == tls.HS_CERTIFICATE and self.server_hello is not None and self.server_hello.version < 0x0304:
            self._certificates(m.body)
        elif t in (tls.HS_SERVER_HELLO_DONE, tls.HS_FINISHED):
            self._server_finished()
        return False

    def _client_hello(self, d: int, m: HandshakeMessage) -> bool:
        if self.client is None:
            self.set_client(d)
        elif d != self.client:
            self.note("tls.hello.repeated")
            return False
        try:
            ch = (
                tls.parse_sslv2_client_hello(m.body)
                if m.sslv2
                else tls.parse_client_hello(m.body, m.record_version, self.limits)
            )
        except WireError as exc:
            self.note(exc.code)
            return False
        self.held += hello_cost(ch) + len(m.body)
        if self.client_hello is None:
            self.client_hello = ch
            self.ch_msg = m
            if self.preamble[d] == 0 or self.text_preamble[d]:
                # A plain stream (or after a STARTTLS/CONNECT line): the answer must be
                # TLS.  After a binary preamble the records may be framed (OpenVPN over
                # TCP), so the server stream keeps being scanned instead.
                for ev in self.parsers[1 - d].expect_tls():
                    self._event(1 - d, ev)
            for code in ch.anomalies:
                self.note(code)
            return True
        if self.hrr is not None and self.retry_hello is None:
            self.retry_hello = ch
        else:
            self.note("tls.hello.repeated")
        return False

    def _server_hello(self, m: HandshakeMessage) -> None:
        try:
            sh = tls.parse_server_hello(m.body, m.record_version, self.limits)
        except WireError as exc:
            self.note(exc.code)
            self._server_finished()
            return
        self.held += hello_cost(sh)
        for code in sh.anomalies:
            self.note(code)
        if sh.is_hrr:
            if self.hrr is None and self.server_hello is None:
                self.hrr = sh
                self._react("server_hello")
            return
        if self.server_hello is None:
            self.server_hello = sh
            self._react("server_hello")
        v = sh.version
        if (v >= 0x0304 and v != 0xFEFF) or (v >> 8) in (0x7F, 0x7E):
            self._server_finished()  # TLS 1.3: everything after the ServerHello is encrypted

    def _certificates(self, body: bytes) -> None:
        try:
            ders, anomalies = tls.parse_certificate_list(body, self.limits)
        except WireError as exc:
            self.note(exc.code)
            return
        for code in anomalies:
            self.note(code)
        self.cert_ders = ders
        for der in ders:
            info = describe_certificate(der)
            if info.error:
                self.note("x509.parse_error")
            self.certificates.append(info)
            self.held += 600 + 2 * len(der) + sum(80 + len(n) for n in (*info.san_dns, *info.san_ip))


def hello_cost(h: ClientHello | ServerHello) -> int:
    """Approximate bytes a parsed hello holds: ~36 per list item (an int and its slot),
    ~90 per extension plus its bytes, a few hundred for the object."""
    items = 36 * len(h.extension_types) + sum(90 + len(data) for _, data in h.extensions)
    if isinstance(h, ClientHello):
        items += 36 * (len(h.cipher_suites) + len(h.supported_groups) + len(h.signature_algorithms)
                       + len(h.supported_versions) + len(h.key_share_groups) + len(h.sslv2_cipher_specs))
        items += sum(40 + len(a) for a in h.alpn_raw) + len(h.sni_raw or b"")
    return 600 + items
