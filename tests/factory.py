"""Build TLS hello bytes with chosen fields (for unit and property tests)."""

from __future__ import annotations

import struct
from typing import Any


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


def pcapng(frames: list[bytes], t0: float = 1_700_000_000.0) -> bytes:
    """A little-endian pcapng (SHB, one Ethernet IDB, one EPB per frame, 1 ms apart)."""
    out = bytearray(struct.pack("<IIIHHq", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1) + struct.pack("<I", 28))
    out += struct.pack("<IIHHI", 1, 20, 1, 0, 262144) + struct.pack("<I", 20)
    for i, frame in enumerate(frames):
        ts = round((t0 + i / 1000) * 1e6)
        pad = (-len(frame)) % 4
        blen = 32 + len(frame) + pad
        out += struct.pack("<IIIIIII", 6, blen, 0, ts >> 32, ts & 0xFFFFFFFF, len(frame), len(frame))
        out += frame + b"\x00" * pad + struct.pack("<I", blen)
    return bytes(out)


def server_flight(certificates: list[bytes], server_hello: bytes | None = None) -> bytes:
    """A TLS 1.2 server's first flight: ServerHello, Certificate (in records of at most 2^14 bytes), ServerHelloDone."""
    sh = server_hello if server_hello is not None else server_hello_body(0x0303, 0xC02F, [])
    chain = b"".join(vec(der, 3) for der in certificates)
    cert = handshake(11, vec(chain, 3))
    cert_records = b"".join(record(22, cert[i : i + 16384], 0x0303) for i in range(0, len(cert), 16384))
    return record(22, handshake(2, sh), 0x0303) + cert_records + record(22, handshake(14, b""), 0x0303)


def seal_initial(header: bytes, pn_offset: int, pn_len: int, payload: bytes, keys: Any) -> bytes:
    """Protect a QUIC long-header packet (RFC 9001 5.3/5.4) - the inverse of open_initial, test-only."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    pn = int.from_bytes(header[pn_offset : pn_offset + pn_len], "big")
    nonce = (int.from_bytes(keys.iv, "big") ^ pn).to_bytes(12, "big")
    ciphertext = AESGCM(keys.key).encrypt(nonce, payload, header)
    sample = ciphertext[4 - pn_len : 20 - pn_len]
    enc = Cipher(algorithms.AES(keys.hp), modes.ECB()).encryptor()
    mask = enc.update(sample) + enc.finalize()
    out = bytearray(header + ciphertext)
    out[0] ^= mask[0] & 0x0F
    for i in range(pn_len):
        out[pn_offset + i] ^= mask[1 + i]
    return bytes(out)
