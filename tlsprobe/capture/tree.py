"""Directories of captures: every pcap, pcapng or gzip'd capture below a directory.

A file is a capture by its first bytes (the pcap or pcapng magic, or a gzip stream that
starts with one), never by its name; other files are skipped and counted.  Paths that
are not directories pass through untouched, for the capture reader to open (or refuse).
"""

from __future__ import annotations

import gzip
import os
import stat
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from tlsprobe.capture.files import _PCAP_MAGICS, PCAPNG_MAGIC

GZIP_MAGIC = b"\x1f\x8b"


@dataclass(slots=True)
class Expansion:
    """What :func:`expand` found: the inputs in order, files skipped per directory, errors."""

    paths: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (path, what is wrong)

    @property
    def errors(self) -> list[str]:
        """One ``PATH: problem`` line per problem."""
        return [f"{path}: {detail}" for path, detail in self.problems]


def _capture_magic(head: bytes) -> bool:
    return head[:4] == PCAPNG_MAGIC or (len(head) >= 4 and struct.unpack("<I", head[:4])[0] in _PCAP_MAGICS)


def is_capture(path: str) -> bool:
    """``path`` starts like a pcap or pcapng capture, gzip'd or not (OSError if unreadable).

    A gzip stream too damaged to show its first bytes counts as a capture, so that the
    reader reports what is wrong with it rather than it vanishing silently.
    """
    with open(path, "rb") as f:
        head = f.read(4)
        if head[:2] == GZIP_MAGIC:
            f.seek(0)
            try:
                with gzip.GzipFile(fileobj=f) as g:
                    head = g.read(4)
            except (OSError, EOFError, zlib.error):
                return True
    return _capture_magic(head)


def captures_in(directory: str, out: Expansion) -> None:
    """Append to ``out`` every capture below ``directory``, sorted by path; count the rest."""
    found: list[str] = []
    skipped = 0
    problems_before = len(out.problems)

    def walk_error(exc: OSError) -> None:
        out.problems.append((str(exc.filename or directory), f"cannot read: {exc.strerror or exc}"))

    for root, dirs, files in os.walk(directory, onerror=walk_error):  # symlinked directories not followed
        dirs.sort()
        for name in files:
            path = os.path.join(root, name)
            try:
                if not stat.S_ISREG(os.stat(path).st_mode) or not is_capture(path):
                    skipped += 1  # FIFOs, sockets, devices are never opened
                    continue
            except OSError as exc:
                out.problems.append((path, f"cannot read: {exc.strerror or exc}"))
                continue
            found.append(path)
    found.sort(key=lambda p: p.split(os.sep))
    if not found and len(out.problems) == problems_before:
        out.problems.append((directory, "no pcap, pcapng or gzip'd capture in this directory"))
    out.paths += found
    if skipped:
        out.skipped[directory] = skipped


def expand(paths: Iterable[str]) -> Expansion:
    """``paths`` with each directory replaced by the captures below it (``-`` stays stdin)."""
    out = Expansion()
    for path in paths:
        if path != "-" and os.path.isdir(path):
            captures_in(path, out)
        else:
            out.paths.append(path)
    return out
