"""All fingerprints of a hello, memoised on the fields they read.

Handshakes from the same client software share their fingerprint inputs (only random,
session id and key shares differ), so a capture holds far fewer distinct inputs than
handshakes; the cache turns the repeat cost into one dictionary lookup.
"""

from __future__ import annotations

from typing import Any

from tlsprobe.fingerprint.ja3 import ja3_string, ja3s_string, md5_hex
from tlsprobe.fingerprint.ja4 import Ja4Parts
from tlsprobe.fingerprint.ja4plus import ja4s, ja4s_r
from tlsprobe.limits import FINGERPRINT_CACHE_MAX_ITEMS as MAX_ITEMS
from tlsprobe.limits import FINGERPRINT_CACHE_SIZE as CACHE_SIZE
from tlsprobe.model import ClientHello, ServerHello

# Distinct inputs remembered; a full cache is simply emptied.  Hellos with huge lists are
# not cached at all, so an entry stays ~1 KB whatever the input.

_client: dict[tuple[Any, ...], dict[str, str | None]] = {}
_server: dict[tuple[Any, ...], dict[str, str | None]] = {}


def client_fingerprints(ch: ClientHello, prefix: str = "t") -> dict[str, str | None]:
    """ja3, ja3_string, ja4, ja4_r, ja4_o, ja4_ro of a ClientHello (do not mutate)."""
    key = (
        prefix, ch.sslv2, ch.legacy_version, ch.cipher_suites, ch.extension_types, ch.supported_groups,
        ch.ec_point_formats, ch.signature_algorithms, ch.supported_versions, ch.alpn_raw[:1],
    )
    fp = _client.get(key)
    if fp is None:
        parts = Ja4Parts(ch, prefix)
        j3 = None if ch.sslv2 else ja3_string(ch)
        fp = {
            "ja3": md5_hex(j3) if j3 is not None else None,
            "ja3_string": j3,
            "ja4": parts.ja4(),
            "ja4_r": parts.ja4_r(),
            "ja4_o": parts.ja4_o(),
            "ja4_ro": parts.ja4_ro(),
        }
        if len(ch.cipher_suites) + len(ch.extension_types) + len(ch.supported_groups) + len(
            ch.signature_algorithms
        ) <= MAX_ITEMS:
            if len(_client) >= CACHE_SIZE:
                _client.clear()
            _client[key] = fp
    return fp


def server_fingerprints(sh: ServerHello | None, prefix: str = "t") -> dict[str, str | None]:
    """ja3s, ja3s_string, ja4s, ja4s_r of a ServerHello (all None without one)."""
    if sh is None:
        return {"ja3s": None, "ja3s_string": None, "ja4s": None, "ja4s_r": None}
    key = (prefix, sh.legacy_version, sh.cipher_suite, sh.extension_types, sh.selected_version, sh.alpn_raw)
    fp = _server.get(key)
    if fp is None:
        j3s = ja3s_string(sh)
        fp = {"ja3s": md5_hex(j3s), "ja3s_string": j3s, "ja4s": ja4s(sh, prefix), "ja4s_r": ja4s_r(sh, prefix)}
        if len(sh.extension_types) <= MAX_ITEMS:
            if len(_server) >= CACHE_SIZE:
                _server.clear()
            _server[key] = fp
    return fp
