"""The handshake record: one per TLS handshake, the contract every sink and user script reads.

``to_dict()`` gives the JSONL object documented in docs/output.md.  Required keys never
change meaning; new keys may be added.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any

from tlsprobe.fingerprint.compute import client_fingerprints, server_fingerprints
from tlsprobe.fingerprint.ja4 import HEX4
from tlsprobe.fingerprint.ja4plus import ja4x
from tlsprobe.model import CertificateInfo, ClientHello, ServerHello, is_grease, version_name

TLS_PORT = 443
_ALERT_LEVELS = {1: "warning", 2: "fatal"}


def ip_text(raw: bytes) -> str:
    """Packed IPv4/IPv6 address as text (RFC 5952 form for IPv6)."""
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)


@dataclass(slots=True)
class HandshakeRecord:
    """A TLS handshake seen in a capture, client -> server."""

    ts: float
    src_ip: str
    src_port: int
    dst_ip: str
    dst_port: int
    client_hello: ClientHello | None  # None: only the server's side of the handshake was captured
    transport: str = "tcp"
    ip_version: int = 4
    server_hello: ServerHello | None = None
    hello_retry_request: ServerHello | None = None
    retry_client_hello: ClientHello | None = None
    certificates: list[CertificateInfo] = field(default_factory=list)
    client_hello_segments: int = 1
    client_hello_bytes: int = 0
    client_hello_records: int = 1
    preamble_bytes: int = 0
    server_alert: tuple[int, int] | None = None
    outcome: str = "incomplete"
    evidence: dict[str, Any] | None = None
    interception: dict[str, Any] | None = None
    quic: dict[str, Any] | None = None
    tcp_syn_seen: bool = False
    tunnelled: bool = False
    capture: str | None = None
    anomalies: list[str] = field(default_factory=list)
    ja4t: str | None = None  # JA4+ (FoxIO License 1.1): TCP client SYN
    ja4ts: str | None = None  # TCP server SYN-ACK
    ja4l_c: str | None = None  # latency and TTL, client side
    ja4l_s: str | None = None  # server side
    cached: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    @property
    def non_standard_port(self) -> bool:
        return self.dst_port != TLS_PORT

    def _prefix(self) -> str:
        return "q" if self.transport == "quic" else "t"

    def fingerprints(self) -> dict[str, str | None]:
        """JA3/JA3S/JA4 family for this handshake.

        JA3 and JA4 cover the first ClientHello, JA3S and JA4S the first ServerHello (the
        HelloRetryRequest when there is one), as tshark and FoxIO's tools report them.  An
        SSLv2-format hello has no JA3 (the reference parses TLS records only).  Without a
        ClientHello the client's fingerprints are None.
        """
        fp = (client_fingerprints(self.client_hello, self._prefix()) if self.client_hello is not None
              else dict.fromkeys(("ja3", "ja3_string", "ja4", "ja4_r", "ja4_o", "ja4_ro")))
        server = server_fingerprints(self.hello_retry_request or self.server_hello, self._prefix())
        return {
            "ja3": fp["ja3"],
            "ja3_string": fp["ja3_string"],
            "ja3s": server["ja3s"],
            "ja3s_string": server["ja3s_string"],
            "ja4": fp["ja4"],
            "ja4_r": fp["ja4_r"],
            "ja4_o": fp["ja4_o"],
            "ja4_ro": fp["ja4_ro"],
            "ja4s": server["ja4s"],
            "ja4s_r": server["ja4s_r"],
        }

    def to_dict(self) -> dict[str, Any]:
        """The JSONL object (docs/output.md); built once, then the same dict is returned."""
        if self.cached is not None:
            return self.cached
        ch = self.client_hello
        d: dict[str, Any] = {
            "kind": "tls",
            "ts": self.ts,
            "src_ip": self.src_ip,
            "src_port": self.src_port,
            "dst_ip": self.dst_ip,
            "dst_port": self.dst_port,
            "transport": self.transport,
            "ip_version": self.ip_version,
            "non_standard_port": self.non_standard_port,
            "sni": ch.sni if ch is not None else None,
            "alpn": ch.alpn if ch is not None else [],
            "tls_version": version_name(ch.max_version) if ch is not None else None,
        }
        d.update(self.fingerprints())
        d["ja4t"] = self.ja4t
        d["ja4ts"] = self.ja4ts
        d["ja4l_c"] = self.ja4l_c
        d["ja4l_s"] = self.ja4l_s
        d["server_hello"] = _server_hello_dict(self.server_hello) if self.server_hello else None
        d["hello_retry_request"] = (
            _server_hello_dict(self.hello_retry_request) if self.hello_retry_request else None
        )
        d["certificates"] = [_cert_dict(c) for c in self.certificates]
        d["client_hello_segments"] = self.client_hello_segments
        d["client_hello_bytes"] = self.client_hello_bytes
        d["client_hello_records"] = self.client_hello_records
        d["client_hello"] = _client_hello_dict(ch) if ch is not None else None
        d["retry_client_hello"] = _retry_dict(self.retry_client_hello, self._prefix())
        d["server_alert"] = alert_dict(self.server_alert) if self.server_alert else None
        d["outcome"] = self.outcome
        d["evidence"] = self.evidence
        d["interception"] = self.interception
        d["quic"] = self.quic
        d["preamble_bytes"] = self.preamble_bytes
        d["tcp_syn_seen"] = self.tcp_syn_seen
        d["tunnelled"] = self.tunnelled
        d["capture"] = self.capture
        d["anomalies"] = list(self.anomalies)
        return d


_ALERT_NAMES = {
    0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac", 22: "record_overflow",
    40: "handshake_failure", 42: "bad_certificate", 43: "unsupported_certificate", 44: "certificate_revoked",
    45: "certificate_expired", 46: "certificate_unknown", 47: "illegal_parameter", 48: "unknown_ca",
    49: "access_denied", 50: "decode_error", 51: "decrypt_error", 70: "protocol_version",
    71: "insufficient_security", 80: "internal_error", 86: "inappropriate_fallback", 90: "user_canceled",
    109: "missing_extension", 110: "unsupported_extension", 112: "unrecognized_name",
    113: "bad_certificate_status_response", 115: "unknown_psk_identity", 116: "certificate_required",
    120: "no_application_protocol",
}


def alert_dict(alert: tuple[int, int]) -> dict[str, Any]:
    """A TLS alert as ``{"level", "description", "name"}`` (RFC 8446 section 6)."""
    level, desc = alert
    return {"level": _ALERT_LEVELS.get(level, str(level)), "description": desc, "name": _ALERT_NAMES.get(desc)}


HTTP_PORT = 80


@dataclass(slots=True)
class HttpRecord:
    """A plain HTTP request on any port (with ``--http``), watched for block pages.

    Its JSON object has the handshake record's keys (TLS ones null or empty) with
    ``kind: "http"`` and ``http_request``; ``non_standard_port`` means not port 80 and the
    outcome of a normal answer is ``http_response``.
    """

    ts: float
    src_ip: str
    src_port: int
    dst_ip: str
    dst_port: int
    request: dict[str, Any]
    ip_version: int = 4
    outcome: str = "incomplete"
    evidence: dict[str, Any] | None = None
    interception: dict[str, Any] | None = None
    tcp_syn_seen: bool = False
    tunnelled: bool = False
    capture: str | None = None
    anomalies: list[str] = field(default_factory=list)
    cached: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    @property
    def non_standard_port(self) -> bool:
        return self.dst_port != HTTP_PORT

    def to_dict(self) -> dict[str, Any]:
        if self.cached is not None:
            return self.cached
        d: dict[str, Any] = {
            "kind": "http", "ts": self.ts, "src_ip": self.src_ip, "src_port": self.src_port,
            "dst_ip": self.dst_ip, "dst_port": self.dst_port, "transport": "tcp", "ip_version": self.ip_version,
            "non_standard_port": self.non_standard_port, "sni": None, "alpn": [], "tls_version": None,
        }
        d.update(dict.fromkeys(("ja3", "ja3_string", "ja3s", "ja3s_string", "ja4", "ja4_r", "ja4_o", "ja4_ro",
                                "ja4s", "ja4s_r", "ja4t", "ja4ts", "ja4l_c", "ja4l_s", "server_hello",
                                "hello_retry_request")))
        d.update({
            "certificates": [], "client_hello_segments": 0, "client_hello_bytes": 0, "client_hello_records": 0,
            "client_hello": None, "retry_client_hello": None, "server_alert": None,
            "http_request": self.request, "outcome": self.outcome, "evidence": self.evidence,
            "interception": self.interception, "preamble_bytes": 0, "tcp_syn_seen": self.tcp_syn_seen,
            "tunnelled": self.tunnelled, "capture": self.capture, "anomalies": list(self.anomalies),
        })
        return d


Record = HandshakeRecord | HttpRecord


def _hex16(values: tuple[int, ...]) -> list[str]:
    return ["0x" + HEX4[v] for v in values]


def _client_hello_dict(ch: ClientHello) -> dict[str, Any]:
    return {
        "legacy_version": version_name(ch.legacy_version),
        "record_version": version_name(ch.record_version),
        "sslv2": ch.sslv2,
        "cipher_suites": len(ch.cipher_suites),
        "alpn_hex": [p.hex() for p in ch.alpn_raw],
        "sslv2_cipher_specs": [f"0x{v:06x}" for v in ch.sslv2_cipher_specs],
        "extensions": list(ch.extension_types),
        "supported_versions": [version_name(v) for v in ch.supported_versions if not is_grease(v)],
        "supported_groups": _hex16(ch.supported_groups),
        "key_share_groups": _hex16(ch.key_share_groups),
        "signature_algorithms": _hex16(ch.signature_algorithms),
        "ech": ch.ech,
        "session_id_length": len(ch.session_id),
        "sni_hex": ch.sni_raw.hex() if ch.sni_raw is not None and ch.sni_raw != ch.sni.encode() else None,  # type: ignore[union-attr]
    }


def _retry_dict(ch: ClientHello | None, prefix: str) -> dict[str, Any] | None:
    if ch is None:
        return None
    fp = client_fingerprints(ch, prefix)
    return {"sni": ch.sni, "alpn": ch.alpn, "ja3": fp["ja3"], "ja3_string": fp["ja3_string"], "ja4": fp["ja4"],
            "ja4_r": fp["ja4_r"], "anomalies": list(ch.anomalies)}


def _server_hello_dict(sh: ServerHello) -> dict[str, Any]:
    return {
        "version": version_name(sh.version),
        "legacy_version": version_name(sh.legacy_version),
        "cipher": f"0x{sh.cipher_suite:04x}",
        "alpn": sh.alpn,
        "extensions": list(sh.extension_types),
        "hello_retry_request": sh.is_hrr,
    }


def _cert_dict(c: CertificateInfo) -> dict[str, Any]:
    return {
        "subject": c.subject,
        "issuer": c.issuer,
        "san_dns": c.san_dns,
        "san_ip": c.san_ip,
        "not_before": c.not_before,
        "not_after": c.not_after,
        "serial": c.serial,
        "self_signed": c.self_signed,
        "sha256": c.sha256,
        "der_length": c.der_length,
        "error": c.error,
        "ja4x": ja4x(c.oids.issuer, c.oids.subject, c.oids.extensions) if c.oids is not None else None,
    }
