"""A readable, streaming table for a terminal.

rich's ``Table`` needs every row before it can size its columns, so this sink fixes the
column widths up front (from the terminal width) and writes each row as soon as its
record arrives: constant memory for any number of records.  rich is used for what it
is good at - terminal detection, colour support, ``NO_COLOR``, cell widths - and each
style is rendered to escape codes once, so a row costs a few string operations.

Every wire string goes through :func:`tlsprobe.text.terminal_safe` first.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from rich.cells import cell_len, set_cell_size
from rich.console import Console
from rich.style import Style
from rich.text import Text

from tlsprobe.text import ELLIPSIS, terminal_safe

TLS_PORT = 443
SEP = "  "
#: Width assumed when the output is not a terminal (a file or a pipe).
FILE_WIDTH = 240
#: SNI never grows wider than this, however wide the terminal.
MAX_SNI_WIDTH = 64

Row = Mapping[str, Any]


@dataclass(slots=True)
class Column:
    key: str
    header: str
    width: int
    min_width: int
    right: bool = False


def _columns() -> list[Column]:
    return [
        Column("time", "UTC time", 19, 8),
        Column("client", "client", 21, 15),
        Column("server", "server:port", 21, 15),
        Column("sni", "SNI", 32, 8),
        Column("alpn", "ALPN", 11, 4),
        Column("tls", "TLS", 5, 3),
        Column("ja4", "JA4", JA4_WIDTH, 10),
        Column("ja3", "JA3", 12, 8),
        Column("srv", "server hello", 12, 8),
        Column("outcome", "outcome", 12, 4),
        Column("verdict", "interception", 26, 6),
        Column("anom", "anom", 4, 4, right=True),
    ]


#: The JA4 is the value users copy most: it is never cut while the terminal is at
#: least this wide (every JA4 and JA4S is 36 characters).
JA4_WIDTH = 36

# Ways to make the table narrower, tried in order until it fits: (column, narrowest
# width for this step, or 0 to drop the column).  Every other column shrinks or goes
# before the JA4 is cut (docs/output.md, "Table"): on 80 columns the table shows
# server:port, SNI, the whole JA4 and the verdict; on 60, server:port and the JA4.
_SHRINK: list[tuple[str, int]] = [
    ("time", 8),
    ("verdict", 16),
    ("sni", 20),
    ("alpn", 4),
    ("ja3", 0),
    ("alpn", 0),
    ("srv", 0),
    ("outcome", 0),
    ("client", 15),
    ("server", 15),
    ("sni", 12),
    ("time", 0),
    ("tls", 0),
    ("client", 0),
    ("anom", 0),
    ("verdict", 12),
    ("sni", 8),
    ("verdict", 0),
    ("sni", 0),
    ("server", 0),
    ("ja4", 10),  # only a terminal narrower than the JA4 itself gets here
]


def layout(width: int) -> list[Column]:
    """The columns that fit in ``width`` cells, with their widths."""
    cols = _columns()

    def total() -> int:
        return sum(c.width for c in cols) + len(SEP) * (len(cols) - 1)

    for key, narrowest in _SHRINK:
        if total() <= width:
            break
        col = next((c for c in cols if c.key == key), None)
        if col is None:
            continue
        if narrowest == 0:
            cols.remove(col)
        else:
            col.width = max(narrowest, col.min_width, col.width - (total() - width))
    # Hand room left over back to shrunk columns, then to the SNI.
    natural = {c.key: c.width for c in _columns()}
    natural["sni"] = MAX_SNI_WIDTH
    for key in ("alpn", "time", "sni"):
        col = next((c for c in cols if c.key == key), None)
        spare = width - total()
        if col is not None and spare > 0:
            grown = min(natural[key], col.width + spare)
            if key != "time" or grown == natural[key]:  # the time is 8 or 19 wide
                col.width = grown
    return cols


def fit(s: str, width: int, right: bool = False) -> str:
    """``s`` padded or cut (with ``…``) to exactly ``width`` terminal cells."""
    n = cell_len(s)
    if n == width:
        return s
    if n < width:
        pad = " " * (width - n)
        return pad + s if right else s + pad
    return set_cell_size(s, width - 1) + ELLIPSIS


def _endpoint(ip: object, port: object, width: int) -> tuple[str, str]:
    """``ip:port`` split as (address part, ``:port``), the address middle-cut to fit."""
    addr = terminal_safe(str(ip)) if ip is not None else "?"
    if ":" in addr:
        addr = f"[{addr}]"
    tail = f":{port}" if port is not None else ""
    room = width - len(tail)
    if cell_len(addr) > room:
        if room < 2:
            addr = ""
        else:
            head = (room - 1) // 2
            addr = addr[:head] + ELLIPSIS + addr[len(addr) - (room - 1 - head):]
    return addr, tail


def _short_time(ts: object, width: int) -> str:
    if not isinstance(ts, (int, float)):
        return ""
    try:
        t = time.gmtime(ts)
    except (OverflowError, OSError, ValueError):
        return "?"
    return time.strftime("%Y-%m-%d %H:%M:%S" if width >= 19 else "%H:%M:%S", t)


def _server_hello(r: Row) -> tuple[str, str]:
    sh = r.get("server_hello")
    if isinstance(sh, Mapping):
        return terminal_safe(f"{sh.get('version') or '?'} {sh.get('cipher') or '?'}", 40), ""
    alert = r.get("server_alert")
    if isinstance(alert, Mapping):
        return terminal_safe(f"alert {alert.get('description')}", 40), "alert"
    return "-", "dim"


def _outcome(r: Row) -> tuple[str, str]:
    outcome = terminal_safe(r.get("outcome")) or "-"
    return outcome, "" if outcome == "server_hello" else "alert"


def _verdict(r: Row) -> tuple[str, str]:
    v = r.get("interception")
    if not isinstance(v, Mapping):
        return "-", "dim"
    provider = v.get("provider")
    text = f"{v.get('pattern')}" + (f" ({provider})" if provider else "")
    return terminal_safe(text, 60), "verdict"


def _alpn(v: object) -> str:
    if not v:
        return "-"
    if isinstance(v, (list, tuple)):
        return terminal_safe(",".join(str(x) for x in v))
    return terminal_safe(str(v))


def _sni(r: Row) -> tuple[str, str]:
    sni = terminal_safe(r.get("sni"))
    return (sni, "sni") if sni else ("-", "dim")


_STYLES = {
    "header": "bold",
    "rule": "dim",
    "dim": "dim",
    "port": "bold yellow",
    "alert": "red",
    "anom": "bold red",
    "verdict": "bold red",
    "sni": "cyan",
}


def no_color_requested() -> bool:
    """True when the ``NO_COLOR`` convention (https://no-color.org) asks for no colour."""
    return os.environ.get("NO_COLOR", "") != ""


class TableSink:
    """Writes one aligned row per record, with a header, to a terminal or file."""

    def __init__(self, stream: TextIO, *, flush: bool = False, width: int | None = None,
                 console: Console | None = None) -> None:
        self.stream = stream
        self.console = console or Console(
            file=stream, no_color=no_color_requested(), highlight=False, markup=False,
            emoji=False,
        )
        terminal = self.console.is_terminal
        self.flush = flush or terminal
        if width is None:
            width = self.console.width if terminal else FILE_WIDTH
        self.columns = layout(width)
        self._paint = {name: self._codes(style) for name, style in _STYLES.items()}
        self._cells: dict[str, Callable[[Row, int], tuple[str, str]]] = {
            "time": lambda r, w: (_short_time(r.get("ts"), w), "dim"),
            "sni": lambda r, w: _sni(r),
            "alpn": lambda r, w: (_alpn(r.get("alpn")), ""),
            "tls": lambda r, w: (terminal_safe(r.get("tls_version")) or "-", ""),
            "ja4": lambda r, w: (terminal_safe(r.get("ja4")) or "-", ""),
            "ja3": lambda r, w: (terminal_safe(r.get("ja3"))[:12] or "-", ""),
            "srv": lambda r, w: _server_hello(r),
            "outcome": lambda r, w: _outcome(r),
            "verdict": lambda r, w: _verdict(r),
        }
        self._header()

    def _codes(self, style: str) -> tuple[str, str]:
        """The escape codes that start and end ``style`` on this console ("" if none)."""
        if not self.console.is_terminal or self.console.color_system is None:
            return "", ""
        with self.console.capture() as cap:
            self.console.print(Text("\0", style=Style.parse(style)), end="")
        start, _, end = cap.get().partition("\0")
        return start, end

    def _styled(self, text: str, style: str) -> str:
        if not style:
            return text
        start, end = self._paint[style]
        return start + text + end if start else text

    def _header(self) -> None:
        cells = [fit(c.header, c.width, c.right) for c in self.columns]
        rule = ["─" * c.width for c in self.columns]
        self.stream.write(self._styled(SEP.join(cells).rstrip(), "header") + "\n")
        self.stream.write(self._styled(SEP.join(rule), "rule") + "\n")

    def row(self, record: Row) -> str:
        """The table row for ``record`` (with escape codes when colour is on), no newline."""
        out = []
        for col in self.columns:
            w = col.width
            key = col.key
            if key == "client":
                addr, port = _endpoint(record.get("src_ip"), record.get("src_port"), w)
                out.append(fit(addr + port, w))
            elif key == "server":
                port_no = record.get("dst_port")
                addr, port = _endpoint(record.get("dst_ip"), port_no, w)
                pad = " " * max(0, w - cell_len(addr + port))
                hot = port_no is not None and port_no != TLS_PORT
                out.append(addr + (self._styled(port, "port") if hot else port) + pad)
            elif key == "anom":
                n = len(record.get("anomalies") or ())
                out.append(self._styled(fit(str(n), w, True), "anom") if n else fit("0", w, True))
            else:
                text, style = self._cells[key](record, w)
                out.append(self._styled(fit(text, w, col.right), style))
        return SEP.join(out).rstrip()

    def write(self, record: Mapping[str, Any]) -> None:
        self.stream.write(self.row(record) + "\n")
        if self.flush:
            self.stream.flush()

    def close(self) -> None:
        self.stream.flush()
