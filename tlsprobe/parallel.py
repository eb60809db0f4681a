"""Several analyser processes over the same capture files, each owning a share of the flows.

Every worker reads every packet (reading is cheap) but analyses only the flows of its
partition (a hash of the port pair, the same in both directions; see
:class:`~tlsprobe.pipeline.Analyzer`).  Workers send finished records to the parent in
batches; the parent merges them with the run counters.  Record order between flows may
differ from a single-process run; each record is the same.

Only regular files can be shared this way: stdin and live capture run in one process.
"""

from __future__ import annotations

import multiprocessing
import traceback
from collections.abc import Iterator, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

from tlsprobe.anomalies import AnomalyLog
from tlsprobe.capture.files import CaptureFile
from tlsprobe.errors import CaptureError, TlsprobeError
from tlsprobe.limits import DEFAULT_LIMITS, Limits
from tlsprobe.pipeline import Analyzer, Stats

BATCH = 256  # records per message: amortises pickling and pipe wake-ups

# counters every worker sees for the whole input: taken from partition 0 only
_PACKET_LEVEL = ("packets", "other_packets", "files")


def _worker(paths: Sequence[str], limits: Limits, part: int, nparts: int, conn: Connection) -> None:
    try:
        an = Analyzer(limits, (part, nparts))
        batch: list[dict[str, Any]] = []
        errors: list[str] = []

        def emit(rec: dict[str, Any]) -> None:
            batch.append(rec)
            if len(batch) >= BATCH:
                conn.send(("records", batch[:], None, None))
                batch.clear()

        for path in paths:
            an.capture_name = path
            try:
                for rec in an.packets(CaptureFile(path, an.packet_log, limits)):
                    emit(rec.to_dict())
                an.stats.files += 1
            except CaptureError as exc:
                errors.append(str(exc))
        for rec in an.finish():
            emit(rec.to_dict())
        if batch:
            conn.send(("records", batch, None, None))
        conn.send(("done", an.stats.counters(), dict(an.log.counts), errors))
    except BaseException:  # report anything to the parent rather than dying silently
        conn.send(("crash", traceback.format_exc(), None, None))
    finally:
        conn.close()


class ParallelRun:
    """Analyse ``paths`` with ``jobs`` worker processes; iterate to get record dicts."""

    def __init__(self, paths: Sequence[str], jobs: int, limits: Limits = DEFAULT_LIMITS) -> None:
        if "-" in paths:
            raise ValueError("stdin cannot be shared between workers")
        self.paths = list(paths)
        self.jobs = jobs
        self.limits = limits
        self.stats = Stats()
        self.log = AnomalyLog()
        self.errors: list[str] = []

    def __iter__(self) -> Iterator[dict[str, Any]]:
        ctx = multiprocessing.get_context("fork")
        conns: list[Connection] = []
        procs = []
        for part in range(self.jobs):
            recv, send = ctx.Pipe(duplex=False)
            p = ctx.Process(target=_worker, args=(self.paths, self.limits, part, self.jobs, send), daemon=True)
            p.start()
            send.close()
            conns.append(recv)
            procs.append(p)
        open_conns = {c: part for part, c in enumerate(conns)}
        try:
            while open_conns:
                for c in wait(list(open_conns)):
                    try:
                        kind, payload, counts, errors = c.recv()
                    except EOFError:
                        part = open_conns.pop(c)  # type: ignore[call-overload]
                        raise TlsprobeError(f"analysis worker {part} ended without a result") from None
                    if kind == "records":
                        yield from payload
                    elif kind == "done":
                        self._merge(open_conns.pop(c), payload, counts, errors)  # type: ignore[call-overload]
                    else:
                        raise TlsprobeError(f"analysis worker failed:\n{payload}")
        finally:
            for p in procs:
                if p.is_alive():
                    p.terminate()
                p.join()
            for c in conns:
                c.close()

    def _merge(self, part: int, counters: dict[str, int], counts: dict[str, int], errors: list[str]) -> None:
        for name, value in counters.items():
            if name in _PACKET_LEVEL and part != 0:
                continue
            setattr(self.stats, name, getattr(self.stats, name) + value)
        for code, n in counts.items():
            self.log.add(code, n)
        if part == 0:
            self.errors.extend(errors)


def iter_records_parallel(paths: Sequence[str], jobs: int = 2, limits: Limits = DEFAULT_LIMITS) -> Iterator[dict[str, Any]]:
    """Record dicts (as ``HandshakeRecord.to_dict()``) of every handshake, ``jobs`` processes."""
    run = ParallelRun(paths, jobs, limits)
    yield from run
    if run.errors:
        raise CaptureError(run.errors[0])
