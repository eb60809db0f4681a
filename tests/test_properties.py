"""The parser contract, as properties (docs/robustness.md, "Parser contract").

Each parser returns a record, ``None`` ("need more data") or raises its one documented
error - nothing else escapes, whatever the input: valid inputs truncated at every
offset, with junk appended, with bytes flipped, re-segmented and reordered.  Seeds are
built with tests/factory.py.  Example counts come from the Hypothesis profile loaded in
conftest.py (``ci`` by default; ``HYPOTHESIS_PROFILE=long`` for a deeper run).
"""

from __future__ import annotations

import gzip
import itertools
import random
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests import factory as f
from tests.test_quic_wire import DCID, a2_packet
from tlsprobe.anomalies import ANOMALIES, AnomalyLog
from tlsprobe.capture.files import CaptureFile
from tlsprobe.decode.fragments import FragmentTable
from tlsprobe.decode.packet import LINKTYPES, Decoder, Segment
from tlsprobe.errors import CaptureError, WireError
from tlsprobe.flow.quic import QuicTracker
from tlsprobe.handshake import HandshakeTracker
from tlsprobe.limits import DEFAULT_LIMITS
from tlsprobe.model import CertificateInfo, ClientHello, ServerHello
from tlsprobe.pipeline import Analyzer
from tlsprobe.wire import tls
from tlsprobe.wire.http import parse_request, parse_response
from tlsprobe.wire.records import HandshakeMessage, NotTls, Preamble, Record, RecordStream
from tlsprobe.wire.x509 import describe_certificate, verify_chain

ROOT = Path(__file__).resolve().parents[1]
# the slow properties (a whole Analyzer per example) run a fifth of the profile's examples
FEW = settings(max_examples=max(10, settings.default.max_examples // 5), deadline=None)

# -- seeds ----------------------------------------------------------------------------------

CH_BODY = f.client_hello_body(
    0x0303,
    [0x0A0A, 0x1301, 0x1302, 0xC02B, 0xC02F],
    [f.sni_ext(b"www.example.test"), f.alpn_ext(b"h2", b"http/1.1"), f.u16_list_ext(10, [0x1A1A, 29, 23]),
     f.ext(11, b"\x01\x00"), f.u16_list_ext(13, [0x0403, 0x0804]), f.u16_list_ext(43, [0x0304, 0x0303], 1),
     f.ext(51, f.vec(f.u16(29) + f.vec(bytes(32), 2), 2)), f.ext(0xFE0D, b"\x00")],
    session_id=bytes(range(32)),
)
CLIENT_STREAM = f.record(22, f.handshake(1, CH_BODY))
CA_DER = __import__("ssl").PEM_cert_to_DER_cert((ROOT / "pcaps" / "demo-ca.pem").read_text())
SH_BODY = f.server_hello_body(0x0303, 0xC02F, [f.ext(0xFF01, b"\x00"), f.ext(16, f.vec(f.vec(b"h2", 1), 2))])
SERVER_STREAM = f.server_flight([CA_DER, CA_DER[:200]], SH_BODY)
FRAMES = f.handshake_frames(CLIENT_STREAM, SERVER_STREAM)
PCAP = f.pcap(FRAMES)
PCAPNG = f.pcapng(FRAMES)
HTTP_RESPONSE = (b"HTTP/1.1 403 Forbidden\r\nServer: fw\r\nLocation: http://block.example/?u=1\r\n"
                 b"Content-Type: text/html\r\n\r\n<html><title>Blocked</title>denied</html>")
HTTP_REQUEST = b"GET /index.html HTTP/1.1\r\nHost: www.example.test\r\nUser-Agent: curl/8\r\n\r\n"


def _edge_frames() -> list[tuple[int, bytes]]:
    """A few frames of each link type and tunnel in pcaps/edge (real captures)."""
    out: list[tuple[int, bytes]] = []
    for p in sorted((ROOT / "pcaps" / "edge").glob("*.pcap*")):
        for i, (_ts, lt, frame) in enumerate(CaptureFile(str(p))):
            if i >= 6:
                break
            out.append((lt, frame))
    return out


def _synthetic_frames() -> list[tuple[int, bytes]]:
    """The client hello's packet on the other link types, and inside a GRE tunnel."""
    ip = FRAMES[3][14:]
    gre = b"\x00\x00\x08\x00" + ip
    outer = (b"\x45\x00" + (20 + len(gre)).to_bytes(2, "big") + b"\x00\x01\x00\x00\x40\x2f\x00\x00"
             + bytes([192, 0, 2, 1, 192, 0, 2, 2]))
    return [(101, ip), (0, b"\x02\x00\x00\x00" + ip), (108, b"\x00\x00\x00\x02" + ip),
            (9, b"\xff\x03\x00\x21" + ip), (51, b"\x11\x00\x00\x01\x00\x00\x00\x21" + ip),
            (1, FRAMES[3][:12] + b"\x08\x00" + outer + gre)]


EDGE_FRAMES = _edge_frames() + _synthetic_frames()


def _flip(data: bytes, flips: list[tuple[int, int]]) -> bytes:
    if not data:
        return data
    buf = bytearray(data)
    for pos, mask in flips:
        buf[pos % len(buf)] ^= mask or 1
    return bytes(buf)


flips = st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), min_size=1, max_size=8)


def _mutated(seed: bytes) -> st.SearchStrategy[bytes]:
    """``seed`` truncated, with junk appended, with bytes flipped, or a mix."""
    return st.one_of(
        st.integers(0, len(seed)).map(lambda n: seed[:n]),
        st.binary(min_size=1, max_size=64).map(lambda junk: seed + junk),
        flips.map(lambda fl: _flip(seed, fl)),
        st.tuples(flips, st.integers(0, len(seed)), st.binary(max_size=16)).map(
            lambda t: _flip(seed, t[0])[: t[1]] + t[2]),
    )


def _wire(fn: Callable[[], Any]) -> Any:
    """Run ``fn``; a WireError must carry a documented anomaly code.  Returns the result or the error."""
    try:
        return fn()
    except WireError as exc:
        assert exc.code in ANOMALIES, exc.code
        return exc


# -- capture reader: packets, or CaptureError ------------------------------------------------


def _read(tmp: Path, data: bytes) -> tuple[list[bytes], CaptureError | None]:
    tmp.write_bytes(data)
    frames: list[bytes] = []
    try:
        for ts, lt, frame in CaptureFile(str(tmp), AnomalyLog()):
            assert isinstance(ts, float) and isinstance(lt, int)
            frames.append(frame)
    except CaptureError as exc:
        assert "\n" not in str(exc)
        return frames, exc
    return frames, None


@pytest.mark.parametrize("fmt", ["pcap", "pcapng", "pcap.gz"])
def test_capture_truncated_at_every_offset(tmp_path: Path, fmt: str) -> None:
    seed = {"pcap": PCAP, "pcapng": PCAPNG, "pcap.gz": gzip.compress(PCAP)}[fmt]
    tmp = tmp_path / "cut"
    header = 24 if fmt == "pcap" else 28 + 20
    for cut in range(len(seed) + 1):
        frames, err = _read(tmp, seed[:cut])
        if fmt == "pcap.gz":
            continue  # a cut gzip stream yields what decompresses, or CaptureError
        if cut >= header:
            assert err is None, (cut, err)
            assert frames == FRAMES[: len(frames)]  # a prefix of the real packets, none invented
        if cut == len(seed):
            assert frames == FRAMES


@given(st.sampled_from(["pcap", "pcapng"]).flatmap(lambda k: _mutated(PCAP if k == "pcap" else PCAPNG)))
@settings(deadline=None)
def test_capture_mutated_yields_packets_or_capture_error(tmp_path_factory: pytest.TempPathFactory,
                                                         data: bytes) -> None:
    _read(tmp_path_factory.mktemp("cap") / "m", data)


@given(st.binary(min_size=1, max_size=64))
@settings(deadline=None)
def test_capture_junk_after_the_last_record_keeps_every_packet(tmp_path_factory: pytest.TempPathFactory,
                                                               junk: bytes) -> None:
    for seed in (PCAP, PCAPNG):
        frames, err = _read(tmp_path_factory.mktemp("cap") / "j", seed + junk)
        assert err is None and frames[: len(FRAMES)] == FRAMES


# -- link / IP / TCP / UDP decode: Segment or None, never an exception --------------------------


def _decode(lt: int, frame: bytes, dec: Decoder | None = None) -> Segment | None:
    seg = (dec or Decoder(AnomalyLog())).decode(lt, frame, 1.0)
    assert seg is None or isinstance(seg, Segment)
    return seg


def test_decode_truncated_at_every_offset() -> None:
    assert len({lt for lt, _ in EDGE_FRAMES}) >= 8
    for lt, frame in _synthetic_frames():
        seg = _decode(lt, frame)
        assert seg is not None and seg.payload == CLIENT_STREAM, lt
    for lt, frame in [(1, fr) for fr in FRAMES] + EDGE_FRAMES:
        whole = _decode(lt, frame)
        for cut in range(len(frame)):
            seg = _decode(lt, frame[:cut])
            if seg is not None and whole is not None:
                assert (seg.sport, seg.dport) == (whole.sport, whole.dport)


@given(st.sampled_from([*sorted(LINKTYPES), 1, 147]), st.data())
@settings(deadline=None)
def test_decode_mutated_frames(lt: int, data: st.DataObject) -> None:
    _src_lt, frame = data.draw(st.sampled_from([(1, fr) for fr in FRAMES] + EDGE_FRAMES))
    _decode(lt, data.draw(_mutated(frame)))


@given(st.lists(st.tuples(st.sampled_from(sorted(LINKTYPES)), st.binary(max_size=120)), max_size=20))
@settings(deadline=None)
def test_decode_random_frames_one_decoder(frames: list[tuple[int, bytes]]) -> None:
    dec = Decoder(AnomalyLog())  # fragment reassembly state carried across frames
    for lt, frame in frames:
        _decode(lt, frame, dec)
    dec.fragments.flush()


# -- IP fragment reassembly: any order, duplicates, overlaps -> the datagram, never a holed one ----

DATAGRAM = bytes(random.Random(3).randrange(256) for _ in range(1480))


@given(st.data())
@settings(deadline=None)
def test_ip_fragments_any_order_duplicates_overlaps(data: st.DataObject) -> None:
    n = len(DATAGRAM)
    cuts = sorted(data.draw(st.sets(st.integers(1, n // 8 - 1).map(lambda k: k * 8), max_size=12)))
    bounds = [0, *cuts, n]
    frags = list(itertools.pairwise(bounds))
    for _ in range(data.draw(st.integers(0, 6))):  # exact or overlapping copies (same bytes)
        a = data.draw(st.integers(0, n // 8 - 1)) * 8
        frags.append((a, data.draw(st.integers(a + 1, min(n - (a == 0), a + 400)))))  # (0, n) is no fragment
    log = AnomalyLog()
    table = FragmentTable(DEFAULT_LIMITS, log)
    out = None
    for a, b in data.draw(st.permutations(frags)):
        got = table.add(("k",), a, b < n, DATAGRAM[a:b], 1.0)
        if got is not None:
            assert out is None
            out = got
    assert out == DATAGRAM  # overlaps may be flagged (ip.fragment.overlap), never a wrong payload
    assert set(log.counts) <= {"ip.fragment.overlap"}


def test_ip_fragments_overlap_that_hides_a_hole_waits_for_the_missing_part() -> None:
    # Hypothesis: [0,16) [8,24) and the last [32,40) add up to 40 bytes = the total, so the
    # datagram was assembled with zeros where [24,32) was still missing.
    log = AnomalyLog()
    table = FragmentTable(DEFAULT_LIMITS, log)
    d = DATAGRAM[:40]
    assert table.add(1, 0, True, d[0:16], 1.0) is None
    assert table.add(1, 8, True, d[8:24], 1.0) is None
    assert table.add(1, 32, False, d[32:40], 1.0) is None
    assert table.add(1, 24, True, d[24:32], 1.0) == d
    assert log.counts["ip.fragment.overlap"] == 1
    # Hypothesis: a short fragment, then a longer copy from the same offset - the longer
    # one was dropped and the datagram never completed.
    assert table.add(2, 0, True, d[:8], 1.0) is None
    assert table.add(2, 0, True, d[:24], 1.0) is None
    assert table.add(2, 24, False, d[24:], 1.0) == d


# -- TLS hello parsers: a record or WireError ---------------------------------------------------

_PARSERS: list[tuple[str, Callable[[bytes], Any], type]] = [
    ("client_hello", tls.parse_client_hello, ClientHello),
    ("sslv2_client_hello", tls.parse_sslv2_client_hello, ClientHello),
    ("server_hello", tls.parse_server_hello, ServerHello),
    ("certificate_list", tls.parse_certificate_list, tuple),
]
_BODIES = {"client_hello": CH_BODY, "sslv2_client_hello": b"\x01\x00\x02\x00\x03\x00\x00\x00\x10\x00\x00\x2f"
           + bytes(16), "server_hello": SH_BODY, "certificate_list": f.vec(f.vec(CA_DER, 3), 3)}


@pytest.mark.parametrize(("name", "parse", "kind"), _PARSERS, ids=[p[0] for p in _PARSERS])
def test_hello_parsers_truncated_at_every_offset(name: str, parse: Callable[[bytes], Any], kind: type) -> None:
    body = _BODIES[name]
    assert isinstance(parse(body), kind)
    for cut in range(len(body)):
        out = _wire(lambda cut=cut: parse(body[:cut]))  # type: ignore[misc]
        assert isinstance(out, (kind, WireError))


@pytest.mark.parametrize(("name", "parse", "kind"), _PARSERS, ids=[p[0] for p in _PARSERS])
@given(data=st.data())
@settings(deadline=None)
def test_hello_parsers_mutated(name: str, parse: Callable[[bytes], Any], kind: type, data: st.DataObject) -> None:
    body = data.draw(_mutated(_BODIES[name]))
    assert isinstance(_wire(lambda: parse(body)), (kind, WireError))


# -- record layer: events, never an exception; segmentation does not matter ----------------------


def _feed(stream: bytes, cuts: list[int], want: int = 1) -> list[tuple[Any, ...]]:
    rs = RecordStream(want=want)
    out: list[tuple[Any, ...]] = []
    pos = 0
    for c in [*cuts, len(stream)]:
        for ev in rs.feed(stream[pos : pos + c]):
            if isinstance(ev, HandshakeMessage):
                out.append(("hs", ev.msg_type, ev.body, ev.start, ev.end))
            elif isinstance(ev, Record):
                out.append(("rec", ev.content_type, ev.offset, ev.length))
            elif isinstance(ev, Preamble):
                out.append(("pre", ev.offset, ev.length))
            elif isinstance(ev, NotTls):
                out.append(("end", ev.offset, ev.reason))
        pos += c
    return out


SPLIT_CLIENT = (b"EHLO x\r\nSTARTTLS\r\n" + f.record(22, f.handshake(1, CH_BODY)[:60])
                + f.record(22, f.handshake(1, CH_BODY)[60:]) + f.record(20, b"\x01") + f.record(23, b"x" * 40))


@given(st.lists(st.integers(1, 80), max_size=30), st.sampled_from([SPLIT_CLIENT, SERVER_STREAM]))
@settings(deadline=None)
def test_record_stream_resegmented_same_events(cuts: list[int], stream: bytes) -> None:
    want = 1 if stream is SPLIT_CLIENT else 2
    assert _feed(stream, cuts, want) == _feed(stream, [], want)


@given(st.sampled_from([SPLIT_CLIENT, SERVER_STREAM, CLIENT_STREAM]).flatmap(_mutated),
       st.lists(st.integers(1, 80), max_size=10), st.integers(0, 2))
@settings(deadline=None)
def test_record_stream_mutated_never_raises(stream: bytes, cuts: list[int], want: int) -> None:
    _feed(stream, cuts, want)


# -- handshake tracker: both directions, never an exception -------------------------------------


def _converse(client: bytes, server: bytes, rnd: random.Random, pieces: int) -> HandshakeTracker:
    """Feed both directions in random pieces, interleaved (client data before the server's)."""
    hs = HandshakeTracker(DEFAULT_LIMITS, None)

    def split(data: bytes) -> list[bytes]:
        cuts = sorted(rnd.sample(range(1, len(data)), min(pieces, len(data) - 1))) if len(data) > 1 else []
        bounds = [0, *cuts, len(data)]
        return [data[a:b] for a, b in itertools.pairwise(bounds)]

    for part in split(client):
        hs.feed(0, part)
    for part in split(server):
        hs.feed(1, part)
    return hs


def test_handshake_tracker_resegmented_same_result() -> None:
    rnd = random.Random(1)
    whole = _converse(CLIENT_STREAM, SERVER_STREAM, rnd, 0)
    assert whole.client_hello is not None and whole.client_hello.sni == "www.example.test"
    assert whole.server_hello is not None and len(whole.certificates) == 2
    for pieces in range(1, 60, 3):
        hs = _converse(CLIENT_STREAM, SERVER_STREAM, rnd, pieces)
        assert hs.client_hello == whole.client_hello
        assert hs.server_hello == whole.server_hello
        assert hs.certificates == whole.certificates
        assert hs.anomalies == whole.anomalies


def test_handshake_tracker_truncated_at_every_offset() -> None:
    for cut in range(len(CLIENT_STREAM)):
        _converse(CLIENT_STREAM[:cut], SERVER_STREAM, random.Random(cut), 2)
    for cut in range(0, len(SERVER_STREAM), 7):
        hs = _converse(CLIENT_STREAM, SERVER_STREAM[:cut], random.Random(cut), 2)
        assert hs.client_hello is not None


@given(st.sampled_from([0, 1]), st.data(), st.randoms(use_true_random=False), st.integers(0, 20))
@settings(deadline=None)
def test_handshake_tracker_mutated_never_raises(side: int, data: st.DataObject, rnd: random.Random,
                                                pieces: int) -> None:
    client, server = CLIENT_STREAM, SERVER_STREAM
    if side == 0:
        client = data.draw(_mutated(client))
    else:
        server = data.draw(_mutated(server))
    _converse(client, server, rnd, pieces)


# -- QUIC Initial: the tracker never raises (WireError becomes an anomaly) ------------------------


@given(st.one_of(_mutated(a2_packet()), st.binary(max_size=300).map(lambda b: b"\xc3\x00\x00\x00\x01" + b)),
       st.binary(max_size=64))
@settings(deadline=None)
def test_quic_tracker_mutated_initial_never_raises(first: bytes, second: bytes) -> None:
    tracker = QuicTracker(DEFAULT_LIMITS, 1.0)
    tracker.datagram(0, first, 1.0)
    tracker.datagram(1, second, 1.1)
    tracker.datagram(0, a2_packet(), 1.2)
    assert all(code in ANOMALIES for code in tracker.anomalies)
    tracker.quic_fields()
    assert len(DCID) == 8


# -- X.509: CertificateInfo (error set for bad DER), never an exception ---------------------------

_AT = datetime(2025, 1, 1, tzinfo=timezone.utc)


def test_x509_truncated_at_every_offset() -> None:
    assert describe_certificate(CA_DER).error is None
    for cut in range(0, len(CA_DER), 3):
        info = describe_certificate(CA_DER[:cut])
        assert isinstance(info, CertificateInfo) and info.error is not None
        assert info.der_length == cut


@given(_mutated(CA_DER), st.sampled_from([None, "www.example.test", "10.0.0.1", "bad name\x00", "*.", ""]))
@settings(deadline=None)
def test_x509_mutated_never_raises(der: bytes, sni: str | None) -> None:
    info = describe_certificate(der)
    assert isinstance(info, CertificateInfo)
    res = verify_chain([der, CA_DER], sni, _AT)
    assert set(res) == {"chain_verified", "verify_error", "leaf_matches_sni", "trusted_by"}


# -- HTTP heads: dict or None, never an exception -------------------------------------------------


@given(st.one_of(_mutated(HTTP_RESPONSE), _mutated(HTTP_REQUEST), st.binary(max_size=200)))
@settings(deadline=None)
def test_http_parsers_never_raise(data: bytes) -> None:
    for parse in (parse_response, parse_request):
        out = parse(data)
        assert out is None or isinstance(out, dict)


def test_http_truncated_at_every_offset() -> None:
    for seed, parse in ((HTTP_RESPONSE, parse_response), (HTTP_REQUEST, parse_request)):
        for cut in range(len(seed) + 1):
            out = parse(seed[:cut])
            assert out is None or isinstance(out, dict)


# -- the whole pipeline: records and anomalies, never an exception ---------------------------------

_RULES = Analyzer().rules


def _analyze(frames: list[bytes]) -> list[dict[str, Any]]:
    an = Analyzer(rules=_RULES, http=True)
    src = [(1_700_000_000.0 + i / 1000, 1, fr) for i, fr in enumerate(frames)]
    return [r.to_dict() for r in [*an.packets(src), *an.finish()]]


BASELINE = _analyze(FRAMES)


def test_pipeline_baseline() -> None:
    assert [r["sni"] for r in BASELINE] == ["www.example.test"]
    assert BASELINE[0]["server_hello"] is not None and len(BASELINE[0]["certificates"]) == 2


@given(st.data())
@FEW
def test_pipeline_tcp_resegmented_reordered_same_record(data: st.DataObject) -> None:
    """The client's and server's bytes cut into random TCP segments, shuffled, some sent
    twice or overlapping: the handshake record is the one of the unsplit flow."""
    c, s = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    frames = FRAMES[:3]
    for src, dst, sport, dport, isn, ack, stream in (
        (c, s, 40000, 8443, 1001, 5001, CLIENT_STREAM),
        (s, c, 8443, 40000, 5001, 1001 + len(CLIENT_STREAM), SERVER_STREAM),
    ):
        cuts = sorted(data.draw(st.sets(st.integers(1, len(stream) - 1), max_size=12)))
        bounds = [0, *cuts, len(stream)]
        segs = list(itertools.pairwise(bounds))
        for _ in range(data.draw(st.integers(0, 4))):  # duplicates and overlaps
            a = data.draw(st.integers(0, len(stream) - 1))
            segs.append((a, data.draw(st.integers(a + 1, len(stream)))))
        for a, b in data.draw(st.permutations(segs)):
            frames.append(f.tcp_frame(src, dst, sport, dport, isn + a, ack, 0x18, stream[a:b]))
    out = _analyze(frames)
    assert len(out) == 1
    for key in ("sni", "alpn", "ja3", "ja4", "ja4_o", "ja3s", "ja4s", "certificates", "client_hello"):
        assert out[0][key] == BASELINE[0][key], key


@given(st.data())
@FEW
def test_pipeline_mutated_frames_never_raise(data: st.DataObject) -> None:
    frames = list(FRAMES)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(frames) - 1))
        frames[i] = data.draw(_mutated(frames[i]))
    if data.draw(st.booleans()):
        frames = data.draw(st.permutations(frames))
    for rec in _analyze(frames):
        assert all(code in ANOMALIES for code in rec["anomalies"])

