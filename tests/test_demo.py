"""The demo capture (real traffic, tools/lab/make_demo_pcap.py) against the labels the
lab scenarios wrote: every TLS connection found with the right SNI, ALPN, version,
segmentation, HelloRetryRequest and STARTTLS preamble, and the plain-HTTP one not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tlsprobe import iter_records

PCAPS = Path(__file__).resolve().parents[1] / "pcaps"
LABELS = json.loads((PCAPS / "demo.labels.json").read_text())["flows"]
VERSIONS = {"TLSv1.3": "1.3", "TLSv1.2": "1.2", "TLSv1.1": "1.1", "TLSv1": "1.0", "TLSv1.0": "1.0"}


@pytest.fixture(scope="module")
def records() -> dict[tuple[str, int], dict[str, Any]]:
    return {(r["src_ip"], r["src_port"]): r for r in (x.to_dict() for x in iter_records([str(PCAPS / "demo.pcap")]))}


def test_every_tls_flow_and_nothing_else(records: dict[tuple[str, int], dict[str, Any]]) -> None:
    tls = {(f["client_ip"], f["client_port"]) for f in LABELS if f["tls"]}
    assert set(records) == tls


@pytest.mark.parametrize("label", [f for f in LABELS if f["tls"]], ids=lambda f: f"{f['index']}-{f['scenario']}")
def test_flow_matches_its_label(label: dict[str, Any], records: dict[tuple[str, int], dict[str, Any]]) -> None:
    rec = records[(label["client_ip"], label["client_port"])]
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
    # real servers, no middlebox: answered, and nothing forged about it
    assert rec["outcome"] == "server_hello" and rec["interception"] is None
    assert rec["evidence"]["tells"] == [] and rec["evidence"]["vantage"] == "client"
    assert rec["ja3"] and rec["ja4"].startswith("t") and rec["ja4s"]


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
