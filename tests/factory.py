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


def tcp_frame(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int,
              payload: bytes = b"") -> bytes:
    """Ethernet + IPv4 + TCP (checksums left zero: tlsprobe does not verify them)."""
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0x4000, 64, 6, 0, src, dst)
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + tcp


def pcap(frames: list[bytes], t0: float = 1_700_000_000.0) -> bytes:
    """A little-endian microsecond pcap of Ethernet frames, 1 ms apart."""
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
    for i, frame in enumerate(frames):
        ts = t0 + i / 1000
        out += struct.pack("<IIII", int(ts), round((ts % 1) * 1e6), len(frame), len(frame)) + frame
    return bytes(out)


def handshake_frames(client_hello: bytes, server_bytes: bytes = b"", dport: int = 8443) -> list[bytes]:
    """SYN, SYN-ACK, ACK, the client's bytes, then the server's bytes, on one TCP flow."""
    c, s = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    frames = [
        tcp_frame(c, s, 40000, dport, 1000, 0, 0x02),
        tcp_frame(s, c, dport, 40000, 5000, 1001, 0x12),
        tcp_frame(c, s, 40000, dport, 1001, 5001, 0x10),
        tcp_frame(c, s, 40000, dport, 1001, 5001, 0x18, client_hello),
    ]
    if server_bytes:
        frames.append(tcp_frame(s, c, dport, 40000, 5001, 1001 + len(client_hello), 0x18, server_bytes))
    return frames
