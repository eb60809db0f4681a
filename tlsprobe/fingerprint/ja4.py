"""JA4 (client) from FoxIO's specification (technical_details/JA4.md).

Copyright (c) 2023, FoxIO, LLC.  JA4 is licensed BSD-3-Clause.

Where the reference tools differ from the specification tlsprobe follows the
specification; docs/fingerprints.md lists each case.
"""

from __future__ import annotations

import hashlib

from tlsprobe.model import EXT_ALPN, EXT_SERVER_NAME, GREASE, ClientHello

EMPTY_HASH = "000000000000"

_JA4_VERSIONS = {
    0x0304: "13",
    0x0303: "12",
    0x0302: "11",
    0x0301: "10",
    0x0300: "s3",
    0x0002: "s2",
    0xFEFF: "d1",
    0xFEFD: "d2",
    0xFEFC: "d3",
}


def version_code(version: int) -> str:
    """Two characters for a protocol version; unknown versions (drafts too) are ``00``."""
    return _JA4_VERSIONS.get(version, "00")


def _alnum(b: int) -> bool:
    return 0x30 <= b <= 0x39 or 0x41 <= b <= 0x5A or 0x61 <= b <= 0x7A


def alpn_code(first: bytes | None) -> str:
    """First and last character of the first ALPN value, per the spec.

    Empty or absent: ``00``.  One byte: that character twice.  If the first or last byte
    is not ASCII alphanumeric, the first and last characters of its hex form.
    """
    if not first:
        return "00"
    if not (_alnum(first[0]) and _alnum(first[-1])):
        h = first.hex()
        return h[0] + h[-1]
    return chr(first[0]) + chr(first[-1])


def sha12(text: str) -> str:
    """The first 12 lowercase hex characters of SHA-256, or twelve zeros for ``""``."""
    if not text:
        return EMPTY_HASH
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# 4-digit hex of every 16-bit value, precomputed: fingerprints format ~60 values each.
HEX4 = [f"{v:04x}" for v in range(0x10000)]


def _hex_list(values: list[int] | tuple[int, ...]) -> str:
    """Comma-joined 4-digit hex of 16-bit values."""
    return ",".join(map(HEX4.__getitem__, values))


class Ja4Parts:
    """The three sections of JA4 in raw form, sorted and original order."""

    __slots__ = ("a", "ciphers", "ciphers_sorted", "exts_orig", "exts_sorted", "sigalgs")

    def __init__(self, ch: ClientHello, transport: str = "t") -> None:
        ciphers = [c for c in ch.cipher_suites if c not in GREASE]
        exts = [e for e in ch.extension_types if e not in GREASE]
        alpn_first = ch.alpn_raw[0] if ch.alpn_raw else None
        sni = "d" if EXT_SERVER_NAME in exts else "i"
        self.a = (
            f"{transport}{version_code(_client_version(ch))}{sni}"
            f"{min(len(ciphers), 99):02d}{min(len(exts), 99):02d}{alpn_code(alpn_first)}"
        )
        self.ciphers = _hex_list(ciphers)
        self.ciphers_sorted = _hex_list(sorted(ciphers))
        self.exts_orig = _hex_list(exts)
        self.exts_sorted = _hex_list(sorted(e for e in exts if e not in (EXT_SERVER_NAME, EXT_ALPN)))
        self.sigalgs = _hex_list([s for s in ch.signature_algorithms if s not in GREASE])

    def _c(self, exts: str) -> str:
        return f"{exts}_{self.sigalgs}" if self.sigalgs else exts

    def ja4(self) -> str:
        c = sha12(self._c(self.exts_sorted)) if self.exts_sorted else EMPTY_HASH
        return f"{self.a}_{sha12(self.ciphers_sorted)}_{c}"

    def ja4_r(self) -> str:
        return f"{self.a}_{self.ciphers_sorted}_{self._c(self.exts_sorted)}"

    def ja4_o(self) -> str:
        c = sha12(self._c(self.exts_orig)) if self.exts_orig else EMPTY_HASH
        return f"{self.a}_{sha12(self.ciphers)}_{c}"

    def ja4_ro(self) -> str:
        return f"{self.a}_{self.ciphers}_{self._c(self.exts_orig)}"


def _client_version(ch: ClientHello) -> int:
    """supported_versions' highest non-GREASE value, else the hello's legacy version."""
    return ch.max_version
