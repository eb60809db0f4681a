"""Documented differences between tlsprobe and the reference tools on ../shared/corpus.

Each case names the flows and fields it covers and a check that proves the difference is
exactly the documented one (and nothing else).  A case is an explanation, not a mute
button: if its check fails, or it covers nothing any more, the corpus test fails.
docs/fingerprints.md describes every case under the same id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Check = Callable[[dict[str, Any], dict[str, Any], str], bool]


def _split(fp: str) -> list[str]:
    return fp.split("_")


def _sha12(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _alpn_slot_only(ours: dict[str, Any], theirs: dict[str, Any], field: str) -> bool:
    """Same fingerprint but the ALPN characters: reference '99', spec hex rule for ours."""
    o, t = ours[field], theirs[field]
    first = ours["client_hello"]["alpn_hex"][0]
    hex_rule = first[0] + first[-1]
    return t[8:10] == "99" and o[8:10] == hex_rule and o[:8] == t[:8] and o[10:] == t[10:]


def _alpn_text(ours: dict[str, Any], theirs: dict[str, Any], field: str) -> bool:
    """tshark shows invalid UTF-8 as U+FFFD; tlsprobe keeps the bytes visible as \\xNN."""
    decoded = [bytes(s, "utf-8").decode("unicode_escape").encode("latin-1").decode("utf-8", "replace")
               for s in ours["alpn"]]
    return bool(decoded == theirs["alpn"])


def _ja4o_only_sni_alpn(ours: dict[str, Any], theirs: dict[str, Any], field: str) -> bool:
    """Reference zeroes JA4_o's c when nothing is left after dropping SNI/ALPN; the spec
    keeps SNI and ALPN in JA4_o, so the list is not empty and is hashed."""
    o, t = _split(ours[field]), _split(theirs[field])
    raw_c = _split(ours["ja4_ro"])[2]
    return (o[:2] == t[:2] and t[2] == "000000000000" and raw_c in ("0000", "0010", "0000,0010", "0010,0000")
            and o[2] == _sha12(raw_c))


def _sigalgs_cert(ours: dict[str, Any], theirs: dict[str, Any], field: str) -> bool:
    """Reference appends signature_algorithms_cert (ext 50) values to the sigalg list."""
    if field in ("ja4_r", "ja4_ro"):
        o, t = ours[field], theirs[field]
        return t.startswith(o + ",") and 50 in ours["client_hello"]["extensions"]
    o, t = _split(ours[field]), _split(theirs[field])
    raw = theirs["ja4_r" if field == "ja4" else "ja4_ro"]
    return o[:2] == t[:2] and t[2] == _sha12("_".join(_split(raw)[2:]))


def _draft_server_hello(ours: dict[str, Any], theirs: dict[str, Any], field: str) -> bool:
    """Reference reads a pre-draft-22 ServerHello (no session_id, no compression) with the
    TLS 1.2 layout, so its cipher is two bytes from inside the extensions; tlsprobe parses
    the draft layout cleanly."""
    sh = ours["server_hello"]
    return (
        sh is not None
        and sh["legacy_version"] == "1.3"
        and "tls.hello.malformed" not in ours["anomalies"]
        and _split(theirs["ja4s"])[1] != sh["cipher"][2:]
    )


def _ja4s_r_last_hello(ours: dict[str, Any], theirs: dict[str, Any], field: str) -> bool:
    """Reference's JA4S hash covers the first ServerHello (the HRR) but its raw form the
    last one; tlsprobe's raw form matches the reference's own hash."""
    ext_list = _split(ours["ja4s_r"])[2]
    return _split(theirs["ja4s"])[2] == _sha12(ext_list) and sorted(_split(theirs[field])[2].split(",")) == sorted(
        ext_list.split(",")
    )


def _tls13_certificates_encrypted(ours: dict[str, Any], theirs: dict[str, Any], field: str) -> bool:
    """The reference decrypted a TLS 1.3 handshake with the key log embedded in the pcapng
    (Decryption Secrets Block); tlsprobe does not decrypt, so it sees no Certificate message."""
    sh = ours["server_hello"]
    return sh is not None and sh["version"] == "1.3" and ours["certificates"] == [] and bool(theirs[field])


@dataclass(frozen=True)
class Divergence:
    case: str
    capture: str  # folder/file
    src_port: int
    fields: tuple[str, ...]
    check: Check


DIVERGENCES = [
    *[
        Divergence("ja4o-sni-alpn-only", cap, port, ("ja4_o",), _ja4o_only_sni_alpn)
        for cap, port in [
            ("arkime/arkime_synthetic.pcap", 56006), ("arkime/arkime_synthetic.pcap", 49601),
            ("arkime/https3-301-get.pcap", 62599), ("foxio-ja4/https3-301-get.pcap", 62599),
            ("arkime/socks-https-example.pcap", 53554), ("arkime/socks-https-example.pcap", 53555),
            ("arkime/socks-https-example.pcap", 53556), ("foxio-ja4/socks-https-example.pcap", 53554),
            ("foxio-ja4/socks-https-example.pcap", 53555), ("foxio-ja4/socks-https-example.pcap", 53556),
        ]
    ],
    Divergence("alpn-non-alnum", "foxio-ja4/tls-non-ascii-alpn.pcapng", 50112,
               ("ja4", "ja4_r", "ja4_o", "ja4_ro"), _alpn_slot_only),
    Divergence("alpn-invalid-utf8-text", "foxio-ja4/tls-non-ascii-alpn.pcapng", 50112, ("alpn",), _alpn_text),
    Divergence("sigalgs-from-ext13-only", "zeek/openjdk-25.0.2-zeek.org.pcap", 55058,
               ("ja4", "ja4_r", "ja4_o", "ja4_ro"), _sigalgs_cert),
    Divergence("tls13-draft-server-hello", "suricata-verify/tls__tls13-draft14.pcap", 54049,
               ("ja3s", "ja4s", "ja4s_r"), _draft_server_hello),
    Divergence("ja4x-tls13-encrypted", "foxio-ja4/http2-with-cookies.pcapng", 58847, ("ja4x",),
               _tls13_certificates_encrypted),
    Divergence("ja4s-hrr-raw", "suricata-verify/tls__tls13-draft22.pcap", 41752, ("ja4s_r",), _ja4s_r_last_hello),
]


def find(capture: str, src_port: int, field: str) -> Divergence | None:
    for dv in DIVERGENCES:
        if dv.capture == capture and dv.src_port == src_port and field in dv.fields:
            return dv
    return None
