"""JA4T, JA4TS, JA4L and JA4X (FoxIO License 1.1): the spec examples, FoxIO's formatting
rules, and which packets the pipeline takes them from (docs/fingerprints.md)."""

from __future__ import annotations

import datetime
import struct
from pathlib import Path

import pytest

from tests.factory import client_hello_body, handshake, record, server_flight, sni_ext
from tlsprobe import iter_records
from tlsprobe.errors import WireError
from tlsprobe.fingerprint.ja4plus import ja4l, ja4t, ja4x, ja4x_r, tcp_options
from tlsprobe.wire.x509 import certificate_oids

MSS_1460 = b"\x02\x04\x05\xb4"
NOP = b"\x01"
SACK_OK = b"\x04\x02"
TS = b"\x08\x0a" + bytes(8)


def wscale(shift: int) -> bytes:
    return bytes([3, 3, shift])


# -- JA4T / JA4TS -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("window", "options", "expected"),
    [
        # technical_details/JA4T.md examples
        (64240, MSS_1460 + NOP + wscale(8) + NOP + NOP + SACK_OK, "64240_2-1-3-1-1-4_1460_8"),  # Windows 10
        (65535, MSS_1460 + NOP + wscale(6) + NOP + NOP + TS + SACK_OK + b"\x00\x00",
         "65535_2-1-3-1-1-8-4-0-0_1460_6"),  # macOS: each EOL padding byte is listed
        (1024, MSS_1460, "1024_2_1460_00"),  # Nmap: no window scale
        (65535, b"", "65535_00_00_00"),  # Zmap: no options at all
        # a window scale of 0 is written 00, like a missing one (FoxIO's Rust and Wireshark plugin)
        (5744, MSS_1460 + wscale(0), "5744_2-3_1460_00"),
        # an option whose length runs past the end stops the list (the kind is still listed)
        (29200, MSS_1460 + b"\x08\x0a\x00", "29200_2-8_1460_00"),
        # a malformed MSS (length 3) is listed but gives no value
        (1000, b"\x02\x03\x05" + wscale(2), "1000_2-3_00_2"),
    ],
)
def test_ja4t_format(window: int, options: bytes, expected: str) -> None:
    assert ja4t(window, options) == expected


def test_tcp_options_last_mss_and_scale_win() -> None:
    kinds, mss, scale = tcp_options(MSS_1460 + b"\x02\x04\x02\x18" + wscale(1) + wscale(7))
    assert (kinds, mss, scale) == ([2, 2, 3, 3], 536, 7)


# -- JA4L -----------------------------------------------------------------------------------


def test_ja4l_halves_whole_microseconds() -> None:
    # macos_tcp_flags.pcap: SYN-ACK .453106, ACK .453231 -> 125 us -> 62 (truncated)
    assert ja4l(1666950379.453106, 1666950379.453231, 64) == "62_64"
    assert ja4l(1666950379.418596, 1666950379.453106, 63) == "17255_63"
    assert ja4l(10.0, 10.000001, 128) == "0_128"


# -- JA4X -----------------------------------------------------------------------------------


def _certificate(issuer_rdns: list[list[tuple[str, str]]], extensions: list[str]) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier

    name = x509.Name([x509.RelativeDistinguishedName([x509.NameAttribute(ObjectIdentifier(o), v) for o, v in rdn])
                      for rdn in issuer_rdns])
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(7).not_valid_before(datetime.datetime(2024, 1, 1))
               .not_valid_after(datetime.datetime(2034, 1, 1)))
    values = {
        "keyUsage": x509.KeyUsage(True, False, False, False, False, False, False, False, False),
        "extendedKeyUsage": x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
        "subjectAltName": x509.SubjectAlternativeName([x509.DNSName("example.com")]),
        "basicConstraints": x509.BasicConstraints(ca=False, path_length=None),
    }
    for e in extensions:
        builder = builder.add_extension(values[e], critical=False)
    cert = builder.sign(key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.DER)


SPEC_NAME = [[("2.5.4.3", "a")], [("2.5.4.6", "US")], [("2.5.4.8", "b")], [("2.5.4.10", "c")]]


def test_ja4x_spec_example() -> None:
    """technical_details/JA4X.md: issuer = subject = 550403,550406,550408,55040a, extensions
    551d0f,551d25,551d11 -> 96a6439c8f5c_96a6439c8f5c_aae71e8db6d7."""
    oids = certificate_oids(_certificate(SPEC_NAME, ["keyUsage", "extendedKeyUsage", "subjectAltName"]))
    assert ja4x_r(oids.issuer, oids.subject, oids.extensions) == (
        "550403,550406,550408,55040a_550403,550406,550408,55040a_551d0f,551d25,551d11")
    assert ja4x(oids.issuer, oids.subject, oids.extensions) == "96a6439c8f5c_96a6439c8f5c_aae71e8db6d7"


def test_ja4x_keeps_certificate_order_and_multi_valued_rdns() -> None:
    name = [[("2.5.4.10", "o"), ("2.5.4.3", "cn")], [("2.5.4.6", "DE")]]
    oids = certificate_oids(_certificate(name, ["subjectAltName", "keyUsage"]))
    # cryptography writes a multi-valued RDN's attributes in DER SET order (sorted by
    # encoding); whatever is on the wire is what JA4X hashes
    assert sorted(oids.issuer[:2]) == [bytes.fromhex("550403"), bytes.fromhex("55040a")]
    assert oids.issuer[2] == bytes.fromhex("550406")
    assert oids.extensions == (bytes.fromhex("551d11"), bytes.fromhex("551d0f"))


def test_ja4x_without_extensions_hashes_to_zeros() -> None:
    oids = certificate_oids(_certificate(SPEC_NAME, []))
    assert ja4x(oids.issuer, oids.subject, oids.extensions).endswith("_000000000000")


def test_certificate_oids_truncated_anywhere_is_a_wire_error() -> None:
    der = _certificate(SPEC_NAME, ["keyUsage", "basicConstraints"])
    for cut in range(len(der)):
        with pytest.raises(WireError):
            certificate_oids(der[:cut])


# -- which packets: the pipeline -------------------------------------------------------------

C, S = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])


def _frame(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int,
           payload: bytes = b"", options: bytes = b"", window: int = 65535, ttl: int = 64) -> bytes:
    options += b"\x00" * (-len(options) % 4)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, (5 + len(options) // 4) << 4, flags, window, 0, 0)
    tcp += options + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0x4000, ttl, 6, 0, src, dst)
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + tcp


def _pcap(frames: list[tuple[float, bytes]]) -> bytes:
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
    for ts, frame in frames:
        sec, usec = divmod(round(ts * 1e6), 1_000_000)
        out += struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame
    return bytes(out)


def _records(tmp_path: Path, frames: list[tuple[float, bytes]]) -> list[dict[str, object]]:
    path = tmp_path / "c.pcap"
    path.write_bytes(_pcap(frames))
    return [r.to_dict() for r in iter_records([str(path)])]


def test_first_syn_first_synack_and_the_ack_after_it(tmp_path: Path) -> None:
    """A retransmitted SYN does not replace the first one (JA4T, JA4L's A), the second
    SYN-ACK not the first (JA4TS, B); C is the first ACK after B.  The evidence keeps its
    own meaning: ``client_syn`` is the latest SYN."""
    t0 = 1_700_000_000.0
    hello = record(22, handshake(1, client_hello_body(extensions=[sni_ext(b"a.example")])))
    syn_opts = MSS_1460 + NOP + wscale(8) + NOP + NOP + SACK_OK
    cert = _certificate(SPEC_NAME, ["keyUsage", "extendedKeyUsage", "subjectAltName"])
    flight = server_flight([cert])
    frames = [
        (t0, _frame(C, S, 40000, 443, 1000, 0, 0x02, options=syn_opts, window=64240, ttl=128)),
        (t0 + 1.0, _frame(C, S, 40000, 443, 1000, 0, 0x02, options=MSS_1460, window=8192, ttl=127)),
        (t0 + 1.2, _frame(S, C, 443, 40000, 5000, 1001, 0x12, options=MSS_1460 + wscale(7), window=29200, ttl=50)),
        (t0 + 1.25, _frame(S, C, 443, 40000, 5000, 1001, 0x12, options=MSS_1460, window=1, ttl=50)),
        (t0 + 1.2003, _frame(C, S, 40000, 443, 1001, 5001, 0x10, ttl=128)),
        (t0 + 1.2004, _frame(C, S, 40000, 443, 1001, 5001, 0x18, hello, ttl=128)),
        (t0 + 1.3, _frame(S, C, 443, 40000, 5001, 1001 + len(hello), 0x18, flight, ttl=50)),
    ]
    frames.sort(key=lambda f: f[0])
    (rec,) = _records(tmp_path, frames)
    assert rec["ja4t"] == "64240_2-1-3-1-1-4_1460_8"
    assert rec["ja4ts"] == "29200_2-3-0_1460_7"  # the EOL byte padding the options is listed
    assert rec["ja4l_s"] == "600000_50"  # (1.2 - 0.0) / 2 s, the server's TTL
    assert rec["ja4l_c"] == "150_128"  # (1.2003 - 1.2) / 2, the client's (SYN) TTL
    assert rec["evidence"]["client_syn"]["window"] == 8192  # type: ignore[index]
    (c,) = rec["certificates"]  # type: ignore[misc]
    assert c["ja4x"] == "96a6439c8f5c_96a6439c8f5c_aae71e8db6d7"


def test_no_syn_no_tcp_ja4plus(tmp_path: Path) -> None:
    hello = record(22, handshake(1, client_hello_body()))
    (rec,) = _records(tmp_path, [(1.0, _frame(C, S, 40000, 443, 1001, 5001, 0x18, hello))])
    assert (rec["ja4t"], rec["ja4ts"], rec["ja4l_c"], rec["ja4l_s"]) == (None, None, None, None)


def test_syn_ack_seen_but_no_ack_gives_ja4ts_and_no_ja4l(tmp_path: Path) -> None:
    hello = record(22, handshake(1, client_hello_body()))
    frames = [
        (1.0, _frame(C, S, 40000, 443, 1000, 0, 0x02, window=1024)),
        (1.1, _frame(S, C, 443, 40000, 5000, 1001, 0x12, window=2048)),
        (1.2, _frame(C, S, 40000, 443, 1001, 5001, 0x08, hello)),  # PSH without ACK: not JA4L's C
    ]
    (rec,) = _records(tmp_path, frames)
    assert (rec["ja4t"], rec["ja4ts"], rec["ja4l_c"]) == ("1024_00_00_00", "2048_00_00_00", None)
