"""The run summary: counters for humans (stderr) and machines (JSON)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from tlsprobe.anomalies import AnomalyLog, describe
from tlsprobe.pipeline import Stats
from tlsprobe.text import terminal_safe


def build_summary(stats: Stats, log: AnomalyLog, errors: Sequence[str] = ()) -> dict[str, Any]:
    """The summary of a run: ``Stats.as_dict`` plus derived rates and unreadable inputs."""
    s: dict[str, Any] = stats.as_dict(log)
    handshakes = stats.handshakes
    seconds = float(s.get("seconds") or 0.0)
    s["non_standard_port_share"] = (
        round(stats.non_standard_port / handshakes, 4) if handshakes else 0.0
    )
    s["packets_per_second"] = round(stats.packets / seconds) if seconds > 0 else None
    s["errors"] = list(errors)
    return s


MAX_FINDINGS_SHOWN = 20


def _n(v: object) -> str:
    return f"{v:,}" if isinstance(v, int) else str(v)


def format_summary(summary: Mapping[str, Any]) -> list[str]:
    """The summary as lines of plain text, safe for a terminal."""
    errors = summary.get("errors") or []
    files = f"{_n(summary.get('files', 0))} file{'s' if summary.get('files') != 1 else ''}"
    if errors:
        files += f" read, {len(errors)} unreadable"
    hs = summary.get("handshakes", 0)
    share = float(summary.get("non_standard_port_share") or 0.0)
    pps = summary.get("packets_per_second")
    live = summary.get("live")
    if live:
        names = ", ".join(terminal_safe(str(n), 64) for n in live.get("interfaces") or [])
        files = f"captured on {names or 'nothing'}"
    lines = [
        f"tlsprobe: {files}, {_n(summary.get('packets', 0))} packets, "
        f"{_n(summary.get('flows', 0))} flows, {_n(hs)} handshakes "
        f"({_n(summary.get('non_standard_port', 0))} on non-standard ports, {share:.1%}) "
        f"in {float(summary.get('seconds') or 0):.2f} s"
        + (f" ({_n(pps)} packets/s)" if pps is not None else ""),
        f"intercepted: {_n(summary.get('intercepted', 0))} record"
        f"{'s' if summary.get('intercepted') != 1 else ''} (handshakes and plain HTTP requests)",
    ]
    if live:
        received, dropped = int(live.get("kernel_received") or 0), int(live.get("kernel_dropped") or 0)
        share = dropped / received if received else 0.0  # the kernel counts drops among the received
        lines.append(f"kernel: {_n(received)} packets received, {_n(dropped)} dropped ({share:.2%})"
                     + (f"; {_n(live.get('written', 0))} written to {terminal_safe(str(live['pcap']), 400)}"
                        if live.get("pcap") else ""))
        why = f" ({terminal_safe(str(live['interface_error']), 400)})" if live.get("interface_error") else ""
        lines.append(f"stopped by: {terminal_safe(str(live.get('stopped_by') or 'end'), 200)}{why}")
        if live.get("interfaces_lost"):
            lost = ", ".join(terminal_safe(str(n), 64) for n in live["interfaces_lost"])
            lines.append(f"went down during the capture (the others went on): {lost}")
    lines += _findings("port and SNI comparison (fails on one, succeeds on another):",
                       summary.get("port_comparison") or [], "summary")
    lines += _findings("across flows:", summary.get("context_findings") or [], "text")
    anomalies: Mapping[str, int] = summary.get("anomalies") or {}
    if anomalies:
        width = max(len(code) for code in anomalies)
        count_w = max(len(_n(n)) for n in anomalies.values())
        lines.append("anomalies:")
        for code, n in sorted(anomalies.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"  {terminal_safe(code):<{width}}  {_n(n):>{count_w}}  {terminal_safe(describe(code), 400)}")
    else:
        lines.append("anomalies: none")
    return lines


def _findings(title: str, findings: list[Mapping[str, Any]], key: str) -> list[str]:
    """A titled block of findings, at most MAX_FINDINGS_SHOWN of them, their ``key`` text escaped."""
    if not findings:
        return []
    lines = [title] + [f"  {terminal_safe(str(f.get(key)), 400)}" for f in findings[:MAX_FINDINGS_SHOWN]]
    if len(findings) > MAX_FINDINGS_SHOWN:
        lines.append(f"  ... {len(findings) - MAX_FINDINGS_SHOWN} more in --summary-json")
    return lines


def print_summary(summary: Mapping[str, Any], stream: TextIO) -> None:
    """Write the human summary to ``stream`` (stderr in the CLI)."""
    stream.write("\n".join(format_summary(summary)) + "\n")
    stream.flush()


def write_summary_json(summary: Mapping[str, Any], stream: TextIO) -> None:
    """Write the summary as one pretty-printed JSON object."""
    json.dump(summary, stream, indent=2, ensure_ascii=True)
    stream.write("\n")
    stream.flush()
