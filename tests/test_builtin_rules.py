"""The built-in rule packs on minimal records: each rule fires on its markers and not on
near misses (the lab captures in test_detection.py exercise them on real traffic)."""

from __future__ import annotations

from typing import Any

import pytest

from tlsprobe.pipeline import builtin_rules


def rec(outcome: str = "server_hello", kind: str = "tls", **evidence: Any) -> dict[str, Any]:
    ev = {"tells": [], "rst_count": 0, "ch_retransmissions": 0, "ch_acked": True, "baseline": {"ttl": 57},
          "outcome_packet": None, "http": None, "certificate": None, "vantage": "client", "client_rst": None}
    ev.update(evidence)
    return {"kind": kind, "ts": 1.8e9, "outcome": outcome, "evidence": ev, "certificates": [], "sni": "x.example"}


def verdict(r: dict[str, Any]) -> tuple[str | None, str | None, list[str]]:
    v = builtin_rules().evaluate(r)
    return (v["pattern"], v["provider"], v["rule_ids"]) if v else (None, None, [])


BEAVER = {"status": 403, "server": "Beaver", "title": "Non-compliance ICP Filing", "location": None,
          "body_excerpt": '<iframe src="http://www.aliyun.com/beian/beian-block?id=00000000004886285392">'}


@pytest.mark.parametrize(("record", "pattern", "provider"), [
    (rec("rst", tells=["race"]), "rst_injection", None),
    (rec("rst", tells=["ttl_mismatch", "faster_than_rtt"]), "rst_injection", None),
    (rec("rst", tells=["ttl_mismatch"]), None, None),  # one coincidence is not enough
    (rec("rst"), None, None),  # a genuine server reset
    (rec("fin", tells=["race"]), "rst_injection", None),
    (rec("tls_alert", tells=["df_mismatch", "timestamps_missing"]), "tls_alert_injection", None),
    (rec("tls_alert"), None, None),
    (rec("plaintext", tells=["race"]), "block_page", None),
    (rec("plaintext", http={"status": 400, "server": "nginx", "title": None, "location": None, "body_excerpt": ""}),
     None, None),  # a port that is not TLS
    (rec("plaintext", http=BEAVER), "block_page", "alibaba_cloud"),
    (rec("http_response", kind="http", http=BEAVER), "block_page", "alibaba_cloud"),
    (rec("plaintext", http={**BEAVER, "title": "Forbidden", "body_excerpt": ""}), None, None),  # one marker
    (rec("http_response", kind="http", http={"status": 302, "server": None, "title": None, "body_excerpt": "",
                                              "location": "https://dnspod.qcloud.com/static/webblock.html?d=x"}),
     "block_page", "tencent_cloud"),
    (rec("rst", tells=["ttl_mismatch", "rst_payload", "ip_id_fixed"],
         outcome_packet={"payload_hex": "01020304050607080900", "ip_id": 1, "flags": "RA", "df": False}),
     "rst_injection", "henan_firewall"),
    (rec("rst", tells=["ttl_mismatch", "rst_burst"], rst_count=3,
         outcome_packet={"payload_hex": None, "ip_id": 4242, "flags": "RA", "df": True}), "rst_injection", "gfw"),
    (rec("silence", ch_retransmissions=3, ch_acked=False), "blackhole", None),
    (rec("silence", ch_retransmissions=0, ch_acked=False), None, None),  # a capture of hellos only
    (rec("silence", ch_retransmissions=3, ch_acked=False, baseline=None), None, None),  # no handshake seen
    (rec(vantage="server", client_rst={"tells": ["ttl_mismatch", "rst_burst"]}), "rst_injection", None),
    (rec(vantage="server", client_rst={"tells": ["timestamps_missing", "rst_burst"]}), None, None),
])
def test_rule(record: dict[str, Any], pattern: str | None, provider: str | None) -> None:
    got_pattern, got_provider, _ = verdict(record)
    assert (got_pattern, got_provider) == (pattern, provider)


@pytest.mark.parametrize(("issuer", "fires"), [
    ("CN=mitmproxy,O=mitmproxy", True),
    ("CN=Zscaler Intermediate Root CA (zscaler.net),O=Zscaler Inc.", True),
    ("CN=Fortinet_CA_SSL,O=Fortinet", True),
    ("CN=Sophos SHA256 MCS Root CA3,O=Sophos Ltd", False),  # a vendor's CA for its own service
    ("CN=tlsprobe demo intermediate CA", False),  # a private PKI is not interception
])
def test_known_interception_ca(issuer: str, fires: bool) -> None:
    r = rec(certificate={"chain_verified": False})
    r["certificates"] = [{"issuer": issuer}]
    assert (verdict(r)[0] == "certificate_substitution") is fires
    r["evidence"]["certificate"] = {"chain_verified": True}
    assert verdict(r)[0] is None
