"""TLS handshake message parsers: ClientHello, ServerHello, Certificate (sans-IO).

Each function takes the body of one handshake message and returns a record or raises
:class:`~tlsprobe.errors.WireError`.  Damage that still leaves a usable record (a bad
extension body, trailing bytes) is kept as anomaly codes on the record.
"""

from __future__ import annotations

import struct
import unicodedata

from tlsprobe.errors import WireError
from tlsprobe.limits import DEFAULT_LIMITS, Limits
from tlsprobe.model import (
    EXT_ALPN,
    EXT_EC_POINT_FORMATS,
    EXT_ECH,
    EXT_KEY_SHARE,
    EXT_KEY_SHARE_DRAFT,
    EXT_SERVER_NAME,
    EXT_SIGNATURE_ALGORITHMS,
    EXT_SUPPORTED_GROUPS,
    EXT_SUPPORTED_VERSIONS,
    ClientHello,
    ServerHello,
)
from tlsprobe.wire.reader import Cursor

HS_CLIENT_HELLO = 1
HS_SERVER_HELLO = 2
HS_CERTIFICATE = 11
HS_SERVER_HELLO_DONE = 14
HS_FINISHED = 20

HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")
MALFORMED = "tls.hello.malformed"


def _parse_extensions(
    cur: Cursor, anomalies: list[str], limits: Limits
) -> tuple[tuple[tuple[int, bytes], ...], tuple[int, ...], bool]:
    """The extensions block, in wire order: (extensions, their types, block present).

    A block whose declared length overruns keeps the extensions that fit.
    """
    if cur.remaining() == 0:
        return (), (), False
    if cur.remaining() < 2:
        anomalies.append("tls.hello.trailing_bytes")
        return (), (), False
    declared = cur.u16()
    end = cur.pos + declared
    if end > cur.end:
        anomalies.append(MALFORMED)
        end = cur.end
    elif end < cur.end:
        anomalies.append("tls.hello.trailing_bytes")
    exts: list[tuple[int, bytes]] = []
    types: list[int] = []
    buf = bytes(cur.buf)
    pos = cur.pos
    cap = limits.max_extensions
    while pos + 4 <= end:
        etype = (buf[pos] << 8) | buf[pos + 1]
        data_end = pos + 4 + ((buf[pos + 2] << 8) | buf[pos + 3])
        if data_end > end:
            anomalies.append(MALFORMED)
            break
        if len(exts) >= cap:
            anomalies.append("tls.hello.too_many_extensions")
            break
        exts.append((etype, buf[pos + 4 : data_end]))
        types.append(etype)
        pos = data_end
    else:
        if pos != end:
            anomalies.append(MALFORMED)
    if len(set(types)) != len(types):
        anomalies.append("tls.hello.duplicate_extension")
    cur.pos = cur.end
    return tuple(exts), tuple(types), True


def _note(anomalies: list[str], code: str) -> None:
    if code not in anomalies:
        anomalies.append(code)


def _vec(data: bytes, pos: int, end: int, length_bytes: int) -> tuple[bytes, int]:
    """A length-prefixed byte string at ``pos`` that must end by ``end``; (value, next pos)."""
    if length_bytes == 1:
        if pos >= end:
            raise WireError("tls.ext.malformed", "missing length")
        n = data[pos]
    else:
        if pos + 2 > end:
            raise WireError("tls.ext.malformed", "missing length")
        n = (data[pos] << 8) | data[pos + 1]
    start = pos + length_bytes
    if start + n > end:
        raise WireError("tls.ext.malformed", "length overruns")
    return data[start : start + n], start + n


def _decode_sni(data: bytes, ch: ClientHello) -> None:
    names, after = _vec(data, 0, len(data), 2)
    if after != len(data):
        raise WireError("tls.ext.malformed", "trailing bytes")
    found: bytes | None = None
    count = 0
    pos, end = 0, len(names)
    while pos < end:
        name_type = names[pos]
        host, pos = _vec(names, pos + 1, end, 2)
        count += 1
        if name_type == 0 and found is None:
            found = host
    if count > 1:
        _note(ch.anomalies, "tls.sni.multiple")
    if found is None:
        return
    ch.sni_raw = found
    if found.isascii() and _HOST_OK.issuperset(found):
        ch.sni = found.decode("ascii")
        if not _valid_hostname(found):
            _note(ch.anomalies, "tls.sni.invalid_hostname")
        return
    ch.sni = found.decode("utf-8", "backslashreplace")
    try:
        found.decode("utf-8")
    except UnicodeDecodeError:
        _note(ch.anomalies, "tls.sni.not_utf8")
    if any(unicodedata.category(c) in _UNSAFE_CATEGORIES for c in ch.sni):
        _note(ch.anomalies, "tls.sni.control_chars")
    _note(ch.anomalies, "tls.sni.invalid_hostname")


# control, format (bidi overrides, zero-width), line and paragraph separators
_UNSAFE_CATEGORIES = frozenset(("Cc", "Cf", "Zl", "Zp"))
_HOST_OK = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def _valid_hostname(name: bytes) -> bool:
    if not name or len(name) > 253 or not _HOST_OK.issuperset(name):
        return False
    labels = name.rstrip(b".").split(b".")
    return all(0 < len(label) <= 63 for label in labels)


def _u16s(data: bytes, length_bytes: int) -> tuple[int, ...]:
    """16-bit values behind a 1- or 2-byte length that must cover ``data`` exactly."""
    n = len(data) - length_bytes
    if n < 0:  # an empty extension body has no room for the length
        raise WireError("tls.ext.malformed", "missing list length")
    declared = data[0] if length_bytes == 1 else (data[0] << 8) | data[1]
    if declared != n or n % 2:
        raise WireError("tls.ext.malformed", "bad list length")
    return struct.unpack_from(f"!{n >> 1}H", data, length_bytes)


def _decode_client_extension(etype: int, data: bytes, ch: ClientHello) -> None:
    if etype == EXT_SUPPORTED_VERSIONS:
        ch.supported_versions = _u16s(data, 1)
    elif etype == EXT_SUPPORTED_GROUPS:
        ch.supported_groups = _u16s(data, 2)
    elif etype == EXT_SIGNATURE_ALGORITHMS:
        ch.signature_algorithms = _u16s(data, 2)
    elif etype == EXT_EC_POINT_FORMATS:
        if not data or data[0] != len(data) - 1:
            raise WireError("tls.ext.malformed", "bad point format list")
        ch.ec_point_formats = data[1:]
    elif etype == EXT_SERVER_NAME:
        _decode_sni(data, ch)
    elif etype == EXT_ALPN:
        lst, after = _vec(data, 0, len(data), 2)
        if after != len(data):
            raise WireError("tls.ext.malformed", "trailing bytes")
        protos: list[bytes] = []
        pos = 0
        while pos < len(lst):
            proto, pos = _vec(lst, pos, len(lst), 1)
            protos.append(proto)
        ch.alpn_raw = tuple(protos)
        if any(b < 0x20 or b > 0x7E for p in protos for b in p):
            _note(ch.anomalies, "tls.alpn.not_printable")
    elif etype in (EXT_KEY_SHARE, EXT_KEY_SHARE_DRAFT):
        shares, _ = _vec(data, 0, len(data), 2)
        groups = []
        pos = 0
        while pos + 2 <= len(shares):
            groups.append((shares[pos] << 8) | shares[pos + 1])
            _, pos = _vec(shares, pos + 2, len(shares), 2)
        if pos != len(shares):
            raise WireError("tls.ext.malformed", "trailing bytes")
        ch.key_share_groups = tuple(groups)
    elif etype == EXT_ECH:
        ch.ech = True


_DECODED = frozenset(
    (EXT_SERVER_NAME, EXT_ALPN, EXT_SUPPORTED_VERSIONS, EXT_SUPPORTED_GROUPS, EXT_EC_POINT_FORMATS,
     EXT_SIGNATURE_ALGORITHMS, EXT_KEY_SHARE, EXT_KEY_SHARE_DRAFT, EXT_ECH)
)


def _decode_client_extensions(ch: ClientHello) -> None:
    for etype, data in ch.extensions:
        if etype in _DECODED:
            try:
                _decode_client_extension(etype, data, ch)
            except WireError:
                _note(ch.anomalies, "tls.ext.malformed")


def parse_client_hello(body: bytes, record_version: int = 0x0301, limits: Limits = DEFAULT_LIMITS) -> ClientHello:
    """Parse a ClientHello handshake body (without the 4-byte handshake header)."""
    cur = Cursor(body, code=MALFORMED)
    legacy_version = cur.u16()
    random = cur.take(32)
    session_id = cur.block(1).rest()
    ciphers = cur.u16_list(2)
    compression = cur.block(1).rest()
    anomalies: list[str] = []
    extensions, types, has_block = _parse_extensions(cur, anomalies, limits)
    ch = ClientHello(
        record_version=record_version,
        legacy_version=legacy_version,
        random=random,
        session_id=session_id,
        cipher_suites=ciphers,
        compression_methods=compression,
        extensions=extensions,
        has_extensions_block=has_block,
        extension_types=types,
        anomalies=anomalies,
    )
    _decode_client_extensions(ch)
    return ch


def parse_sslv2_client_hello(msg: bytes) -> ClientHello:
    """Parse an SSLv2-compatible CLIENT-HELLO (RFC 6101 E.1), ``msg`` after the 2-byte header.

    Its 3-byte CIPHER-SPECs are kept in ``sslv2_cipher_specs``; ``cipher_suites`` stays
    empty because the hello carries no TLS cipher_suites field (see docs/fingerprints.md).
    """
    cur = Cursor(msg, code=MALFORMED)
    if cur.u8() != 1:
        raise WireError(MALFORMED, "not an SSLv2 CLIENT-HELLO")
    version = cur.u16()
    spec_len = cur.u16()
    sid_len = cur.u16()
    chal_len = cur.u16()
    if spec_len % 3:
        raise WireError(MALFORMED, "SSLv2 cipher spec length not a multiple of 3")
    specs = cur.take(spec_len)
    session_id = cur.take(sid_len)
    challenge = cur.take(chal_len)
    specs_list = tuple(int.from_bytes(specs[i : i + 3], "big") for i in range(0, spec_len, 3))
    anomalies = ["tls.hello.sslv2"]
    if cur.remaining():
        anomalies.append("tls.hello.trailing_bytes")
    return ClientHello(
        record_version=0x0002,
        legacy_version=version,
        random=challenge,
        session_id=session_id,
        cipher_suites=(),
        compression_methods=b"\x00",
        extensions=(),
        has_extensions_block=False,
        sslv2=True,
        sslv2_cipher_specs=specs_list,
        anomalies=anomalies,
    )


def parse_server_hello(body: bytes, record_version: int = 0x0303, limits: Limits = DEFAULT_LIMITS) -> ServerHello:
    """Parse a ServerHello or HelloRetryRequest body (also TLS 1.3 drafts' layouts)."""
    cur = Cursor(body, code=MALFORMED)
    legacy_version = cur.u16()
    # TLS 1.3 drafts before -22 (and their 0x0304 early adopters) drop session_id and
    # compression from the ServerHello.
    draft = (legacy_version >> 8) in (0x7F, 0x7E) or legacy_version == 0x0304
    random = cur.take(32)
    if draft:
        session_id = b""
        cipher = cur.u16()
        compression = 0
    else:
        session_id = cur.block(1).rest()
        cipher = cur.u16()
        compression = cur.u8()
    anomalies: list[str] = []
    extensions, types, has_block = _parse_extensions(cur, anomalies, limits)
    sh = ServerHello(
        record_version=record_version,
        legacy_version=legacy_version,
        random=random,
        session_id=session_id,
        cipher_suite=cipher,
        compression_method=compression,
        extensions=extensions,
        has_extensions_block=has_block,
        extension_types=types,
        is_hrr=random == HRR_RANDOM,
        anomalies=anomalies,
    )
    if draft:
        sh.selected_version = legacy_version
    for etype, data in extensions:
        try:
            if etype == EXT_SUPPORTED_VERSIONS:
                # present but not one version: the version is unknown (0), not legacy
                sh.selected_version = (data[0] << 8) | data[1] if len(data) == 2 else 0
                if len(data) != 2:
                    _note(anomalies, "tls.ext.malformed")
            elif etype == EXT_ALPN:
                c = Cursor(data, code="tls.ext.malformed")
                lst = c.block(2)
                sh.alpn_raw = lst.block(1).rest()
        except WireError:
            _note(anomalies, "tls.ext.malformed")
    return sh


def parse_certificate_list(body: bytes, limits: Limits = DEFAULT_LIMITS) -> tuple[list[bytes], list[str]]:
    """The DER certificates of a TLS 1.2-and-below Certificate message, in sent order."""
    cur = Cursor(body, code="tls.certificate.malformed")
    lst = cur.block(3)
    anomalies: list[str] = []
    if cur.remaining():
        anomalies.append("tls.certificate.malformed")
    certs: list[bytes] = []
    while lst.remaining():
        if len(certs) >= limits.max_certificates:
            anomalies.append("tls.certificate.too_many")
            break
        certs.append(lst.block(3).rest())
    return certs, anomalies
