"""The report's charts as SVG text (matplotlib, Agg backend, nothing shown on screen).

Readable in light and dark themes: transparent background, mid-grey text and axes,
mid-tone colours.  Deterministic: no date in the metadata, a fixed hash salt, text
kept as text (no embedded glyphs), so the same data gives the same bytes.  Labels are
only numbers and fixed words - no wire string ever reaches a chart.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timezone
from typing import Any, cast

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from tlsprobe.report.aggregate import DELAY_SERIES, OUTCOMES, TIMELINE, Aggregator, PortRow

GREY = "#8a8a8a"
COLOURS = {
    "server_hello": "#3f9f5f", "tls_alert": "#e08a1e", "rst": "#d9534f", "fin": "#a66bd3",
    "plaintext": "#c7a12a", "silence": "#4f8fe6", "incomplete": "#9a9a9a", "http_response": "#3aa7a3",
    "other": "#a5775a",
    "completed": "#3f9f5f", "failed": "#e08a1e", "intercepted": "#d9534f",
    DELAY_SERIES[0]: "#3f9f5f", DELAY_SERIES[1]: "#e08a1e", DELAY_SERIES[2]: "#d9534f",
}
STYLE = {
    "svg.fonttype": "none", "svg.hashsalt": "tlsprobe-report",
    "font.family": "sans-serif", "font.size": 11,
    "text.color": GREY, "axes.labelcolor": GREY, "axes.edgecolor": GREY, "axes.titlecolor": GREY,
    "xtick.color": GREY, "ytick.color": GREY, "grid.color": GREY, "grid.alpha": 0.3,
    "legend.frameon": False, "legend.labelcolor": GREY,
    "figure.facecolor": "none", "axes.facecolor": "none", "savefig.facecolor": "none",
    "savefig.transparent": True,
}
#: Ports drawn in the outcomes chart (the busiest ones).
MAX_PORTS_DRAWN = 15


@dataclass(frozen=True, slots=True)
class Chart:
    """One chart: a file name, its SVG text and a text alternative."""

    name: str
    title: str
    svg: str
    alt: str


def _svg(fig: Figure) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": "tlsprobe"}, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def charts(agg: Aggregator) -> list[Chart]:
    """Every chart the data supports (a chart with nothing to show is left out)."""
    with plt.rc_context(cast(Any, STYLE)):
        out = [_outcomes_per_port(agg), _timeline(agg), _delay_vs_rtt(agg), _ttl(agg)]
    return [c for c in out if c is not None]


def busiest_ports(agg: Aggregator, n: int) -> list[PortRow]:
    """The ``n`` ports with most handshakes (ties by port number)."""
    return sorted(agg.ports.values(), key=lambda r: (-r.handshakes, r.port if r.port is not None else 1 << 20,
                                                    r.transport))[:n]


def _outcomes_per_port(agg: Aggregator) -> Chart | None:
    rows = busiest_ports(agg, MAX_PORTS_DRAWN)
    if not rows:
        return None
    rows.reverse()  # busiest on top
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(rows) + 1.4))
    labels = [r.label for r in rows]
    left = [0] * len(rows)
    for outcome in OUTCOMES:
        values = [r.outcomes.get(outcome, 0) for r in rows]
        if any(values):
            ax.barh(labels, values, left=left, color=COLOURS[outcome], label=outcome, height=0.6)
            left = [a + b for a, b in zip(left, values, strict=True)]
    for i, r in enumerate(rows):
        if r.intercepted:
            ax.text(left[i], i, f"  {r.intercepted} intercepted", va="center", fontsize=9)
    ax.set_xlabel("TLS handshakes")
    ax.set_ylabel("destination port")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(axis="x")
    ax.set_axisbelow(True)
    ax.margins(x=0.25)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=4, fontsize=9)
    alt = "; ".join(f"port {r.label}: " + ", ".join(f"{n} {o}" for o, n in sorted(r.outcomes.items()))
                    for r in reversed(rows))
    return Chart("outcomes-per-port.svg", "Outcomes per destination port", _svg(fig), alt)


def _timeline(agg: Aggregator) -> Chart | None:
    rows = agg.timeline.rows()
    if not rows:
        return None
    width = agg.timeline.width
    fig, ax = plt.subplots(figsize=(7.5, 3.0))
    xs = [t / 86400 for t, _ in rows]  # matplotlib's date unit: days since 1970-01-01
    bottom = [0] * len(rows)
    bar_width = width / 86400 * 0.9
    for i, name in enumerate(TIMELINE):
        values = [counts[i] for _, counts in rows]
        if any(values):
            drawn = [j for j, v in enumerate(values) if v]  # empty buckets cost bytes, show nothing
            ax.bar([xs[j] for j in drawn], [values[j] for j in drawn], width=bar_width,
                   bottom=[bottom[j] for j in drawn], color=COLOURS[name], label=name, align="edge")
            bottom = [a + b for a, b in zip(bottom, values, strict=True)]
    ax.xaxis_date(tz=timezone.utc)
    locator = mdates.AutoDateLocator(tz=timezone.utc)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=timezone.utc))  # type: ignore[no-untyped-call]
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"handshakes per {_duration(width)}")
    ax.set_xlabel("time (UTC)")
    ax.grid(axis="y")
    ax.set_axisbelow(True)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, fontsize=9)
    totals = [sum(c[i] for _, c in rows) for i in range(len(TIMELINE))]
    alt = (f"{len(rows)} buckets of {_duration(width)}: "
           + ", ".join(f"{n} {name}" for name, n in zip(TIMELINE, totals, strict=True)))
    return Chart("timeline.svg", "Handshakes and failures over time", _svg(fig), alt)


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)} {unit}"
    return f"{seconds:g} s"


def _delay_vs_rtt(agg: Aggregator) -> Chart | None:
    if not any(agg.delays[s].items for s in DELAY_SERIES[1:]):
        return None  # nothing failed: genuine ServerHellos alone say little
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    every: list[float] = []
    for name, marker in zip(DELAY_SERIES, ("o", "s", "^"), strict=True):
        points = agg.delays[name].items
        if points:
            xs = [p[0] for p in points]
            ys = [max(p[1], 0.01) for p in points]
            every += xs + ys
            ax.scatter(xs, ys, s=22, marker=marker, color=COLOURS[name], label=f"{name} ({len(points)})",
                       alpha=0.8, edgecolors="none", rasterized=len(points) > 300)  # many points: one image
    lo, hi = min(every) / 2, max(every) * 2
    ax.plot([lo, hi], [lo, hi], color=GREY, linestyle="--", linewidth=1, label="one RTT")
    ax.plot([lo, hi], [0.8 * lo, 0.8 * hi], color=GREY, linestyle=":", linewidth=1, label="0.8 RTT")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("handshake RTT (ms)")
    ax.set_ylabel("time from ClientHello to first reaction (ms)")
    ax.grid(True, which="major")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=9)
    counts = {name: len(agg.delays[name].items) for name in DELAY_SERIES}
    below = sum(1 for rtt, d in agg.delays[DELAY_SERIES[2]].items if d < 0.8 * rtt)
    alt = (", ".join(f"{n} {name}" for name, n in counts.items())
           + f"; {below} of the intercepted reactions came faster than 0.8 RTT")
    return Chart("delay-vs-rtt.svg", "Reaction delay against the handshake RTT", _svg(fig), alt)


def _ttl(agg: Aggregator) -> Chart | None:
    if not agg.ttl_injected:
        return None
    values = sorted(set(agg.ttl_genuine) | set(agg.ttl_injected))
    fig, ax = plt.subplots(figsize=(7.0, 3.2))
    positions = range(len(values))
    series: Sequence[tuple[str, Counter[int], float]] = (
        ("server's SYN-ACK (genuine)", agg.ttl_genuine, -0.2),
        ("packet that ended an intercepted handshake", agg.ttl_injected, 0.2),
    )
    for (name, counter, offset), colour in zip(series, ("#3f9f5f", "#d9534f"), strict=True):
        ax.bar([p + offset for p in positions], [counter.get(v, 0) for v in values], width=0.4,
               color=colour, label=name)
    ax.set_xticks(list(positions), [str(v) for v in values])
    ax.set_xlabel("IP TTL / hop limit as captured")
    ax.set_ylabel("packets")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(axis="y")
    ax.set_axisbelow(True)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=1, fontsize=9)
    alt = ("genuine SYN-ACK TTLs " + ", ".join(f"{v}: {n}" for v, n in sorted(agg.ttl_genuine.items()))
           + "; intercepted " + ", ".join(f"{v}: {n}" for v, n in sorted(agg.ttl_injected.items())))
    return Chart("ttl.svg", "TTL of injected and genuine packets", _svg(fig), alt)
