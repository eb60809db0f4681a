"""Safe output everywhere: hostile wire strings through every sink.

One capture (built with tests/factory.py) carries HTML, Markdown table pipes, ANSI
escape sequences, NUL, bidi overrides, 10,000-character strings, invalid UTF-8 and
spreadsheet formulas (``=cmd|' /C calc'!A0``, ``+1``, ``-1``, ``@SUM``, also after
leading spaces, tabs and CRs) in the SNI, ALPN, certificate subject/issuer/SAN, an HTTP
block page's status line, headers and title, and a plain HTTP request's target, Host
and User-Agent.  Every sink - JSON Lines, CSV, the terminal table, the run summary, and
the Markdown/HTML escapes in :mod:`tlsprobe.text` that the report sink builds on - must
show the data without letting it act.
"""

from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests import factory as f
from tests.test_cli import invoke
from tlsprobe.pipeline import Analyzer, iter_records
from tlsprobe.sinks import make_sink
from tlsprobe.sinks.summary import build_summary, format_summary
from tlsprobe.text import CSV_MAX_CHARS, MAX_TERMINAL_CHARS, csv_safe, html_escape, markdown_escape, terminal_safe

FORMULAS = ["=cmd|' /C calc'!A0", "+1", "-1", "@SUM(A1:A9)", " =1+1", "\t=1+1", "\r=1+1", "  \t @SUM(1)",
            "\uff1dHYPERLINK(1)", "\u00a0=1"]
HOSTILE = [
    "<script>alert(1)</script>", "a|b|c", "\x1b[2J\x1b[31mred", "nul\x00byte", "\u202egnp.exe",
    "x" * 10_000, "bad\udcff\udcfeutf8", "\x9b31mC1", "line\nbreak\r\n", "`code` *b* [l](javascript:x)",
    "&amp; &#x3c;", "\u2028sep\u2029", "zero\u200bwidth\ufeff", *FORMULAS,
]
# What must never reach a terminal or a cell as itself: C0/C1 controls, DEL, format
# characters (bidi, zero-width), line/paragraph separators, surrogates, private use.
_FORBIDDEN = {"Cc", "Cf", "Cs", "Zl", "Zp", "Co", "Cn"}
_FORMULA_LEAD = set("=+-@\uff1d\uff0b\uff0d\uff20")


def _raw(s: str) -> bytes:
    """The wire bytes of a hostile string (surrogateescape'd code points are raw bytes)."""
    return s.encode("utf-8", "surrogateescape")


def _bad(s: str, allow: str = "") -> list[str]:
    return [c for c in s if c not in allow and unicodedata.category(c) in _FORBIDDEN]


def _formula(cell: str) -> bool:
    """Would a spreadsheet read this cell as a formula (after leading blanks)?"""
    return cell.lstrip(" \t\r\n\u00a0\u3000")[:1] in _FORMULA_LEAD


# -- the hostile capture ------------------------------------------------------------------------


def _certificate(name: str) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = name.encode("utf-8", "replace").decode()  # X.509 names are text: no raw bytes
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name[:20] or "x"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, name or "x")])
    now = datetime(2025, 1, 1, tzinfo=timezone.utc)
    dns = name.encode("ascii", "replace").decode()[:200] or "x"
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(7).not_valid_before(now).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns)]), critical=False)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(Encoding.DER)


def _flow(sport: int, client: bytes, server: bytes, dport: int = 8443) -> list[bytes]:
    c, s = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    frames = [
        f.tcp_frame(c, s, sport, dport, 1000, 0, 0x02),
        f.tcp_frame(s, c, dport, sport, 5000, 1001, 0x12),
        f.tcp_frame(c, s, sport, dport, 1001, 5001, 0x10),
    ]
    for i in range(0, len(client), 1400):
        frames.append(f.tcp_frame(c, s, sport, dport, 1001 + i, 5001, 0x18, client[i : i + 1400]))
    for i in range(0, len(server), 1400):
        frames.append(f.tcp_frame(s, c, dport, sport, 5001 + i, 1001 + len(client), 0x18, server[i : i + 1400]))
    return frames


def _hello(sni: bytes, alpn: list[bytes]) -> bytes:
    body = f.client_hello_body(extensions=[f.sni_ext(sni), f.alpn_ext(*alpn)])
    msg = f.handshake(1, body)
    return b"".join(f.record(22, msg[i : i + 16000]) for i in range(0, len(msg), 16000))


BLOCK_PAGE = _raw(
    "HTTP/1.1 403 \x1b[2J<script>x</script>|=cmd\r\n"
    "Server: =cmd|' /C calc'!A0\r\nLocation: javascript:alert(1)|\x00\u202e\r\n"
    f"Content-Type: text/html\r\nX-Long: {'y' * 3000}\r\n\r\n"
    "<html><title>\x1b]0;pwned\x07<script>alert(1)</script>|\u202e\udcff @SUM</title></html>"
)
HTTP_REQUEST = _raw("GET /<script>|\x1b[2J HTTP/1.1\r\nHost: =cmd|' /C calc'!A0\r\n"
                    "User-Agent: \u202e\x00\udcff<b>|\r\n\r\n")


def hostile_frames() -> list[bytes]:
    frames: list[bytes] = []
    for i, h in enumerate(HOSTILE):
        alpn = [_raw(h)[:255] or b"x", _raw(FORMULAS[i % len(FORMULAS)])]
        server = f.server_flight([_certificate(h)])
        frames += _flow(40000 + i, _hello(_raw(h), alpn), server)
    frames += _flow(41000, _hello(b"blocked.example", [b"h2"]), BLOCK_PAGE)
    frames += _flow(41001, HTTP_REQUEST, BLOCK_PAGE, dport=8080)
    return frames


@pytest.fixture(scope="module")
def hostile_pcap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("hostile") / "hostile-\x1b[2J=cmd|.pcap"
    p.write_bytes(f.pcap(hostile_frames()))
    return p


@pytest.fixture(scope="module")
def records(hostile_pcap: Path) -> list[dict[str, Any]]:
    recs = [r.to_dict() for r in iter_records([str(hostile_pcap)], analyzer=Analyzer(http=True))]
    assert len(recs) == len(HOSTILE) + 2
    return recs


def _sink_output(fmt: str, recs: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    sink = make_sink(fmt, out)
    for r in recs:
        sink.write(r)
    sink.close()
    return out.getvalue()


# -- the capture really carries the hostile strings -------------------------------------------


def test_hostile_strings_reach_the_records(records: list[dict[str, Any]]) -> None:
    tls_recs = [r for r in records if r["kind"] == "tls" and r["certificates"]]
    assert {r["sni"] for r in tls_recs} >= {h for h in HOSTILE if h.isprintable() and "\udcff" not in h}
    subjects = [r["certificates"][0]["subject"] or "" for r in tls_recs]
    assert any("script" in s and "<" in s for s in subjects) and any("\x1b[2J" in s for s in subjects)
    assert any("\x1b[2J" in a for r in tls_recs for a in r["alpn"])
    block = next(r for r in records if r["sni"] == "blocked.example")
    assert block["outcome"] == "plaintext"
    assert block["evidence"]["http"]["server"] == "=cmd|' /C calc'!A0"
    http = next(r for r in records if r["kind"] == "http")
    assert http["http_request"]["host"] == "=cmd|' /C calc'!A0"


# -- JSON Lines: valid UTF-8 JSON, exact values, nothing that acts on a terminal -------------------


def test_jsonl_parses_back_exactly_and_is_inert(records: list[dict[str, Any]]) -> None:
    text = _sink_output("jsonl", records)
    text.encode("utf-8")  # no lone surrogates
    lines = text.splitlines()
    assert len(lines) == len(records)
    for line, rec in zip(lines, records, strict=True):
        assert not _bad(line), line[:200]
        back = json.loads(line)
        if rec["sni"] is not None and rec["sni"].isprintable():
            assert back["sni"] == rec["sni"]  # printable text is kept exactly (10k chars too)
        assert back["client_hello"] is None or back["client_hello"]["alpn_hex"] == rec["client_hello"]["alpn_hex"]


# -- CSV: no formulas, no controls, bounded cells, parses back ---------------------------------------


def test_csv_cells_cannot_be_formulas_or_controls(records: list[dict[str, Any]]) -> None:
    text = _sink_output("csv", records)
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert len(rows) == len(records) + 1
    width = len(rows[0])
    cells = 0
    for row in rows[1:]:
        assert len(row) == width
        for cell in row:
            cells += 1
            assert not _formula(cell), cell[:80]
            assert not _bad(cell), cell[:80]
            assert len(cell) <= CSV_MAX_CHARS + 2
    assert cells > 100
    sni = [row[rows[0].index("sni")] for row in rows[1:]]
    assert "'=cmd|' /C calc'!A0" in sni and "'+1" in sni and "' =1+1" in sni and "'\\t=1+1" in sni
    assert "<script>alert(1)</script>" in sni  # HTML is harmless in a spreadsheet: kept as is


# -- terminal table and run summary: nothing but printable text and newlines ------------------------


def test_table_is_plain_printable_text(records: list[dict[str, Any]]) -> None:
    text = _sink_output("table", records)
    assert not _bad(text, allow="\n")
    assert "\x1b" not in text and "\x00" not in text and "\u202e" not in text
    assert "\\x1b[2J" in text  # the attempt is shown, inert
    assert max(len(line) for line in text.splitlines()) <= 240


def test_cli_table_csv_summary_and_error_line(hostile_pcap: Path, tmp_path: Path) -> None:
    for fmt in ("table", "csv", "jsonl"):
        r = invoke("analyze", "-j", "1", "--http", "-f", fmt, str(hostile_pcap))
        assert r.exit_code == 0, r.stderr
        assert not _bad(r.stderr, allow="\n"), r.stderr
        assert not _bad(r.stdout, allow="\n" if fmt != "csv" else "\n\r"), fmt
    bad_file = tmp_path / "evil\x1b[2J\u202e.pcap"
    bad_file.write_bytes(b"not a capture")
    r = invoke("analyze", str(bad_file))
    assert r.exit_code == 2
    assert not _bad(r.stderr, allow="\n") and "\\x1b[2J\\u202e" in r.stderr


def test_summary_lines_are_printable(records: list[dict[str, Any]]) -> None:
    an = Analyzer()
    an.log.add("\x1b[2Jfake.code\u202e")
    for line in format_summary(build_summary(an.stats, an.log)):
        assert not _bad(line)


# -- the escape helpers (Markdown and HTML sinks build on them) ------------------------------------


@pytest.mark.parametrize("s", HOSTILE, ids=range(len(HOSTILE)))
def test_every_helper_on_every_hostile_string(s: str) -> None:
    t = terminal_safe(s)
    assert not _bad(t) and len(t) <= MAX_TERMINAL_CHARS + 1
    c = csv_safe(s)
    assert not _bad(c) and not _formula(c)
    md = markdown_escape(s)
    assert not _bad(md)
    assert not re.search(r"(?<!\\)[|<>`\[\]]", md), md[:80]
    assert "\n" not in md and "\r" not in md
    h = html_escape(s)
    assert not _bad(h)
    assert not set(h) & set("<>\"'"), h[:80]
    assert not re.search(r"&(?!(amp|lt|gt|quot|#x27);)", h), h[:80]


_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=60)
_leads = st.sampled_from(["", " ", "\t", "\r", "\n", "  \t", "\u00a0", "\u3000"])


@given(_leads, st.sampled_from(sorted(_FORMULA_LEAD)), _text)
def test_csv_safe_never_starts_a_formula(lead: str, trigger: str, rest: str) -> None:
    out = csv_safe(lead + trigger + rest)
    assert not _formula(out) and not _bad(out)


@given(_text)
def test_helpers_on_any_text(s: str) -> None:
    assert not _bad(terminal_safe(s))
    c = csv_safe(s)
    assert not _bad(c) and not _formula(c)
    md = markdown_escape(s)
    assert not _bad(md) and not re.search(r"(?<!\\)[|<>`]", md.replace("\\\\", ""))
    h = html_escape(s)
    assert not _bad(h) and not set(h) & set("<>\"'")


def test_csv_cells_are_capped() -> None:
    out = csv_safe("=" + "a" * (CSV_MAX_CHARS * 2))
    assert out.startswith("'=") and len(out) == CSV_MAX_CHARS + 2 and out.endswith("…")
    assert csv_safe("\x00" * CSV_MAX_CHARS).endswith("…")


def test_markdown_html_caps_when_asked() -> None:
    assert markdown_escape("a" * 500, 100) == "a" * 100 + "…"
    assert html_escape("<" * 500, 100) == "&lt;" * 100 + "…"
    assert html_escape("&" * 10) == "&amp;" * 10  # no cap by default



def test_report_markdown_and_html_are_inert(hostile_pcap: Path, tmp_path: Path) -> None:
    """The report sinks (``tlsprobe report``) get the same hostile capture: the HTML has
    only the report's own tags and no handlers or remote URLs, every Markdown table keeps
    its shape, and neither holds a control, bidi or NUL character from the wire."""
    from tests.test_report import assert_html_inert, check_table_shapes

    out = tmp_path / "report"
    done = invoke("report", str(hostile_pcap), "-o", str(out), "-q")
    assert done.exit_code == 0, done.output
    md = (out / "report.md").read_text(encoding="utf-8")
    page = (out / "report.html").read_text(encoding="utf-8")
    check_table_shapes(md)
    assert_html_inert(page)
    for text in (md, page):
        assert "<script>alert(1)" not in text and "\x1b" not in text and "\x00" not in text
        assert "\u202e" not in text and "\ufeff" not in text
    # the hostile names are there, as text
    assert "gnp.exe" in md and "alert(1)" in page
