"""A tiny document model both renderers share, so Markdown and HTML say the same thing.

Text is untrusted by default: a plain ``str`` anywhere in a document is escaped by the
renderer (Markdown or HTML).  Only :class:`Raw` - text this package wrote itself,
never a value read from a record - is written to Markdown as is (HTML escapes it
anyway).  :class:`Code` is shown as code only when it is made of harmless characters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

#: Longest string shown in one cell or sentence (one wire value is cut to :data:`MAX_VALUE` first).
MAX_SHOWN = 400
MAX_VALUE = 120
SAFE_CODE = re.compile(r"[A-Za-z0-9_.,:/ +-]{1,200}\Z")


@dataclass(frozen=True, slots=True)
class Raw:
    """Text of the report's own making (numbers, fixed words): no escaping needed in Markdown."""

    text: str


@dataclass(frozen=True, slots=True)
class Code:
    """A value shown in a monospace font (a fingerprint, an anomaly code)."""

    text: str


@dataclass(frozen=True, slots=True)
class Link:
    """A link inside the report (an anchor); ``href`` is of the report's making."""

    text: str
    href: str


Inline = str | Raw | Code | Link
Parts = tuple[Inline, ...]


@dataclass(frozen=True, slots=True)
class Heading:
    level: int
    text: str
    anchor: str


@dataclass(frozen=True, slots=True)
class Para:
    parts: Parts


@dataclass(frozen=True, slots=True)
class Bullets:
    items: tuple[Parts, ...]


@dataclass(frozen=True, slots=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[Parts, ...], ...]
    numeric: frozenset[int] = frozenset()  # right-aligned columns


@dataclass(frozen=True, slots=True)
class Figure:
    name: str  # file name beside report.md
    title: str
    svg: str
    alt: str


Block = Heading | Para | Bullets | Table | Figure


@dataclass(slots=True)
class Document:
    title: str
    blocks: list[Block] = field(default_factory=list)

    def h(self, level: int, text: str, anchor: str) -> None:
        self.blocks.append(Heading(level, text, anchor))

    def p(self, *parts: Inline) -> None:
        self.blocks.append(Para(tuple(parts)))

    def bullets(self, items: list[Parts]) -> None:
        if items:
            self.blocks.append(Bullets(tuple(items)))

    def table(self, header: list[str], rows: list[list[Parts]], numeric: set[int] | None = None) -> None:
        self.blocks.append(Table(tuple(header), tuple(tuple(r) for r in rows), frozenset(numeric or ())))
