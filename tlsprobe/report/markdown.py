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


def _inline(part: Inline) -> str:
    if isinstance(part, Raw):
        return escape_unprintable(part.text).replace("|", "\\|")
    if isinstance(part, Code):
        if SAFE_CODE.match(part.text):
            return f"`{part.text}`"
        return markdown_escape(part.text, MAX_SHOWN)
    if isinstance(part, Link):
        return f"[{markdown_escape(part.text, MAX_SHOWN)}]({part.href})"
    return markdown_escape(part, MAX_SHOWN)


def _parts(parts: Parts) -> str:
    return "".join(_inline(p) for p in parts) or " "


def render_markdown(doc: Document) -> str:
    """The whole report as Markdown; figures are images beside the file."""
    out = [f"# {markdown_escape(doc.title, 200)}", ""]
    for block in doc.blocks:
        if isinstance(block, Heading):
            out += [f"{'#' * block.level} {markdown_escape(block.text, 200)}", ""]
        elif isinstance(block, Para):
            out += [_parts(block.parts), ""]
        elif isinstance(block, Bullets):
            out += [f"- {_parts(item)}" for item in block.items] + [""]
        elif isinstance(block, Table):
            out.append("| " + " | ".join(markdown_escape(h) for h in block.header) + " |")
            out.append("|" + "|".join("---:" if i in block.numeric else "---"
                                      for i in range(len(block.header))) + "|")
            out += ["| " + " | ".join(_parts(cell) for cell in row) + " |" for row in block.rows]
            out.append("")
        elif isinstance(block, Figure):
            out += [f"![{markdown_escape(block.alt, 600)}]({block.name})", "",
                    f"*{markdown_escape(block.title)}*", ""]
    return "\n".join(out).rstrip("\n") + "\n"
