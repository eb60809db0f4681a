"""JA4S (server) fingerprint.

JA4+ methods other than JA4 (here: JA4S) are Copyright (c) 2023, FoxIO, LLC and are
licensed under the FoxIO License 1.1 (non-commercial use; see
https://github.com/FoxIO-LLC/ja4/blob/main/LICENSE), not under tlsprobe's BSD-3-Clause.

The FoxIO JA4S text was withdrawn; this follows FoxIO's reference tools:
``{t|q}{version}{extension count:02}{alpn}_{cipher:04x}_{sha256[:12] of extensions in wire order}``.
"""

from __future__ import annotations

from tlsprobe.fingerprint.ja4 import alpn_code, sha12, version_code
from tlsprobe.model import ServerHello


def _parts(sh: ServerHello, transport: str) -> tuple[str, str, str]:
    exts = sh.extension_types
    a = f"{transport}{version_code(sh.version)}{min(len(exts), 99):02d}{alpn_code(sh.alpn_raw)}"
    return a, f"{sh.cipher_suite:04x}", ",".join(f"{e:04x}" for e in exts)


def ja4s(sh: ServerHello, transport: str = "t") -> str:
    a, cipher, exts = _parts(sh, transport)
    return f"{a}_{cipher}_{sha12(exts)}"


def ja4s_r(sh: ServerHello, transport: str = "t") -> str:
    a, cipher, exts = _parts(sh, transport)
    return f"{a}_{cipher}_{exts}"
