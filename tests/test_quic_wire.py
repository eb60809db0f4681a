"""tlsprobe.wire.quic against published vectors (RFC 9000/9001/9369) and real captures."""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.factory import seal_initial
from tlsprobe.anomalies import AnomalyLog
from tlsprobe.capture.files import CaptureFile
from tlsprobe.decode.packet import Decoder
from tlsprobe.errors import WireError
from tlsprobe.wire.quic import (
    MAX_CRYPTO_BYTES,
    MAX_CRYPTO_RANGES,
    QUIC_V1,
    QUIC_V2,
    CryptoAssembler,
    Frame,
    InitialKeys,
    LongHeader,
    decode_transport_parameters,
    derive_initial_keys,
    initial_salt,
    iter_datagram,
    looks_like_quic_long,
    open_initial,
    parse_frames,
    parse_long_header,
    read_varint,
)
from tlsprobe.wire.tls import parse_client_hello

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"

# RFC 9001 Appendix A: the client's Destination Connection ID.
DCID = bytes.fromhex("8394c8f03e515708")

# RFC 9001 A.2: the client Initial's unprotected header.
A2_HEADER = bytes.fromhex(
    "c3"  # long header, fixed bit, type Initial (0), reserved 00, pn length 4
    "00000001"  # version 1
    "08 8394c8f03e515708"  # DCID
    "00"  # SCID length 0
    "00"  # token length 0
    "449e"  # Length 1182 = 4 (pn) + 1162 (payload) + 16 (tag)
    "00000002"  # packet number 2
)
# RFC 9001 A.2: the CRYPTO frame carrying the 241-byte ClientHello; the payload is this
# frame padded with PADDING to 1162 bytes.  The test does not embed the whole 1200-byte
# protected packet: it seals this payload with tlsprobe's keys and compares the published
# sample, mask and first 64 protected bytes (which pin the first 42 plaintext bytes);
# the rest of the ClientHello is checked for structure by parse_client_hello.
A2_CRYPTO_FRAME = bytes.fromhex(
    "060040f1"  # CRYPTO, offset 0, length 241
    "010000ed"  # ClientHello, 237 bytes
    "0303ebf8fa56f12939b9584a3896472ec40bb863cfd3e86804fe3a47f06a2b69484c"  # version, random
    "00"  # session id
    "000413011302"  # ciphers
    "0100"  # compression
    "00c0"  # extensions
    "0000 0010 000e 00 000b 6578616d706c652e636f6d"  # server_name: example.com
    "ff01000100"  # renegotiation_info
    "000a00080006001d00170018"  # supported_groups
    "0010 0007 0005 04 616c706e"  # ALPN: "alpn"
    "000500050100000000"  # status_request
    "003300260024001d0020 9370b2c9caa47fbabaf4fe7a1c07e8a59e5c8f0a9b8a1af0a2acd4ad0bbf2500"  # key_share
    "002b0003020304"  # supported_versions
    "000d0010000e0403050306030203080408050806"  # signature_algorithms
    "002d00020101"  # psk_key_exchange_modes
    "001c00024001"  # record_size_limit
    "0039003204"  # quic_transport_parameters (50 bytes)
    "08ffffffffffffffff"  # initial_max_data
    "05048000ffff"  # initial_max_stream_data_bidi_local
    "07048000ffff"  # initial_max_stream_data_uni
    "080110"  # initial_max_streams_bidi
    "010480007530"  # max_idle_timeout 30000
    "090110"  # initial_max_streams_uni
    "0f088394c8f03e515708"  # initial_source_connection_id
    "06048000ffff"  # initial_max_stream_data_bidi_remote
)
A2_PAYLOAD = A2_CRYPTO_FRAME + bytes(1162 - len(A2_CRYPTO_FRAME))

# RFC 9001 A.2: published values of header protection and the protected packet's start.
A2_SAMPLE = bytes.fromhex("d1b1c98dd7689fb8ec11d242b123dc9b")
A2_MASK = bytes.fromhex("437b9aec36")
A2_PROTECTED_HEADER = bytes.fromhex("c000000001088394c8f03e5157080000449e7b9aec34")
A2_PROTECTED_START = bytes.fromhex(
    "c000000001088394c8f03e5157080000449e7b9aec34d1b1c98dd7689fb8ec11"
    "d242b123dc9bd8bab936b47d92ec356c0bab7df5976d27cd449f63300099f399"
)

# RFC 9001 A.3: the server Initial, protected, in full.
A3_PACKET = bytes.fromhex(
    "cf000000010008f067a5502a4262b5004075c0d95a482cd0991cd25b0aac406a"
    "5816b6394100f37a1c69797554780bb38cc5a99f5ede4cf73c3ec2493a1839b3"
    "dbcba3f6ea46c5b7684df3548e7ddeb9c3bf9c73cc3f3bded74b562bfb19fb84"
    "022f8ef4cdd93795d77d06edbb7aaf2f58891850abbdca3d20398c276456cbc4"
    "2158407dd074ee"
)
A3_PAYLOAD = bytes.fromhex(
    "02000000000600405a020000560303eefce7f7b37ba1d1632e96677825ddf739"
    "88cfc79825df566dc5430b9a045a1200130100002e00330024001d00209d3c94"
    "0d89690b84d08a60993c144eca684d1081287c834d5311bcf32bb9da1a002b00"
    "020304"
)


def a2_packet() -> bytes:
    client, _ = derive_initial_keys(QUIC_V1, DCID)
    return seal_initial(A2_HEADER, 18, 4, A2_PAYLOAD, client)


# -- keys -------------------------------------------------------------------------------


def test_rfc9001_a1_initial_keys() -> None:
    client, server = derive_initial_keys(QUIC_V1, DCID)
    assert client.key.hex() == "1f369613dd76d5467730efcbe3b1a22d"
    assert client.iv.hex() == "fa044b2f42a3fd3b46fb255c"
    assert client.hp.hex() == "9f50449e04a0e810283a1e9933adedd2"
    assert server.key.hex() == "cf3a5331653c364c88f0f379b6067e37"
    assert server.iv.hex() == "0ac1493ca1905853b0bba03e"
    assert server.hp.hex() == "c206b8d9b9f0f37644430b490eeaa314"


def test_rfc9369_a1_initial_keys_v2() -> None:
    client, server = derive_initial_keys(QUIC_V2, DCID)
    assert client.key.hex() == "8b1a0bc121284290a29e0971b5cd045d"
    assert client.iv.hex() == "91f73e2351d8fa91660e909f"
    assert client.hp.hex() == "45b95e15235d6f45a6b19cbcb0294ba9"
    assert server.key.hex() == "82db637861d55e1d011f19ea71d5d2a7"
    assert server.iv.hex() == "dd13c276499c0249d3310652"
    assert server.hp.hex() == "edf6d05c83121201b436e16877593c3a"


def test_salts_and_unknown_version() -> None:
    assert initial_salt(QUIC_V1) == bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a")
    assert initial_salt(QUIC_V2) == bytes.fromhex("0dede3def700a6db819381be6e269dcbf9bd2ed9")
    draft29, draft23 = "afbfec289993d24c9e9786f19c6111e04390a899", "c3eef712c72ebb5a11a7d2432bb46365bef9f502"
    assert initial_salt(0xFF00001D) == initial_salt(0xFF000020) == bytes.fromhex(draft29)
    assert initial_salt(0xFF000017) == initial_salt(0xFF00001C) == bytes.fromhex(draft23)
    for version in (0, 0xFF000016, 0xFF000021, 0x1A2A3A4A, 0xFACEB002):
        assert initial_salt(version) is None
    with pytest.raises(WireError) as exc:
        derive_initial_keys(0x1A2A3A4A, DCID)
    assert exc.value.code == "quic.initial.unknown_version"


# -- RFC 9001 A.2 / A.3 packets -------------------------------------------------------------


def test_rfc9001_a2_client_initial_protection_matches_published_bytes() -> None:
    packet = a2_packet()
    assert len(packet) == 1200
    assert packet[22:38] == A2_SAMPLE
    client, _ = derive_initial_keys(QUIC_V1, DCID)
    enc = Cipher(algorithms.AES(client.hp), modes.ECB()).encryptor()
    assert enc.update(A2_SAMPLE)[:5] == A2_MASK
    assert packet[:22] == A2_PROTECTED_HEADER
    assert packet.startswith(A2_PROTECTED_START)


def test_rfc9001_a2_open_client_initial() -> None:
    packet = a2_packet()
    header = parse_long_header(packet)
    assert header == LongHeader(QUIC_V1, "initial", DCID, b"", b"", 18, 1182, 1200, 0)
    client, server = derive_initial_keys(QUIC_V1, header.dcid)
    opened = open_initial(packet, header, client)
    assert opened.packet_number == 2
    assert opened.payload == A2_PAYLOAD
    assert opened.payload.startswith(bytes.fromhex("060040f1010000ed0303ebf8fa56f129"))
    frames = parse_frames(opened.payload)
    assert frames == [Frame(0x06, offset=0, data=A2_CRYPTO_FRAME[4:])]  # PADDING collapsed
    asm = CryptoAssembler()
    asm.add(frames[0].offset, frames[0].data)
    hs = asm.contiguous()
    assert hs[0] == 1 and int.from_bytes(hs[1:4], "big") == len(hs) - 4 == 237
    hello = parse_client_hello(hs[4:])
    assert hello.sni == "example.com"
    tp = dict(hello.extensions)[0x39]
    assert decode_transport_parameters(tp) == {
        "initial_max_data": (1 << 62) - 1,
        "initial_max_stream_data_bidi_local": 0xFFFF,
        "initial_max_stream_data_uni": 0xFFFF,
        "initial_max_streams_bidi": 16,
        "max_idle_timeout": 30000,
        "initial_max_streams_uni": 16,
        "initial_source_connection_id": "8394c8f03e515708",
        "initial_max_stream_data_bidi_remote": 0xFFFF,
    }
    with pytest.raises(WireError) as exc:
        open_initial(packet, header, server)
    assert exc.value.code == "quic.initial.decrypt_failed"


def test_rfc9001_a3_open_server_initial() -> None:
    header = parse_long_header(A3_PACKET)
    assert (header.packet_type, header.dcid, header.scid.hex()) == ("initial", b"", "f067a5502a4262b5")
    assert (header.header_len, header.length, header.end) == (18, 0x75, len(A3_PACKET))
    _, server = derive_initial_keys(QUIC_V1, DCID)
    opened = open_initial(A3_PACKET, header, server)
    assert opened.packet_number == 1
    assert opened.payload == A3_PAYLOAD
    frames = parse_frames(opened.payload)
    assert [f.type for f in frames] == [0x02, 0x06]
    assert frames[1].offset == 0 and frames[1].data[:4] == bytes.fromhex("02000056")  # ServerHello


def test_open_initial_rejects_damage() -> None:
    packet = bytearray(a2_packet())
    header = parse_long_header(bytes(packet))
    client, _ = derive_initial_keys(QUIC_V1, DCID)
    packet[500] ^= 1
    with pytest.raises(WireError) as exc:
        open_initial(bytes(packet), header, client)
    assert exc.value.code == "quic.initial.decrypt_failed"
    tiny = bytes.fromhex("c00000000100000005") + bytes(5)
    with pytest.raises(WireError) as exc:
        open_initial(tiny, parse_long_header(tiny), client)
    assert exc.value.code == "quic.header.malformed"


def test_open_initial_v2_roundtrip() -> None:
    # v2 Initial type bits are 0b01 (RFC 9369 3.2): first byte 0xd3 = long, fixed, type 1, pn length 4.
    client, _ = derive_initial_keys(QUIC_V2, DCID)
    header = bytes.fromhex("d36b3343cf088394c8f03e5157080000449e00000002")
    packet = seal_initial(header, 18, 4, A2_PAYLOAD, client)
    parsed = parse_long_header(packet)
    assert (parsed.version, parsed.packet_type) == (QUIC_V2, "initial")
    opened = open_initial(packet, parsed, client)
    assert (opened.packet_number, opened.payload) == (2, A2_PAYLOAD)


# -- headers and datagrams ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "type_bits", "expected"),
    [
        (QUIC_V1, 0, "initial"),
        (QUIC_V1, 1, "0rtt"),
        (QUIC_V1, 2, "handshake"),
        (QUIC_V1, 3, "retry"),
        (QUIC_V2, 1, "initial"),
        (QUIC_V2, 2, "0rtt"),
        (QUIC_V2, 3, "handshake"),
        (QUIC_V2, 0, "retry"),
    ],
)
def test_long_header_types(version: int, type_bits: int, expected: str) -> None:
    first = 0xC0 | (type_bits << 4)
    cids = b"\x04abcd\x02xy"
    if expected == "retry":
        body = b"TOKEN" + bytes(16)
    elif expected == "initial":
        body = b"\x02tk\x05" + b"12345"
    else:
        body = b"\x05" + b"12345"
    dgram = bytes([first]) + version.to_bytes(4, "big") + cids + body
    header = parse_long_header(dgram)
    assert header.packet_type == expected
    assert (header.dcid, header.scid) == (b"abcd", b"xy")
    assert header.end == len(dgram)
    if expected == "retry":
        assert (header.token, header.length) == (b"TOKEN", 0)
    elif expected == "initial":
        assert (header.token, header.length, header.header_len) == (b"tk", 5, len(dgram) - 5)


def test_iter_datagram_coalesced_and_trailing_junk() -> None:
    a2 = a2_packet()
    handshake = bytes.fromhex("e000000001 0400000000 00 03") + b"xyz"
    dgram = A3_PACKET + handshake + bytes(40)  # coalesced packets, then zero padding
    headers = list(iter_datagram(dgram))
    assert [h.packet_type for h in headers] == ["initial", "handshake"]
    assert headers[0].start == 0 and headers[1].start == len(A3_PACKET)
    assert headers[1].end == len(A3_PACKET) + len(handshake)
    assert [h.packet_type for h in iter_datagram(a2 + b"\x40short header")] == ["initial"]
    assert list(iter_datagram(b"")) == []
    with pytest.raises(WireError) as exc:
        list(iter_datagram(a2[:-1]))
    assert exc.value.code == "quic.header.malformed"


def test_looks_like_quic_long() -> None:
    assert looks_like_quic_long(a2_packet())
    assert looks_like_quic_long(b"\x80\x00\x00\x00\x01\x00\x00")  # fixed bit greased (RFC 9287)
    assert not looks_like_quic_long(b"\xc0\x00\x00\x00\x00\x00\x00\x00")  # version negotiation
    assert not looks_like_quic_long(b"\x40\x00\x00\x00\x01\x00\x00")  # short header
    assert not looks_like_quic_long(b"\xc0\x00\x00\x00\x01\x00")  # too short


@pytest.mark.parametrize(
    "data",
    [
        b"\xc0\x00\x00\x00\x01\x15" + bytes(30),  # DCID length 21 > 20
        b"\xc0\x00\x00\x00\x01\x08abc",  # DCID overruns
        b"\xc0\x00\x00\x00\x01\x00\x00\x44",  # token length varint truncated
        b"\xc0\x00\x00\x00\x01\x00\x00\x05ab",  # token overruns
        b"\xc0\x00\x00\x00\x01\x00\x00\x00\x10abc",  # Length overruns
        b"\xf0\x00\x00\x00\x01\x00\x00tag",  # Retry shorter than its tag
        b"\xc0\x00\x00\x00\x00\x00\x00",  # version negotiation
        b"\x40\x00\x00\x00\x01\x00\x00",  # short header
        b"\xc0\x00",
    ],
)
def test_parse_long_header_malformed(data: bytes) -> None:
    with pytest.raises(WireError) as exc:
        parse_long_header(data)
    assert exc.value.code == "quic.header.malformed"


# -- varints, frames, transport parameters ---------------------------------------------------


@pytest.mark.parametrize(
    ("hexval", "value"),
    [  # RFC 9000 A.1
        ("c2197c5eff14e88c", 151288809941952652),
        ("9d7f3e7d", 494878333),
        ("7bbd", 15293),
        ("25", 37),
        ("4025", 37),
    ],
)
def test_read_varint(hexval: str, value: int) -> None:
    data = b"\xff" + bytes.fromhex(hexval)
    assert read_varint(data, 1) == (value, len(data))
    with pytest.raises(WireError) as exc:
        read_varint(data[:-1], 1)
    assert exc.value.code == "quic.varint.truncated"


def test_parse_frames_kinds() -> None:
    payload = bytes.fromhex(
        "0000"  # PADDING run
        "01"  # PING
        "02 0a 00 02 01 0102 0001"  # ACK: largest 10, delay 0, 2 ranges, first 1
        "03 05 00 00 00 01 02 03"  # ACK_ECN: no ranges, ECN counts 1 2 3
        "06 4001 03 616263"  # CRYPTO offset 1 abc"
        "1c 0a 06 02 6e6f"  # CONNECTION_CLOSE: error 10, frame type 6, reason "no"
        "1d 4100 00"  # CONNECTION_CLOSE (application): error 256, empty reason
        "000000"
    )
    assert parse_frames(payload) == [
        Frame(0x01),
        Frame(0x02),
        Frame(0x03),
        Frame(0x06, offset=1, data=b"abc"),
        Frame(0x1C, error_code=10, reason=b"no"),
        Frame(0x1D, error_code=256, reason=b""),
    ]
    assert parse_frames(bytes(100)) == []


@pytest.mark.parametrize(
    ("hexval", "code"),
    [
        ("07 00", "quic.frame.unexpected"),  # NEW_TOKEN
        ("08 00", "quic.frame.unexpected"),  # STREAM
        ("01 1e", "quic.frame.unexpected"),  # HANDSHAKE_DONE after PING
        ("06 00 05 6162", "quic.frame.malformed"),  # CRYPTO overruns
        ("06 00", "quic.frame.malformed"),  # CRYPTO without length
        ("02 00 00 ff", "quic.frame.malformed"),  # ACK range count truncated
        ("02 00 00 3f 00 0000", "quic.frame.malformed"),  # 63 ranges in 2 bytes
        ("1c 00 00 09 61", "quic.frame.malformed"),  # reason overruns
        ("40", "quic.frame.malformed"),  # frame type varint truncated
    ],
)
def test_parse_frames_errors(hexval: str, code: str) -> None:
    with pytest.raises(WireError) as exc:
        parse_frames(bytes.fromhex(hexval))
    assert exc.value.code == code


def test_transport_parameters_named_unknown_and_grease() -> None:
    data = bytes.fromhex(
        "0004 01020304"  # original_destination_connection_id
        "0c00"  # disable_active_migration
        "0e0104"  # active_connection_id_limit 4
        "2002 4200"  # max_datagram_frame_size 512 (0x20 = 32: one-byte id)
        "6ab200"  # grease_quic_bit (0x2ab2, a 2-byte varint)
        "1108 00000001 6b3343cf"  # version_information
        "7127 02 4064"  # 0x3127 (Google initial RTT, by hex id)
        "1b 01 ff"  # 0x1b = 27: GREASE (31*0 + 27)
    )
    assert decode_transport_parameters(data) == {
        "original_destination_connection_id": "01020304",
        "disable_active_migration": True,
        "active_connection_id_limit": 4,
        "max_datagram_frame_size": 512,
        "grease_quic_bit": True,
        "version_information": {"chosen": 1, "available": [QUIC_V2]},
        "0x3127": "4064",
        "0x1b": "ff",
    }
    assert decode_transport_parameters(b"") == {}


@pytest.mark.parametrize(
    "hexval",
    ["01", "0105", "010201", "01020501", "0c0100", "1103010203", "40"],
)
def test_transport_parameters_malformed(hexval: str) -> None:
    with pytest.raises(WireError) as exc:
        decode_transport_parameters(bytes.fromhex(hexval))
    assert exc.value.code == "quic.tp.malformed"


# -- CRYPTO reassembly -------------------------------------------------------------------------


def test_crypto_assembler_gap_limit_and_overflow() -> None:
    asm = CryptoAssembler()
    asm.add(5, b"fghij")
    assert asm.contiguous() == b""
    asm.add(0, b"abc")
    assert asm.contiguous() == b"abc"
    asm.add(2, b"XdeY")  # overlaps: first write wins, fills the gap 3..5
    assert asm.contiguous() == b"abcdefghij"
    assert not asm.overflow
    asm.add(MAX_CRYPTO_BYTES - 2, b"wxyz")
    assert asm.overflow  # bytes past the limit are dropped
    assert asm.contiguous() == b"abcdefghij"

    small = CryptoAssembler(limit=8)
    small.add(0, b"0123456789")
    assert small.overflow and small.contiguous() == b"01234567"

    many = CryptoAssembler()
    for i in range(MAX_CRYPTO_RANGES + 10):
        many.add(2 * i + 1, b"x")
    assert many.overflow
    assert many.contiguous() == b""


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_crypto_assembler_order_and_overlap_independent(data: st.DataObject) -> None:
    stream = bytes(random.Random(7).randrange(256) for _ in range(3000))
    cuts = sorted(data.draw(st.sets(st.integers(1, len(stream) - 1), max_size=40)))
    bounds = [0, *cuts, len(stream)]
    chunks = [(a, stream[a:b]) for a, b in itertools.pairwise(bounds)]
    # overlapping retransmissions of arbitrary slices
    for _ in range(data.draw(st.integers(0, 10))):
        a = data.draw(st.integers(0, len(stream) - 1))
        b = data.draw(st.integers(a + 1, len(stream)))
        chunks.append((a, stream[a:b]))
    order = data.draw(st.permutations(chunks))
    asm = CryptoAssembler()
    for offset, chunk in order:
        asm.add(offset, chunk)
    assert asm.contiguous() == stream
    assert not asm.overflow


# -- robustness ----------------------------------------------------------------------------


def _exercise(dgram: bytes, keys: InitialKeys) -> None:
    """Run the whole Initial path; only WireError may escape."""
    for header in iter_datagram(dgram):
        if header.packet_type == "initial":
            parse_frames(open_initial(dgram, header, keys).payload)


def test_truncations_raise_only_wire_error() -> None:
    packet = a2_packet()
    client, _ = derive_initial_keys(QUIC_V1, DCID)
    for cut in range(len(packet)):
        with contextlib.suppress(WireError):
            _exercise(packet[:cut], client)
    for cut in range(len(A2_PAYLOAD)):
        with contextlib.suppress(WireError):
            parse_frames(A2_PAYLOAD[:cut])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 1199), st.integers(0, 255))
def test_random_bytes_raise_only_wire_error(junk: bytes, pos: int, flip: int) -> None:
    client, _ = derive_initial_keys(QUIC_V1, DCID)
    packet = bytearray(a2_packet())
    packet[pos] ^= flip
    for dgram in (junk, b"\xc0\x00\x00\x00\x01" + junk, bytes(packet), bytes(packet[:pos]) + junk):
        for fn in (
            lambda d: _exercise(d, client),
            parse_frames,
            decode_transport_parameters,
            lambda d: read_varint(d, 0),
        ):
            with contextlib.suppress(WireError):
                fn(dgram)


# -- real captures -------------------------------------------------------------------------


@dataclass
class _Conn:
    """Just enough connection state to open a client's Initials (test-only)."""

    client: tuple[str, int]
    dcid: bytes  # the first client Initial's DCID, or a Retry's SCID (RFC 9001 5.2)
    crypto: CryptoAssembler = field(default_factory=CryptoAssembler)


def _client_hellos(capture: Path) -> dict[tuple[str, int, str, int], str | None]:
    """(src, sport, dst, dport) of each client -> the SNI of its first reassembled ClientHello."""
    decoder = Decoder(AnomalyLog())
    conns: dict[frozenset[tuple[str, int]], _Conn] = {}
    for ts, linktype, frame in CaptureFile(str(capture)):
        seg = decoder.decode(linktype, frame, ts)
        if seg is None or seg.proto != 17 or not looks_like_quic_long(seg.payload):
            continue
        src = (str(ipaddress.ip_address(seg.src)), seg.sport)
        dst = (str(ipaddress.ip_address(seg.dst)), seg.dport)
        try:
            for header in iter_datagram(seg.payload):
                if initial_salt(header.version) is None:
                    break
                conn = conns.get(frozenset((src, dst)))
                if conn is None:
                    if header.packet_type not in ("initial", "0rtt"):
                        break
                    conn = conns[frozenset((src, dst))] = _Conn(src, header.dcid)
                if header.packet_type == "retry" and src != conn.client:
                    conn.dcid = header.scid
                if header.packet_type != "initial" or src != conn.client:
                    continue
                for dcid in dict.fromkeys((conn.dcid, header.dcid)):
                    try:
                        opened = open_initial(seg.payload, header, derive_initial_keys(header.version, dcid)[0])
                    except WireError:
                        continue
                    for f in parse_frames(opened.payload):
                        if f.type == 0x06:
                            conn.crypto.add(f.offset, f.data)
                    break
        except WireError:
            continue  # not QUIC after all (DNS, IKE, ...) or damaged
    out: dict[tuple[str, int, str, int], str | None] = {}
    for key, conn in conns.items():
        hs = conn.crypto.contiguous()
        if len(hs) < 4 or hs[0] != 1 or len(hs) < 4 + int.from_bytes(hs[1:4], "big"):
            continue
        (server,) = key - {conn.client}
        flow_key = (conn.client[0], conn.client[1], server[0], server[1])
        out[flow_key] = parse_client_hello(hs[4 : 4 + int.from_bytes(hs[1:4], "big")]).sni
    return out


def _quic_expectations() -> list[Path]:
    if not CORPUS.is_dir():
        return []
    return [p for p in sorted(CORPUS.glob("*/expected/*.json")) if '"proto": "quic"' in p.read_text()]


@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"corpus not found at {CORPUS}")
@pytest.mark.parametrize("expected", _quic_expectations(), ids=lambda p: f"{p.parent.parent.name}/{p.stem}")
def test_corpus_quic_client_hello_sni(expected: Path) -> None:
    doc = json.loads(expected.read_text())
    got = _client_hellos(expected.parent.parent / doc["pcap"])
    flows = [f for f in doc["flows"] if f.get("proto") == "quic" and f.get("client_hello_frames")]
    assert flows
    for flow in flows:
        key = (flow["src"], flow["src_port"], flow["dst"], flow["dst_port"])
        assert key in got, f"no ClientHello reassembled for {key}"
        assert got[key] == flow["sni"], key


def test_corpus_named_captures_present() -> None:
    if not CORPUS.is_dir():
        pytest.skip(f"corpus not found at {CORPUS}")
    names = {f"{p.parent.parent.name}/{p.stem}" for p in _quic_expectations()}
    assert {
        "foxio-ja4/quic-tls-handshake.pcapng",
        "suricata-verify/quic-frag-unordered.pcap",
        "zeek/quicv2-http3-443.pcap",
    } <= names
