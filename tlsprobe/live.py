"""``tlsprobe sniff`` minus option parsing: live frames through the offline pipeline.

    LiveCapture --batches of (ts, linktype, frame)--> [pcap writer] --> Analyzer --> sink

Frames are analysed exactly as a capture file's are.  Timers run on packet time; while
the network is quiet the analyser's clock is advanced to the wall clock (minus a small
grace for frames still in the kernel's queue), so a verdict that waits for an evidence
or silence window is emitted when it is final, not when the next packet happens to come.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from tlsprobe.capture.live import InterfaceDown, LiveCapture
from tlsprobe.capture.writer import Writer, open_writer
from tlsprobe.compare import PortComparison
from tlsprobe.detect import load_rules
from tlsprobe.detect.context import NO_OPTIONS, ContextOptions
from tlsprobe.limits import LIVE_SETTLE_S
from tlsprobe.pipeline import Analyzer
from tlsprobe.sinks import Sink
from tlsprobe.sinks.run import Comparing, RunResult

# How often (seconds) a quiet capture advances the clock, flushes the pcap file and
# reads the kernel's drop counter.
TICK = 0.25
# Frames stamped this long ago may still wait in the socket queue when the clock is
# advanced without them.
GRACE = 0.2


@dataclass(slots=True)
class SniffOptions:
    """What to capture and when to stop (0 / None: no such limit)."""

    interfaces: Sequence[str]
    bpf: str | None = None
    write: str | None = None
    count: int = 0
    duration: float | None = None
    handshakes: int = 0
    promisc: bool = True
    buffer_bytes: int = 32 << 20
    rules_paths: Sequence[str] = ()
    http: bool = False
    context: ContextOptions = NO_OPTIONS


@dataclass
class SniffResult(RunResult):
    """A run's counters plus what only a live capture knows."""

    interfaces: list[tuple[str, int]] = field(default_factory=list)
    kernel_received: int = 0
    kernel_dropped: int = 0
    pcap: str | None = None
    written: int = 0
    stopped_by: str = ""
    interface_error: str | None = None
    interfaces_lost: list[str] = field(default_factory=list)  # of -i any: went down, the others went on

    def summary(self) -> dict[str, Any]:
        summary = super().summary()
        summary["live"] = {
            "interfaces": [name for name, _ in self.interfaces],
            "kernel_received": self.kernel_received,
            "kernel_dropped": self.kernel_dropped,
            "pcap": self.pcap,
            "written": self.written,
            "stopped_by": self.stopped_by,
            "interface_error": self.interface_error,
            "interfaces_lost": self.interfaces_lost,
        }
        return summary


class StopFlag:
    """Set by a signal (or anyone) to end the capture at the next tick."""

    def __init__(self) -> None:
        self.reason: str | None = None

    def set(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason

    def __bool__(self) -> bool:
        return self.reason is not None


@contextmanager
def stop_on_signals(flag: StopFlag) -> Iterator[StopFlag]:
    """SIGINT, SIGTERM and SIGHUP set ``flag`` instead of killing the run mid-record."""
    def handler(signum: int, _frame: FrameType | None) -> None:
        flag.set(signal.Signals(signum).name)

    wanted = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, handler) for sig in wanted}
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def sniff(options: SniffOptions, sink: Sink, *, stop: StopFlag | None = None,
          on_start: Callable[[LiveCapture], None] | None = None,
          analyzer: Analyzer | None = None) -> SniffResult:
    """Capture until a limit in ``options`` is reached, ``stop`` is set, or an interface
    goes down; write every record to ``sink`` as soon as it is final.

    Raises :class:`~tlsprobe.capture.live.LiveCaptureError` when capture cannot start
    and :class:`~tlsprobe.errors.CaptureError` when the pcap file cannot be written.
    The sink is not closed.
    """
    stop = stop if stop is not None else StopFlag()
    rules = load_rules(options.rules_paths) if options.rules_paths else None
    an = analyzer or Analyzer(rules=rules, http=options.http, context=options.context.make(), settle=LIVE_SETTLE_S)
    an.capture_name = "live:" + ",".join(options.interfaces)
    compare = PortComparison(age_out=True)  # hours of traffic: keep the recent groups
    out = Comparing(sink, compare)
    capture = LiveCapture(options.interfaces, options.bpf, options.promisc, options.buffer_bytes)
    result = SniffResult(an.stats, an.log, comparison=compare, interfaces=capture.interfaces,
                         pcap=options.write)
    writer: Writer | None = None
    try:
        if options.write:
            writer = open_writer(options.write, {lt for _, lt in capture.interfaces})
        if on_start is not None:
            on_start(capture)
        _loop(options, capture, an, out, writer, stop, result)
        if result.stopped_by != "handshakes":
            for rec in an.finish():
                out.write(rec.to_dict())
    finally:
        capture.close()
        result.kernel_received, result.kernel_dropped = capture.kernel_received, capture.kernel_dropped
        result.interfaces_lost = list(capture.lost)
        if writer is not None:
            result.written = writer.packets
            writer.close()
    an.stats.files = 1
    result.findings = an.context.findings()
    return result


def _loop(options: SniffOptions, capture: LiveCapture, an: Analyzer, out: Sink, writer: Writer | None,
          stop: StopFlag, result: SniffResult) -> None:
    started = time.monotonic()
    deadline = started + options.duration if options.duration else None
    next_tick = 0.0
    remaining = options.count or -1
    emitted = 0
    wanted = options.handshakes or -1
    try:
        for batch in capture.batches(TICK):
            if remaining >= 0 and len(batch) > remaining:
                del batch[remaining:]
            if writer is not None:
                write = writer.write
                for (ts, linktype, frame), ifname in batch:
                    write(ts, linktype, frame, ifname)
            records = an.packets([packet for packet, _ in batch]) if batch else iter(())
            now = time.monotonic()
            if not batch or now >= next_tick:
                next_tick = now + TICK
                records = _chain(records, an, time.time() - GRACE)
                capture.statistics()
                if writer is not None:
                    writer.flush()
            for rec in records:
                out.write(rec.to_dict())
                emitted += 1
                if emitted == wanted:
                    result.stopped_by = "handshakes"
                    return
            if remaining > 0:
                remaining -= len(batch)
                if remaining == 0:
                    result.stopped_by = "count"
                    return
            if stop:
                result.stopped_by = stop.reason or "stop"
                return
            if deadline is not None and time.monotonic() >= deadline:
                result.stopped_by = "duration"
                return
    except InterfaceDown as exc:
        result.interface_error = str(exc)
        result.stopped_by = "interface down"


def _chain(records: Iterator[Any], an: Analyzer, now: float) -> Iterator[Any]:
    yield from records
    yield from an.tick(now)
