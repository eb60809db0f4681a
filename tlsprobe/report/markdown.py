"""Render a :class:`~tlsprobe.report.document.Document` as GitHub-flavoured Markdown.

Every untrusted string goes through :func:`tlsprobe.text.markdown_escape`: it stays
literal text on one line, and ``|`` cannot add a table column.
"""

from __future__ import annotations

from tlsprobe.report.document import (
    MAX_SHOWN,
    SAFE_CODE,
    Bullets,
    Code,
    Document,
    Figure,
    Heading,
    Inline,
    Link,
    Para,
    Parts,
    Raw,
    Table,
)
from tlsprobe.text import escape_unprintable, markdown_escape


def _inline(part: Inline, line_start: bool) -> str:
    if isinstance(part, Raw):
        return escape_unprintable(part.text).replace("|", "\\|")
    if isinstance(part, Code):
        if SAFE_CODE.match(part.text):
            return f"`{part.text}`"
        return markdown_escape(part.text, MAX_SHOWN, line_start=line_start)
    if isinstance(part, Link):
        return f"[{markdown_escape(part.text, MAX_SHOWN, line_start=False)}]({part.href})"
    return markdown_escape(part, MAX_SHOWN, line_start=line_start)


def _parts(parts: Parts, line_start: bool = False) -> str:
    """Inline parts; with ``line_start`` the first may begin a line (a paragraph, a list
    item) and is escaped so that it cannot start a block."""
    return "".join(_inline(p, line_start and i == 0) for i, p in enumerate(parts)) or " "


def render_markdown(doc: Document) -> str:
    """The whole report as Markdown; figures are images beside the file."""
    out = [f"# {markdown_escape(doc.title, 200)}", ""]
    for block in doc.blocks:
        if isinstance(block, Heading):
            out += [f"{'#' * block.level} {markdown_escape(block.text, 200, line_start=False)}", ""]
        elif isinstance(block, Para):
            out += [_parts(block.parts, line_start=True), ""]
        elif isinstance(block, Bullets):
            out += [f"- {_parts(item, line_start=True)}" for item in block.items] + [""]
        elif isinstance(block, Table):
            out.append("| " + " | ".join(markdown_escape(h, line_start=False) for h in block.header) + " |")
            out.append("|" + "|".join("---:" if i in block.numeric else "---"
                                      for i in range(len(block.header))) + "|")
            out += ["| " + " | ".join(_parts(cell) for cell in row) + " |" for row in block.rows]
            out.append("")
        elif isinstance(block, Figure):
            out += [f"![{markdown_escape(block.alt, 600)}]({block.name})", "",
                    f"*{markdown_escape(block.title)}*", ""]
    return "\n".join(out).rstrip("\n") + "\n"
