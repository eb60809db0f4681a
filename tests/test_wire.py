"""Parser contract: a record, None ("need more"), or WireError - nothing else escapes."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.factory import alpn_ext, client_hello_body, ext, handshake, record, sni_ext, u16_list_ext
from tlsprobe.errors import WireError
from tlsprobe.wire.records import HandshakeMessage, NotTls, Preamble, Record, RecordStream
from tlsprobe.wire.tls import parse_certificate_list, parse_client_hello, parse_server_hello

BODY = client_hello_body(
    0x0303,
    [0x0A0A, 0x1301, 0x1302, 0xC02B],
    [sni_ext(b"www.example.test"), alpn_ext(b"h2", b"http/1.1"), u16_list_ext(10, [29, 23]),
     ext(11, b"\x01\x00"), u16_list_ext(13, [0x0403, 0x0804]), ext(43, b"\x04\x03\x04\x03\x03")],
)
EXT_START = len(client_hello_body(0x0303, [0x0A0A, 0x1301, 0x1302, 0xC02B], with_ext_block=False))


def test_client_hello_views() -> None:
    ch = parse_client_hello(BODY)
    assert ch.sni == "www.example.test"
    assert ch.alpn == ["h2", "http/1.1"]
    assert ch.max_version == 0x0304
    assert ch.signature_algorithms == (0x0403, 0x0804)
    assert not ch.anomalies


@pytest.mark.parametrize("cut", range(len(BODY)))
def test_truncated_client_hello_never_escapes(cut: int) -> None:
    try:
        ch = parse_client_hello(BODY[:cut])
    except WireError as exc:
        assert exc.code.startswith("tls.")
        return
    # a cut inside the extensions keeps what parsed and says so; a cut right before the
    # extensions block is a valid hello without extensions
    assert ch.anomalies or (cut == EXT_START and not ch.has_extensions_block)


@given(st.binary(max_size=600))
@settings(max_examples=400, deadline=None)
def test_random_bytes_never_escape(data: bytes) -> None:
    for parse in (parse_client_hello, parse_server_hello, parse_certificate_list):
        with contextlib.suppress(WireError):
            parse(data)  # type: ignore[operator]


@given(st.binary(max_size=200))
@settings(max_examples=200, deadline=None)
def test_appended_junk_is_an_anomaly_not_a_failure(junk: bytes) -> None:
    ch = parse_client_hello(BODY + b"\x00\x00" + junk if junk else BODY)
    assert ch.sni == "www.example.test"


def test_hostile_sni_is_kept_and_flagged() -> None:
    ch = parse_client_hello(client_hello_body(extensions=[sni_ext(b"\x1b[31mevil\x00\xff<img>|")]))
    assert ch.sni == "\x1b[31mevil\x00\\xff<img>|"
    assert {"tls.sni.control_chars", "tls.sni.not_utf8", "tls.sni.invalid_hostname"} <= set(ch.anomalies)


def test_absurd_lengths() -> None:
    # extension block claims more than there is; an extension claims 65535 bytes
    body = client_hello_body(with_ext_block=False) + b"\xff\xff" + b"\x00\x00\xff\xff"
    ch = parse_client_hello(body)
    assert "tls.hello.malformed" in ch.anomalies
    stream = RecordStream()
    events = stream.feed(b"\x16\x03\x01\x00\x04" + b"\x01\xff\xff\xff")
    assert any(isinstance(e, NotTls) for e in events)
    assert "tls.handshake.oversized" in stream.anomalies


def _events(chunks: list[bytes]) -> list[tuple[str, int, int]]:
    rs = RecordStream(want=1)
    out = []
    for c in chunks:
        for e in rs.feed(c):
            if isinstance(e, HandshakeMessage):
                out.append(("hs", e.msg_type, len(e.body)))
            elif isinstance(e, Record):
                out.append(("rec", e.content_type, e.length))
            elif isinstance(e, Preamble):
                out.append(("pre", e.offset, e.length))
    return out


def _split_hello() -> bytes:
    msg = handshake(1, BODY)
    return record(22, msg[:50]) + record(22, msg[50:]) + record(20, b"\x01") + record(23, b"x" * 30)


@given(st.lists(st.integers(min_value=1, max_value=64), max_size=40))
@settings(max_examples=200, deadline=None)
def test_resegmenting_the_stream_gives_the_same_events(cuts: list[int]) -> None:
    data = b"EHLO x\r\nSTARTTLS\r\n" + _split_hello()
    chunks, pos = [], 0
    for c in cuts:
        chunks.append(data[pos : pos + c])
        pos += c
    chunks.append(data[pos:])
    assert _events(chunks) == _events([data])
    assert _events([data])[0] == ("pre", 0, 18)
    assert _events([data])[1] == ("hs", 1, len(BODY))
