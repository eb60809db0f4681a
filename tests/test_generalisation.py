"""Generalisation: detection scored on freshly randomised lab traffic (tools/lab/random_lab.py).

The fixed lab (tests/test_detection.py) is the captures the thresholds were tuned on;
here every run records new seeds - new injector parameters, ports, addresses, names,
clients and IP versions - and scores tlsprobe (``Analyzer(http=True)``, built-in rules
only, no lab rule file) against labels that come from the scenario drawn, never from
tlsprobe or the capture.

Seeds: three fresh ones per run (printed, so a failure can be replayed), or pinned with
``TLSPROBE_LAB_SEEDS=1,2,3``.  Needs root, ``ip netns``, tcpdump, openssl, curl, node,
sslsplit and aioquic; skips with the reason otherwise.

Targets (the project's issue): macro-F1 >= 0.95 over the patterns across seeds, no
verdict on any hard negative, the provider right on >= 95% of the flows that have one.
"""

from __future__ import annotations

import json
import os
import random
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from tlsprobe import Analyzer, iter_records

LAB_DIR = Path(__file__).resolve().parents[1] / "tools" / "lab"
MACRO_F1_MIN = 0.95
PROVIDER_MIN = 0.95


def _seeds() -> list[int]:
    pinned = os.environ.get("TLSPROBE_LAB_SEEDS", "").strip()
    if pinned:
        return [int(s) for s in pinned.split(",") if s.strip()]
    return [random.SystemRandom().randrange(1, 100_000) for _ in range(4)]


SEEDS = _seeds()


def _canon(ip: str | None) -> str | None:
    """The lab's canonical address text (``::ffff:`` mapped IPv4 unwrapped)."""
    if str(LAB_DIR) not in sys.path:
        sys.path.insert(0, str(LAB_DIR))
    from random_lab import canon

    result: str | None = canon(ip)
    return result


def analyse(labels_path: Path, public_root: bool = True) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    """Pair every labelled flow with tlsprobe's record for it (None when there is none).

    ``public_root``: the lab's genuine servers stand for public ones, so their root is
    trusted the way certifi's roots are for real servers (``--trust``); the proxies' CAs,
    the private organisation's CA and the self-signed servers stay untrusted."""
    from tlsprobe.wire.x509 import set_user_trust

    doc = json.loads(labels_path.read_text())
    pcap = labels_path.parent / doc["capture"]
    root = labels_path.parent / labels_path.name.replace(".labels.json", ".public-root.pem")
    set_user_trust([root.read_bytes()] if public_root and root.exists() else [])
    # the whole 4-tuple: a client's ephemeral port can come back in a later flow to another server
    recs: dict[tuple[str | None, int, str | None, int, str], dict[str, Any]] = {}
    try:
        records = [r.to_dict() for r in iter_records([str(pcap)], analyzer=Analyzer(http=True))]
    finally:
        set_user_trust([])
    for d in records:
        proto = "udp" if d.get("transport") == "quic" else "tcp"
        recs.setdefault((_canon(d["src_ip"]), d["src_port"], _canon(d["dst_ip"]), d["dst_port"], proto), d)
    return [(f, recs.get((_canon(f["client_ip"]), f["client_port"], _canon(f["server_ip"]), f["server_port"],
                          f["transport"]))) for f in doc["flows"]]


def _got(rec: dict[str, Any] | None) -> tuple[str | None, str | None]:
    verdict = (rec or {}).get("interception") or {}
    return verdict.get("pattern"), verdict.get("provider")


def score(pairs: list[tuple[dict[str, Any], dict[str, Any] | None]]) -> dict[str, Any]:
    """Precision/recall/F1 per pattern, provider accuracy, false positives on hard negatives."""
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    prov_total: Counter[str] = Counter()
    prov_right: Counter[str] = Counter()
    hard_fp: list[str] = []
    hard_total = 0
    for flow, rec in pairs:
        want = flow["pattern"]
        got, got_prov = _got(rec)
        if want and got == want:
            tp[want] += 1
        else:
            if got:
                fp[got] += 1
            if want:
                fn[want] += 1
        if flow["provider"]:
            prov_total[flow["provider"]] += 1
            prov_right[flow["provider"]] += int(got == want and got_prov == flow["provider"])
        if flow["hard_negative"]:
            hard_total += 1
            if got:
                hard_fp.append(flow["name"])
    rows = {}
    for p in sorted({f["pattern"] for f, _ in pairs if f["pattern"]} | set(fp)):
        prec = tp[p] / (tp[p] + fp[p]) if tp[p] + fp[p] else (1.0 if not fn[p] else 0.0)
        rec_ = tp[p] / (tp[p] + fn[p]) if tp[p] + fn[p] else 1.0
        f1 = 2 * prec * rec_ / (prec + rec_) if prec + rec_ else 0.0
        rows[p] = {"precision": prec, "recall": rec_, "f1": f1, "tp": tp[p], "fp": fp[p], "fn": fn[p]}
    labelled = [p for p in rows if tp[p] + fn[p]]
    macro = sum(rows[p]["f1"] for p in labelled) / len(labelled) if labelled else 1.0
    return {
        "patterns": rows,
        "macro_f1": macro,
        "providers": {p: (prov_right[p], prov_total[p]) for p in sorted(prov_total)},
        "provider_rate": sum(prov_right.values()) / sum(prov_total.values()) if prov_total else 1.0,
        "hard_fp": hard_fp,
        "hard_total": hard_total,
    }


def misses(pairs: list[tuple[dict[str, Any], dict[str, Any] | None]]) -> list[str]:
    """One line per wrong flow: what was drawn, what tlsprobe said and the tells it saw."""
    out = []
    for flow, rec in pairs:
        got, got_prov = _got(rec)
        want_prov = flow["provider"]
        if got == flow["pattern"] and (not want_prov or got_prov == want_prov):
            continue
        inj = flow.get("injector") or {}
        keys = ("style", "mode", "flags", "count", "ttl", "ttl_offset", "ip_id_mode", "ip_id", "df", "window",
                "delay_ms", "targets", "page", "alert_description", "then", "client_trusts_proxy_ca")
        drawn = " ".join(f"{k}={inj[k]}" for k in keys if k in inj and inj[k] is not None)
        ev = (rec or {}).get("evidence") or {}
        out.append(
            f"{flow['category']:<24} {flow['name']:<28} v{flow['ip_version']} {flow['protocol']:<4} "
            f"want={flow['pattern'] or '-'}/{want_prov or '-'} got={got or '-'}/{got_prov or '-'} "
            f"outcome={(rec or {}).get('outcome', 'NO RECORD')} tells={ev.get('tells')} | {drawn}"
        )
    return out


def table(res: dict[str, Any], title: str) -> str:
    """The printed score table."""
    lines = [f"\n{title}", f"{'pattern':<26} {'precision':>9} {'recall':>7} {'F1':>6}   tp/fp/fn"]
    for p, r in res["patterns"].items():
        lines.append(f"{p:<26} {r['precision']:9.2f} {r['recall']:7.2f} {r['f1']:6.2f}   "
                     f"{r['tp']}/{r['fp']}/{r['fn']}")
    lines.append(f"macro-F1 {res['macro_f1']:.3f} (target >= {MACRO_F1_MIN})")
    prov = ", ".join(f"{p} {a}/{b}" for p, (a, b) in res["providers"].items())
    lines.append(f"provider right {res['provider_rate']:.2f} (target >= {PROVIDER_MIN}): {prov}")
    lines.append(f"hard negatives: {res['hard_total']}, false positives: {len(res['hard_fp'])} "
                 f"{res['hard_fp'] or ''}")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[int, tuple[dict[str, Any], list[Any]]]:
    """Record and analyse every seed once."""
    sys.path.insert(0, str(LAB_DIR))
    import random_lab

    why = random_lab.preflight()
    if why:
        pytest.skip(f"randomised lab unavailable: {why}")
    print(f"\nrandomised lab seeds: {','.join(map(str, SEEDS))} (replay: TLSPROBE_LAB_SEEDS=...)", file=sys.stderr)
    out: dict[int, tuple[dict[str, Any], list[Any]]] = {}
    for seed in SEEDS:
        path = random_lab.run_seed(seed, tmp_path_factory.mktemp(f"lab{seed}"))
        doc = json.loads(path.read_text())
        doc["_labels"] = str(path)
        out[seed] = (doc, analyse(path))
    return out


def test_score_table(runs: dict[int, tuple[dict[str, Any], list[Any]]], capsys: pytest.CaptureFixture[str]) -> None:
    """Print per seed and overall tables plus every miss (the targets are asserted below);
    also score the same captures without the genuine servers' root (no --trust): what the
    certificate signals are worth when nothing vouches for any chain.  Hard negatives must
    stay clean that way too, and every labelled flow must have its record."""
    allpairs = [p for _, pairs in runs.values() for p in pairs]
    assert not [f["name"] for f, rec in allpairs if rec is None]
    untrusted = [p for doc, _ in runs.values() for p in analyse(Path(doc["_labels"]), public_root=False)]
    with capsys.disabled():
        print(table(score(untrusted), "all seeds, without the genuine servers' root (no --trust)"))
        for seed, (doc, pairs) in runs.items():
            print(table(score(pairs), f"seed {seed}: {len(pairs)} flows, recorded in {doc['timing_s']['total']} s"))
        print(table(score(allpairs), f"all seeds {','.join(map(str, runs))}: {len(allpairs)} flows"))
        by_cat: dict[str, list[str]] = defaultdict(list)
        for line in misses(allpairs):
            by_cat[line.split()[0]].append(line)
        print("\nmisses by category:")
        for cat, lines in sorted(by_cat.items()):
            print(f"  {cat}: {len(lines)}")
            for line in lines:
                print(f"    {line}")
    assert not score(untrusted)["hard_fp"]


def test_lab_did_what_it_drew(runs: dict[int, tuple[dict[str, Any], list[Any]]]) -> None:
    """Each flow behaved as its scenario says (rule fired or not, client outcome) - else the labels lie."""
    problems = [f"seed {s}: {p}" for s, (doc, _) in runs.items() for p in doc["lab_problems"]]
    assert not problems, "\n".join(problems)
    for seed, (doc, pairs) in runs.items():
        assert 50 <= len(doc["flows"]) <= 90, seed
        assert all(rec is not None for _, rec in pairs), [f["name"] for f, r in pairs if r is None]


def test_macro_f1(runs: dict[int, tuple[dict[str, Any], list[Any]]]) -> None:
    """Macro-F1 over the interception patterns, all seeds together."""
    res = score([p for _, pairs in runs.values() for p in pairs])
    assert res["macro_f1"] >= MACRO_F1_MIN, table(res, "all seeds")


def test_no_false_positive_on_hard_negatives(runs: dict[int, tuple[dict[str, Any], list[Any]]]) -> None:
    """Self-signed and private-CA servers, servers that reset, slow servers, loss, wandering TTLs: no verdict."""
    res = score([p for _, pairs in runs.values() for p in pairs])
    assert not res["hard_fp"], res["hard_fp"]


def test_provider_attribution(runs: dict[int, tuple[dict[str, Any], list[Any]]]) -> None:
    """The provider is right on the flows that model a known one."""
    res = score([p for _, pairs in runs.values() for p in pairs])
    assert res["provider_rate"] >= PROVIDER_MIN, res["providers"]
