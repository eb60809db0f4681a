"""JA3/JA4/JA4S against the spec examples and every spec-versus-reference case
(docs/fingerprints.md explains each)."""

from __future__ import annotations

import hashlib

import pytest

from tests.factory import alpn_ext, client_hello_body, ext, server_hello_body, sni_ext, u16_list_ext
from tlsprobe.fingerprint.ja3 import ja3_string, ja3s_string, md5_hex
from tlsprobe.fingerprint.ja4 import Ja4Parts, alpn_code, sha12
from tlsprobe.fingerprint.ja4plus import ja4s, ja4s_r
from tlsprobe.wire.tls import parse_client_hello, parse_server_hello


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def test_ja3_spec_examples() -> None:
    ch = parse_client_hello(client_hello_body(
        0x0301,
        [47, 53, 5, 10, 49161, 49162, 49171, 49172, 50, 56, 19, 4],
        [sni_ext(b"a.example"), u16_list_ext(10, [23, 24, 25]), ext(11, b"\x01\x00")],
    ))
    assert ja3_string(ch) == "769,47-53-5-10-49161-49162-49171-49172-50-56-19-4,0-10-11,23-24-25,0"
    assert md5_hex(ja3_string(ch)) == "ada70206e40642a3e4461f35503241d5"
    bare = parse_client_hello(client_hello_body(0x0301, [4, 5, 10, 9, 100, 98, 3, 6, 19, 18, 99],
                                                with_ext_block=False))
    assert ja3_string(bare) == "769,4-5-10-9-100-98-3-6-19-18-99,,,"
    assert md5_hex(ja3_string(bare)) == "de350869b8c85de67a350c8d186f11e6"


def test_ja3_drops_grease_everywhere_but_keeps_padding_and_scsv() -> None:
    ch = parse_client_hello(client_hello_body(
        0x0303, [0x0A0A, 0x1301, 0x00FF],
        [ext(0x1A1A, b""), u16_list_ext(10, [0x2A2A, 29]), ext(21, b"\x00" * 8)],
    ))
    assert ja3_string(ch) == "771,4865-255,10-21,29,"


def test_ja4_spec_example_hashes() -> None:
    assert sha12("002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9") == "8daaf6152771"
    assert sha12(
        "0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_"
        "0403,0804,0401,0503,0805,0501,0806,0601"
    ) == "e5627efa2ab1"


@pytest.mark.parametrize(
    ("first", "code"),
    [
        (b"h2", "h2"), (b"http/1.1", "h1"), (b"\xab", "ab"), (b"\x20\x61", "21"), (b"\x30\xab", "3b"),
        (b"\x30\xab\xcd\x31", "01"), (b"a", "aa"), (b"", "00"), (None, "00"), (b"\xba\xad", "bd"),
    ],
)
def test_alpn_code_follows_spec_hex_rule(first: bytes | None, code: str) -> None:
    assert alpn_code(first) == code


def _ja4(exts: list[bytes], ciphers: list[int] | None = None, version: int = 0x0303) -> Ja4Parts:
    return Ja4Parts(parse_client_hello(client_hello_body(version, ciphers, exts)))


def test_grease_in_signature_algorithms_is_dropped() -> None:
    parts = _ja4([u16_list_ext(13, [0x0A0A, 0x0403, 0x0804])])
    assert parts.ja4_r().endswith("_000d_0403,0804")


def test_more_than_99_ciphers_caps_count_but_hashes_all() -> None:
    ciphers = list(range(1, 121))
    parts = _ja4([u16_list_ext(13, [0x0403])], ciphers)
    assert parts.a[4:6] == "99"
    assert parts.ja4().split("_")[1] == sha(",".join(f"{c:04x}" for c in ciphers))


def test_scsv_values_are_counted_as_ciphers() -> None:
    parts = _ja4([], [0x1301, 0x00FF, 0x5600, 0x0A0A])
    assert parts.a[4:6] == "03"
    assert parts.ciphers_sorted == "00ff,1301,5600"


def test_extension_list_empty_after_sni_and_alpn_removed() -> None:
    parts = _ja4([sni_ext(b"x.example"), alpn_ext(b"h2")])
    assert parts.ja4().split("_")[2] == "000000000000"
    assert parts.ja4_r().endswith("_")
    # JA4_o keeps SNI and ALPN (original order), so its list is not empty
    assert parts.ja4_ro().split("_")[2] == "0000,0010"
    assert parts.ja4_o().split("_")[2] == sha("0000,0010")


def test_tls10_hello_without_signature_algorithms_has_no_trailing_underscore() -> None:
    exts = [ext(5, b"\x01\x00\x00\x00\x00"), u16_list_ext(10, [29, 23, 24]), ext(11, b"\x01\x00"),
            ext(0x17, b""), ext(0x23, b""), ext(0xFF01, b"\x00")]
    parts = _ja4(exts, [0xC00A, 0xC009, 0xC014, 0xC013, 0x0035, 0x002F, 0x000A], 0x0301)
    assert parts.ja4() == "t10i070600_c50f5591e341_c39ab67fec8e"
    assert parts.ja4_r().endswith("ff01")


def test_ja4_version_from_supported_versions_ignoring_grease() -> None:
    parts = _ja4([ext(43, bytes([6, 0x3A, 0x3A, 0x03, 0x04, 0x03, 0x03]))])
    assert parts.a.startswith("t13")
    empty = _ja4([ext(43, b"\x00")])
    assert empty.a.startswith("t00")


def test_no_ciphers_gives_zero_hash() -> None:
    parts = _ja4([], [])
    assert parts.ja4().split("_")[1] == "000000000000"


def test_ja4s_reference_example() -> None:
    sh = parse_server_hello(server_hello_body(0x0303, 0xC030, [ext(5, b""), ext(0x17, b""), ext(0xFF01, b"\x00"),
                                                              ext(0, b"")]))
    assert ja4s_r(sh) == "t120400_c030_0005,0017,ff01,0000"
    assert ja4s(sh) == "t120400_c030_4e8089b08790"
    assert ja3s_string(sh) == "771,49200,5-23-65281-0"


def test_ja4s_without_extensions() -> None:
    sh = parse_server_hello(server_hello_body(0x0301, 0x0039))
    assert ja4s(sh) == "t100000_0039_000000000000"
    assert ja4s_r(sh) == "t100000_0039_"
    assert ja3s_string(sh) == "769,57,"
