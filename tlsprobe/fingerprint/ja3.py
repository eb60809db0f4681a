"""JA3 and JA3S as the salesforce reference computes them.

Decimal values in wire order, GREASE removed from ciphers, extensions and groups, MD5 of
the string.  The version is the ClientHello's legacy version (ServerHello's for JA3S).
"""

from __future__ import annotations

import hashlib

from tlsprobe.model import GREASE, ClientHello, ServerHello


def _join(values: tuple[int, ...] | list[int] | bytes) -> str:
    return "-".join([str(v) for v in values if v not in GREASE])


def ja3_string(ch: ClientHello) -> str:
    """``SSLVersion,Ciphers,Extensions,EllipticCurves,EllipticCurvePointFormats``."""
    return ",".join(
        (
            str(ch.legacy_version),
            _join(ch.cipher_suites),
            _join(ch.extension_types),
            _join(ch.supported_groups),
            "-".join([str(b) for b in ch.ec_point_formats]),
        )
    )


def ja3s_string(sh: ServerHello) -> str:
    """``SSLVersion,Cipher,Extensions`` (extensions in wire order)."""
    return f"{sh.legacy_version},{sh.cipher_suite},{_join(sh.extension_types)}"


def md5_hex(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()
