"""Build TLS hello bytes with chosen fields (for unit and property tests)."""

from __future__ import annotations

import struct


def u16(v: int) -> bytes:
    return struct.pack("!H", v)


def vec(data: bytes, n: int) -> bytes:
    """``data`` prefixed with its length in ``n`` bytes."""
    return len(data).to_bytes(n, "big") + data


def ext(etype: int, body: bytes) -> bytes:
    return u16(etype) + vec(body, 2)


def sni_ext(name: bytes) -> bytes:
    return ext(0, vec(b"\x00" + vec(name, 2), 2))


def alpn_ext(*protos: bytes) -> bytes:
    return ext(16, vec(b"".join(vec(p, 1) for p in protos), 2))


def u16_list_ext(etype: int, values: list[int], length_bytes: int = 2) -> bytes:
    return ext(etype, vec(b"".join(u16(v) for v in values), length_bytes))


def client_hello_body(
    version: int = 0x0303,
    ciphers: list[int] | None = None,
    extensions: list[bytes] | None = None,
    session_id: bytes = b"",
    with_ext_block: bool = True,
) -> bytes:
    """A ClientHello body (no handshake header)."""
    ciphers = [0x1301, 0x1302] if ciphers is None else ciphers
    body = u16(version) + bytes(range(32)) + vec(session_id, 1)
    body += vec(b"".join(u16(c) for c in ciphers), 2) + vec(b"\x00", 1)
    if with_ext_block:
        body += vec(b"".join(extensions or []), 2)
    return body


def handshake(msg_type: int, body: bytes) -> bytes:
    return bytes([msg_type]) + len(body).to_bytes(3, "big") + body


def record(content_type: int, payload: bytes, version: int = 0x0301) -> bytes:
    return bytes([content_type]) + u16(version) + vec(payload, 2)


def server_hello_body(version: int = 0x0303, cipher: int = 0x1301, extensions: list[bytes] | None = None,
                      random: bytes = bytes(32)) -> bytes:
    body = u16(version) + random + vec(b"", 1) + u16(cipher) + b"\x00"
    if extensions is not None:
        body += vec(b"".join(extensions), 2)
    return body
