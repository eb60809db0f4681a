"""``tlsprobe report``: golden numbers from the labelled fixtures, hostile strings, bad input,
redaction, JSON Lines input, and the HTML in a real browser (headless Chromium)."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import re
import subprocess
import sys
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from tests import factory as f
from tlsprobe.cli import cli
from tlsprobe.report.aggregate import Aggregator
from tlsprobe.report.bounded import Reservoir, TimeHistogram, TopCounter
from tlsprobe.report.redact import Redactor

ROOT = Path(__file__).resolve().parents[1]
PCAPS = ROOT / "pcaps"
INTERCEPTION = sorted(p for p in (PCAPS / "interception").glob("*.pcap") if ".server." not in p.name)
LAB_RULES = str(ROOT / "tests" / "rules" / "lab-interception-ca.yaml")


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def labels(path: Path) -> dict[str, Any]:
    return json.loads(path.with_name(path.name.replace(".pcap", ".labels.json")).read_text())


# -- reading the Markdown back ----------------------------------------------------------


def cells(line: str) -> list[str]:
    """The cells of a Markdown table row, honouring backslash escapes (``\\|`` is text)."""
    out, cur, i = [], "", 0
    body = line.strip()
    assert body.startswith("|") and body.endswith("|"), line
    body = body[1:]
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            cur += body[i:i + 2]
            i += 2
            continue
        if c == "|":
            out.append(cur.strip())
            cur = ""
        else:
            cur += c
        i += 1
    return out


def unescape(s: str) -> str:
    return re.sub(r"\\(.)", r"\1", s)


def tables(md: str) -> list[list[list[str]]]:
    """Every table: header row first, the separator dropped, cells unescaped."""
    out: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in md.splitlines():
        if line.startswith("|"):
            row = cells(line)
            if not all(re.fullmatch(r"-+:?", c) for c in row):
                current.append([unescape(c) for c in row])
        elif current:
            out.append(current)
            current = []
    if current:
        out.append(current)
    return out


def table(md: str, *header: str) -> list[list[str]]:
    for t in tables(md):
        if tuple(t[0][:len(header)]) == header:
            return t[1:]
    raise AssertionError(f"no table with header {header}")


def summary(md: str) -> dict[str, str]:
    return {row[0]: row[1] for row in table(md, "", "value")}


def first_int(s: str) -> int:
    m = re.match(r"[\d,]+", s)
    assert m, s
    return int(m.group(0).replace(",", ""))


def bare(md: str, chars: str) -> list[str]:
    """Characters of ``chars`` in ``md`` that are not backslash-escaped."""
    found, i = [], 0
    while i < len(md):
        if md[i] == "\\":
            i += 2
            continue
        if md[i] in chars:
            found.append(md[max(0, i - 30):i + 30])
        i += 1
    return found


def ours_removed(md: str) -> str:
    """``md`` without the report's own markup: chart images, their captions, safe code spans."""
    lines = [ln for ln in md.splitlines() if not ln.startswith(("![", "Contents: "))
             and not (ln.startswith("*") and ln.endswith("*") and not ln.startswith("**"))]
    return re.sub(r"`[A-Za-z0-9_.,:/ +-]{1,200}`", "", "\n".join(lines))


def check_table_shapes(md: str) -> None:
    """Every row of every table has as many cells as its header (no pipe got through)."""
    rows: list[str] = []
    for line in [*md.splitlines(), ""]:
        if line.startswith("|"):
            rows.append(line)
            continue
        if rows:
            widths = {len(cells(r)) for r in rows}
            assert len(widths) == 1, rows
            rows = []


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    r = invoke("report", str(PCAPS / "demo.pcap"), "-o", str(out), "-q")
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture(scope="module")
def lab_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lab")
    r = invoke("report", *map(str, INTERCEPTION), "--rules", LAB_RULES, "-o", str(out), "-q")
    assert r.exit_code == 0, r.output
    return out


# -- golden numbers ---------------------------------------------------------------------


def test_demo_summary_and_ports_match_the_labels(demo_report: Path) -> None:
    lab = labels(PCAPS / "demo.pcap")
    tls = [fl for fl in lab["flows"] if fl["tls"]]
    md = (demo_report / "report.md").read_text()
    s = summary(md)
    assert s["Inputs"] == "1 capture file analysed"
    assert first_int(s["Packets"]) == int(lab["tcpdump_stats"][0].split()[0])  # "340 packets captured"
    assert first_int(s["Flows"]) == len(lab["flows"])
    assert first_int(s["TLS handshakes"]) == len(tls)
    non_standard = sum(1 for fl in tls if fl["server_port"] != 443)
    assert s["on non-standard ports (not 443)"] == f"{non_standard} ({non_standard / len(tls):.1%})"
    plain = [fl for fl in lab["flows"] if not fl["tls"]]
    assert first_int(s["Plain HTTP requests (checked for block pages)"]) == len(plain)
    intercepted = [fl for fl in lab["flows"] if fl["pattern"]]  # labelled from the lab's middlebox rules
    assert s["Intercepted (handshakes and HTTP requests)"].startswith(f"{len(intercepted)} of ")
    per_port = Counter(fl["server_port"] for fl in tls)
    names: dict[int, set[str | None]] = {}
    outcomes: dict[int, Counter[str]] = {}
    for fl in tls:
        names.setdefault(fl["server_port"], set()).add(fl["sni"])
        outcomes.setdefault(fl["server_port"], Counter())[fl["outcome"]] += 1
    rows = table(md, "port", "handshakes", "distinct SNIs", "outcomes")
    assert {int(r[0]): int(r[1]) for r in rows} == dict(per_port)
    assert {int(r[0]): int(r[2]) for r in rows} == {p: len(n) for p, n in names.items()}
    for r in rows:  # outcomes and intercepted handshakes per port as the labels say
        port = int(r[0])
        cell = dict(part.rsplit(" ", 1) for part in r[3].split(", "))
        assert {k: int(v) for k, v in cell.items()} == dict(outcomes[port])
        assert int(r[4]) == sum(1 for fl in tls if fl["server_port"] == port and fl["pattern"])
    # busiest port first
    assert [int(r[1]) for r in rows] == sorted((int(r[1]) for r in rows), reverse=True)


def test_demo_fingerprints_and_known_clients(demo_report: Path) -> None:
    from tlsprobe.report.clients import clients_for

    lab = labels(PCAPS / "demo.pcap")
    md = (demo_report / "report.md").read_text()
    ja4 = table(md, "JA4", "handshakes")
    ja3 = table(md, "JA3", "handshakes")
    n = sum(1 for fl in lab["flows"] if fl["tls"])
    assert sum(int(r[1]) for r in ja4) == n
    assert sum(int(r[1]) for r in ja3) == n
    known = 0
    for row in ja4:
        value = row[0].strip("`")
        entries = clients_for(value)
        if entries:
            known += 1
            assert entries[0].client in row[6]
        else:
            assert row[6] == "unknown"
    # curl's default hello (the split-hello flow and the two node-server flows) is measured
    assert known >= 1


def test_demo_interception_and_its_charts(demo_report: Path) -> None:
    md = (demo_report / "report.md").read_text()
    assert "No interception pattern was found in these inputs." not in md  # the demo has intercepted flows
    assert (demo_report / "outcomes-per-port.svg").exists() and (demo_report / "timeline.svg").exists()
    assert (demo_report / "ttl.svg").exists()  # injected resets and alert: a TTL comparison
    assert "](outcomes-per-port.svg)" in md and "](timeline.svg)" in md


EDGE = sorted(p for p in (PCAPS / "edge").iterdir() if p.suffix in (".pcap", ".pcapng"))


@pytest.mark.parametrize("capture", EDGE, ids=lambda p: p.name)
def test_edge_captures_ports_match_the_labels(capture: Path, tmp_path: Path) -> None:
    lab = json.loads(capture.with_name(capture.name.rsplit(".", 1)[0] + ".labels.json").read_text())
    tls = [c for c in lab["connections"] if c.get("tls_version")]
    r = invoke("report", str(capture), "-o", str(tmp_path), "-q")
    assert r.exit_code == 0, r.output
    md = (tmp_path / "report.md").read_text()
    s = summary(md)
    captured = re.search(r"(\d+) packets captured|Packets captured: (\d+)", lab["capture_stats"][0])
    assert captured is not None
    assert first_int(s["Packets"]) == int(captured.group(1) or captured.group(2))
    assert first_int(s["TLS handshakes"]) == len(tls)
    rows = table(md, "port", "handshakes")
    assert {int(r[0]): int(r[1]) for r in rows} == dict(Counter(c["server_port"] for c in tls))
    check_table_shapes(md)


def test_lab_report_counts_every_labelled_pattern(lab_report: Path) -> None:
    expected: Counter[str] = Counter()
    providers: Counter[str] = Counter()
    lab_to_tlsprobe = {"lab-aliyun": "alibaba_cloud", "lab-tencent": "tencent_cloud", "lab-gfw": "gfw",
                       "lab-henan": "henan_firewall"}
    tls = http = 0
    for capture in INTERCEPTION:
        for fl in labels(capture)["flows"]:
            tls += fl["protocol"] == "tls"
            http += fl["protocol"] == "http"
            if fl["pattern"]:
                expected[fl["pattern"]] += 1
                if fl["pattern"] != "blackhole" and fl["provider"] in lab_to_tlsprobe:
                    providers[lab_to_tlsprobe[fl["provider"]]] += 1
    md = (lab_report / "report.md").read_text()
    s = summary(md)
    assert first_int(s["TLS handshakes"]) == tls
    assert first_int(s["Plain HTTP requests (checked for block pages)"]) == http
    assert s["Intercepted (handshakes and HTTP requests)"].startswith(f"{sum(expected.values())} of {tls + http} ")
    got: Counter[str] = Counter()
    got_providers: Counter[str] = Counter()
    for pattern, provider, count, _share in table(md, "pattern", "provider", "count"):
        got[pattern] += int(count)
        got_providers[provider] += int(count)
    assert got == expected
    for provider, n in providers.items():
        # a lab imitation of a provider with a fingerprint rule is attributed to it
        # (the GFW imitation also has a blackhole flow, which carries no provider marker)
        assert got_providers[provider] >= 1 and got_providers[provider] <= n
    for pattern in expected:
        assert f"### {pattern.replace('_', chr(92) + '_')}" in md
    assert (lab_report / "ttl.svg").exists() and (lab_report / "delay-vs-rtt.svg").exists()


def test_lab_report_interception_evidence(lab_report: Path) -> None:
    assert_html_inert((lab_report / "report.html").read_text())  # reference URLs only as text
    md = (lab_report / "report.md").read_text()
    flows = [t for t in tables(md) if t[0][:3] == ["capture", "time (UTC)", "client"]]
    rows = [r for t in flows for r in t[1:]]
    assert len(rows) == 13
    henan = [r for r in rows if "henan-firewall-rst" in r[6]]
    assert len(henan) == 1 and "RST payload: 01020304050607080900" in henan[0][11]
    beaver = [r for r in rows if "aliyun-icp-beaver" in r[6]]
    assert len(beaver) == 2 and all("Server: Beaver" in r[11] for r in beaver)
    rst = [r for r in rows if r[5] == "rst"]
    assert rst and all(float(r[9]) < 0.8 * float(r[8]) for r in rst)  # faster than the RTT
    # rules table names where each rule is defined
    rules = table(md, "rule", "matches")
    assert any(r[0] == "`rst-race`" and "tlsprobe/rules/interception.yaml:" in r[3] for r in rules)
    # comparison: blocked name reset on 8443 while other names pass (port-comparison.pcap)
    sni = table(md, "server", "fails when SNI =")
    assert any(r[0] == "10.77.2.2:8443" and r[1].startswith("blocked.tlsprobe.test (rst_injection") for r in sni)


# -- hostile strings --------------------------------------------------------------------

HOSTILE_SNI = b"<img src=x onerror=alert(1)>|a|b"
HOSTILE_ALPN = b"<b>h2</b>|`x`"
HOSTILE_CN = "<script>alert(2)</script> | [x](javascript:alert(3)) *y*"


def _cert_der() -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOSTILE_CN)])
    now = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(7).not_valid_before(now).not_valid_after(now + dt.timedelta(days=30))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(Encoding.DER)


def hostile_capture() -> bytes:
    hello = f.record(22, f.handshake(1, f.client_hello_body(
        ciphers=[0xC02F], extensions=[f.sni_ext(HOSTILE_SNI), f.alpn_ext(HOSTILE_ALPN, b"h2")])))
    der = _cert_der()
    server = f.record(22, f.handshake(2, f.server_hello_body(cipher=0xC02F, extensions=[]))
                      + f.handshake(11, f.vec(f.vec(der, 3), 3)), version=0x0303)
    return f.pcap(f.handshake_frames(hello, server, dport=8443))


HOSTILE_RULES = """\
pack: hostile
version: 1
rules:
  - id: hostile-ca
    title: "<i>rule</i> | with `markup`"
    pattern: certificate_substitution
    confidence: 0.9
    match: {field: sni, contains: "onerror"}
  - id: hostile-ca-2
    title: issuer with a script tag
    pattern: certificate_substitution
    confidence: 0.8
    match: {field: certificates, any: {field: issuer, icontains: "script"}}
"""


def hostile_jsonl() -> str:
    evil = "<svg onload=alert(4)>|`|*_[x](y)\n# head\x1b[31m\u202e"
    rec = {
        "kind": "tls", "ts": 1_700_000_100.0, "src_ip": evil, "src_port": 1, "dst_ip": evil, "dst_port": 443,
        "transport": evil, "non_standard_port": False, "sni": evil, "alpn": [evil], "tls_version": evil,
        "ja3": evil, "ja4": evil, "capture": evil, "outcome": evil, "anomalies": [evil],
        "evidence": {"rtt_ms": 80.0, "outcome_delay_ms": 1.0, "tells": [evil], "http": {"title": evil, "status": 403},
                     "outcome_packet": {"ttl": 50, "ttl_delta": -13, "delay_rtt": 0.01, "payload_hex": evil},
                     "baseline": {"ttl": 63}},
        "interception": {"pattern": evil, "provider": evil, "rule_ids": [evil], "confidence": 0.9},
    }
    return json.dumps(rec) + "\n"


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


ALLOWED_TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p", "ul", "li", "table",
                "thead", "tbody", "tr", "th", "td", "code", "figure", "img", "figcaption", "a"}


def assert_html_inert(page: str) -> _Tags:
    parser = _Tags()
    parser.feed(page)
    for tag, attrs in parser.tags:
        assert tag in ALLOWED_TAGS, tag
        for name, value in attrs:
            assert not name.startswith("on"), (tag, name)
            if name in ("src", "href"):
                assert value is not None
                assert value.startswith(("data:image/svg+xml;base64,", "#")), value[:80]
    assert not re.search(r"(?i)(src|href)\s*=\s*[\"']?\s*(https?:|//|javascript:)", page)
    return parser


def test_hostile_capture_renders_as_text(tmp_path: Path) -> None:
    cap = tmp_path / "hostile.pcap"
    cap.write_bytes(hostile_capture())
    rules = tmp_path / "hostile.yaml"
    rules.write_text(HOSTILE_RULES)
    out = tmp_path / "report"
    r = invoke("report", str(cap), "--rules", str(rules), "-o", str(out), "-q")
    assert r.exit_code == 0, r.output
    page = (out / "report.html").read_text()
    parser = assert_html_inert(page)
    text = "".join(parser.text)
    assert HOSTILE_SNI.decode() in text  # shown, as text
    issuer = "CN=" + HOSTILE_CN.replace("<", "\\<").replace(">", "\\>")  # RFC 4514 escapes < and >
    assert issuer in text  # the issuer, in the flow's markers
    assert "&lt;img src=x onerror=alert(1)&gt;|a|b" in page
    md = (out / "report.md").read_text()
    check_table_shapes(md)
    assert not bare(ours_removed(md), "<`*[")  # no raw HTML, code span, emphasis or link: every one escaped
    ja4 = table(md, "JA4", "handshakes")
    assert ja4[0][2] == HOSTILE_SNI.decode()  # the SNI cell, whole, in its column
    assert ja4[0][5] == "<b>h2</b>|`x`,h2"
    flows = next(t for t in tables(md) if t[0][:2] == ["capture", "time (UTC)"])
    assert flows[1][4] == HOSTILE_SNI.decode() and issuer in flows[1][11]
    for svg in out.glob("*.svg"):
        assert "onerror" not in svg.read_text() and "<script" not in svg.read_text()


def test_hostile_jsonl_renders_as_text(tmp_path: Path) -> None:
    src = tmp_path / "evil.jsonl"
    src.write_text(hostile_jsonl())
    out = tmp_path / "report"
    r = invoke("report", str(src), "-o", str(out), "-q")
    assert r.exit_code == 0, r.output
    page = (out / "report.html").read_text()
    assert_html_inert(page)
    assert "\x1b" not in page and "\u202e" not in page
    md = (out / "report.md").read_text()
    check_table_shapes(md)
    assert "\x1b" not in md and "\u202e" not in md
    assert not any(line.startswith(("# head", "<")) for line in md.splitlines())
    assert not bare(ours_removed(md), "<`*[")
    assert "### \\<svg onload\\=alert" not in md  # "=" is harmless: only the tag is escaped
    assert "### \\<svg onload=alert(4)\\>" in md


# -- bad input --------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "tlsprobe", *args], capture_output=True, text=True,
                          encoding="utf-8", env=env, timeout=120, check=False)


def test_unreadable_only_input_fails_with_one_line(tmp_path: Path) -> None:
    out = tmp_path / "report"
    r = run_cli("report", str(tmp_path / "missing.pcap"), "-o", str(out))
    assert r.returncode == 2
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tlsprobe: error: ") and "missing.pcap" in lines[0]
    assert not out.exists()
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(bytes(range(256)) * 4)
    r = run_cli("report", str(garbage), "-o", str(out))
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r.stderr
    assert "not a capture, nor tlsprobe JSON Lines" in r.stderr and "Traceback" not in r.stderr


def test_truncated_capture_and_a_missing_one(tmp_path: Path) -> None:
    whole = (PCAPS / "demo.pcap").read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(whole[:len(whole) // 2 + 7])
    out = tmp_path / "report"
    r = run_cli("report", str(cut), str(tmp_path / "missing.pcap"), "-o", str(out))
    assert r.returncode == 2  # like analyze: an unreadable input is an error; the report is still written
    assert [ln for ln in r.stderr.splitlines() if ln.startswith("tlsprobe: error:")] == [
        ln for ln in r.stderr.splitlines() if "missing.pcap" in ln]
    md = (out / "report.md").read_text()
    assert "capture.truncated" in md
    assert "unreadable input: " in md and "missing.pcap" in md


def test_directory_of_captures(tmp_path: Path) -> None:
    d = tmp_path / "captures"
    (d / "a" / "b").mkdir(parents=True)
    (d / "a" / "demo.pcap").write_bytes((PCAPS / "demo.pcap").read_bytes())
    (d / "a" / "b" / "rst").write_bytes(gzip.compress(INTERCEPTION[-1].read_bytes()))  # by content
    (d / "a" / "b" / "garbage.pcap").write_bytes((PCAPS / "demo.pcap").read_bytes()[:10])
    (d / "notes.txt").write_text("not a capture\n")
    out = tmp_path / "report"
    r = run_cli("report", str(d), "-o", str(out))
    assert r.returncode == 2, r.stderr  # an unreadable capture, as when named alone
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("tlsprobe: error:")]
    assert len(errors) == 1 and "garbage.pcap: pcap file header truncated" in errors[0], r.stderr
    assert "skipped 1 file that is not a capture" in r.stderr and "Traceback" not in r.stderr
    md = (out / "report.md").read_text()
    assert "| Inputs | 2 capture files analysed |" in md
    assert "unreadable input: garbage.pcap" in md
    named = tmp_path / "named"
    assert run_cli("report", str(PCAPS / "demo.pcap"), str(INTERCEPTION[-1]), "-o", str(named)).returncode == 0
    handshakes = re.compile(r"^\| TLS handshakes \| .*$", re.M)
    assert handshakes.findall(md) and handshakes.findall(md) == handshakes.findall((named / "report.md").read_text())


def test_malformed_jsonl_lines_are_counted(tmp_path: Path) -> None:
    good = invoke("analyze", "--format", "jsonl", str(PCAPS / "demo.pcap")).stdout.splitlines()
    mixed = [good[0], "{not json", good[1], "[1, 2]", '{"kind": "tls"}', "", *good[2:]]
    src = tmp_path / "mixed.jsonl.gz"
    src.write_bytes(gzip.compress(("\n".join(mixed) + "\n").encode()))
    out = tmp_path / "report"
    r = run_cli("report", str(src), "-o", str(out))
    assert r.returncode == 0, r.stderr
    warnings = [ln for ln in r.stderr.splitlines() if ln.startswith("tlsprobe: warning:")]
    assert len(warnings) == 1 and "3 malformed lines skipped (first at line 2: not JSON)" in warnings[0]
    md = (out / "report.md").read_text()
    assert first_int(summary(md)["TLS handshakes"]) == sum(1 for line in good if '"kind":"tls"' in line)
    assert "3 malformed JSON Lines skipped" in md
    assert "mixed.jsonl.gz:4: not a tlsprobe record" in md.replace("\\", "")


def test_jsonl_with_summary_equals_the_capture(tmp_path: Path, demo_report: Path) -> None:
    records = tmp_path / "demo.jsonl"
    summ = tmp_path / "demo.summary.json"
    r = invoke("analyze", "--format", "jsonl", "-o", str(records), "--summary-json", str(summ), "--http",
               str(PCAPS / "demo.pcap"))
    assert r.exit_code == 0
    out = tmp_path / "report"
    r = invoke("report", str(records), str(summ), "-o", str(out), "-q")
    assert r.exit_code == 0, r.output
    a = (demo_report / "report.md").read_text()
    b = (out / "report.md").read_text()
    sa, sb = summary(a), summary(b)
    for key in ("Packets", "Flows", "TLS handshakes", "on non-standard ports (not 443)", "Time span",
                "Plain HTTP requests (checked for block pages)", "Intercepted (handshakes and HTTP requests)"):
        assert sa[key] == sb[key], key
    # the summary's "files" are the captures the run that wrote it analysed
    assert sb["Inputs"] == "1 capture file analysed, 1 JSON Lines file, 1 run summary"
    for header in (("port", "handshakes"), ("JA4", "handshakes"), ("JA3", "handshakes")):
        assert table(a, *header) == table(b, *header)


def test_vantage_points(tmp_path: Path) -> None:
    """A client-side and a server-side capture of the same lab run, merged."""
    client = PCAPS / "interception" / "rst-injection.pcap"
    server = PCAPS / "interception" / "rst-injection.server.pcap"
    seen_at_server = [fl for fl in labels(server)["flows"] if fl["protocol"] == "tls" and fl["trigger_reaches_server"]]
    at_client = [fl for fl in labels(client)["flows"] if fl["protocol"] == "tls"]
    r = invoke("report", str(client), str(server), "-o", str(tmp_path), "-q")
    assert r.exit_code == 0
    s = summary((tmp_path / "report.md").read_text())
    assert s["Vantage point of the TLS handshakes (from their timing)"] == \
        f"client {len(at_client)}, server {len(seen_at_server)}"
    assert first_int(s["TLS handshakes"]) == len(at_client) + len(seen_at_server)  # merged, not deduplicated


def test_merged_inputs_add_up(tmp_path: Path) -> None:
    out = tmp_path / "report"
    r = invoke("report", str(PCAPS / "demo.pcap"), *map(str, INTERCEPTION), "--rules", LAB_RULES,
               "-o", str(out), "-q")
    assert r.exit_code == 0
    s = summary((out / "report.md").read_text())
    demo = sum(1 for fl in labels(PCAPS / "demo.pcap")["flows"] if fl["tls"])
    lab = sum(1 for c in INTERCEPTION for fl in labels(c)["flows"] if fl["protocol"] == "tls")
    assert first_int(s["TLS handshakes"]) == demo + lab
    assert s["Inputs"] == f"{1 + len(INTERCEPTION)} capture files analysed"


# -- redaction --------------------------------------------------------------------------


def _all_output(out: Path) -> str:
    return "".join(p.read_text() for p in sorted(out.iterdir()))


def test_redact_replaces_client_ips_stably(tmp_path: Path) -> None:
    out = tmp_path / "report"
    r = invoke("report", *map(str, INTERCEPTION), "--rules", LAB_RULES, "--redact-key", "k1", "-o", str(out), "-q")
    assert r.exit_code == 0
    everything = _all_output(out)
    for ip in ("10.77.1.2", "fd77:1::2"):
        assert ip not in everything
    pseudonym = Redactor.from_key("k1").client("10.77.1.2")
    assert pseudonym is not None
    md = (out / "report.md").read_text()
    flows = [r for t in tables(md) if t[0][:3] == ["capture", "time (UTC)", "client"] for r in t[1:]]
    v4 = [r for r in flows if r[3].startswith("10.77.2.2:")]
    assert v4 and {r[2] for r in v4} == {pseudonym}  # same address, same name, everywhere
    assert "10.77.2.2" in md  # servers are kept
    assert "Redaction: client IPs replaced" in md
    for capture in INTERCEPTION:  # file names often carry a host or an address
        assert capture.name not in everything
    assert Redactor.from_key("k1").capture("rst-injection.pcap") in md
    other = tmp_path / "other"
    invoke("report", *map(str, INTERCEPTION), "--redact-key", "k2", "-o", str(other), "-q")
    assert pseudonym not in _all_output(other)


def test_redact_sni_hides_names_everywhere(tmp_path: Path) -> None:
    out = tmp_path / "report"
    r = invoke("report", *map(str, INTERCEPTION), "--rules", LAB_RULES, "--redact-sni", "--title",
               "Lab run", "-o", str(out), "-q")
    assert r.exit_code == 0
    everything = _all_output(out)
    for secret in ("10.77.1.2", "fd77:1::2", "blocked.tlsprobe.test", "demo.tlsprobe.test"):
        assert secret not in everything, secret
    assert "<title>Lab run</title>" in (out / "report.html").read_text()
    assert "host-" in everything and ".redacted" in everything


def test_bounded_accumulators() -> None:
    c: TopCounter[str] = TopCounter(2)
    for k in "aabcd":
        c.add(k)
    assert c.counts == {"a": 2, "b": 1} and c.other == 2 and c.distinct() == (2, True)
    res: Reservoir[int] = Reservoir(10)
    for i in range(1000):
        res.add(i)
    assert len(res) == 10 and res.seen == 1000
    h = TimeHistogram(("x",), max_buckets=10)
    for t in range(0, 1000, 3):
        h.add(float(t), "x")
    rows = h.rows()
    assert len(rows) <= 11 and sum(r[1][0] for r in rows) == len(range(0, 1000, 3))


def test_aggregator_memory_is_bounded() -> None:
    agg = Aggregator()
    for i in range(30_000):
        agg.write({"kind": "tls", "ts": 1e9 + i, "src_ip": f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}",
                   "dst_ip": "192.0.2.1", "dst_port": 1 + i % 5000, "sni": f"n{i}.example", "ja4": f"t13d{i}",
                   "ja3": f"{i:032x}", "outcome": "server_hello"})
    assert agg.handshakes == 30_000
    assert len(agg.ja4) == 5_000 and agg.fingerprints_other["ja4"] == 25_000
    assert len(agg.ports) <= 2_001
    assert all(len(r.snis) <= 1_000 for r in agg.ports.values())


# -- the page in a browser --------------------------------------------------------------


def test_html_in_headless_chromium(lab_report: Path, tmp_path: Path) -> None:
    from tests.chromium import find_chromium, load_page

    browser = find_chromium()
    if browser is None:
        pytest.skip("chromium not installed (apt-get install chromium; .ci/run installs it)")
    page = lab_report / "report.html"
    for scheme in ("light", "dark"):
        shot = tmp_path / f"report-{scheme}.png"
        result = load_page(browser, page, shot, color_scheme=scheme)
        assert result.errors == [], result.errors
        assert result.requests and all(u.startswith(("file:", "data:")) for u in result.requests), result.requests
        assert result.images == result.images_loaded == 4  # the four charts, decoded
        assert result.title == "TLS handshakes and interception: tlsprobe report"
        assert shot.stat().st_size > 50_000
        assert result.background == ("rgb(13, 17, 23)" if scheme == "dark" else "rgb(255, 255, 255)")


# -- the committed example --------------------------------------------------------------

EXAMPLE = ROOT / "docs" / "example-report"
EXAMPLE_ARGS = ("pcaps/demo.pcap", *(f"pcaps/interception/{n}.pcap" for n in (
    "rst-injection", "block-pages", "cert-substitution", "alert-and-blackhole", "port-comparison", "negatives")),
    "--rules", "tests/rules/lab-interception-ca.yaml",
    "--title", "tlsprobe example report: the demo and lab captures")


def test_committed_example_is_reproducible(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/example-report is exactly what this command makes (regenerate it after a change)."""
    monkeypatch.chdir(ROOT)
    r = invoke("report", *EXAMPLE_ARGS, "-o", str(tmp_path), "-q")
    assert r.exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in EXAMPLE.iterdir())
    def text(path: Path) -> str:  # chart bytes depend on the matplotlib version: compared as present
        return re.sub(r"data:image/svg\+xml;base64,[A-Za-z0-9+/=]+", "data:", path.read_text())

    for name in ("report.md", "report.html"):
        assert text(tmp_path / name) == text(EXAMPLE / name), (
            f"docs/example-report/{name} is stale: run tlsprobe report {' '.join(EXAMPLE_ARGS)} "
            "-o docs/example-report")
    assert "docs/example-report/report.md" in (ROOT / "README.md").read_text()


def test_markdown_escape_neutralises_gfm() -> None:
    from tlsprobe.text import markdown_escape as md

    assert md("www.evil.example") == "www\\.evil.example"  # no autolink
    assert md("https://evil.example/x") == "https\\://evil.example/x"
    assert md("a@b.example") == "a\\@b.example"  # no mailto, no @mention
    assert md("$x$ ~~y~~ **z** _w_") == "\\$x\\$ \\~\\~y\\~\\~ \\*\\*z\\*\\* \\_w\\_"
    assert md("[a](javascript:alert(1))") == "\\[a\\](javascript:alert(1))"
    assert md("<b>&amp;</b>") == "\\<b\\>\\&amp;\\</b\\>"
    for start in ("- x", "+ x", "> x", "# x", "1. x", "12) x", "=== x", ". x"):
        out = md(start)
        assert out != start and "\\" in out[:4], out
        assert md(start, line_start=False) == re.sub(r"([#>])", r"\\\1", start)  # escaped everywhere
    assert md("a\nb\r\x00\u202e\u2028") == "a\\nb\\r\\x00\\u202e\\u2028"
    assert md("x" * 500, 10) == "x" * 10 + "…"


def test_live_summary_reports_kernel_drops(tmp_path: Path) -> None:
    """A `sniff --summary-json` carries the kernel's drop count: the report says what is missing."""
    demo = Path(__file__).resolve().parents[1] / "pcaps" / "demo.pcap"
    jsonl, summary_path = tmp_path / "live.jsonl", tmp_path / "live.summary.json"
    done = invoke("analyze", "-f", "jsonl", "-o", str(jsonl), "--summary-json", str(summary_path), str(demo))
    assert done.exit_code == 0
    summary = json.loads(summary_path.read_text())
    summary["live"] = {"interfaces": ["eth0"], "kernel_received": 400, "kernel_dropped": 60, "pcap": None,
                       "written": 0, "stopped_by": "SIGINT", "interface_error": None}
    summary_path.write_text(json.dumps(summary, indent=2))
    out = tmp_path / "r"
    done = invoke("report", str(jsonl), str(summary_path), "-o", str(out), "-q")
    assert done.exit_code == 0, done.output
    md = (out / "report.md").read_text()
    assert "60 of 400 packets (15.00%) dropped by the kernel in 1 live capture" in md
