"""JSON Lines: one ``HandshakeRecord.to_dict()`` object per line, always valid UTF-8."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TextIO

import orjson  # 5x faster than the json module on these records (docs/performance.md)


def _default(o: object) -> object:
    """Values ``to_dict()`` should not produce, kept readable instead of failing the run."""
    if isinstance(o, (bytes, bytearray, memoryview)):
        return bytes(o).hex()
    if isinstance(o, (set, frozenset)):
        return sorted(o, key=str)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_default).encode


def _escape(c: str) -> str:
    """A JSON escape for a non-printable character inside a string."""
    n = ord(c)
    if 0xD800 <= n <= 0xDFFF:
        return "\\ufffd"  # a lone surrogate: not valid UTF-8, nor valid in strict JSON
    if n <= 0xFFFF:
        return f"\\u{n:04x}"
    n -= 0x10000
    return f"\\u{0xD800 + (n >> 10):04x}\\u{0xDC00 + (n & 0x3FF):04x}"


def dumps_line(record: Mapping[str, Any]) -> str:
    """``record`` as one line of JSON (no newline), valid UTF-8 and safe to ``cat``.

    Non-ASCII text stays readable, but characters that are not printable - C1
    controls, bidi overrides and other format characters, line separators - are written
    as ``\\uXXXX`` escapes (same JSON value, inert on a terminal).  Lone surrogates,
    which UTF-8 cannot carry and strict parsers reject, become U+FFFD; the record's
    ``*_hex`` fields keep the raw bytes.
    """
    try:
        line = orjson.dumps(record, default=_default).decode()
    except TypeError:  # a lone surrogate (not UTF-8) or a value orjson refuses: the stdlib path
        line = _encode(record)
    if line.isascii() or line.isprintable():  # json already escaped ASCII controls
        return line
    return "".join(c if c.isprintable() else _escape(c) for c in line)


class JsonlSink:
    """Writes each record as a JSON object on its own line."""

    def __init__(self, stream: TextIO, *, flush: bool = False) -> None:
        self.stream = stream
        self.flush = flush

    def write(self, record: Mapping[str, Any]) -> None:
        self.write_encoded(dumps_line(record), record)

    def write_encoded(self, line: str, brief: Mapping[str, Any]) -> None:
        """Write a line already made by :func:`dumps_line` (by a worker process)."""
        self.stream.write(line + "\n")
        if self.flush:
            self.stream.flush()

    def close(self) -> None:
        self.stream.flush()
