"""The command line, in-process (CliRunner) and as ``python -m tlsprobe``, on real captures."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import struct
import subprocess
import sys
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from tests import factory as f
from tlsprobe import __version__
from tlsprobe.anomalies import ANOMALIES
from tlsprobe.cli import cli, main
from tlsprobe.pipeline import Analyzer
from tlsprobe.sinks import run as run_module

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"
SPLIT = "arkime/tls-split-client-hello.pcap"
TLS3 = "foxio-ja4/tls3.pcapng"

REQUIRED = {
    "ts", "src_ip", "src_port", "dst_ip", "dst_port", "transport", "ip_version",
    "non_standard_port", "sni", "alpn", "tls_version", "ja3", "ja3_string", "ja3s",
    "ja3s_string", "ja4", "ja4_r", "ja4_o", "ja4_ro", "ja4s", "ja4s_r", "server_hello",
    "hello_retry_request", "certificates", "client_hello_segments", "client_hello_bytes",
    "client_hello_records", "client_hello", "retry_client_hello", "server_alert",
    "preamble_bytes", "tcp_syn_seen", "tunnelled", "capture", "anomalies",
}
_FORBIDDEN = {"Cc", "Cf", "Cs", "Zl", "Zp", "Co", "Cn"}


def capture(name: str) -> Path:
    path = CORPUS / name
    if not CORPUS.is_dir():
        pytest.skip(f"shared corpus not found at {CORPUS} (tests need ../shared/corpus)")
    if not path.exists():
        pytest.skip(f"corpus capture missing: {path}")
    return path


def invoke(*args: str, input: bytes | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def tlsprobe(*args: str, stdin: Any = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "tlsprobe", *args], stdin=stdin,
                          capture_output=True, text=True, encoding="utf-8", env=env,
                          timeout=timeout, check=False)


def jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def assert_one_error_line(stderr: str, fragment: str) -> None:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("tlsprobe: error: "), stderr
    assert fragment in lines[0]
    assert "Traceback" not in stderr


# -- hostile capture built by hand ----------------------------------------------------

HOSTILE_SNIS = [
    b"\x1b[31mevil\x00<img src=x onerror=alert(1)>\xe2\x80\xaegnp.exe\xff",
    b"=cmd|' /C calc'!A0",
]


def _tcp_packet(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int,
                flags: int, payload: bytes = b"") -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0)
    total = 20 + len(tcp) + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 1, 0, 64, 6, 0, src, dst)
    eth = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00"
    return eth + ip + tcp + payload


def hostile_pcap() -> bytes:
    """A pcap with one TLS handshake per hostile SNI, on port 8443."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    cli_ip, srv_ip = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    ts = 1_700_000_000
    for i, sni in enumerate(HOSTILE_SNIS):
        sport = 40000 + i
        hello = f.record(22, f.handshake(1, f.client_hello_body(
            extensions=[f.sni_ext(sni), f.alpn_ext(b"h2", b"@x")])))
        frames = [
            _tcp_packet(cli_ip, srv_ip, sport, 8443, 1000, 0, 0x02),
            _tcp_packet(srv_ip, cli_ip, 8443, sport, 5000, 1001, 0x12),
            _tcp_packet(cli_ip, srv_ip, sport, 8443, 1001, 5001, 0x18, hello),
        ]
        for j, frame in enumerate(frames):
            out.append(struct.pack("<IIII", ts + i, j, len(frame), len(frame)) + frame)
    return b"".join(out)


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    p = tmp_path / "hostile.pcap"
    p.write_bytes(hostile_pcap())
    return p


def test_hostile_capture_jsonl_is_exact_and_valid(hostile: Path) -> None:
    r = invoke("analyze", "--format", "jsonl", str(hostile))
    assert r.exit_code == 0, r.stderr
    recs = jsonl(r.stdout)
    r.stdout_bytes.decode("utf-8")
    assert len(recs) == 2
    assert recs[0]["sni"].startswith("\x1b[31mevil\x00<img")
    assert recs[0]["dst_port"] == 8443 and recs[0]["non_standard_port"] is True
    assert "tls.sni.control_chars" in recs[0]["anomalies"]
    assert recs[1]["sni"] == HOSTILE_SNIS[1].decode()


def test_hostile_capture_table_has_no_control_chars(hostile: Path) -> None:
    r = invoke("analyze", "--format", "table", str(hostile))
    assert r.exit_code == 0, r.stderr
    bad = [c for c in r.stdout if c != "\n" and unicodedata.category(c) in _FORBIDDEN]
    assert not bad
    assert "\\x1b[31mevil" in r.stdout


def test_hostile_capture_csv_neutralised(hostile: Path) -> None:
    r = invoke("analyze", "--format", "csv", str(hostile))
    assert r.exit_code == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(r.stdout, newline="")))
    assert len(rows) == 2
    assert rows[1]["sni"] == "'=cmd|' /C calc'!A0"
    assert rows[0]["sni"].startswith("\\x1b[31mevil\\x00")
    for row in rows:
        for cell in row.values():
            assert cell[:1] not in ("=", "+", "-", "@", "\t", "\r")
            assert all(unicodedata.category(c) not in _FORBIDDEN for c in cell)


# -- real captures -----------------------------------------------------------------------


def test_jsonl_on_corpus_captures() -> None:
    paths = [capture(SPLIT), capture(TLS3)]
    r = invoke("analyze", *map(str, paths))  # not a terminal: jsonl by default
    assert r.exit_code == 0, r.stderr
    recs = jsonl(r.stdout)
    assert recs
    for rec in recs:
        assert rec.keys() >= REQUIRED
    split = [x for x in recs if x["capture"] == str(paths[0])]
    assert any(x["client_hello_segments"] >= 2 for x in split)
    assert "handshakes" in r.stderr and "packets" in r.stderr


def test_csv_on_corpus_capture() -> None:
    r = invoke("analyze", "-f", "csv", str(capture(TLS3)))
    assert r.exit_code == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(r.stdout, newline="")))
    # TLS over TCP and QUIC handshakes (tls3 has both)
    assert rows and all(row["ja4"].startswith(("t1", "q1")) for row in rows)
    assert {row["transport"] for row in rows} == {"tcp", "quic"}


def test_table_on_corpus_capture() -> None:
    r = invoke("analyze", "-f", "table", str(capture(TLS3)))
    assert r.exit_code == 0, r.stderr
    assert r.stdout.splitlines()[0].split()[:2] == ["UTC", "time"]
    assert "\x1b" not in r.stdout  # not a terminal: no colour


def test_output_file_and_summary_json(tmp_path: Path) -> None:
    out, summ = tmp_path / "out.jsonl", tmp_path / "summary.json"
    r = invoke("analyze", "-q", "-o", str(out), "--summary-json", str(summ), str(capture(TLS3)))
    assert r.exit_code == 0
    assert r.stdout == "" and r.stderr == ""
    recs = jsonl(out.read_text("utf-8"))
    s = json.loads(summ.read_text("utf-8"))
    assert s["handshakes"] == len(recs) > 0
    assert s["files"] == 1 and s["errors"] == []
    assert {"packets", "flows", "anomalies", "seconds", "packets_per_second",
            "non_standard_port_share"} <= s.keys()


def test_stdin_in_process() -> None:
    data = capture(SPLIT).read_bytes()
    r = invoke("analyze", "-", input=data)
    assert r.exit_code == 0, r.stderr
    recs = jsonl(r.stdout)
    assert recs and all(x["capture"] == "-" for x in recs)


def test_stdin_subprocess() -> None:
    path = capture(SPLIT)
    with path.open("rb") as fh:
        p = tlsprobe("analyze", "-", stdin=fh)
    assert p.returncode == 0, p.stderr
    from_file = jsonl(tlsprobe("analyze", str(path)).stdout)
    assert [x["ja4"] for x in jsonl(p.stdout)] == [x["ja4"] for x in from_file]


def test_gzip_capture(tmp_path: Path) -> None:
    path = capture(TLS3)
    gz = tmp_path / "tls3.pcapng.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    plain = jsonl(invoke("analyze", str(path)).stdout)
    r = invoke("analyze", str(gz))
    assert r.exit_code == 0, r.stderr
    assert [x["ja4"] for x in jsonl(r.stdout)] == [x["ja4"] for x in plain]


def test_truncated_capture_exits_0_with_anomaly(tmp_path: Path) -> None:
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(capture(SPLIT).read_bytes()[:3000])
    summ = tmp_path / "s.json"
    p = tlsprobe("analyze", str(cut), "--summary-json", str(summ))
    assert p.returncode == 0, p.stderr
    assert "capture.truncated" in p.stderr
    assert "Traceback" not in p.stderr
    assert json.loads(summ.read_text())["anomalies"].get("capture.truncated") == 1


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("notes.txt", b"this is not a capture\n" * 10, "not a pcap or pcapng"),
        ("empty.pcap", b"", "not a pcap or pcapng"),
        ("missing.pcap", None, "cannot open"),
    ],
)
def test_unreadable_capture_one_line_exit_2(tmp_path: Path, name: str, content: bytes | None,
                                            fragment: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    p = tlsprobe("analyze", str(path))
    assert p.returncode == 2
    assert p.stdout == ""
    assert_one_error_line(p.stderr, fragment)
    assert name in p.stderr
    r = invoke("analyze", str(path))  # the same in process
    assert r.exit_code == 2
    assert_one_error_line(r.stderr, fragment)


def test_directory_is_not_a_capture(tmp_path: Path) -> None:
    p = tlsprobe("analyze", str(tmp_path))
    assert p.returncode == 2
    assert_one_error_line(p.stderr, str(tmp_path))


def test_bad_file_among_good_ones_keeps_going(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pcap"
    bad.write_text("nope")
    good = capture(TLS3)
    p = tlsprobe("analyze", str(bad), str(good))
    assert p.returncode == 2
    assert len(jsonl(p.stdout)) > 0
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("tlsprobe: error:")]
    assert len(errors) == 1 and "bad.pcap" in errors[0]
    assert "1 unreadable" in p.stderr
    assert "Traceback" not in p.stderr


# -- a directory of captures ----------------------------------------------------------

PCAPS = ROOT / "pcaps"


def capture_tree(root: Path) -> dict[str, Path]:
    """Captures from pcaps/ in nested folders, plus files that are not captures and a
    capture too damaged to read.  Returns them by role."""
    (root / "lab" / "edge").mkdir(parents=True)
    (root / "empty").mkdir()
    files = {
        "demo": root / "demo.pcap",
        "rst": root / "lab" / "rst-injection.pcap",
        "vlan": root / "lab" / "edge" / "vlan-qinq.pcap",
        "nano_gz": root / "lab" / "edge" / "nano.bin",  # gzip'd pcap: found by content, not name
        "ng": root / "lab" / "multi",  # pcapng, no extension
        "cut": root / "lab" / "edge" / "cut.pcap",  # truncated mid-packet: readable, an anomaly
        "garbage": root / "lab" / "garbage.pcap",  # pcap magic, then nothing: unreadable
        "junk": root / "notes.pcap",  # named like a capture, is not one
        "text": root / "lab" / "README.txt",
    }
    files["demo"].write_bytes((PCAPS / "demo.pcap").read_bytes())
    files["rst"].write_bytes((PCAPS / "interception" / "rst-injection.pcap").read_bytes())
    files["vlan"].write_bytes((PCAPS / "edge" / "vlan-qinq.pcap").read_bytes())
    files["nano_gz"].write_bytes(gzip.compress((PCAPS / "edge" / "nanosecond.pcap").read_bytes()))
    files["ng"].write_bytes((PCAPS / "edge" / "multi-interface.pcapng").read_bytes())
    whole = (PCAPS / "edge" / "any-sll.pcap").read_bytes()
    files["cut"].write_bytes(whole[: len(whole) - 5])
    files["garbage"].write_bytes(whole[:10])
    files["junk"].write_text("not a capture\n")
    files["text"].write_text("captures of the lab\n")
    return files


def test_expand_finds_captures_by_content_sorted(tmp_path: Path) -> None:
    from tlsprobe.capture.tree import expand

    files = capture_tree(tmp_path / "d")
    os.mkfifo(tmp_path / "d" / "lab" / "fifo")  # never opened (it would block)
    found = expand([str(tmp_path / "d"), "-", str(tmp_path / "x.pcap")])
    want = sorted((files[k] for k in ("demo", "rst", "vlan", "nano_gz", "ng", "cut", "garbage")),
                  key=lambda p: p.parts)
    assert found.paths == [*map(str, want), "-", str(tmp_path / "x.pcap")]
    assert found.skipped == {str(tmp_path / "d"): 3}  # notes.pcap, README.txt, the FIFO
    assert found.problems == []


def test_analyze_directory(tmp_path: Path) -> None:
    files = capture_tree(tmp_path / "d")
    summ = tmp_path / "s.json"
    p = tlsprobe("analyze", "-f", "jsonl", str(tmp_path / "d"), "--summary-json", str(summ))
    assert p.returncode == 2  # one capture was unreadable, as for a single file
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("tlsprobe: error:")]
    assert errors == [f"tlsprobe: error: {files['garbage']}: pcap file header truncated (10 bytes)"]
    assert f"tlsprobe: {tmp_path / 'd'}: skipped 2 files that are not a capture" in p.stderr
    assert "Traceback" not in p.stderr
    records = jsonl(p.stdout)
    readable = ("demo", "rst", "vlan", "nano_gz", "ng", "cut")
    for key in readable:  # each capture gives what it gives alone
        alone = jsonl(tlsprobe("analyze", "-f", "jsonl", str(files[key])).stdout)
        assert alone, key
        assert sorted((r["kind"], r["ja4"] or "") for r in records if r["capture"] == str(files[key])) == sorted(
            (r["kind"], r["ja4"] or "") for r in alone), key
    assert {r["capture"] for r in records} == {str(files[k]) for k in readable}
    summary = json.loads(summ.read_text())
    assert summary["files"] == len(readable) and len(summary["errors"]) == 1
    assert summary["anomalies"].get("capture.truncated") == 1


def test_analyze_directory_all_readable_exits_0(tmp_path: Path) -> None:
    files = capture_tree(tmp_path / "d")
    files["garbage"].unlink()
    r = invoke("analyze", "-q", "-f", "jsonl", str(tmp_path / "d" / "lab"), str(files["demo"]))
    assert r.exit_code == 0, r.stderr
    assert r.stderr == ""
    assert {x["capture"] for x in jsonl(r.stdout)} == {str(files[k]) for k in ("rst", "vlan", "nano_gz", "ng",
                                                                              "cut", "demo")}


def test_analyze_directory_without_captures(tmp_path: Path) -> None:
    files = capture_tree(tmp_path / "d")
    p = tlsprobe("analyze", "-q", str(tmp_path / "d" / "empty"), str(files["demo"]))
    assert p.returncode == 2
    assert_one_error_line(p.stderr, "empty: no pcap, pcapng or gzip'd capture in this directory")
    assert jsonl(p.stdout)


def test_unwritable_output_one_line(tmp_path: Path) -> None:
    p = tlsprobe("analyze", "-o", str(tmp_path / "no" / "such" / "dir.jsonl"), str(tmp_path))
    assert p.returncode == 2
    assert_one_error_line(p.stderr, "cannot write")


def test_broken_pipe_is_quiet() -> None:
    path = capture(SPLIT)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tlsprobe", "analyze", *[str(path)] * 200],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    json.loads(first)
    proc.stdout.close()  # like `| head -1`
    err = proc.stderr.read().decode("utf-8", "replace")
    rc = proc.wait(timeout=120)
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert rc == 0


def test_usage_error_exit_2() -> None:
    p = tlsprobe("analyze")
    assert p.returncode == 2
    assert "Traceback" not in p.stderr and "Usage" in p.stderr
    p = tlsprobe("analyze", "--format", "xml", "x.pcap")
    assert p.returncode == 2


def test_main_maps_outcomes_to_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["--version"]) == 0
    assert main(["analyze", str(tmp_path / "missing.pcap")]) == 2
    assert_one_error_line(capsys.readouterr().err, "cannot open")

    class Broken(Analyzer):
        def finish(self) -> Any:
            raise RuntimeError("boom")

    monkeypatch.setattr(run_module, "Analyzer", Broken)
    assert main(["analyze", "-q", str(capture(TLS3)), "-o", str(tmp_path / "o.jsonl")]) == 1
    assert_one_error_line(capsys.readouterr().err, "internal error: RuntimeError: boom")


# -- other commands ---------------------------------------------------------------------------


def test_version() -> None:
    r = invoke("--version")
    assert r.exit_code == 0 and r.stdout.strip() == f"tlsprobe {__version__}"
    assert tlsprobe("--version").stdout.strip() == f"tlsprobe {__version__}"


def test_anomalies_list() -> None:
    r = invoke("anomalies")
    assert r.exit_code == 0
    lines = r.stdout.splitlines()
    assert len(lines) == len(ANOMALIES)
    for code, line in zip(ANOMALIES, lines, strict=True):
        assert line.startswith(code) and ANOMALIES[code] in line


def test_anomalies_markdown() -> None:
    r = invoke("anomalies", "--markdown")
    assert r.exit_code == 0
    md = r.stdout
    assert md.startswith("# Anomaly codes")
    assert "| Code | Meaning |" in md
    for code in ANOMALIES:
        assert f"| `{code}` |" in md
