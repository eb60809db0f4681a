"""JA4+ fingerprints: JA4S, JA4T, JA4TS, JA4L and JA4X.

JA4+ methods other than JA4 are Copyright (c) 2023, FoxIO, LLC and are licensed under
the FoxIO License 1.1 (non-commercial use; see
https://github.com/FoxIO-LLC/ja4/blob/main/LICENSE), not under tlsprobe's BSD-3-Clause.

- JA4S: the FoxIO JA4S text was withdrawn; this follows FoxIO's reference tools:
  ``{t|q}{version}{extension count:02}{alpn}_{cipher:04x}_{sha256[:12] of extensions in wire order}``.
- JA4T / JA4TS (technical_details/JA4T.md): ``{window}_{option kinds}_{mss}_{window scale}``
  of the client's SYN / the server's SYN-ACK; a missing part (and a window scale of 0) is ``00``.
- JA4L (technical_details/JA4L.md): ``{latency in microseconds // 2}_{TTL}``.
- JA4X (technical_details/JA4X.md): truncated SHA-256 of the issuer RDN OIDs, subject RDN
  OIDs and extension OIDs of one certificate, each as hex of the OID's DER contents, in order.
"""

from __future__ import annotations

from tlsprobe.fingerprint.ja4 import alpn_code, sha12, version_code
from tlsprobe.model import ServerHello

TCP_OPT_EOL, TCP_OPT_NOP, TCP_OPT_MSS, TCP_OPT_WSCALE = 0, 1, 2, 3


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


def tcp_options(raw: bytes) -> tuple[list[int], int | None, int | None]:
    """Every option kind in order (NOP and each EOL byte included, as tshark lists them),
    the MSS and the window-scale shift (the last well-formed one of each, else None).

    Stops at an option whose length byte is missing, below 2 or past the end.
    """
    kinds: list[int] = []
    mss = wscale = None
    i, n = 0, len(raw)
    while i < n:
        kind = raw[i]
        kinds.append(kind)
        if kind in (TCP_OPT_EOL, TCP_OPT_NOP):
            i += 1
            continue
        if i + 1 >= n or raw[i + 1] < 2 or i + raw[i + 1] > n:
            break
        length = raw[i + 1]
        if kind == TCP_OPT_MSS and length == 4:
            mss = (raw[i + 2] << 8) | raw[i + 3]
        elif kind == TCP_OPT_WSCALE and length == 3:
            wscale = raw[i + 2]
        i += length
    return kinds, mss, wscale


def ja4t(window: int, options: bytes) -> str:
    """JA4T of a SYN (or JA4TS of a SYN-ACK): raw window, option kinds, MSS, window scale."""
    kinds, mss, wscale = tcp_options(options)
    opts = "-".join(map(str, kinds)) or "00"
    return f"{window}_{opts}_{mss or 0:02d}_{wscale if wscale else '00'}"


def ja4l(earlier: float, later: float, ttl: int) -> str:
    """One side of JA4L: half the time between two packets in whole microseconds, and a TTL.

    Capture times are converted to integer microseconds first (as FoxIO's tool does);
    the halving truncates toward zero.
    """
    delta = round(later * 1_000_000) - round(earlier * 1_000_000)
    half = delta // 2 if delta >= 0 else -((-delta) // 2)
    return f"{half}_{ttl}"


def ja4x(issuer: tuple[bytes, ...], subject: tuple[bytes, ...], extensions: tuple[bytes, ...]) -> str:
    """JA4X of one certificate from the DER contents of its issuer RDN attribute OIDs, subject
    RDN attribute OIDs and extension OIDs, each list in certificate order."""
    return "_".join(sha12(",".join(oid.hex() for oid in part)) for part in (issuer, subject, extensions))


def ja4x_r(issuer: tuple[bytes, ...], subject: tuple[bytes, ...], extensions: tuple[bytes, ...]) -> str:
    """The raw form of JA4X: the three comma-joined hex OID lists."""
    return "_".join(",".join(oid.hex() for oid in part) for part in (issuer, subject, extensions))
