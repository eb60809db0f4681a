"""Compare tlsprobe's records with the per-flow values in ../shared/corpus.

Used by test_corpus.py and runnable by hand: ``python tests/corpus.py [CAPTURE ...]``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"

# our record key -> corpus flow key
FIELDS = {
    "sni": "sni",
    "alpn": "alpn",
    "ja3": "ja3",
    "ja3_string": "ja3_full",
    "ja3s": "ja3s",
    "ja4": "ja4",
    "ja4_r": "ja4_r",
    "ja4_o": "ja4_o",
    "ja4_ro": "ja4_ro",
    "ja4s": "ja4s",
    "ja4s_r": "ja4s_r",
}


@dataclass
class Mismatch:
    capture: str
    flow: str
    field: str
    ours: Any
    theirs: Any
    sources: list[str]


@dataclass
class Result:
    capture: str
    expected_flows: int = 0
    found_flows: int = 0
    missing: list[str] = field(default_factory=list)
    compared: dict[str, int] = field(default_factory=dict)
    agreed: dict[str, int] = field(default_factory=dict)
    mismatches: list[Mismatch] = field(default_factory=list)
    error: str | None = None


def expected_files() -> Iterator[Path]:
    yield from sorted(CORPUS.glob("*/expected/*.json"))


def flow_key(src: str, sport: int, dst: str, dport: int) -> tuple[str, int, str, int]:
    return (src, sport, dst, dport)


def tcp_hello_flows(exp: dict[str, Any]) -> list[dict[str, Any]]:
    """Flows with a ClientHello over TCP per the corpus (what tlsprobe must find)."""
    return [
        f for f in exp["flows"]
        if f["transport"] == "tcp" and f.get("client_hello_frames")
    ]


def compare_capture(exp_path: Path) -> Result:
    from tlsprobe import CaptureError, iter_records

    exp = json.loads(exp_path.read_text())
    pcap = exp_path.parent.parent / exp["pcap"]
    res = Result(f"{exp_path.parent.parent.name}/{exp['pcap']}")
    try:
        records = [r.to_dict() for r in iter_records([str(pcap)])]
    except CaptureError as exc:
        res.error = str(exc)
        return res
    by_key: dict[tuple[str, int, str, int], dict[str, Any]] = {}
    for r in records:
        by_key.setdefault(flow_key(r["src_ip"], r["src_port"], r["dst_ip"], r["dst_port"]), r)
    for f in tcp_hello_flows(exp):
        res.expected_flows += 1
        k = flow_key(f["src"], f["src_port"], f["dst"], f["dst_port"])
        label = f"stream {f['stream']} {f['src']}:{f['src_port']}->{f['dst']}:{f['dst_port']}"
        rec = by_key.get(k)
        if rec is None:
            res.missing.append(label)
            continue
        res.found_flows += 1
        for ours_key, theirs_key in FIELDS.items():
            theirs = f.get(theirs_key)
            if theirs is None:
                continue
            accepted = [theirs]
            conflicts = (f.get("conflicts") or {}).get(theirs_key)
            if conflicts:
                accepted += list(conflicts.values())
            ours = rec.get(ours_key)
            if ours_key == "alpn" and ours == [] and theirs is None:
                ours = None
            res.compared[ours_key] = res.compared.get(ours_key, 0) + 1
            if ours in accepted:
                res.agreed[ours_key] = res.agreed.get(ours_key, 0) + 1
            else:
                srcs = (f.get("provenance") or {}).get(theirs_key, [])
                res.mismatches.append(Mismatch(res.capture, label, ours_key, ours, theirs, srcs))
    return res


def main(argv: list[str]) -> int:
    files = [Path(a) for a in argv] or list(expected_files())
    total_missing = 0
    for p in files:
        if p.suffix != ".json":
            p = p.parent / "expected" / (p.name + ".json")
        r = compare_capture(p)
        if r.error:
            print(f"{r.capture}: ERROR {r.error}")
        for m in r.missing:
            print(f"{r.capture}: MISSING {m}")
            total_missing += 1
        for mm in r.mismatches:
            print(f"{mm.capture}: {mm.flow} {mm.field}: ours={mm.ours!r} theirs={mm.theirs!r} {mm.sources}")
    print("missing", total_missing)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main(sys.argv[1:]))
