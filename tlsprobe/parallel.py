"""Several analyser processes over the same capture files, each owning a share of the flows.

Every worker reads every packet (reading is cheap) but analyses only the flows of its
partition (a hash of the server's address, the same in both directions; see
:class:`~tlsprobe.pipeline.Analyzer`).  Workers send finished records to the parent in
batches; the parent merges them with the run counters.  Record order between flows may
differ from a single-process run; each record is the same.

Only regular files can be shared this way: stdin and live capture run in one process.
"""

from __future__ import annotations

import multiprocessing
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any, cast

from tlsprobe.anomalies import AnomalyLog
from tlsprobe.capture.files import TrackedCapture
from tlsprobe.detect import load_rules
from tlsprobe.detect.context import NO_OPTIONS, ContextOptions
from tlsprobe.errors import CaptureError, TlsprobeError
from tlsprobe.limits import DEFAULT_LIMITS, Limits
from tlsprobe.pipeline import Analyzer, Stats

BATCH = 256  # records per message: amortises pickling and pipe wake-ups
PROGRESS_INTERVAL = 0.1  # seconds between progress reports

# counters every worker sees for the whole input: taken from partition 0 only
_PACKET_LEVEL = ("packets", "other_packets", "files")


# what the parent needs of a record besides its encoded line (filters, port comparison)
BRIEF_KEYS = ("kind", "src_ip", "dst_ip", "dst_port", "sni", "http_request", "outcome", "interception")


def _worker(paths: Sequence[str], limits: Limits, part: int, nparts: int, conn: Connection, progress: bool,
            rules_paths: tuple[str, ...], http: bool, encode: Callable[[Mapping[str, Any]], str] | None,
            context: ContextOptions) -> None:
    lock = threading.Lock()  # the progress thread shares the pipe

    def send(msg: tuple[Any, ...]) -> None:
        with lock:
            conn.send(msg)

    try:
        # each worker gets its share of the tables and budgets: the run keeps the bounds
        an = Analyzer(limits.per_worker(nparts), (part, nparts),
                      rules=load_rules(rules_paths) if rules_paths else None, http=http, context=context.make())
        batch: list[dict[str, Any]] = []
        errors: list[str] = []
        reading: list[tuple[int, TrackedCapture]] = []  # the file being read, for the sampler
        stop = threading.Event()

        def sample() -> None:  # partition 0 reports how far it has read, for the progress bar
            while not stop.wait(PROGRESS_INTERVAL):
                current = reading[-1] if reading else None
                pos = current[1].position() if current is not None else None
                if current is not None and pos is not None:
                    send(("progress", current[0], pos, None))

        if progress and part == 0:
            threading.Thread(target=sample, daemon=True).start()
        for index, path in enumerate(paths):
            an.capture_name = path
            capture = TrackedCapture(path, an.packet_log, limits)
            reading.append((index, capture))
            try:
                for rec in an.packets(capture):
                    batch.append(_out(rec.to_dict(), encode))
                    if len(batch) >= BATCH:
                        send(("records", batch[:], None, None))
                        batch.clear()
                an.stats.files += 1
            except CaptureError as exc:
                errors.append(str(exc))
            finally:
                reading.clear()
                capture.release()
        stop.set()
        batch.extend(_out(rec.to_dict(), encode) for rec in an.finish())
        if batch:
            send(("records", batch, None, None))
        send(("done", an.stats.counters(), dict(an.log.counts), (errors, an.context.findings())))
    except BaseException:  # report anything to the parent rather than dying silently
        send(("crash", traceback.format_exc(), None, None))
    finally:
        conn.close()


def _out(d: dict[str, Any], encode: Callable[[Mapping[str, Any]], str] | None) -> Any:
    if encode is None:
        return d
    return encode(d), {k: d.get(k) for k in BRIEF_KEYS}


class ParallelRun:
    """Analyse ``paths`` with ``jobs`` worker processes; iterate to get record dicts."""

    def __init__(
        self, paths: Sequence[str], jobs: int, limits: Limits = DEFAULT_LIMITS,
        on_progress: Callable[[int, int], None] | None = None, rules_paths: tuple[str, ...] = (),
        http: bool = False, encode: Callable[[Mapping[str, Any]], str] | None = None,
        context: ContextOptions = NO_OPTIONS,
    ) -> None:
        """``on_progress(file index, bytes read)`` is called as partition 0 reads."""
        if "-" in paths:
            raise ValueError("stdin cannot be shared between workers")
        self.paths = list(paths)
        self.jobs = jobs
        self.limits = limits
        self.stats = Stats()
        self.log = AnomalyLog()
        self.errors: list[str] = []
        self.on_progress = on_progress
        self.rules_paths = rules_paths  # loaded in each worker (compiled rules do not pickle)
        self.http = http
        # workers turn records into (encode(record), brief) pairs; iterate with encoded()
        self.encode = encode
        self.live = Stats()  # updated by the caller as records arrive (progress display)
        self.context = context
        # the workers' end-of-run context findings (each worker owns whole servers; an
        # issuer seen by several workers is reported by each, with its own counts)
        self.findings: list[dict[str, Any]] = []

    def encoded(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """(line, brief) pairs when made with ``encode``: the brief holds BRIEF_KEYS."""
        return self._run()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self._run()

    def _run(self) -> Iterator[Any]:
        ctx = multiprocessing.get_context("fork")
        conns: list[Connection] = []
        procs = []
        for part in range(self.jobs):
            recv, send = ctx.Pipe(duplex=False)
            args = (self.paths, self.limits, part, self.jobs, send, self.on_progress is not None, self.rules_paths,
                    self.http, self.encode, self.context)
            p = ctx.Process(target=_worker, args=args, daemon=True)
            p.start()
            send.close()
            conns.append(recv)
            procs.append(p)
        open_conns = {c: part for part, c in enumerate(conns)}
        try:
            while open_conns:
                for ready in wait(list(open_conns)):
                    c = cast(Connection, ready)
                    try:
                        kind, payload, counts, errors = cast(tuple[Any, Any, Any, Any], c.recv())
                    except EOFError:
                        part = open_conns.pop(c)
                        raise TlsprobeError(f"analysis worker {part} ended without a result") from None
                    if kind == "records":
                        yield from payload
                    elif kind == "progress":
                        if self.on_progress is not None:
                            self.on_progress(payload, counts)
                    elif kind == "done":
                        errors, findings = errors
                        self.findings.extend(findings)
                        self._merge(open_conns.pop(c), payload, counts, errors)
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
