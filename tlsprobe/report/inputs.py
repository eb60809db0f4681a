"""The report's inputs: captures, JSON Lines from ``analyze``/``sniff``, summary JSON files.

A directory stands for the captures below it (:mod:`tlsprobe.capture.tree`).  Each
path is classified by its first bytes (gzip'd or not): a pcap/pcapng magic is a
capture, a summary (one pretty-printed object with ``packets``) is a ``--summary-json``
file, anything else is read as JSON Lines.  Captures are analysed together by
:func:`tlsprobe.sinks.run.run`; JSON Lines are read line by line, and a line that is not
a JSON object is counted (with its location) and skipped.
"""

from __future__ import annotations

import gzip
import json
import struct
import time
from collections.abc import Callable, Sequence
from typing import IO, Any

import orjson

from tlsprobe.capture.files import _PCAP_MAGICS, PCAPNG_MAGIC
from tlsprobe.capture.tree import expand
from tlsprobe.detect.context import NO_OPTIONS, ContextOptions
from tlsprobe.report.aggregate import Aggregator
from tlsprobe.sinks.run import run

#: Longest JSON Lines line read (a record with a full certificate chain is ~20 KB).
MAX_LINE_BYTES = 4 * 1024 * 1024
#: Largest summary JSON file read.
MAX_SUMMARY_BYTES = 16 * 1024 * 1024
#: Malformed lines listed by location in the report.
MAX_MALFORMED_SHOWN = 10


def _open(path: str) -> IO[bytes]:
    f: IO[bytes] = open(path, "rb")  # noqa: SIM115
    if f.read(2) == b"\x1f\x8b":
        f.seek(0)
        return gzip.GzipFile(fileobj=f)  # type: ignore[return-value]
    f.seek(0)
    return f


def classify(path: str) -> str:
    """``capture``, ``summary`` or ``jsonl`` (OSError if the file cannot be read)."""
    with _open(path) as f:
        head = f.read(64)
    if head[:4] == PCAPNG_MAGIC or (len(head) >= 4 and struct.unpack("<I", head[:4])[0] in _PCAP_MAGICS):
        return "capture"
    first = head.lstrip()
    if first.startswith(b"{") and b"\n" in head and head.split(b"\n", 1)[0].strip() == b"{":
        return "summary"  # json.dump(indent=2): "{" alone on the first line
    return "jsonl"


def read_inputs(paths: Sequence[str], agg: Aggregator, *, on_error: Callable[[str], None],
                on_warning: Callable[[str], None] | None = None,
                jobs: int = 1, rules_paths: Sequence[str] = (), http: bool = True,
                context: ContextOptions = NO_OPTIONS) -> None:
    """Feed every input to ``agg``; unreadable ones are reported to ``on_error``, skipped
    malformed JSON Lines (one line per file) to ``on_warning``."""
    started = time.monotonic()
    kinds: dict[str, list[str]] = {"capture": [], "summary": [], "jsonl": []}
    found = expand(paths)  # a directory: the captures below it
    for path, detail in found.problems:
        _unreadable(agg, on_error, path, detail)
    for directory, n in found.skipped.items():
        (on_warning or on_error)(f"{directory}: skipped {n} file{'' if n == 1 else 's'} that "
                                 f"{'is' if n == 1 else 'are'} not a capture (name JSON Lines files one by one)")
    for path in found.paths:
        if path == "-":
            kinds["capture"].append(path)
            continue
        try:
            kinds[classify(path)].append(path)
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            _unreadable(agg, on_error, path, f"cannot read: {getattr(exc, 'strerror', None) or exc}")
    totals = agg.totals
    if kinds["capture"]:
        errors: list[str] = []

        def capture_error(message: str) -> None:
            on_error(message)
            for p in kinds["capture"]:  # the report names inputs without their directory
                message = message.replace(p, agg.shown(p))
            errors.append(message)

        result = run(kinds["capture"], agg, on_error=capture_error, jobs=jobs, rules_paths=rules_paths, http=http,
                     context=context)
        totals.errors += errors
        totals.files += result.stats.files
        totals.packets += result.stats.packets
        totals.flows += result.stats.flows
        totals.evicted += result.stats.evicted
        totals.anomalies.update(result.log.counts)
    for path in kinds["summary"]:
        _read_summary(path, agg, on_error)
    if kinds["jsonl"]:
        agg.count_record_anomalies = not kinds["summary"]
        totals.jsonl_without_summary = not kinds["summary"]
        for path in kinds["jsonl"]:
            _read_jsonl(path, agg, on_error, on_warning or on_error)
    totals.seconds = time.monotonic() - started


def _unreadable(agg: Aggregator, on_error: Callable[[str], None], path: str, detail: str) -> None:
    """``path: detail`` on stderr; in the report with the file's shown name."""
    on_error(f"{path}: {detail}")
    agg.totals.errors.append(f"{agg.shown(path)}: {detail}")


def _read_summary(path: str, agg: Aggregator, on_error: Callable[[str], None]) -> None:
    try:
        with _open(path) as f:
            data = f.read(MAX_SUMMARY_BYTES + 1)
        if len(data) > MAX_SUMMARY_BYTES:
            raise ValueError(f"larger than {MAX_SUMMARY_BYTES} bytes")
        summary = json.loads(data)
        if not isinstance(summary, dict) or not isinstance(summary.get("packets"), int):
            raise ValueError("not a tlsprobe summary (no 'packets' count)")
    except (OSError, EOFError, ValueError, UnicodeDecodeError) as exc:
        _unreadable(agg, on_error, path, f"cannot read summary: {exc}")
        return
    totals = agg.totals
    totals.summary_files += 1
    totals.files += _int(summary.get("files"))
    totals.packets += _int(summary.get("packets"))
    totals.flows += _int(summary.get("flows"))
    live = summary.get("live")
    if isinstance(live, dict):  # a live capture: what the kernel dropped never reached the analysis
        totals.live_runs += 1
        totals.kernel_received += _int(live.get("kernel_received"))
        totals.kernel_dropped += _int(live.get("kernel_dropped"))
    anomalies = summary.get("anomalies")
    if isinstance(anomalies, dict):
        for code, n in list(anomalies.items())[:2000]:
            if isinstance(code, str) and isinstance(n, int):
                totals.anomalies[code[:64]] += n
    errors = summary.get("errors")
    if isinstance(errors, list):
        for e in errors[:100]:
            if isinstance(e, str):  # its paths are the original run's: not shown when redacting
                totals.errors.append(f"(from {agg.shown(path)}) "
                                     + ("an input of that run was unreadable" if agg.redactor else e[:300]))


def _int(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else 0


def _read_jsonl(path: str, agg: Aggregator, on_error: Callable[[str], None],
                on_warning: Callable[[str], None]) -> None:
    totals = agg.totals
    bad_here = good = 0
    lineno = 0
    first = ""

    def malformed(why: str) -> None:
        nonlocal bad_here, first
        bad_here += 1
        totals.malformed_lines += 1
        first = first or f"line {lineno}: {why}"
        if len(totals.malformed_examples) < MAX_MALFORMED_SHOWN:
            totals.malformed_examples.append(f"{agg.shown(path)}:{lineno}: {why}")

    try:
        with _open(path) as f:
            while True:
                line = f.readline(MAX_LINE_BYTES)
                if not line:
                    break
                lineno += 1
                if len(line) >= MAX_LINE_BYTES and not line.endswith(b"\n"):
                    while (rest := f.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                        pass
                    malformed(f"line longer than {MAX_LINE_BYTES} bytes")
                    continue
                if not line.strip():
                    continue
                try:
                    record = orjson.loads(line)
                except orjson.JSONDecodeError:
                    malformed("not JSON")
                    continue
                before = agg.malformed_records
                agg.write(record)
                if agg.malformed_records != before:
                    agg.malformed_records = before
                    malformed("not a tlsprobe record (needs kind, ts, src_ip, dst_ip, dst_port)")
                else:
                    good += 1
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        _unreadable(agg, on_error, path, f"cannot read: {getattr(exc, 'strerror', None) or exc}")
        return
    if bad_here and good == 0:
        totals.malformed_lines -= bad_here
        del totals.malformed_examples[len(totals.malformed_examples) - min(bad_here, MAX_MALFORMED_SHOWN):]
        _unreadable(agg, on_error, path, f"not a capture, nor tlsprobe JSON Lines (first problem at {first})")
        return
    totals.jsonl_files += 1
    if bad_here:
        on_warning(f"{path}: {bad_here} malformed line{'s' if bad_here != 1 else ''} skipped (first at {first})")
