"""Drive captures through an :class:`~tlsprobe.pipeline.Analyzer` into a sink.

This is the whole of ``tlsprobe analyze`` minus option parsing: an unreadable capture
is reported through ``on_error`` and skipped, the others share one flow table.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from tlsprobe.anomalies import AnomalyLog
from tlsprobe.compare import PortComparison
from tlsprobe.detect import load_rules
from tlsprobe.detect.context import NO_OPTIONS, ContextOptions
from tlsprobe.errors import CaptureError
from tlsprobe.parallel import ParallelRun
from tlsprobe.pipeline import Analyzer, Stats, builtin_rules
from tlsprobe.sinks import Sink
from tlsprobe.sinks.jsonl import JsonlSink, dumps_line
from tlsprobe.sinks.progress import RunProgress, TrackedCapture, regular_file_size
from tlsprobe.sinks.summary import build_summary

# Below this much input, starting worker processes costs more than it saves.
PARALLEL_MIN_BYTES = 32 * 1024 * 1024


@dataclass
class RunResult:
    """What a run produced besides the records: counters, anomalies, unreadable inputs."""

    stats: Stats
    log: AnomalyLog
    errors: list[str] = field(default_factory=list)
    comparison: PortComparison | None = None
    findings: list[dict[str, Any]] = field(default_factory=list)  # the cross-flow context's, end of run

    def summary(self) -> dict[str, Any]:
        summary = build_summary(self.stats, self.log, self.errors)
        summary["context_findings"] = self.findings
        summary["port_comparison"] = self.comparison.findings() if self.comparison is not None else []
        if self.comparison is not None and self.comparison.truncated:
            summary["port_comparison_truncated"] = True  # more groups than COMPARE_MAX_GROUPS/MEMBERS
        if self.comparison is not None and self.comparison.aged_out:
            summary["port_comparison_aged_out"] = self.comparison.aged_out  # live: older groups forgotten
        return summary


class Comparing:
    """A sink that also feeds every record to the port comparison."""

    def __init__(self, sink: Sink, compare: PortComparison) -> None:
        self.sink = sink
        self.compare = compare

    def write(self, record: Mapping[str, Any]) -> None:
        self.compare.add(record)
        self.sink.write(record)

    def write_encoded(self, line: str, brief: Mapping[str, Any]) -> None:
        self.compare.add(brief)
        self.sink.write_encoded(line, brief)  # type: ignore[attr-defined]

    def close(self) -> None:
        self.sink.close()


class OnlyIntercepted:
    """A sink that passes on only the records with an interception verdict."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def write(self, record: Mapping[str, Any]) -> None:
        if record.get("interception"):
            self.sink.write(record)

    def write_encoded(self, line: str, brief: Mapping[str, Any]) -> None:
        if brief.get("interception"):
            self.sink.write_encoded(line, brief)  # type: ignore[attr-defined]

    def close(self) -> None:
        self.sink.close()


def _innermost(sink: Sink) -> Sink:
    while isinstance(sink, (Comparing, OnlyIntercepted)):
        sink = sink.sink
    return sink


def default_jobs() -> int:
    """Worker processes for a large capture: one per core, at most four (each reads the
    whole input, so more workers than that stop paying)."""
    return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def run(paths: Iterable[str], sink: Sink, *, analyzer: Analyzer | None = None,
        progress: RunProgress | None = None,
        on_error: Callable[[str], None] | None = None, jobs: int = 1,
        rules_paths: Sequence[str] = (), http: bool = False,
        context: ContextOptions = NO_OPTIONS) -> RunResult:
    """Analyse every capture in ``paths`` (``-`` is stdin), writing records to ``sink``.

    A capture that cannot be read is reported to ``on_error`` (its one-line message) and
    listed in the result; the run goes on with the next one.  The sink is not closed.
    With ``jobs`` > 1, regular files adding up to a large input are shared among that
    many worker processes (:mod:`tlsprobe.parallel`).  ``rules_paths`` are rule packs
    (:mod:`tlsprobe.detect`) to use besides the built-in ones; ``context`` configures the
    cross-flow stage (:mod:`tlsprobe.detect.context`).
    """
    paths = list(paths)
    rules = load_rules(rules_paths) if rules_paths else None  # RuleError before any work
    compare = PortComparison()
    sink = Comparing(sink, compare)
    if jobs > 1 and analyzer is None and _worth_parallel(paths):
        result = _run_parallel(paths, sink, progress, on_error, jobs, tuple(rules_paths), http, context)
        result.comparison = compare
        return result
    an = analyzer or Analyzer(rules=rules, http=http, context=context.make())
    result = RunResult(an.stats, an.log, comparison=compare)
    if progress is not None:
        progress.stats = an.stats
    write = sink.write
    for path in paths:
        capture = TrackedCapture(path, an.packet_log, an.limits)
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
    result.findings = an.context.findings()
    return result


def _worth_parallel(paths: list[str]) -> bool:
    sizes = [regular_file_size(p) for p in paths]
    return None not in sizes and sum(s or 0 for s in sizes) >= PARALLEL_MIN_BYTES


class _Reading:
    """What the progress bar samples in parallel mode: the position partition 0 reported."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.pos: int | None = None

    def position(self) -> int | None:
        return self.pos


def _run_parallel(paths: list[str], sink: Sink, progress: RunProgress | None,
                  on_error: Callable[[str], None] | None, jobs: int, rules_paths: tuple[str, ...],
                  http: bool, context: ContextOptions) -> RunResult:
    shown: list[tuple[int, _Reading, AbstractContextManager[None]]] = []

    def on_progress(index: int, pos: int) -> None:
        if progress is None:
            return
        if not shown or shown[-1][0] != index:
            if shown:
                shown.pop()[2].__exit__(None, None, None)
            size = regular_file_size(paths[index])
            reading = _Reading(paths[index])
            watch = progress.file(reading, size or 0)  # type: ignore[arg-type]
            watch.__enter__()
            shown.append((index, reading, watch))
        shown[-1][1].pos = pos

    builtin_rules()  # parsed once here; the forked workers inherit it
    # JSON Lines are encoded in the workers: the parent only writes strings
    encoded = isinstance(_innermost(sink), JsonlSink)
    par = ParallelRun(paths, jobs, on_progress=on_progress if progress is not None else None,
                      rules_paths=rules_paths, http=http, encode=dumps_line if encoded else None, context=context)
    if progress is not None:
        progress.stats = par.live
    try:
        if encoded:
            write_encoded = sink.write_encoded  # type: ignore[attr-defined]
            for line, brief in par.encoded():
                par.live.handshakes += 1
                write_encoded(line, brief)
        else:
            write = sink.write
            for rec in par:
                par.live.handshakes += 1
                write(rec)
    finally:
        if shown:
            shown.pop()[2].__exit__(None, None, None)
    for message in par.errors:
        if on_error is not None:
            on_error(message)
    return RunResult(par.stats, par.log, list(par.errors), findings=par.findings)
