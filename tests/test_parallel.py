"""Several worker processes give exactly the records and counters of one process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tlsprobe import Analyzer, iter_records
from tlsprobe.parallel import ParallelRun

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"
INPUTS = [ROOT / "pcaps" / "demo.pcap"] + [
    CORPUS / name
    for name in ("foxio-ja4/tls-handshake.pcapng", "arkime/arkime_synthetic.pcap", "zeek/hrr.pcap")
    if (CORPUS / name).exists()
]


# How many flows of a server the cross-flow context had seen when it judged a record can
# differ between one process and -j workers when a run's capture clock jumps (files out
# of time order, as INPUTS are): held records are released by the packet clock, and idle
# flows close at other packets.  An issuer's spread over servers is seen per worker
# (docs/detection.md, "With -j").  Those context values are left out; every verdict, tell
# and the rest of the record must be equal.
_COUNTS = ("server_flows", "server_answered", "server_ttls", "server_rtt_min_ms")
_ACROSS_SERVERS = ("issuer_domains", "minting")


def _canon(records: list[dict[str, object]]) -> list[str]:
    out = []
    for r in records:
        r = json.loads(json.dumps(r))
        ctx = (r.get("evidence") or {}).get("context")
        for key in _COUNTS if isinstance(ctx, dict) else ():
            ctx.pop(key, None)
        cert = ctx.get("certificate") if isinstance(ctx, dict) else None
        for key in _ACROSS_SERVERS if isinstance(cert, dict) else ():
            cert.pop(key, None)
        out.append(json.dumps(r, sort_keys=True))
    return sorted(out)


@pytest.mark.parametrize("jobs", [2, 3])
def test_parallel_equals_single(jobs: int) -> None:
    paths = [str(p) for p in INPUTS]
    an = Analyzer()
    single = [r.to_dict() for r in iter_records(paths, analyzer=an)]
    run = ParallelRun(paths, jobs)
    parallel = list(run)
    assert _canon(parallel) == _canon(single)
    for name in ("packets", "flows", "handshakes", "tcp_packets", "udp_packets", "other_packets", "files"):
        assert getattr(run.stats, name) == getattr(an.stats, name), name
    assert run.log.counts == an.log.counts


def test_parallel_reports_unreadable_file_once(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pcap"
    bad.write_text("not a capture")
    run = ParallelRun([str(bad), str(INPUTS[0])], 2)
    records = list(run)
    assert len(run.errors) == 1 and "bad.pcap" in run.errors[0]
    assert len(records) == len(list(iter_records([str(INPUTS[0])])))


def test_stdin_is_refused() -> None:
    with pytest.raises(ValueError):
        ParallelRun(["-"], 2)


def test_cli_jobs_gives_the_same_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tlsprobe.cli import main
    from tlsprobe.sinks import run as run_module

    monkeypatch.setattr(run_module, "PARALLEL_MIN_BYTES", 0)
    paths = [str(p) for p in INPUTS]
    outs = {}
    for jobs in (1, 2):
        out = tmp_path / f"j{jobs}.jsonl"
        summary = tmp_path / f"j{jobs}.json"
        assert main(["analyze", "-q", "-j", str(jobs), "-o", str(out), "--summary-json", str(summary), *paths]) == 0
        outs[jobs] = (_canon([json.loads(line) for line in out.read_text().splitlines()]),
                      json.loads(summary.read_text()))
    assert outs[1][0] == outs[2][0]
    for key in ("packets", "flows", "handshakes", "anomalies", "files"):
        assert outs[1][1][key] == outs[2][1][key], key


def test_cli_jobs_with_filters_and_comparison(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers encode JSON lines themselves; filters and the port comparison still apply."""
    from tlsprobe.cli import main
    from tlsprobe.sinks import run as run_module

    monkeypatch.setattr(run_module, "PARALLEL_MIN_BYTES", 0)
    lab = ROOT / "pcaps" / "interception"
    paths = [str(lab / "port-comparison.pcap"), str(lab / "rst-injection.pcap")]
    outs = {}
    for jobs in (1, 2):
        out, summary = tmp_path / f"j{jobs}.jsonl", tmp_path / f"j{jobs}.json"
        assert main(["analyze", "-q", "--only-intercepted", "-j", str(jobs), "-o", str(out),
                     "--summary-json", str(summary), *paths]) == 0
        outs[jobs] = (sorted(out.read_text().splitlines()), json.loads(summary.read_text()))
    lines, summary = outs[2]
    assert lines == outs[1][0] and lines
    assert all(json.loads(line)["interception"] for line in lines)
    assert summary["port_comparison"] and summary["port_comparison"] == outs[1][1]["port_comparison"]
