"""Error tree.

    TlsprobeError                 base of every error this package raises on purpose
    +-- CaptureError              a capture cannot be opened or is not a capture at all
    +-- WireError                 a sans-IO parser met bytes that break its format

Parsers return a record, ``None`` ("need more bytes") or raise ``WireError``;
anything else escaping a parser is a bug.  ``CaptureError`` is the only error the
CLI turns into a non-zero exit: damage inside a readable capture becomes anomalies.
"""

from __future__ import annotations


class TlsprobeError(Exception):
    """Base class of the errors tlsprobe raises deliberately."""


class CaptureError(TlsprobeError):
    """The input cannot be read as a packet capture (missing, unreadable, wrong format)."""


class WireError(TlsprobeError):
    """Bytes on the wire violate the format being parsed.

    ``code`` is a stable anomaly code (see :mod:`tlsprobe.anomalies`).
    """

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail
