"""Drive captures through an :class:`~tlsprobe.pipeline.Analyzer` into a sink.

This is the whole of ``tlsprobe analyze`` minus option parsing: an unreadable capture
is reported through ``on_error`` and skipped, the others share one flow table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from tlsprobe.errors import CaptureError
from tlsprobe.pipeline import Analyzer
from tlsprobe.sinks import Sink
from tlsprobe.sinks.progress import RunProgress, TrackedCapture, regular_file_size
from tlsprobe.sinks.summary import build_summary


@dataclass
class RunResult:
    """What a run produced besides the records: counters, anomalies, unreadable inputs."""

    analyzer: Analyzer
    errors: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return build_summary(self.analyzer.stats, self.analyzer.log, self.errors)


def run(paths: Iterable[str], sink: Sink, *, analyzer: Analyzer | None = None,
        progress: RunProgress | None = None,
        on_error: Callable[[str], None] | None = None) -> RunResult:
    """Analyse every capture in ``paths`` (``-`` is stdin), writing records to ``sink``.

    A capture that cannot be read is reported to ``on_error`` (its one-line message) and
    listed in the result; the run goes on with the next one.  The sink is not closed.
    """
    an = analyzer or Analyzer()
    result = RunResult(an)
    write = sink.write
    for path in paths:
        capture = TrackedCapture(path, an.log, an.limits)
        an.capture_name = path
        size = regular_file_size(path) if progress is not None else None
        watch: AbstractContextManager[None] = (
            progress.file(capture, size) if progress is not None and size is not None
            else nullcontext()
        )
        try:
            with watch:
                for rec in an.packets(capture):
                    write(rec.to_dict())
        except CaptureError as exc:
            result.errors.append(str(exc))
            if on_error is not None:
                on_error(str(exc))
        else:
            an.stats.files += 1
        finally:
            capture.release()
    for rec in an.finish():
        write(rec.to_dict())
    return result
