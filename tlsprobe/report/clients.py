"""Which client produces a JA4: a small bundled list, every entry with its source and date.

``tlsprobe/data/known_clients.csv`` is written by ``tools/lab/known_clients.py``
(clients measured on loopback) and may hold entries from public references, each
naming its source.  A JA4 absent from the list is reported as unknown.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

COLUMNS = ("ja4", "client", "version", "source", "date")


@dataclass(frozen=True, slots=True)
class KnownClient:
    """One client known to send a JA4."""

    ja4: str
    client: str
    version: str
    source: str
    date: str

    def label(self) -> str:
        """``curl 7.88.1``."""
        return f"{self.client} {self.version}".strip()

    def short_source(self) -> str:
        """``measured`` or the reference's name, for a table cell."""
        if self.source.startswith("measured"):
            return "measured"
        return self.source.split(" (")[0].split(",")[0]


def parse_known_clients(text: str) -> dict[str, tuple[KnownClient, ...]]:
    """The CSV list (``#`` lines are comments) as JA4 -> clients, in file order."""
    rows = csv.DictReader(io.StringIO("\n".join(ln for ln in text.splitlines() if not ln.startswith("#"))))
    out: dict[str, list[KnownClient]] = {}
    for row in rows:
        entry = KnownClient(*(str(row.get(c) or "").strip() for c in COLUMNS))
        if entry.ja4 and entry.client:
            out.setdefault(entry.ja4, []).append(entry)
    return {k: tuple(v) for k, v in out.items()}


@lru_cache(maxsize=1)
def known_clients() -> dict[str, tuple[KnownClient, ...]]:
    """The bundled list (read once)."""
    text = resources.files("tlsprobe").joinpath("data/known_clients.csv").read_text(encoding="utf-8")
    return parse_known_clients(text)


def clients_for(ja4: str | None) -> tuple[KnownClient, ...]:
    """The known clients that send ``ja4`` (empty when unknown)."""
    return known_clients().get(ja4 or "", ())
