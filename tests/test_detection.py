"""Interception detection on real lab traffic (tools/lab/make_interception_pcaps.py).

Each flow's expected pattern and outcome were written by the scenario that produced it
(the middlebox's action, or none for the hard negatives).  Precision and recall per
pattern must be 1.0, with no verdict on any negative flow.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tlsprobe import Analyzer, iter_records
from tlsprobe.compare import PortComparison

LAB = Path(__file__).resolve().parents[1] / "pcaps" / "interception"
CAPTURES = sorted(p for p in LAB.glob("*.labels.json") if ".server." not in p.name)
# The lab's own interception CA is not a known product: users add such a rule themselves.
LAB_RULES = Path(__file__).resolve().parent / "rules" / "lab-interception-ca.yaml"
# outcome words of HTTP records differ from TLS ones: a normal answer is http_response
HTTP_OUTCOME = {"plaintext": "http_response"}


def _records(capture: Path) -> dict[tuple[str, int], dict[str, Any]]:
    from tlsprobe.detect import load_rules

    an = Analyzer(rules=load_rules([LAB_RULES]), http=True)
    return {(r.src_ip, r.src_port): r.to_dict() for r in iter_records([str(capture)], analyzer=an)}


def _flows() -> list[tuple[str, dict[str, Any]]]:
    return [(p.name, f) for p in CAPTURES for f in json.loads(p.read_text())["flows"]]


@pytest.fixture(scope="module")
def results() -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    out = []
    for labels in CAPTURES:
        recs = _records(LAB / json.loads(labels.read_text())["capture"])
        out += [(f, recs.get((f["client_ip"], f["client_port"]))) for f in json.loads(labels.read_text())["flows"]]
    return out


@pytest.mark.parametrize(("labels", "flow"), _flows(), ids=lambda v: v if isinstance(v, str) else v["scenario"])
def test_flow_verdict_and_outcome(labels: str, flow: dict[str, Any]) -> None:
    capture = LAB / json.loads((LAB / labels).read_text())["capture"]
    rec = _records(capture).get((flow["client_ip"], flow["client_port"]))
    assert rec is not None, f"no record for {flow['scenario']}"
    got = (rec["interception"] or {}).get("pattern")
    assert got == flow["pattern"], (rec["interception"], rec["evidence"]["tells"])
    want = flow["outcome"] if rec["kind"] == "tls" else HTTP_OUTCOME.get(flow["outcome"], flow["outcome"])
    assert rec["outcome"] == want
    assert rec["dst_port"] == flow["server_port"]


def test_precision_and_recall_per_pattern(results: list[tuple[dict[str, Any], dict[str, Any] | None]],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    for flow, rec in results:
        want = flow["pattern"]
        got = ((rec or {}).get("interception") or {}).get("pattern")
        if got == want and want:
            tp[want] += 1
        else:
            if got:
                fp[got] += 1
            if want:
                fn[want] += 1
    patterns = sorted(set(tp) | set(fp) | set(fn))
    with capsys.disabled():
        print("\npattern                    precision  recall   (tp/fp/fn)")
        for p in patterns:
            prec = tp[p] / (tp[p] + fp[p]) if tp[p] + fp[p] else 1.0
            rec_ = tp[p] / (tp[p] + fn[p]) if tp[p] + fn[p] else 1.0
            print(f"{p:<26} {prec:9.2f} {rec_:7.2f}   ({tp[p]}/{fp[p]}/{fn[p]})")
        negatives = sum(1 for f, _ in results if not f["pattern"])
        print(f"negative flows: {negatives}, false positives on them: "
              f"{sum(1 for f, r in results if not f['pattern'] and ((r or {}).get('interception')))}")
    assert not fp and not fn
    assert {"rst_injection", "block_page", "tls_alert_injection", "blackhole", "certificate_substitution"} <= set(tp)


def test_port_comparison_names_the_blocked_port_and_sni() -> None:
    labels = json.loads((LAB / "port-comparison.labels.json").read_text())
    cmp = PortComparison()
    for rec in _records(LAB / labels["capture"]).values():
        cmp.add(rec)
    findings = cmp.findings()
    by_port = [f for f in findings if f["kind"] == "port"]
    by_sni = [f for f in findings if f["kind"] == "sni"]
    assert any(f["sni"] == "blocked.tlsprobe.test" and [x["port"] for x in f["fails"]] == [8443]
               and 443 in [x["port"] for x in f["succeeds"]] for f in by_port), findings
    assert any(f["port"] == 8443 and [x["sni"] for x in f["fails"]] == ["blocked.tlsprobe.test"]
               and None in [x["sni"] for x in f["succeeds"]] for f in by_sni), findings


SERVER_SIDE = sorted(LAB.glob("*.server.labels.json"))


def _server_expectation(flow: dict[str, Any]) -> str | None:
    """What a server-side capture can show: resets injected towards the server.

    Client-only injection (webcontrol, Henan, in-line drops) leaves nothing forged at
    the server - only the client kernel's own resets - so no verdict is expected there.
    """
    sent = flow.get("injected_to_server") or []
    return "rst_injection" if any("R" in s["flags"] for s in sent) else None


@pytest.mark.parametrize("labels", SERVER_SIDE, ids=lambda p: p.name.removesuffix(".server.labels.json"))
def test_server_side_captures(labels: Path) -> None:
    meta = json.loads(labels.read_text())
    recs = _records(LAB / meta["capture"])
    checked = 0
    for flow in meta["flows"]:
        rec = recs.get((flow["seen_from_ip"], flow["seen_from_port"]))
        if rec is None:
            assert not flow["trigger_reaches_server"], flow["scenario"]  # dropped on the way
            continue
        checked += 1
        got = (rec["interception"] or {}).get("pattern")
        assert got == _server_expectation(flow), (flow["scenario"], rec["interception"], rec["evidence"]["client_rst"])
        assert rec["evidence"]["vantage"] in ("server", "client")
    assert checked == sum(1 for f in meta["flows"] if f["trigger_reaches_server"])
