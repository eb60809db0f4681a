"""CSV: one flat row per handshake, every wire string made safe for spreadsheets."""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

from tlsprobe.text import csv_safe

Row = Mapping[str, Any]


def _wire(key: str) -> Callable[[Row], str]:
    return lambda r: csv_safe(_str(r.get(key)))


def _plain(key: str) -> Callable[[Row], object]:
    return lambda r: _cell(r.get(key))


def _nested(outer: str, key: str) -> Callable[[Row], str]:
    def get(r: Row) -> str:
        sub = r.get(outer)
        return csv_safe(_str(sub.get(key))) if isinstance(sub, Mapping) else ""

    return get


def _joined(key: str) -> Callable[[Row], str]:
    def get(r: Row) -> str:
        v = r.get(key)
        if not v:
            return ""
        if isinstance(v, str):
            return csv_safe(v)
        return csv_safe(";".join(_str(x) for x in v))

    return get


def _leaf_subject(r: Row) -> str:
    certs = r.get("certificates")
    if certs and isinstance(certs[0], Mapping):
        return csv_safe(_str(certs[0].get("subject")))
    return ""


def _str(v: object) -> str:
    return "" if v is None else str(v)


def _cell(v: object) -> object:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return v
    return csv_safe(str(v))


def _verdict(key: str) -> Callable[[Row], object]:
    """A key of the ``interception`` verdict (empty when there is none)."""
    def get(r: Row) -> object:
        v = r.get("interception")
        if not isinstance(v, Mapping):
            return ""
        x = v.get(key)
        if isinstance(x, (list, tuple)):
            return csv_safe(";".join(_str(i) for i in x))
        return _cell(x)

    return get


def _server_alpn(r: Row) -> str:
    sh = r.get("server_hello")
    return csv_safe(_str(sh.get("alpn"))) if isinstance(sh, Mapping) else ""


#: Column name -> how to get it from a record, in output order.  New columns are only
#: ever appended, so a column's position keeps its meaning (docs/output.md).
COLUMNS: dict[str, Callable[[Row], object]] = {
    "ts": lambda r: f"{r['ts']:.6f}" if isinstance(r.get("ts"), (int, float)) else "",
    "src_ip": _wire("src_ip"),
    "src_port": _plain("src_port"),
    "dst_ip": _wire("dst_ip"),
    "dst_port": _plain("dst_port"),
    "transport": _wire("transport"),
    "non_standard_port": _plain("non_standard_port"),
    "sni": _wire("sni"),
    "alpn": _joined("alpn"),
    "tls_version": _wire("tls_version"),
    "ja3": _wire("ja3"),
    "ja4": _wire("ja4"),
    "ja4_r": _wire("ja4_r"),
    "ja3s": _wire("ja3s"),
    "ja4s": _wire("ja4s"),
    "server_version": _nested("server_hello", "version"),
    "server_cipher": _nested("server_hello", "cipher"),
    "server_alpn": _server_alpn,
    "cert_subject": _leaf_subject,
    "client_hello_segments": _plain("client_hello_segments"),
    "anomalies": _joined("anomalies"),
    "capture": _wire("capture"),
    "outcome": _wire("outcome"),
    "pattern": _verdict("pattern"),
    "provider": _verdict("provider"),
    "confidence": _verdict("confidence"),
    "rule_ids": _verdict("rule_ids"),
}


class CsvSink:
    """Writes a header row, then one row per record (RFC 4180 quoting)."""

    def __init__(self, stream: TextIO, *, flush: bool = False,
                 columns: Sequence[str] = tuple(COLUMNS)) -> None:
        self.stream = stream
        self.flush = flush
        self._getters = [COLUMNS[c] for c in columns]
        self._writer = csv.writer(stream)
        self._writer.writerow(columns)

    def write(self, record: Mapping[str, Any]) -> None:
        self._writer.writerow([get(record) for get in self._getters])
        if self.flush:
            self.stream.flush()

    def close(self) -> None:
        self.stream.flush()
