"""A progress bar on stderr that tracks bytes read of the capture being analysed.

The packet loop is not touched: a background thread samples the reader's file offset
(``lseek`` on a duplicate of its descriptor) and the run counters ten times a second,
so a run with a progress bar costs the same per packet as one without.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from tlsprobe.capture.files import TrackedCapture

__all__ = ["RunProgress", "TrackedCapture", "regular_file_size"]
from tlsprobe.pipeline import Stats
from tlsprobe.text import terminal_safe


def regular_file_size(path: str) -> int | None:
    """The size of ``path`` if it is a regular file (not ``-``, a pipe or a device)."""
    if path == "-":
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


class RunProgress:
    """One transient progress bar per capture file, refreshed by a sampling thread."""

    def __init__(self, console: Console, stats: Stats, interval: float = 0.1) -> None:
        self.stats = stats
        self.interval = interval
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TextColumn("handshakes: {task.fields[handshakes]:,}"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._current: tuple[TaskID, TrackedCapture] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tlsprobe-progress", daemon=True)

    def __enter__(self) -> RunProgress:
        self.progress.start()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.progress.stop()

    @contextmanager
    def file(self, capture: TrackedCapture, size: int) -> Iterator[None]:
        """Show ``capture`` (of ``size`` bytes) while the body of the ``with`` reads it."""
        name = terminal_safe(os.path.basename(capture.path), 40)
        task = self.progress.add_task(name, total=size, handshakes=self.stats.handshakes)
        self._current = (task, capture)
        try:
            yield
        finally:
            self._current = None
            self.progress.remove_task(task)
            self.progress.refresh()

    def print_line(self, line: str) -> None:
        """Print ``line`` (already terminal-safe) on stderr above the bar."""
        self.progress.console.print(line, markup=False, highlight=False, emoji=False,
                                    soft_wrap=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        """Update the bar from the current file's offset and the run counters."""
        current = self._current
        if current is None:
            return
        task, capture = current
        pos = capture.position()
        if pos is not None:
            self.progress.update(task, completed=pos, handshakes=self.stats.handshakes)
        else:
            self.progress.update(task, handshakes=self.stats.handshakes)
