"""QUIC Initial packets: long headers, Initial keys, header protection, frames (sans-IO).

Bytes in, typed records out; the only exception raised on purpose is
:class:`~tlsprobe.errors.WireError` with one of these stable codes:

    quic.varint.truncated        a variable-length integer runs past its buffer
    quic.header.malformed        a long header (or a packet too short for its sample) overruns
    quic.initial.unknown_version no Initial salt is known for the version
    quic.initial.decrypt_failed  AEAD authentication failed (wrong keys, damage, not an Initial)
    quic.frame.malformed         a frame overruns the decrypted payload
    quic.frame.unexpected        a frame type RFC 9000 12.4 forbids in Initial packets
    quic.tp.malformed            the quic_transport_parameters extension does not parse

References: RFC 9000 (QUIC v1 transport), RFC 9001 (TLS for QUIC: Initial secrets 5.2,
header protection 5.4, packet protection 5.3), RFC 9369 (QUIC v2: version number, type
bits, salt and labels), RFC 9368 (version_information), RFC 9221 and RFC 9287.

Typical use::

    for hdr in iter_datagram(udp_payload):
        if hdr.packet_type == "initial" and initial_salt(hdr.version) is not None:
            client_keys, _ = derive_initial_keys(hdr.version, hdr.dcid)
            pkt = open_initial(udp_payload, hdr, client_keys)
            for frame in parse_frames(pkt.payload):
                if frame.type == 0x06:
                    assembler.add(frame.offset, frame.data)
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tlsprobe.errors import WireError

__all__ = [
    "MAX_CID_LEN",
    "MAX_CRYPTO_BYTES",
    "MAX_CRYPTO_RANGES",
    "QUIC_V1",
    "QUIC_V2",
    "CryptoAssembler",
    "Frame",
    "InitialKeys",
    "InitialPacket",
    "LongHeader",
    "decode_transport_parameters",
    "derive_initial_keys",
    "initial_salt",
    "iter_datagram",
    "looks_like_quic_long",
    "open_initial",
    "parse_frames",
    "parse_long_header",
    "read_varint",
]

QUIC_V1 = 0x00000001
QUIC_V2 = 0x6B3343CF

# Connection IDs in v1 and v2 long headers are at most 20 bytes (RFC 9000 17.2,
# RFC 9369 keeps it).  A longer length byte means the bytes are not a v1/v2/draft packet.
MAX_CID_LEN = 20

# CRYPTO bytes reassembled per packet-number space and direction.  A ClientHello is
# < 4 KB (about 1.8 KB with a post-quantum key share; a few KB more with large
# session tickets / ECH) and the server's Initial flight carries only a ServerHello;
# 64 KB holds any real one while bounding what a hostile CRYPTO offset can make us buffer.
MAX_CRYPTO_BYTES = 64 * 1024

# Disjoint byte ranges held while waiting for gaps to fill.  Chrome's "chaos protection"
# scatters a ClientHello over tens of out-of-order CRYPTO frames; 256 leaves ample room
# while bounding the work per add() against a flood of 1-byte fragments with gaps.
MAX_CRYPTO_RANGES = 256

# Header-protection sample size and its offset past the packet number (RFC 9001 5.4.2).
_SAMPLE_LEN = 16
_SAMPLE_OFFSET = 4
_TAG_LEN = 16

_SALT_V1 = bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a")  # RFC 9001 5.2
_SALT_V2 = bytes.fromhex("0dede3def700a6db819381be6e269dcbf9bd2ed9")  # RFC 9369 3.3.1
_SALT_D29 = bytes.fromhex("afbfec289993d24c9e9786f19c6111e04390a899")  # draft-ietf-quic-tls-29..32
_SALT_D23 = bytes.fromhex("c3eef712c72ebb5a11a7d2432bb46365bef9f502")  # draft-ietf-quic-tls-23..28


def initial_salt(version: int) -> bytes | None:
    """The Initial salt for ``version``: v1, v2, drafts 23-28 and 29-32; ``None`` if unknown."""
    if version == QUIC_V1:
        return _SALT_V1
    if version == QUIC_V2:
        return _SALT_V2
    if version & 0xFFFFFF00 == 0xFF000000:
        draft = version & 0xFF
        if 29 <= draft <= 32:
            return _SALT_D29
        if 23 <= draft <= 28:
            return _SALT_D23
    return None


def looks_like_quic_long(data: bytes, offset: int = 0) -> bool:
    """Cheap test: a long-header packet (form bit 0x80) of a real version could start here.

    The fixed bit (0x40) is not required: RFC 9287 lets a client grease it.  Version 0 is
    Version Negotiation, not a packet with a header we parse, so it answers ``False``.
    """
    if len(data) - offset < 7 or not data[offset] & 0x80:
        return False
    return data[offset + 1 : offset + 5] != b"\x00\x00\x00\x00"


def first_packet_type(data: bytes) -> str | None:
    """Type of the first packet of a datagram from its first byte and version alone (no
    parsing, no decryption): ``"initial"``, ``"0rtt"``, ``"handshake"``, ``"retry"``, or
    None for a short header or Version Negotiation."""
    if not looks_like_quic_long(data):
        return None
    version = int.from_bytes(data[1:5], "big")
    return (_V2_TYPES if version == QUIC_V2 else _V1_TYPES)[(data[0] >> 4) & 0x03]


# -- varints -------------------------------------------------------------------------------


def _varint(buf: bytes, pos: int, end: int, code: str) -> tuple[int, int]:
    """A QUIC varint (RFC 9000 16) at ``pos`` within ``buf[:end]``; overruns raise ``code``."""
    if pos >= end:
        raise WireError(code, f"varint at offset {pos}: no bytes left")
    first = buf[pos]
    n = 1 << (first >> 6)
    if pos + n > end:
        raise WireError(code, f"varint at offset {pos} needs {n} bytes, have {end - pos}")
    value = first & 0x3F
    for i in range(pos + 1, pos + n):
        value = (value << 8) | buf[i]
    return value, pos + n


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """``(value, new_pos)`` of the QUIC varint at ``pos``; ``WireError("quic.varint.truncated")``."""
    if pos < 0:
        raise WireError("quic.varint.truncated", f"negative offset {pos}")
    return _varint(buf, pos, len(buf), "quic.varint.truncated")


# -- Initial keys ---------------------------------------------------------------------------


def _hkdf_expand_label(secret: bytes, label: bytes, length: int) -> bytes:
    """TLS 1.3 HKDF-Expand-Label with SHA-256 and an empty context (RFC 8446 7.1).

    Every output here is <= 32 bytes, one HMAC block, so Expand is a single HMAC.
    """
    full = b"tls13 " + label
    info = length.to_bytes(2, "big") + bytes([len(full)]) + full + b"\x00"
    return hmac.digest(secret, info + b"\x01", "sha256")[:length]


@dataclass(slots=True)
class InitialKeys:
    """AES-128-GCM packet key, IV and AES-128 header-protection key of one direction."""

    key: bytes
    iv: bytes
    hp: bytes


def derive_initial_keys(version: int, dcid: bytes) -> tuple[InitialKeys, InitialKeys]:
    """``(client, server)`` Initial keys from the client's first Destination Connection ID.

    RFC 9001 5.2 (and 5.1 labels); QUIC v2 uses the labels "quicv2 key/iv/hp" (RFC 9369 3.3.2).
    Raises ``WireError("quic.initial.unknown_version")`` when no salt is known.
    """
    salt = initial_salt(version)
    if salt is None:
        raise WireError("quic.initial.unknown_version", f"no Initial salt for version 0x{version:08x}")
    initial_secret = hmac.digest(salt, dcid, "sha256")  # HKDF-Extract
    prefix = b"quicv2 " if version == QUIC_V2 else b"quic "
    out: list[InitialKeys] = []
    for side in (b"client in", b"server in"):
        secret = _hkdf_expand_label(initial_secret, side, 32)
        out.append(
            InitialKeys(
                key=_hkdf_expand_label(secret, prefix + b"key", 16),
                iv=_hkdf_expand_label(secret, prefix + b"iv", 12),
                hp=_hkdf_expand_label(secret, prefix + b"hp", 16),
            )
        )
    return out[0], out[1]


# -- long headers -----------------------------------------------------------------------------

_V1_TYPES = ("initial", "0rtt", "handshake", "retry")  # RFC 9000 17.2 Table 5
_V2_TYPES = ("retry", "initial", "0rtt", "handshake")  # RFC 9369 3.2


@dataclass(slots=True)
class LongHeader:
    """A long-header packet's header as read (header protection still applied).

    Offsets are absolute positions in the datagram: ``start`` of the packet,
    ``header_len`` of its (protected) packet number, ``end`` just past the packet.
    ``length`` is the Length field (packet number + protected payload); Retry packets
    have none (``length`` 0, ``header_len`` = start of the integrity tag, ``token`` the
    Retry Token, ``end`` = end of the datagram).
    """

    version: int
    packet_type: str
    dcid: bytes
    scid: bytes
    token: bytes
    header_len: int
    length: int
    end: int
    start: int = 0


def parse_long_header(datagram: bytes, offset: int = 0) -> LongHeader:
    """Parse the long header starting at ``offset``; ``WireError("quic.header.malformed")``.

    Any non-zero version is read with the v1 layout (drafts share it); the packet type
    uses the RFC 9369 mapping for v2 and the RFC 9000 one otherwise.
    """
    code = "quic.header.malformed"
    n = len(datagram)
    if offset < 0 or n - offset < 7:
        raise WireError(code, f"{max(n - offset, 0)} bytes cannot hold a long header")
    first = datagram[offset]
    if not first & 0x80:
        raise WireError(code, "short header (form bit clear)")
    version = int.from_bytes(datagram[offset + 1 : offset + 5], "big")
    if version == 0:
        raise WireError(code, "version negotiation packet, not a versioned long header")
    pos = offset + 5
    dcid_len = datagram[pos]
    pos += 1
    if dcid_len > MAX_CID_LEN or pos + dcid_len >= n:
        raise WireError(code, f"destination connection id length {dcid_len} at offset {pos - 1}")
    dcid = datagram[pos : pos + dcid_len]
    pos += dcid_len
    scid_len = datagram[pos]
    pos += 1
    if scid_len > MAX_CID_LEN or pos + scid_len > n:
        raise WireError(code, f"source connection id length {scid_len} at offset {pos - 1}")
    scid = datagram[pos : pos + scid_len]
    pos += scid_len
    bits = (first >> 4) & 0x03
    packet_type = (_V2_TYPES if version == QUIC_V2 else _V1_TYPES)[bits]
    token = b""
    if packet_type == "retry":
        if n - pos < _TAG_LEN:
            raise WireError(code, "retry packet shorter than its integrity tag")
        return LongHeader(version, packet_type, dcid, scid, datagram[pos : n - _TAG_LEN], n - _TAG_LEN, 0, n, offset)
    if packet_type == "initial":
        token_len, pos = _varint(datagram, pos, n, code)
        if token_len > n - pos:
            raise WireError(code, f"token length {token_len} overruns the datagram")
        token = datagram[pos : pos + token_len]
        pos += token_len
    length, pos = _varint(datagram, pos, n, code)
    if length > n - pos:
        raise WireError(code, f"length {length} overruns the datagram ({n - pos} bytes left)")
    return LongHeader(version, packet_type, dcid, scid, token, pos, length, pos + length, offset)


def iter_datagram(datagram: bytes) -> Iterator[LongHeader]:
    """Headers of the coalesced long-header packets in a UDP payload, in order.

    Stops quietly at a short-header packet, Version Negotiation, a Retry (which always
    extends to the end of the datagram) or bytes that do not look like a long header
    (e.g. zero padding after the last packet); a header that overruns raises ``WireError``.
    """
    offset = 0
    while looks_like_quic_long(datagram, offset):
        header = parse_long_header(datagram, offset)
        yield header
        if header.end <= offset:  # pragma: no cover - end always advances; defensive
            return
        offset = header.end


# -- packet protection ----------------------------------------------------------------------


@dataclass(slots=True)
class InitialPacket:
    """A decrypted long-header packet: its header, truncated packet number and frames."""

    header: LongHeader
    packet_number: int
    payload: bytes


def _hp_mask(hp_key: bytes, sample: bytes) -> bytes:
    """AES-ECB header-protection mask (RFC 9001 5.4.3)."""
    enc = Cipher(algorithms.AES(hp_key), modes.ECB()).encryptor()
    return enc.update(sample) + enc.finalize()


def open_initial(datagram: bytes, header: LongHeader, keys: InitialKeys) -> InitialPacket:
    """Remove header protection and AES-128-GCM-open one long-header packet.

    ``packet_number`` is the packet number as sent (1-4 bytes, not expanded against a
    largest acknowledged number: the first Initials of a connection are numbered from 0,
    so the truncated value is the full one; the nonce uses the same value, as the sender
    did for any packet number below 2^(8*pn_len-1)).

    Raises ``WireError("quic.header.malformed")`` when the packet cannot hold the
    header-protection sample and a tag, ``WireError("quic.initial.decrypt_failed")``
    when authentication fails.
    """
    if header.packet_type == "retry":
        raise WireError("quic.header.malformed", "retry packets carry no protected payload")
    pn_offset = header.header_len
    end = header.end
    if end > len(datagram) or pn_offset < header.start or pn_offset + _SAMPLE_OFFSET + _SAMPLE_LEN > end:
        raise WireError("quic.header.malformed", f"packet of {end - header.start} bytes has no room for a sample")
    sample = datagram[pn_offset + _SAMPLE_OFFSET : pn_offset + _SAMPLE_OFFSET + _SAMPLE_LEN]
    try:
        mask = _hp_mask(keys.hp, sample)
    except ValueError as exc:  # wrong key size: a caller error, reported in the one documented way
        raise WireError("quic.initial.decrypt_failed", f"header protection: {exc}") from None
    first = datagram[header.start] ^ (mask[0] & 0x0F)
    pn_len = (first & 0x03) + 1
    pn_bytes = bytes(b ^ m for b, m in zip(datagram[pn_offset : pn_offset + pn_len], mask[1 : 1 + pn_len], strict=True))
    packet_number = int.from_bytes(pn_bytes, "big")
    aad = bytes([first]) + datagram[header.start + 1 : pn_offset] + pn_bytes
    nonce = (int.from_bytes(keys.iv, "big") ^ packet_number).to_bytes(len(keys.iv), "big")
    try:
        payload = AESGCM(keys.key).decrypt(nonce, datagram[pn_offset + pn_len : end], aad)
    except (InvalidTag, ValueError, OverflowError) as exc:
        raise WireError("quic.initial.decrypt_failed", f"packet number {packet_number}: {type(exc).__name__}") from None
    return InitialPacket(header, packet_number, payload)


# -- frames ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Frame:
    """One frame of an Initial packet.

    CRYPTO (0x06) fills ``offset`` and ``data``; CONNECTION_CLOSE (0x1c/0x1d) fills
    ``error_code`` and ``reason``; PING and ACK carry only their ``type``.
    """

    type: int
    offset: int = 0
    data: bytes = b""
    error_code: int | None = None
    reason: bytes = b""


def parse_frames(payload: bytes) -> list[Frame]:
    """The frames of a decrypted Initial payload, PADDING left out (RFC 9000 19, 12.4).

    Frame types RFC 9000 12.4 does not allow in Initial packets raise
    ``WireError("quic.frame.unexpected")``; overruns raise ``WireError("quic.frame.malformed")``.
    """
    code = "quic.frame.malformed"
    frames: list[Frame] = []
    n = len(payload)
    pos = 0
    while pos < n:
        if payload[pos] == 0x00:  # PADDING: skip the whole run at once
            pos += len(payload) - pos - len(payload[pos:].lstrip(b"\x00"))
            continue
        ftype, pos = _varint(payload, pos, n, code)
        if ftype == 0x01:  # PING
            frames.append(Frame(ftype))
        elif ftype in (0x02, 0x03):  # ACK, ACK_ECN
            _largest, pos = _varint(payload, pos, n, code)
            _delay, pos = _varint(payload, pos, n, code)
            count, pos = _varint(payload, pos, n, code)
            _first, pos = _varint(payload, pos, n, code)
            if count > (n - pos) // 2:  # each range takes >= 2 bytes; refuse before looping
                raise WireError(code, f"ACK range count {count} overruns the payload")
            for _ in range(count):
                _gap, pos = _varint(payload, pos, n, code)
                _len, pos = _varint(payload, pos, n, code)
            if ftype == 0x03:
                for _ in range(3):
                    _ecn, pos = _varint(payload, pos, n, code)
            frames.append(Frame(ftype))
        elif ftype == 0x06:  # CRYPTO
            off, pos = _varint(payload, pos, n, code)
            length, pos = _varint(payload, pos, n, code)
            if length > n - pos:
                raise WireError(code, f"CRYPTO length {length} overruns the payload")
            frames.append(Frame(ftype, offset=off, data=payload[pos : pos + length]))
            pos += length
        elif ftype in (0x1C, 0x1D):  # CONNECTION_CLOSE (transport / application)
            err, pos = _varint(payload, pos, n, code)
            if ftype == 0x1C:
                _frame_type, pos = _varint(payload, pos, n, code)
            rlen, pos = _varint(payload, pos, n, code)
            if rlen > n - pos:
                raise WireError(code, f"CONNECTION_CLOSE reason length {rlen} overruns the payload")
            frames.append(Frame(ftype, error_code=err, reason=payload[pos : pos + rlen]))
            pos += rlen
        else:
            raise WireError("quic.frame.unexpected", f"frame type 0x{ftype:x} is not allowed in Initial packets")
    return frames


# -- CRYPTO reassembly ------------------------------------------------------------------------


class CryptoAssembler:
    """CRYPTO stream bytes by offset: out of order, overlapping, across packets and datagrams.

    The first bytes written at an offset win (a retransmission cannot rewrite them).
    Bytes at or beyond ``limit`` (default :data:`MAX_CRYPTO_BYTES`), or a fragment that
    would need more than :data:`MAX_CRYPTO_RANGES` disjoint ranges, set ``overflow`` and
    are dropped; the bytes below the limit are kept.
    """

    __slots__ = ("_buf", "_ranges", "limit", "overflow")

    def __init__(self, limit: int = MAX_CRYPTO_BYTES) -> None:
        self.limit = limit
        self.overflow = False
        self._buf = bytearray()
        self._ranges: list[list[int]] = []  # sorted, disjoint, non-adjacent [start, end)

    def add(self, offset: int, data: bytes) -> None:
        """Record ``data`` at stream ``offset``."""
        start, stop = offset, offset + len(data)
        if start < 0:
            self.overflow = True
            return
        if stop > self.limit:
            self.overflow = True
            stop = self.limit
        if stop <= start:
            return
        ranges = self._ranges
        if not ranges or ranges[-1][1] < start:  # fast path: in order or past every range
            if len(ranges) >= MAX_CRYPTO_RANGES:
                self.overflow = True
                return
            self._write(start, data[: stop - start])
            ranges.append([start, stop])
            return
        if ranges[-1][1] == start:  # fast path: extends the last range
            self._write(start, data[: stop - start])
            ranges[-1][1] = stop
            return
        # General case: merge the ranges [start, stop) touches, then write only its gaps.
        touched = [r for r in ranges if not (r[1] < start or r[0] > stop)]
        if not touched and len(ranges) >= MAX_CRYPTO_RANGES:
            self.overflow = True
            return
        pos = start
        for r in touched:  # sorted, so the gaps come out in order
            if pos < r[0]:
                self._write(pos, data[pos - start : r[0] - start])
            pos = max(pos, r[1])
        if pos < stop:
            self._write(pos, data[pos - start : stop - start])
        kept = [r for r in ranges if r[1] < start or r[0] > stop]
        lo = min([start, *(r[0] for r in touched)])
        hi = max([stop, *(r[1] for r in touched)])
        kept.append([lo, hi])
        kept.sort()
        self._ranges = kept

    def _write(self, at: int, chunk: bytes) -> None:
        buf = self._buf
        if len(buf) < at + len(chunk):
            buf.extend(bytes(at + len(chunk) - len(buf)))
        buf[at : at + len(chunk)] = chunk

    @property
    def allocated(self) -> int:
        """Bytes of buffer held (gaps before out-of-order data included)."""
        return len(self._buf)

    def clear(self) -> None:
        """Drop every byte held (the caller has what it needs)."""
        self._buf = bytearray()
        self._ranges = []

    def contiguous(self) -> bytes:
        """The bytes available from offset 0 with no gap (empty if offset 0 is missing)."""
        r = self._ranges
        if not r or r[0][0] != 0:
            return b""
        return bytes(self._buf[: r[0][1]])


# -- transport parameters ------------------------------------------------------------------

_TP_VARINT = {
    0x01: "max_idle_timeout",
    0x03: "max_udp_payload_size",
    0x04: "initial_max_data",
    0x05: "initial_max_stream_data_bidi_local",
    0x06: "initial_max_stream_data_bidi_remote",
    0x07: "initial_max_stream_data_uni",
    0x08: "initial_max_streams_bidi",
    0x09: "initial_max_streams_uni",
    0x0A: "ack_delay_exponent",
    0x0B: "max_ack_delay",
    0x0E: "active_connection_id_limit",
    0x20: "max_datagram_frame_size",  # RFC 9221
}
_TP_BYTES = {
    0x00: "original_destination_connection_id",
    0x02: "stateless_reset_token",
    0x0D: "preferred_address",
    0x0F: "initial_source_connection_id",
    0x10: "retry_source_connection_id",
}
_TP_FLAGS = {
    0x0C: "disable_active_migration",
    0x2AB2: "grease_quic_bit",  # RFC 9287
}
_TP_VERSION_INFORMATION = 0x11  # RFC 9368


def decode_transport_parameters(data: bytes) -> dict[str, object]:
    """Decode a quic_transport_parameters extension body (RFC 9000 18.2) in wire order.

    Known varint parameters become ints, connection IDs and other byte strings hex,
    zero-length flags ``True``, ``version_information`` a dict of ``chosen`` and
    ``available`` version ints.  Unknown ids - GREASE (31*N+27) and vendor ones such as
    Google's 0x3127/0x3128/0x4752 - are keyed ``"0x<id>"`` with a hex value.  A repeated
    id keeps its first value.  Raises only ``WireError("quic.tp.malformed")``.
    """
    code = "quic.tp.malformed"
    out: dict[str, object] = {}
    n = len(data)
    pos = 0
    while pos < n:
        pid, pos = _varint(data, pos, n, code)
        vlen, pos = _varint(data, pos, n, code)
        if vlen > n - pos:
            raise WireError(code, f"parameter 0x{pid:x} length {vlen} overruns ({n - pos} bytes left)")
        value = data[pos : pos + vlen]
        pos += vlen
        key: str
        decoded: object
        if pid in _TP_VARINT:
            key = _TP_VARINT[pid]
            decoded, used = _varint(value, 0, vlen, code)
            if used != vlen:
                raise WireError(code, f"{key}: {vlen - used} bytes after the varint")
        elif pid in _TP_BYTES:
            key, decoded = _TP_BYTES[pid], value.hex()
        elif pid in _TP_FLAGS:
            key = _TP_FLAGS[pid]
            if vlen:
                raise WireError(code, f"{key} must be empty, has {vlen} bytes")
            decoded = True
        elif pid == _TP_VERSION_INFORMATION:
            key = "version_information"
            if vlen < 4 or vlen % 4:
                raise WireError(code, f"version_information of {vlen} bytes is not a list of versions")
            versions = [int.from_bytes(value[i : i + 4], "big") for i in range(0, vlen, 4)]
            decoded = {"chosen": versions[0], "available": versions[1:]}
        else:
            key, decoded = f"0x{pid:x}", value.hex()
        out.setdefault(key, decoded)
    return out
