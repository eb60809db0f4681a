"""Sinks and text helpers: hostile wire strings never reach a terminal or spreadsheet raw."""

from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from rich.cells import cell_len
from rich.console import Console

from tlsprobe import iter_records
from tlsprobe.anomalies import AnomalyLog
from tlsprobe.pipeline import Analyzer, Stats
from tlsprobe.sinks import FORMATS, make_sink
from tlsprobe.sinks.csv import COLUMNS, CsvSink
from tlsprobe.sinks.jsonl import JsonlSink, dumps_line
from tlsprobe.sinks.progress import RunProgress, TrackedCapture, regular_file_size
from tlsprobe.sinks.run import run
from tlsprobe.sinks.summary import build_summary, format_summary, write_summary_json
from tlsprobe.sinks.table import TableSink, fit, layout
from tlsprobe.text import (
    ELLIPSIS,
    MAX_TERMINAL_CHARS,
    csv_safe,
    html_escape,
    markdown_escape,
    terminal_safe,
)

PCAPS = Path(__file__).resolve().parents[1] / "pcaps"
SPLIT = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / (
    "arkime/tls-split-client-hello.pcap"
)
ESC = "\x1b[31m"
NUL = "\x00"
HTML = "<img src=x onerror=alert(1)>"
FORMULA = "=cmd|' /C calc'!A0"
BIDI = "\u202egnp.exe\u2066x\u2069\u202a\u202c"
BAD_UTF8 = "\udcff"  # surrogateescape'd byte 0xff
HOSTILE = [ESC, NUL, HTML, FORMULA, BIDI, BAD_UTF8, "\x9b31m", "\x7f", "a\nb\rc\td",
           "\u200bzero\ufeffwidth", "\u2028line\u2029", "\U000e0041tag"]
HOSTILE_SNI = ESC + "evil" + NUL + HTML + FORMULA + BIDI + BAD_UTF8 + "\x9b2J\x07"

# What must never reach a terminal: C0/C1 controls, DEL, format chars, separators, surrogates.
_FORBIDDEN = {"Cc", "Cf", "Cs", "Zl", "Zp", "Co", "Cn"}


def bad_chars(s: str, allow: str = "") -> list[str]:
    return [c for c in s if c not in allow and unicodedata.category(c) in _FORBIDDEN]


def hostile_record(sni: str = HOSTILE_SNI, **over: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "ts": 1700000000.25,
        "src_ip": "10.0.0.1",
        "src_port": 50000,
        "dst_ip": "2001:db8::1",
        "dst_port": 8443,
        "transport": "tcp",
        "ip_version": 6,
        "non_standard_port": True,
        "sni": sni,
        "alpn": ["h2", ESC + "x", FORMULA],
        "tls_version": "1.3",
        "ja3": "35708a08e7be9f7aa5bce7f2d5c1cecb",
        "ja3_string": "771,4865,0-10,29,0",
        "ja3s": None,
        "ja3s_string": None,
        "ja4": "t13d1516h2_8daaf6152771_02713d6af862",
        "ja4_r": "t13d1516h2_1301_0000",
        "ja4s": None,
        "server_hello": {"version": "1.3", "cipher": "0x1301", "alpn": "@SUM(A1)"},
        "certificates": [{"subject": "-CN=" + ESC + BIDI}],
        "client_hello_segments": 2,
        "anomalies": ["tls.sni.control_chars", "tls.sni.invalid_hostname"],
        "capture": "+evil.pcap",
    }
    rec.update(over)
    return rec


# -- text helpers -------------------------------------------------------------------


@pytest.mark.parametrize("s", [*HOSTILE, HOSTILE_SNI])
def test_terminal_safe_leaves_no_control_or_format_chars(s: str) -> None:
    out = terminal_safe(s)
    assert not bad_chars(out)
    assert out.isprintable()


def test_terminal_safe_shows_what_was_there() -> None:
    assert terminal_safe(ESC + "red") == "\\x1b[31mred"
    assert terminal_safe("a\u202eb") == "a\\u202eb"
    assert terminal_safe("x" + BAD_UTF8) == "x\\xff"
    assert terminal_safe("\U000e0041") == "\\U000e0041"
    assert terminal_safe("a\tb\n") == "a\\tb\\n"
    assert terminal_safe("bücher.example") == "bücher.example"
    assert terminal_safe(None) == "" and terminal_safe("") == ""


def test_terminal_safe_caps_length() -> None:
    out = terminal_safe("a" * 1000)
    assert out == "a" * MAX_TERMINAL_CHARS + ELLIPSIS
    assert len(terminal_safe("\x00" * 1000)) == MAX_TERMINAL_CHARS + 1
    assert terminal_safe("abcdef", 3) == "abc" + ELLIPSIS


@pytest.mark.parametrize("lead", ["=", "+", "-", "@", "\t", "\r", "\uff1d"])
def test_csv_safe_neutralises_formulas(lead: str) -> None:
    out = csv_safe(lead + "1+1")
    assert out.startswith("'")
    assert not bad_chars(out)


def test_csv_safe_plain_values_unchanged() -> None:
    assert csv_safe("example.com") == "example.com"
    assert csv_safe("h2;http/1.1") == "h2;http/1.1"
    assert csv_safe(None) == ""
    assert csv_safe("a" + NUL + ESC) == "a\\x00\\x1b[31m"


def test_markdown_and_html_escape() -> None:
    md = markdown_escape("a|b `c` *d* _e_ [f](g) <h> " + ESC)
    assert "|" not in md.replace("\\|", "")
    assert "`" not in md.replace("\\`", "")
    assert "<" not in md.replace("\\<", "")
    assert not bad_chars(md)
    h = html_escape(HTML + "\"'&" + ESC)
    assert "<" not in h and ">" not in h and '"' not in h and "'" not in h
    assert "&amp;" in h and not bad_chars(h)


# -- JSONL ---------------------------------------------------------------------------


def test_jsonl_is_valid_utf8_json_even_with_lone_surrogates() -> None:
    buf = io.StringIO()
    sink = JsonlSink(buf)
    sink.write(hostile_record())
    sink.write(hostile_record(sni="plain.example"))
    sink.close()
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2
    for line in lines:
        line.encode("utf-8")  # no lone surrogate survives
        assert not bad_chars(line)  # C1, bidi, format characters are \u escapes
        json.loads(line)
    first = json.loads(lines[0])
    # The value is exact except for the surrogate, which becomes U+FFFD.
    assert first["sni"] == HOSTILE_SNI.replace(BAD_UTF8, "\ufffd")
    assert json.loads(lines[1])["sni"] == "plain.example"


def test_jsonl_escapes_astral_format_chars_as_surrogate_pairs() -> None:
    line = dumps_line({"sni": "\U000e0041"})
    assert line == '{"sni":"\\udb40\\udc41"}'
    assert json.loads(line)["sni"] == "\U000e0041"


def test_jsonl_keeps_printable_unicode_readable() -> None:
    assert dumps_line({"sni": "bücher.example"}) == '{"sni":"bücher.example"}'


class _CountingStream(io.StringIO):
    flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


@pytest.mark.parametrize("fmt", FORMATS)
def test_flush_per_record_when_asked(fmt: str) -> None:
    quiet, eager = _CountingStream(), _CountingStream()
    for stream, flush in ((quiet, False), (eager, True)):
        sink = make_sink(fmt, stream, flush=flush)
        for _ in range(3):
            sink.write(hostile_record())
    assert quiet.flushes == 0
    assert eager.flushes >= 3


def test_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown output format"):
        make_sink("xml", io.StringIO())


# -- CSV -----------------------------------------------------------------------------


def _csv_text(records: list[dict[str, Any]]) -> str:
    buf = io.StringIO(newline="")
    sink = CsvSink(buf)
    for r in records:
        sink.write(r)
    sink.close()
    return buf.getvalue()


def _csv_rows(records: list[dict[str, Any]]) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(_csv_text(records), newline="")))


def test_csv_columns_and_flattening() -> None:
    [row] = _csv_rows([hostile_record(sni="www.example.com")])
    assert list(row) == list(COLUMNS)
    assert row["sni"] == "www.example.com"
    assert row["src_port"] == "50000" and row["dst_port"] == "8443"
    assert row["non_standard_port"] == "true"
    assert row["alpn"].startswith("h2;")
    assert row["server_version"] == "1.3" and row["server_cipher"] == "0x1301"
    assert row["anomalies"] == "tls.sni.control_chars;tls.sni.invalid_hostname"
    assert row["ts"] == "1700000000.250000"
    assert row["ja3s"] == ""


def test_csv_neutralises_formulas_and_controls() -> None:
    rows = _csv_rows([hostile_record(sni=FORMULA), hostile_record()])
    assert rows[0]["sni"] == "'" + FORMULA
    for row in rows:
        for key, cell in row.items():
            assert not bad_chars(cell), key
            assert cell[:1] not in ("=", "+", "-", "@", "\t", "\r"), (key, cell)
    assert rows[1]["server_alpn"] == "'@SUM(A1)"
    assert rows[1]["cert_subject"].startswith("'-CN=\\x1b")
    assert rows[1]["capture"] == "'+evil.pcap"


def test_csv_header_even_without_records() -> None:
    assert _csv_rows([]) == []


#: The CSV columns of earlier releases, in order: users' scripts index them by position.
CSV_V1_COLUMNS = (
    "ts", "src_ip", "src_port", "dst_ip", "dst_port", "transport", "non_standard_port", "sni", "alpn",
    "tls_version", "ja3", "ja4", "ja4_r", "ja3s", "ja4s", "server_version", "server_cipher", "server_alpn",
    "cert_subject", "client_hello_segments", "anomalies", "capture",
)
VERDICT = {"pattern": "rst_injection", "confidence": 0.8, "provider": "alibaba_cloud",
           "rule_ids": ["aliyun-icp-sni-rst", "rst-forged"], "evidence": ["outcome == 'rst'"]}


def test_csv_old_columns_keep_their_positions() -> None:
    header = next(csv.reader(io.StringIO(_csv_text([hostile_record()]))))
    assert tuple(header[: len(CSV_V1_COLUMNS)]) == CSV_V1_COLUMNS
    assert header[len(CSV_V1_COLUMNS):] == ["outcome", "pattern", "provider", "confidence", "rule_ids"]


def test_csv_outcome_and_verdict_columns() -> None:
    rows = _csv_rows([hostile_record(outcome="rst", interception=VERDICT),
                      hostile_record(outcome="server_hello", interception=None), hostile_record()])
    assert rows[0]["outcome"] == "rst"
    assert rows[0]["pattern"] == "rst_injection" and rows[0]["provider"] == "alibaba_cloud"
    assert float(rows[0]["confidence"]) == 0.8
    assert rows[0]["rule_ids"] == "aliyun-icp-sni-rst;rst-forged"
    assert rows[1]["outcome"] == "server_hello"
    for row in rows[1:]:
        assert [row[k] for k in ("pattern", "provider", "confidence", "rule_ids")] == ["", "", "", ""]
    assert rows[2]["outcome"] == ""


def test_csv_verdict_columns_neutralised() -> None:
    # a user rule id may start with '-', a user pattern is any [a-z_]+ name: still no formulas
    hostile = {"pattern": "=cmd", "confidence": 1, "provider": "@x", "rule_ids": ["-2+3", "ok"]}
    [row] = _csv_rows([hostile_record(outcome="+" + ESC, interception=hostile)])
    assert row["outcome"] == "'+\\x1b[31m"
    assert row["pattern"] == "'=cmd" and row["provider"] == "'@x"
    assert row["rule_ids"] == "'-2+3;ok"
    assert row["confidence"] == "1"


# -- table ---------------------------------------------------------------------------

_SGR = re.compile("\x1b\\[[0-9;]*m")


def _table(records: list[dict[str, Any]], **kw: Any) -> str:
    buf = io.StringIO()
    sink = TableSink(buf, **kw)
    for r in records:
        sink.write(r)
    sink.close()
    return buf.getvalue()


def test_table_plain_has_no_control_chars() -> None:
    out = _table([hostile_record(), hostile_record(sni=FORMULA)])
    assert not bad_chars(out, allow="\n")
    assert "\\x1b[31mevil" in out  # the attempt is shown, inert
    lines = out.splitlines()
    assert len(lines) == 4  # header, rule, two rows
    assert "SNI" in lines[0] and "JA4" in lines[0]


@pytest.mark.parametrize("width", [36, 50, 60, 70, 80, 100, 120, 160, 240])
def test_table_layout_fits(width: int) -> None:
    cols = layout(width)
    assert sum(c.width for c in cols) + 2 * (len(cols) - 1) <= width
    widths = {c.key: c.width for c in cols}
    assert widths["ja4"] == 36  # never cut: every other column gives way first
    if width >= 60:
        assert "server" in widths
    if width >= 70:
        assert "sni" in widths
    if width >= 80:
        assert "verdict" in widths
    if width >= 100:
        assert "anom" in widths


def test_table_layout_narrower_than_the_ja4() -> None:
    assert [(c.key, c.width) for c in layout(30)] == [("ja4", 30)]


@pytest.fixture(scope="module")
def lab_records() -> list[dict[str, Any]]:
    path = PCAPS / "interception" / "rst-injection.pcap"
    return [r.to_dict() for r in iter_records([str(path)])]


@pytest.mark.parametrize("width", [60, 80, 120])
def test_table_shows_the_whole_ja4(width: int, lab_records: list[dict[str, Any]]) -> None:
    records = [*lab_records, hostile_record(sni="x" * 300, interception={"pattern": "rst_injection",
                                                                          "provider": "alibaba_cloud"})]
    assert any(r.get("interception") for r in records)
    con = Console(file=io.StringIO(), force_terminal=True, width=width, color_system="standard")
    out = _table(records, console=con)
    rows = [_SGR.sub("", line) for line in out.splitlines()[2:]]
    assert len(rows) == len(records)
    for rec, row in zip(records, rows, strict=True):
        assert len(rec["ja4"]) == 36
        assert rec["ja4"] in row, (width, row)
        assert cell_len(row) <= width


@pytest.mark.parametrize("width", [60, 80, 120, 200])
def test_table_rows_fit_the_terminal(width: int) -> None:
    con = Console(file=io.StringIO(), force_terminal=True, width=width, color_system="standard")
    out = _table([hostile_record(), hostile_record(sni="x" * 300)], console=con)
    for line in out.splitlines():
        plain = _SGR.sub("", line)
        assert cell_len(plain) <= width, plain
        assert not bad_chars(plain)


def test_table_colour_only_our_own_escapes_and_port_highlight() -> None:
    con = Console(file=io.StringIO(), force_terminal=True, width=200, color_system="standard")
    out = _table([hostile_record(), hostile_record(dst_port=443, sni="ok.example")], console=con)
    assert "\x1b[31mevil" not in out
    assert not bad_chars(_SGR.sub("", out), allow="\n")
    rows = out.splitlines()[2:]
    assert "\x1b[1;33m:8443" in rows[0]  # non-standard port highlighted
    assert ":443\x1b" not in rows[1]


def test_table_honours_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("FORCE_COLOR", "1")
    out = _table([hostile_record()])
    assert not re.search("\x1b\\[[0-9;]*3[0-7]m", out)  # no foreground colour
    assert not bad_chars(_SGR.sub("", out), allow="\n")


def test_table_streams_row_by_row() -> None:
    buf = io.StringIO()
    sink = TableSink(buf)
    sizes = []
    for _ in range(3):
        sink.write(hostile_record())
        sizes.append(len(buf.getvalue()))
    assert sizes[0] < sizes[1] < sizes[2]


def test_table_handles_missing_fields() -> None:
    out = _table([{"ts": None, "sni": None, "alpn": [], "anomalies": []}])
    assert len(out.splitlines()) == 3


def test_fit_uses_cell_width() -> None:
    assert fit("日本", 3) == "日…"
    assert fit("ab", 4) == "ab  "
    assert fit("ab", 4, right=True) == "  ab"


# -- summary, progress, run ------------------------------------------------------------


def test_summary_contents() -> None:
    stats = Stats(files=2, packets=1000, flows=10, handshakes=4, non_standard_port=1)
    log = AnomalyLog()
    log.add("capture.truncated")
    log.add("tcp.midstream", 3)
    s = build_summary(stats, log, ["x.pcap: cannot open"])
    assert s["non_standard_port_share"] == 0.25
    assert s["anomalies"] == {"capture.truncated": 1, "tcp.midstream": 3}
    assert s["errors"] == ["x.pcap: cannot open"]
    text = "\n".join(format_summary(s))
    assert "1,000 packets" in text and "4 handshakes" in text and "25.0%" in text
    assert "1 unreadable" in text
    assert "tcp.midstream" in text and "capture.truncated" in text
    buf = io.StringIO()
    write_summary_json(s, buf)
    assert json.loads(buf.getvalue())["handshakes"] == 4


def test_tracked_capture_reports_position(tmp_path: Path) -> None:
    pcap = SPLIT
    if not pcap.exists():
        pytest.skip(f"corpus capture missing: {pcap}")
    size = regular_file_size(str(pcap))
    assert size == pcap.stat().st_size
    assert regular_file_size("-") is None and regular_file_size(str(tmp_path)) is None
    cap = TrackedCapture(str(pcap))
    assert cap.position() is None
    n = sum(1 for _ in cap)
    assert n > 0
    assert cap.position() == size  # the duplicate outlives the reader's own descriptor
    cap.release()
    cap.release()
    assert cap.position() is None


def test_run_with_progress_and_errors(tmp_path: Path) -> None:
    pcap = SPLIT
    if not pcap.exists():
        pytest.skip(f"corpus capture missing: {pcap}")
    con = Console(file=io.StringIO(), force_terminal=True, width=100)
    an = Analyzer()
    errors: list[str] = []
    buf = io.StringIO()
    with RunProgress(con, an.stats, interval=0.01) as progress:
        result = run([str(pcap), str(tmp_path / "missing.pcap"), str(pcap)], JsonlSink(buf),
                     analyzer=an, progress=progress, on_error=errors.append)
        progress.sample()
    assert len(errors) == 1 and "missing.pcap" in errors[0]
    assert result.errors == errors
    assert an.stats.files == 2
    assert len(buf.getvalue().splitlines()) == an.stats.handshakes > 0
    assert result.summary()["errors"] == errors
