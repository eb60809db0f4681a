"""Sinks: where handshake records go (JSON Lines, CSV, a terminal table) plus the run summary.

Every sink takes the ``HandshakeRecord.to_dict()`` mapping, one call per record, and
never closes the stream it was given (the caller owns it)::

    sink = make_sink("jsonl", sys.stdout)
    for rec in iter_records(paths):
        sink.write(rec.to_dict())
    sink.close()

Wire strings are attacker controlled: each sink passes them through the matching
:mod:`tlsprobe.text` helper before they reach a terminal or a spreadsheet.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, TextIO

FORMATS = ("table", "jsonl", "csv")


class Sink(Protocol):
    """Receives handshake records one at a time."""

    def write(self, record: Mapping[str, Any]) -> None:
        """Output one record (a ``HandshakeRecord.to_dict()`` mapping)."""

    def close(self) -> None:
        """Flush whatever is pending; the stream itself stays open."""


def make_sink(fmt: str, stream: TextIO, *, flush: bool = False) -> Sink:
    """A sink of format ``fmt`` (one of :data:`FORMATS`) writing to ``stream``.

    ``flush`` pushes every record out at once (for ``tail -f`` and pipes).
    """
    if fmt == "jsonl":
        from tlsprobe.sinks.jsonl import JsonlSink

        return JsonlSink(stream, flush=flush)
    if fmt == "csv":
        from tlsprobe.sinks.csv import CsvSink

        return CsvSink(stream, flush=flush)
    if fmt == "table":
        from tlsprobe.sinks.table import TableSink

        return TableSink(stream, flush=flush)
    raise ValueError(f"unknown output format {fmt!r} (expected one of {', '.join(FORMATS)})")


__all__ = ["FORMATS", "Sink", "make_sink"]
