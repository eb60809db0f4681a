"""The cross-flow context (tlsprobe.detect.context) on synthetic flows whose every field is
chosen here: a reset one hop off a server that never varies, the same over IPv6, a
server that wanders (a hard negative), a single flow alone (no profile: no verdict),
user trust roots, the ASN database, ICMP errors, bounds.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import struct
from pathlib import Path
from typing import Any

import pytest

from tests.factory import client_hello_body, handshake, pcap, record, sni_ext
from tlsprobe import Analyzer, iter_records
from tlsprobe.decode.packet import PROTO_ICMP, Decoder
from tlsprobe.detect.context import Context, ContextOptions, registrable
from tlsprobe.limits import CONTEXT_MAX_SERVERS

T0 = 1_700_000_000.0
RTT = 0.040
V4 = (bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
V6 = (ipaddress.IPv6Address("fd00::1").packed, ipaddress.IPv6Address("fd00::2").packed)


def _hello(name: str) -> bytes:
    return record(22, handshake(1, client_hello_body(extensions=[sni_ext(name.encode())])))


def _frame(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int, ttl: int,
           payload: bytes = b"", label: int = 0) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 64240, 0, 0) + payload
    if len(src) == 4:
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, ttl, 6, 0, src, dst)
        return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + tcp
    ip6 = struct.pack("!IHBB16s16s", (6 << 28) | label, len(tcp), 6, ttl, src, dst)
    return b"\x02" * 6 + b"\x04" * 6 + b"\x86\xdd" + ip6 + tcp


def _flow(t: float, cport: int, name: str, synack_ttl: int, reply: tuple[str, int] | None,
          ips: tuple[bytes, bytes] = V4, label: int = 0x12345) -> list[tuple[float, bytes]]:
    """A client-side view: SYN, SYN-ACK after one RTT, ACK, hello, then either a reset
    (``("rst", ttl)``: flags RA, DF and IP ID as the server's own, no options, one RTT
    after the hello - only its TTL can give it away) or the server's ServerHello."""
    c, s = ips
    hello = _hello(name)
    out = [
        (t, _frame(c, s, cport, 8443, 1000, 0, 0x02, 64, label=0x777)),
        (t + RTT, _frame(s, c, 8443, cport, 5000, 1001, 0x12, synack_ttl, label=label)),
        (t + RTT + 0.0001, _frame(c, s, cport, 8443, 1001, 5001, 0x10, 64, label=0x777)),
        (t + RTT + 0.0002, _frame(c, s, cport, 8443, 1001, 5001, 0x18, 64, hello, label=0x777)),
    ]
    end = 1001 + len(hello)
    if reply is None:
        body = struct.pack("!H", 0x0303) + b"\x11" * 32 + b"\x00" + b"\x13\x01\x00" + b"\x00\x00"
        sh = record(22, handshake(2, body))
        out.append((t + 2 * RTT + 0.0003, _frame(s, c, 8443, cport, 5001, end, 0x18, synack_ttl, sh, label=label)))
        # more of the server's flight: the record closes once the handshake is in, having
        # kept the segments up to then (each a TTL reading for the profile)
        more = record(23, bytes(200))
        out.append((t + 2 * RTT + 0.00025, _frame(s, c, 8443, cport, 5001 + len(sh), end, 0x18, synack_ttl, more,
                                                   label=label)))
    else:
        rst_label = 0 if reply[0] == "rst0" else label
        out.append((t + 2 * RTT + 0.0003, _frame(s, c, 8443, cport, 5001, end, 0x14, reply[1], label=rst_label)))
    return out


def _analyze(tmp_path: Path, flows: list[list[tuple[float, bytes]]], **context: Any) -> list[dict[str, Any]]:
    packets = sorted((p for f in flows for p in f), key=lambda p: p[0])
    path = tmp_path / "c.pcap"
    # factory.pcap spaces frames by 1 ms from t0: write our own timestamps instead
    data = bytearray(pcap([], t0=T0))
    for ts, frame in packets:
        data += struct.pack("<IIII", int(ts), round((ts % 1) * 1e6), len(frame), len(frame)) + frame
    path.write_bytes(bytes(data))
    an = Analyzer(context=ContextOptions(**context).make() if context else None)
    return [r.to_dict() for r in iter_records([str(path)], analyzer=an)]


def _verdict(rec: dict[str, Any]) -> str | None:
    return (rec["interception"] or {}).get("pattern")


@pytest.mark.parametrize("ips", [V4, V6], ids=["ipv4", "ipv6"])
def test_reset_one_hop_off_a_stable_server_is_injected(tmp_path: Path, ips: tuple[bytes, bytes]) -> None:
    """Four answered flows (12 TTL readings, enough for a profile) and then a reset with
    a TTL one hop off, and nothing else unlike the server's."""
    flows = [_flow(T0 + i, 40000 + i, f"ok{i}.example", 63, None, ips) for i in range(4)]
    flows.append(_flow(T0 + 5, 40010, "blocked.example", 63, ("rst", 64), ips))
    recs = {r["sni"]: r for r in _analyze(tmp_path, flows)}
    rec = recs["blocked.example"]
    assert _verdict(rec) == "rst_injection", rec["evidence"]["context"]
    assert "rst-ttl-foreign" in rec["interception"]["rule_ids"]
    assert rec["evidence"]["context"]["ttl"] == {"event": 64, "genuine": [63], "spread": 0, "profiled": True,
                                                 "foreign": True}
    assert any("outside the server's genuine TTLs [63]" in e for e in rec["interception"]["evidence"])
    assert all(_verdict(recs[f"ok{i}.example"]) is None for i in range(3))


@pytest.mark.parametrize("ips", [V4, V6], ids=["ipv4", "ipv6"])
def test_one_flow_alone_is_not_enough(tmp_path: Path, ips: tuple[bytes, bytes]) -> None:
    """Without other flows of the server a TTL one hop off could be a route change."""
    rec = _analyze(tmp_path, [_flow(T0, 40000, "blocked.example", 63, ("rst", 64), ips)])[0]
    assert rec["outcome"] == "rst" and _verdict(rec) is None
    assert rec["evidence"]["context"]["ttl"]["profiled"] is False


def test_a_wandering_server_needs_more(tmp_path: Path) -> None:
    """Genuine packets over 62-64: its own reset with 64 or 65 is not foreign, 70 is."""
    flows = [_flow(T0 + i, 40000 + i, f"ok{i}.example", ttl, None) for i, ttl in enumerate((62, 63, 64, 63))]
    flows.append(_flow(T0 + 6, 40010, "unknown-name.example", 63, ("rst", 65)))
    flows.append(_flow(T0 + 7, 40011, "blocked.example", 63, ("rst", 70)))
    recs = {r["sni"]: r for r in _analyze(tmp_path, flows)}
    assert _verdict(recs["unknown-name.example"]) is None, recs["unknown-name.example"]["evidence"]["context"]
    assert recs["unknown-name.example"]["evidence"]["context"]["ttl"]["spread"] == 2
    assert _verdict(recs["blocked.example"]) == "rst_injection"


def test_ipv6_flow_label_is_a_tell(tmp_path: Path) -> None:
    """IPv6 has no IP ID and no DF: a reset whose flow label is not the connection's."""
    rec = _analyze(tmp_path, [_flow(T0, 40000, "blocked.example", 63, ("rst0", 52), V6)])[0]
    assert "flow_label_mismatch" in rec["evidence"]["tells"]
    assert rec["evidence"]["outcome_packet"]["flow_label"] == 0
    assert rec["evidence"]["baseline"]["flow_label"] == 0x12345
    assert _verdict(rec) == "rst_injection"  # TTL 11 off and the flow label: two marks


def test_records_are_held_until_the_flows_around_them_are_seen(tmp_path: Path) -> None:
    """The reset comes first; the server's other flows only afterwards, within the settle
    window: the reset is still judged against them."""
    flows = [_flow(T0, 40010, "blocked.example", 63, ("rst", 64))]
    flows += [_flow(T0 + 1 + i, 40000 + i, f"ok{i}.example", 63, None) for i in range(4)]
    recs = _analyze(tmp_path, flows)
    assert recs[-1]["sni"] == "blocked.example"  # emitted after the others
    assert _verdict(recs[-1]) == "rst_injection"


def test_asn_database_names_the_network_owner(tmp_path: Path) -> None:
    mmdb_writer = pytest.importorskip("mmdb_writer", reason="mmdb-writer (test extra) builds the database")
    from netaddr import IPSet

    db = tmp_path / "asn.mmdb"
    writer = mmdb_writer.MMDBWriter(ip_version=6, database_type="GeoLite2-ASN", ipv4_compatible=True)
    writer.insert_network(IPSet(["10.0.0.0/24"]), {"autonomous_system_number": 37963,
                                                   "autonomous_system_organization": "Hangzhou Alibaba Advertising"})
    writer.to_db_file(str(db))
    flows = [_flow(T0 + i, 40000 + i, f"ok{i}.example", 63, None) for i in range(4)]
    flows.append(_flow(T0 + 5, 40010, "blocked.example", 63, ("rst", 64)))
    recs = {r["sni"]: r for r in _analyze(tmp_path, flows, asn_db=str(db))}
    rec = recs["blocked.example"]
    assert rec["evidence"]["context"]["server_asn"] == {"number": 37963, "organization": "Hangzhou Alibaba Advertising"}
    assert "server 10.0.0.2 in AS37963 (Hangzhou Alibaba Advertising)" in rec["interception"]["evidence"]
    assert rec["interception"]["provider"] is None  # never attributed by the network owner alone
    assert recs["ok0.example"]["interception"] is None


def test_asn_database_errors_are_one_line(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from tlsprobe.cli import cli

    bad = tmp_path / "bad.mmdb"
    bad.write_bytes(b"not a database")
    for arg in (str(bad), str(tmp_path / "missing.mmdb")):
        r = CliRunner().invoke(cli, ["analyze", "--asn-db", arg, "pcaps/demo.pcap"])
        assert r.exit_code == 2, r.output
        assert "ASN database" in r.output and "Traceback" not in r.output


def _ca_and_leaf(name: str) -> tuple[bytes, bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.timezone.utc)
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "operator root")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name).public_key(leaf_key.public_key()).serial_number(2)
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return (ca.public_bytes(serialization.Encoding.PEM), leaf.public_bytes(serialization.Encoding.PEM),
            leaf.public_bytes(serialization.Encoding.DER))


def test_user_trust_verifies_private_chains_and_vouches_for_leaf_names() -> None:
    from tlsprobe.wire import x509 as tx

    ca_pem, leaf_pem, leaf_der = _ca_and_leaf("panel.corp.example")
    now = dt.datetime.now(dt.timezone.utc)
    try:
        assert tx.set_user_trust([]) == frozenset()
        assert tx.verify_chain([leaf_der], "panel.corp.example", now)["chain_verified"] is False
        assert tx.set_user_trust([ca_pem]) == frozenset()
        out = tx.verify_chain([leaf_der], "panel.corp.example", now)
        assert out["chain_verified"] is True and out["trusted_by"] == "user"
        assert tx.verify_chain([leaf_der], "other.example", now)["chain_verified"] is False  # name still checked
        assert tx.set_user_trust([leaf_pem]) == frozenset({"panel.corp.example"})
        with pytest.raises(ValueError):
            tx.set_user_trust([b"no certificate here"])
    finally:
        tx.set_user_trust([])


def test_vouched_name_with_another_chain_is_substitution() -> None:
    ctx = Context(trust_names=frozenset({"panel.corp.example"}))
    d: dict[str, Any] = {"kind": "tls", "transport": "tcp", "dst_ip": "10.0.0.2", "dst_port": 8443,
                         "src_ip": "10.0.0.1", "src_port": 40000, "ts": T0, "sni": "panel.corp.example",
                         "outcome": "server_hello",
                         "certificates": [{"issuer": "CN=someone else", "self_signed": False}],
                         "evidence": {"certificate": {"chain_verified": False}, "tells": []}}
    ctx.judge(d)
    assert d["evidence"]["context"]["certificate"]["vouched"] is True
    from tlsprobe.pipeline import builtin_rules

    verdict = builtin_rules().evaluate(d)
    assert verdict is not None and verdict["pattern"] == "certificate_substitution"
    assert "cert-vouched-name" in verdict["rule_ids"]


def test_trust_option_errors_are_one_line(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from tlsprobe.cli import cli

    empty = tmp_path / "empty.pem"
    empty.write_text("nothing")
    for arg in (str(empty), str(tmp_path / "missing.pem")):
        r = CliRunner().invoke(cli, ["analyze", "--trust", arg, "pcaps/demo.pcap"])
        assert r.exit_code == 2 and "--trust" in r.output and "Traceback" not in r.output


def test_icmp_error_is_decoded_as_the_packet_it_quotes() -> None:
    from tlsprobe.anomalies import AnomalyLog

    client, server, router = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]), bytes([10, 0, 0, 254])
    udp = struct.pack("!HHHH", 51000, 4433, 8 + 4, 0) + b"\xc0\x00\x00\x01"
    inner = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 63, 17, 0, client, server) + udp
    icmp = struct.pack("!BBHI", 3, 3, 0, 0) + inner
    outer = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 0, 0, 64, 1, 0, router, client) + icmp
    seg = Decoder(AnomalyLog()).decode(1, b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + outer, T0)
    assert seg is not None and seg.proto == PROTO_ICMP
    assert (seg.src, seg.dst, seg.sport, seg.dport) == (client, server, 51000, 4433)
    assert seg.flags == (3 << 8) | 3 and seg.window == 17 and seg.icmp_from == router


def test_profiles_are_bounded() -> None:
    ctx = Context()
    for i in range(CONTEXT_MAX_SERVERS + 50):
        ctx.observe({"dst_ip": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", "src_ip": "10.9.9.9", "src_port": i,
                     "ts": T0, "transport": "tcp", "outcome": "rst",
                     "evidence": {"baseline": {"ttl": 64}, "rtt_ms": 1.0, "vantage": "client"}})
    assert len(ctx.servers) == CONTEXT_MAX_SERVERS
    assert "10.0.0.0" not in ctx.servers  # least recently seen dropped first


def test_registrable_domain() -> None:
    assert registrable("a.b.example.com") == "example.com"
    assert registrable("www.shop.co.uk") == "shop.co.uk"
    assert registrable("10.0.0.2") == "10.0.0.2"
    assert registrable("localhost") == "localhost"


def _cert_record(cport: int, server: str, name: str, issuer: str, verified: bool) -> dict[str, Any]:
    return {"kind": "tls", "transport": "tcp", "dst_ip": server, "dst_port": 443, "src_ip": "10.9.9.9",
            "src_port": cport, "ts": T0 + cport, "sni": name, "outcome": "server_hello",
            "certificates": [{"issuer": issuer, "self_signed": False}],
            "evidence": {"certificate": {"chain_verified": verified, "leaf_matches_sni": True}, "tells": [],
                         "baseline": {"ttl": 57}, "rtt_ms": 30.0, "vantage": "client"}}


def test_an_issuer_minting_for_unrelated_domains_is_a_finding_and_one_organisation_is_not() -> None:
    ctx = Context()
    for i, name in enumerate(("www.shop-a.test", "mail.news-b.test", "login.games-c.example")):
        ctx.observe(_cert_record(41000 + i, f"10.1.{i}.2", name, "CN=Gateway CA X3", False))
    ctx.observe(_cert_record(41100, "10.1.9.2", "www.shop-a.test", "CN=Public CA", True))
    for i, name in enumerate(("vpn.corp.test", "wiki.corp.test", "git.corp.test", "mail.corp.test")):
        ctx.observe(_cert_record(42000 + i, "10.2.0.2", name, "CN=Corp Internal CA", False))
    found = [f for f in ctx.findings() if f["kind"] == "minting_issuer"]
    assert [(f["issuer"], f["names"], f["domains"], f["servers"], f["verified_elsewhere"]) for f in found] == [
        ("CN=Gateway CA X3", 3, 3, 3, 1)]
    # per record, on one server: the private CA of one organisation stays clean
    d = _cert_record(42010, "10.2.0.2", "jira.corp.test", "CN=Corp Internal CA", False)
    ctx.judge(d)
    assert d["evidence"]["context"]["certificate"]["minting"] is False


def test_a_server_retransmitting_before_its_fin_is_no_race(tmp_path: Path) -> None:
    """The server answers, closes, then resends its last data segment (a lost ACK): the
    resent bytes lie before its FIN, so they are not data after a close."""
    c, s = V4
    flow = _flow(T0, 40000, "ok.example", 63, None)
    sh_ts, sh = flow[-1]
    seq_after = 5001 + len(sh[54:])
    fin = _frame(s, c, 8443, 40000, seq_after, 1001 + len(_hello("ok.example")), 0x11, 63)
    flow += [(sh_ts + 0.001, fin), (sh_ts + 0.2, sh)]
    rec = _analyze(tmp_path, [flow])[0]
    assert rec["evidence"]["race"] is False and rec["interception"] is None
    # an injected reset at the expected sequence number, then the real answer: a race
    inj = _flow(T0 + 5, 40001, "blocked.example", 63, None)
    sh_ts, sh = inj[-1]
    rst = _frame(s, c, 8443, 40001, 5001, 1001 + len(_hello("blocked.example")), 0x14, 63)
    inj[-1] = (sh_ts - 0.03, rst)
    inj.append((sh_ts, sh))
    rec = _analyze(tmp_path, [inj])[0]
    assert rec["evidence"]["race"] is True and rec["interception"]["pattern"] == "rst_injection"


def test_a_fin_carrying_data_resent_is_no_race(tmp_path: Path) -> None:
    """Linux sends its last data with the FIN (FPA) and resends that segment when the ACK
    is lost: the bytes are the ones the FIN closed after, not new ones."""
    c, s = V4
    flow = _flow(T0, 40000, "ok.example", 63, None)
    sh_ts, sh = flow.pop()
    body = sh[54:]
    ack = 1001 + len(_hello("ok.example"))
    fpa = _frame(s, c, 8443, 40000, 5001, ack, 0x19, 63, body)
    flow += [(sh_ts, fpa), (sh_ts + 0.2, fpa)]
    rec = _analyze(tmp_path, [flow])[0]
    assert rec["outcome"] == "server_hello" and rec["evidence"]["race"] is False
