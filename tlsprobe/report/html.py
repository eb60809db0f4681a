"""Render a :class:`~tlsprobe.report.document.Document` as one self-contained HTML file.

No script, no external resource: charts are ``data:`` images (an SVG loaded as an image
cannot run script or fetch anything), styles are inline, and a Content-Security-Policy
forbids everything else.  Light and dark themes follow ``prefers-color-scheme``.  Every
string goes through :func:`tlsprobe.text.html_escape`.
"""

from __future__ import annotations

import base64

from tlsprobe.report.document import (
    MAX_SHOWN,
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
from tlsprobe.text import html_escape

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
STYLE = """
:root { color-scheme: light dark; --fg: #1f2328; --bg: #ffffff; --muted: #59636e; --line: #d1d9e0;
  --stripe: #f6f8fa; --accent: #0969da; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e6edf3; --bg: #0d1117; --muted: #9198a1; --line: #3d444d; --stripe: #151b23;
    --accent: #4493f8; }
}
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg);
  background: var(--bg); max-width: 72rem; margin: 2rem auto; padding: 0 1rem; }
h1, h2, h3 { line-height: 1.25; } h2 { border-bottom: 1px solid var(--line); padding-bottom: .3rem; }
a { color: var(--accent); }
table { border-collapse: collapse; margin: 1rem 0; display: block; overflow-x: auto; max-width: 100%; }
th, td { border: 1px solid var(--line); padding: .3rem .6rem; text-align: left; vertical-align: top;
  overflow-wrap: break-word; min-width: 3em; }
th { background: var(--stripe); } tr:nth-child(2n) td { background: var(--stripe); }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
code { font: .9em ui-monospace, SFMono-Regular, Menlo, monospace; white-space: nowrap; }
figure { margin: 1.5rem 0; } figure img { max-width: 100%; height: auto; }
figcaption { color: var(--muted); font-size: .9em; }
"""


def _inline(part: Inline) -> str:
    if isinstance(part, Raw):
        return html_escape(part.text)
    if isinstance(part, Code):
        return f"<code>{html_escape(part.text, MAX_SHOWN)}</code>"
    if isinstance(part, Link):
        return f'<a href="{html_escape(part.href)}">{html_escape(part.text, MAX_SHOWN)}</a>'
    return html_escape(part, MAX_SHOWN)


def _parts(parts: Parts) -> str:
    return "".join(_inline(p) for p in parts)


def render_html(doc: Document) -> str:
    """The whole report as one HTML page."""
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="color-scheme" content="light dark">',
        f"<title>{html_escape(doc.title, 200)}</title>",
        f"<style>{STYLE}</style>",
        "</head>",
        "<body>",
        f"<h1>{html_escape(doc.title, 200)}</h1>",
    ]
    for block in doc.blocks:
        if isinstance(block, Heading):
            level = min(max(block.level, 2), 6)
            out.append(f'<h{level} id="{html_escape(block.anchor)}">{html_escape(block.text, 200)}</h{level}>')
        elif isinstance(block, Para):
            out.append(f"<p>{_parts(block.parts)}</p>")
        elif isinstance(block, Bullets):
            out.append("<ul>" + "".join(f"<li>{_parts(item)}</li>" for item in block.items) + "</ul>")
        elif isinstance(block, Table):
            head = "".join(f'<th{" class=num" if i in block.numeric else ""}>{html_escape(h)}</th>'
                           for i, h in enumerate(block.header))
            rows = "".join(
                "<tr>" + "".join(f'<td{" class=num" if i in block.numeric else ""}>{_parts(cell)}</td>'
                                 for i, cell in enumerate(row)) + "</tr>"
                for row in block.rows)
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif isinstance(block, Figure):
            data = base64.b64encode(block.svg.encode("utf-8")).decode("ascii")
            out.append(f'<figure><img src="data:image/svg+xml;base64,{data}" alt="{html_escape(block.alt, 600)}">'
                       f"<figcaption>{html_escape(block.title)}</figcaption></figure>")
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"
