"""The demo capture (real traffic, tools/lab/make_demo_pcap.py) against the labels the
lab scenarios wrote: every TLS connection found with the right SNI, ALPN, version,
segmentation, HelloRetryRequest and STARTTLS preamble, the clean plain-HTTP one not;
every flow's interception verdict equal to the pattern (and provider) of the middlebox
rule the scenario sent it into, and the port comparison reporting the blocked name's
ports against 443."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tlsprobe import iter_records
from tlsprobe.compare import PortComparison

PCAPS = Path(__file__).resolve().parents[1] / "pcaps"
LABELS = json.loads((PCAPS / "demo.labels.json").read_text())["flows"]
VERSIONS = {"TLSv1.3": "1.3", "TLSv1.2": "1.2", "TLSv1.1": "1.1", "TLSv1": "1.0", "TLSv1.0": "1.0"}
CLEAN_TLS = [f for f in LABELS if f["tls"] and f["pattern"] is None]
INTERCEPTED = [f for f in LABELS if f["pattern"] is not None]
# tlsprobe reports every TLS handshake, and a plain-HTTP request only when it is intercepted
REPORTED = [f for f in LABELS if f["tls"] or f["pattern"] is not None]


def _id(flow: dict[str, Any]) -> str:
    return f"{flow['index']}-{flow['scenario']}"


@pytest.fixture(scope="module")
def records() -> dict[tuple[str, int], dict[str, Any]]:
    return {(r["src_ip"], r["src_port"]): r for r in (x.to_dict() for x in iter_records([str(PCAPS / "demo.pcap")]))}


def test_the_demo_has_clean_and_intercepted_flows() -> None:
    assert len(CLEAN_TLS) >= 15 and 4 <= len(INTERCEPTED) <= 6
    assert {f["pattern"] for f in INTERCEPTED} >= {"rst_injection", "block_page"}
    assert {f["ip_version"] for f in INTERCEPTED} == {4, 6}
    assert any(f["protocol"] == "http" for f in INTERCEPTED)
    assert (PCAPS / "demo.pcap").stat().st_size < 150_000


def test_every_reported_flow_and_nothing_else(records: dict[tuple[str, int], dict[str, Any]]) -> None:
    assert set(records) == {(f["client_ip"], f["client_port"]) for f in REPORTED}
    kinds = {(f["client_ip"], f["client_port"]): f["protocol"] for f in REPORTED}
    assert {k: r["kind"] for k, r in records.items()} == kinds


@pytest.mark.parametrize("label", REPORTED, ids=_id)
def test_verdict_matches_its_label(label: dict[str, Any], records: dict[tuple[str, int], dict[str, Any]]) -> None:
    """Pattern (and provider where the label names one) equal the scenario's middlebox rule."""
    rec = records[(label["client_ip"], label["client_port"])]
    verdict = rec["interception"]
    assert (verdict or {}).get("pattern") == label["pattern"], (label["middlebox_rule"], verdict)
    if label["provider"] is not None:
        assert verdict["provider"] == label["provider"], (label["middlebox_rule"], verdict)


@pytest.mark.parametrize("label", INTERCEPTED, ids=_id)
def test_intercepted_flow_matches_its_label(
    label: dict[str, Any], records: dict[tuple[str, int], dict[str, Any]]
) -> None:
    rec = records[(label["client_ip"], label["client_port"])]
    assert rec["dst_ip"] == label["server_ip"] and rec["dst_port"] == label["server_port"]
    assert rec["ip_version"] == label["ip_version"]
    assert rec["outcome"] == label["outcome"]
    assert rec["evidence"]["vantage"] == "client" and rec["tcp_syn_seen"]
    if label["tls"]:
        assert rec["sni"] == label["sni"] and rec["alpn"] == label["alpn_offered"]
    else:
        assert rec["http_request"] and rec["sni"] is None


@pytest.mark.parametrize("label", CLEAN_TLS, ids=_id)
def test_flow_matches_its_label(label: dict[str, Any], records: dict[tuple[str, int], dict[str, Any]]) -> None:
    rec = records[(label["client_ip"], label["client_port"])]
    assert rec["kind"] == "tls"
    assert rec["dst_ip"] == label["server_ip"] and rec["dst_port"] == label["server_port"]
    assert rec["non_standard_port"] == (label["server_port"] != 443)
    assert rec["sni"] == label["sni"]
    assert rec["alpn"] == label["alpn_offered"]
    assert rec["server_hello"]["version"] == VERSIONS[label["tls_version"]]
    # TLS 1.3 sends the selected ALPN in EncryptedExtensions: not visible on the wire
    tls13 = label["tls_version"] == "TLSv1.3"
    assert rec["server_hello"]["alpn"] == (None if tls13 else label["alpn_negotiated"])
    assert (rec["hello_retry_request"] is not None) == label["hrr"]
    assert (rec["retry_client_hello"] is not None) == (label["client_hellos"] == 2)
    assert (rec["client_hello_segments"] > 1) == label["hello_split"]
    assert (rec["preamble_bytes"] > 0) == bool(label["starttls"])
    assert len(rec["certificates"]) == label["certificates_in_clear"]
    assert rec["tcp_syn_seen"] and rec["anomalies"] == []
    # real servers, no rule fired on the way: answered, and nothing forged about it
    assert rec["outcome"] == label["outcome"] == "server_hello" and rec["interception"] is None
    assert rec["evidence"]["tells"] == [] and rec["evidence"]["vantage"] == "client"
    assert rec["ja3"] and rec["ja4"].startswith("t") and rec["ja4s"]


def test_port_comparison_reports_the_blocked_ports(records: dict[tuple[str, int], dict[str, Any]]) -> None:
    """Where the labels have one client, server and name intercepted on one port and clean on
    another, the comparison says so (IPv4 and IPv6: 'fails on 8443, not on 443'); a plain
    HTTP request counts under its Host name, an intercepted one only (clean ones are not
    records without --http)."""
    cmp = PortComparison()
    for rec in records.values():
        cmp.add(rec)
    found = {(f["client_ip"], f["server_ip"], f["sni"]): f for f in cmp.findings() if f["kind"] == "port"}
    groups: dict[tuple[str, str, str | None], dict[str, set[int]]] = {}
    for f in LABELS:
        name = f["sni"] if f["tls"] else (f.get("http_host") or "").rpartition(":")[0] or None
        if f["tls"] or (f["pattern"] and name):
            group = groups.setdefault((f["client_ip"], f["server_ip"], name), {"bad": set(), "ok": set()})
            group["bad" if f["pattern"] else "ok"].add(f["server_port"])
    expected = {k: g for k, g in groups.items() if g["bad"] and g["ok"] - g["bad"]}
    assert {ip for _, ip, _ in expected} == {"10.77.2.2", "fd77:2::2"}
    for key, group in expected.items():
        assert key in found, key
        assert {x["port"] for x in found[key]["fails"]} == group["bad"]
        assert {x["port"] for x in found[key]["succeeds"]} == group["ok"] - group["bad"]
        assert 443 in group["ok"] and 8443 in group["bad"]


def test_certificate_chain_in_clear_matches_the_lab_pki(records: dict[tuple[str, int], dict[str, Any]]) -> None:
    pki = json.loads((PCAPS / "demo.labels.json").read_text())["pki"]
    chains = [r["certificates"] for r in records.values() if r["certificates"]]
    assert chains
    for leaf, inter in chains:
        assert leaf["sha256"] == pki["leaf"]["sha256"]
        assert inter["sha256"] == pki["intermediate"]["sha256"]
        assert f"CN={pki['leaf']['subject_cn']}" in leaf["subject"]
        assert f"CN={pki['intermediate']['subject_cn']}" in leaf["issuer"] == inter["subject"]
        assert "demo.tlsprobe.test" in leaf["san_dns"] and "10.77.2.2" in leaf["san_ip"]
        assert leaf["not_before"] < leaf["not_after"] and leaf["error"] is None
        assert leaf["self_signed"] is False
