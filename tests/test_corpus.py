"""Every TLS-over-TCP handshake in ../shared/corpus, compared per flow with the values of
tshark, FoxIO's JA4 tools, Arkime, Suricata and Zeek.

A value may differ from the references only through a case in corpus_divergences.py,
whose check proves the difference is the documented one.  The agreement table is
printed at the end of the test session.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from tests import corpus_divergences as dv
from tests.corpus import CORPUS, FIELDS, flow_key, ours

pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"corpus not found at {CORPUS}")

TABLE: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0, 0]))
SUMMARY: dict[str, int] = defaultdict(int)
USED: set[tuple[str, int, str]] = set()


def _expected_tcp_flows(exp: dict[str, Any]) -> list[dict[str, Any]]:
    """TLS-over-TCP and QUIC flows where tshark saw a ClientHello, or another tool
    fingerprinted one (DTLS and TLS inside other UDP protocols are not analysed yet)."""
    return [
        f for f in exp["flows"]
        if ((f["transport"] == "tcp" and f["proto"] == "tls") or (f["transport"] == "udp" and f["proto"] == "quic"))
        and (f.get("client_hello_frames") or f.get("server_hello_frames") or f.get("ja4") or f.get("ja3"))
    ]


def _captures() -> list[Path]:
    return sorted(CORPUS.glob("*/expected/*.json")) if CORPUS.is_dir() else []


@pytest.mark.parametrize("exp_path", _captures(), ids=lambda p: f"{p.parent.parent.name}/{p.stem}")
def test_capture_matches_references(exp_path: Path) -> None:
    from tlsprobe import iter_records

    exp = json.loads(exp_path.read_text())
    folder = exp_path.parent.parent.name
    capture = f"{folder}/{exp['pcap']}"
    records = [r.to_dict() for r in iter_records([str(exp_path.parent.parent / exp["pcap"])])]
    ours_by_key: dict[tuple[bool, str, int, str, int], dict[str, Any]] = {}
    for r in records:
        key = (r["transport"] == "quic", *flow_key(r["src_ip"], r["src_port"], r["dst_ip"], r["dst_port"]))
        ours_by_key.setdefault(key, r)
    problems: list[str] = []
    expected = _expected_tcp_flows(exp)
    SUMMARY["captures"] += 1
    SUMMARY["expected_flows"] += len(expected)
    for f in expected:
        proto = "quic" if f["proto"] == "quic" else "tcp"
        SUMMARY[f"expected_{proto}"] += 1
        key = (f["proto"] == "quic", *flow_key(f["src"], f["src_port"], f["dst"], f["dst_port"]))
        rec = ours_by_key.pop(key, None)
        label = f"{capture} stream {f['stream']} {f['src']}:{f['src_port']} -> {f['dst']}:{f['dst_port']}"
        if rec is None:
            problems.append(f"MISSING {label}")
            SUMMARY["missing_flows"] += 1
            continue
        SUMMARY["found_flows"] += 1
        SUMMARY[f"found_{proto}"] += 1
        table = TABLE[folder if proto == "tcp" else f"{folder} (QUIC)"]
        for ours_key, theirs_key in FIELDS.items():
            theirs = f.get(theirs_key)
            if theirs is None:
                continue
            accepted = [theirs, *((f.get("conflicts") or {}).get(theirs_key) or {}).values()]
            value = ours(rec, ours_key)
            cell = table[ours_key]
            cell[0] += 1
            if value in accepted:
                cell[1] += 1
                continue
            case = dv.find(capture, f["src_port"], ours_key)
            theirs_flow = {**f, ours_key: theirs}
            if case is not None and case.check(rec, theirs_flow, ours_key):
                cell[2] += 1
                USED.add((capture, f["src_port"], ours_key))
                continue
            problems.append(f"{label} {ours_key}: ours={value!r} references={theirs!r} "
                            f"({', '.join((f.get('provenance') or {}).get(theirs_key, []))})"
                            + (f" [case {case.case} check failed]" if case else ""))
    SUMMARY["extra_records"] += len(ours_by_key)
    assert not problems, "\n".join(problems)


def test_every_documented_divergence_is_still_needed() -> None:
    """Run after the per-capture tests: a case that covers nothing has gone stale."""
    if not USED:
        pytest.skip("per-capture tests did not run in this session (run the whole module)")
    stale = [
        f"{d.case}: {d.capture} port {d.src_port} {field}"
        for d in dv.DIVERGENCES for field in d.fields
        if (d.capture, d.src_port, field) not in USED
    ]
    assert not stale, "documented divergences no longer observed:\n" + "\n".join(stale)


def agreement_table() -> list[str]:
    """The table printed by conftest.py at the end of the session."""
    if not TABLE:
        return []
    fields = list(FIELDS)
    lines = [
        "corpus agreement: agreed / compared (+ documented spec-vs-reference divergences, docs/fingerprints.md)",
        "| source | " + " | ".join(fields) + " |",
        "|---" * (len(fields) + 1) + "|",
    ]
    totals = {k: [0, 0, 0] for k in fields}
    for folder in sorted(TABLE):
        cells = []
        for k in fields:
            n, ok, doc = TABLE[folder].get(k, [0, 0, 0])
            for i, v in enumerate((n, ok, doc)):
                totals[k][i] += v
            cells.append(f"{ok}/{n}" + (f" (+{doc})" if doc else "") if n else "-")
        lines.append(f"| {folder} | " + " | ".join(cells) + " |")
    lines.append("| all | " + " | ".join(
        f"{t[1]}/{t[0]}" + (f" (+{t[2]})" if t[2] else "") for t in totals.values()) + " |")
    lines.append(
        f"captures {SUMMARY['captures']}, flows expected {SUMMARY['expected_flows']} "
        f"(TLS over TCP {SUMMARY['expected_tcp']}, QUIC {SUMMARY['expected_quic']}), "
        f"found {SUMMARY['found_flows']} (TCP {SUMMARY['found_tcp']}, QUIC {SUMMARY['found_quic']}), "
        f"missing {SUMMARY['missing_flows']}, "
        f"records with no reference flow {SUMMARY['extra_records']}"
    )
    return lines


def test_no_interception_verdicts_on_the_public_corpus() -> None:
    """The public test captures were not taken behind middleboxes: any verdict is a false
    positive (the Sophos service below uses its vendor's private CA, which is not
    interception)."""
    from tlsprobe import Analyzer, CaptureError, iter_records

    verdicts = []
    for path in sorted(CORPUS.glob("*/*.pcap*")):
        try:
            # with --http: plain HTTP responses are judged too (block pages)
            verdicts += [(path.name, r.dst_port, r.interception)
                         for r in iter_records([str(path)], analyzer=Analyzer(http=True)) if r.interception]
        except CaptureError:
            continue
    assert verdicts == []
