"""Make wire strings safe to show: on a terminal, in a spreadsheet, in Markdown or HTML.

Everything a capture carries (SNI, ALPN, certificate names, file names) is attacker
controlled.  These helpers never raise and never return a control character:

* every code point that is not printable (C0/C1 controls, DEL, ESC, bidi overrides and
  other format characters such as U+202E or U+200B, line/paragraph separators, lone
  surrogates, private-use and unassigned code points, non-ASCII spaces) becomes a
  visible escape (``\\x1b``, ``\\u202e``) - so an ANSI sequence turns into inert text
  such as ``\\x1b[31m`` that shows the attempt instead of hiding it;
* a lone surrogate U+DC80-U+DCFF (Python's ``surrogateescape`` for an undecodable byte)
  shows as the byte it stands for (``\\xff``).
"""

from __future__ import annotations

import html
import re

#: Longest string :func:`terminal_safe` returns before the ellipsis (a DNS name's limit).
MAX_TERMINAL_CHARS = 253
ELLIPSIS = "…"

_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
# Spreadsheet formula triggers (OWASP CSV injection) plus their full-width forms.
_FORMULA_START = frozenset("=+-@\t\r\uff1d\uff0b\uff0d\uff20")
# Markdown (CommonMark + GitHub Flavoured): characters that start emphasis, code, links,
# images, raw HTML, entities, tables, strikethrough, math or @mentions anywhere in a line
# are always backslash-escaped (always literal for ASCII punctuation).
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]<>#!|~&$@])")
# GFM extended autolinks: "www." and "scheme://" (emails need "@", escaped above).
_MARKDOWN_AUTOLINK = re.compile(r"(?i)(?<=www)\.|:(?=//)")
# At the start of a line: list, quote, heading, setext underline, ordered list ("1." "1)").
_MARKDOWN_START = re.compile(r"[-+=>.]|[0-9]{1,9}[.)]")
# Leading blanks a spreadsheet may skip before it looks for a formula.
_BLANKS = " \t\r\n\x0b\x0c\u00a0\u3000"
#: Longest CSV cell before the ellipsis (Excel holds at most 32,767 characters a cell).
CSV_MAX_CHARS = 32_000


def _escape_char(c: str) -> str:
    if c in _SHORT:
        return _SHORT[c]
    n = ord(c)
    if 0xDC80 <= n <= 0xDCFF:  # surrogateescape'd byte
        return f"\\x{n - 0xDC00:02x}"
    if n <= 0xFF:
        return f"\\x{n:02x}"
    if n <= 0xFFFF:
        return f"\\u{n:04x}"
    return f"\\U{n:08x}"


def escape_unprintable(s: str) -> str:
    """``s`` with every non-printable code point replaced by a visible escape."""
    if s.isprintable():  # fast path, in C: the common case costs one scan
        return s
    return "".join(c if c.isprintable() else _escape_char(c) for c in s)


def terminal_safe(s: str | None, max_chars: int = MAX_TERMINAL_CHARS) -> str:
    """``s`` made harmless for a terminal: one line, no controls, capped in length.

    ``None`` gives ``""``.  Longer results are cut to ``max_chars`` plus ``…``.
    """
    if not s:
        return ""
    out = escape_unprintable(s)
    if len(out) > max_chars:
        out = out[:max_chars] + ELLIPSIS
    return out


def csv_safe(s: str | None) -> str:
    """``s`` made harmless for a spreadsheet cell.

    Control characters become visible escapes, and a cell that would start a formula
    (``= + - @``, tab, CR or their full-width forms, also after leading blanks, which
    some spreadsheets skip) gets a leading ``'``.  Cells longer than
    :data:`CSV_MAX_CHARS` are cut (with ``…``): spreadsheets split or drop longer ones.
    """
    if not s:
        return ""
    out = escape_unprintable(s)
    if len(out) > CSV_MAX_CHARS:
        out = out[:CSV_MAX_CHARS] + ELLIPSIS
    if s[0] in _FORMULA_START or s.lstrip(_BLANKS)[:1] in _FORMULA_START:
        return "'" + out
    return out


def clip(s: str, max_chars: int | None) -> str:
    """``s`` cut to ``max_chars`` characters plus ``…`` (``None``: no limit)."""
    if max_chars is not None and len(s) > max_chars:
        return s[:max_chars] + ELLIPSIS
    return s


def markdown_escape(s: str | None, max_chars: int | None = None, *, line_start: bool = True) -> str:
    """``s`` as literal text inside Markdown, including a table cell (``|`` escaped).

    Controls and line breaks become visible escapes, so the text stays on one line and
    cannot start a heading, quote, list or table row; ``max_chars`` caps the length
    (before escaping).  ``line_start=False`` (text inside a table cell or after a
    heading's ``#``, where no block can start) leaves a leading ``-``, ``1.`` etc. as is.
    """
    if not s:
        return ""
    out = _MARKDOWN_SPECIAL.sub(r"\\\1", clip(s, max_chars))
    out = _MARKDOWN_AUTOLINK.sub(lambda m: "\\" + m.group(0), out)
    start = _MARKDOWN_START.match(out) if line_start else None
    if start:
        out = out[:start.end() - 1] + "\\" + out[start.end() - 1:]
    return escape_unprintable(out)


def html_escape(s: str | None, max_chars: int | None = None) -> str:
    """``s`` as literal HTML text or attribute value (quotes escaped too); ``max_chars``
    caps the length (before escaping)."""
    if not s:
        return ""
    return html.escape(escape_unprintable(clip(s, max_chars)), quote=True)
