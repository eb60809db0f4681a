#!/usr/bin/env python3
"""Benchmark tlsprobe against tshark on a large synthetic capture with ground truth.

Runs, on the same capture and in the same invocation:

* ``tlsprobe analyze CAPTURE --format jsonl`` (the console script, or
  ``python -m tlsprobe`` when the script is not installed), stdout to a file;
* ``tshark -n -r CAPTURE -Y tls.handshake.type==1 -T fields -e tls.handshake.ja3``.

For each tool it reports the best wall time of ``--repeat`` runs, packets per second
(packet count read from the capture), peak resident memory and recall against the
capture's ground truth (``CAPTURE.truth.jsonl`` written by ``make_capture.py``):

* tlsprobe: a ground-truth ClientHello counts as found when a JSONL record has the same
  transport (``tcp`` / ``quic``) and client -> server 5-tuple and the same ``sni``, and,
  for TLS over TCP, the same ``ja3``. For QUIC, JA3 is not standardised: when the truth has
  tshark's JA3 it is compared and differences are reported, but they do not count as misses;
* tshark: its JA3 values (``tls.handshake.type==1`` includes QUIC ClientHellos) are matched
  against the ground truth's as a multiset; its QUIC recall is the part matched by JA3
  values of QUIC hellos (JA3 values shared with TCP hellos are credited to TCP first).

Peak RSS is measured per run, separately for each tool: the tool is started with
``subprocess.Popen`` and reaped with ``os.wait4``, whose ``ru_maxrss`` covers exactly that
child (and descendants it waited for); a /proc sampler of the whole process tree catches
multi-process tools as well. The larger value is reported.

Prints a Markdown table (machine, versions, results, tlsprobe/tshark throughput ratio);
``--markdown FILE`` also writes it to FILE. Exits with status 1 when tlsprobe fails or
its recall is below 1.0 (TLS over TCP and QUIC together), so the benchmark cannot pass
by missing hellos.

Usage::

    python bench/run.py                  # generates bench/out/bench.pcap (1M packets) if missing
    python bench/run.py --quick          # 50k packets, 1 repeat: a smoke test
    python bench/run.py CAPTURE.pcap --repeat 5 --markdown results.md
"""

from __future__ import annotations

import argparse
import collections
import ipaddress
import json
import os
import platform
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
OUT_DIR = BENCH_DIR / "out"
QUICK_PACKETS = 50_000
TSHARK_FILTER = "tls.handshake.type==1"


# --------------------------------------------------------------------------------------
# Capture facts
# --------------------------------------------------------------------------------------


def count_packets(path: Path) -> int:
    """Count the records of a classic pcap (any byte order / timestamp precision).

    Falls back to ``capinfos -c -M`` for other formats (pcapng).
    """
    with path.open("rb") as fh:
        head = fh.read(24)
        magic = head[:4]
        if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
            rec = struct.Struct("<IIII")
        elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
            rec = struct.Struct(">IIII")
        else:
            out = subprocess.run(["capinfos", "-c", "-M", str(path)], capture_output=True, text=True, check=True)
            for line in out.stdout.splitlines():
                if "Number of packets" in line:
                    return int(line.split(":")[1].strip())
            raise SystemExit(f"cannot count packets of {path}")
        n = 0
        size = path.stat().st_size
        pos = 24
        while pos + 16 <= size:
            fh.seek(pos)
            hdr = fh.read(16)
            if len(hdr) < 16:
                break
            incl = rec.unpack(hdr)[2]
            pos += 16 + incl
            if pos > size:  # truncated last record: not a packet
                break
            n += 1
        return n


def load_truth(path: Path) -> list[dict[str, Any]]:
    """Read the ground-truth JSONL written by make_capture.py."""
    with path.open() as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _ip(text: Any) -> str:
    """Canonical text form of an IP address (so IPv6 spellings compare equal)."""
    try:
        return ipaddress.ip_address(str(text)).compressed
    except ValueError:
        return str(text)


def _sni(value: Any) -> str | None:
    """Normalise an SNI value: empty or missing -> None."""
    return str(value) if value not in (None, "") else None


def _transport(rec: dict[str, Any]) -> str:
    """Transport of a record or truth line (older truth files have none: TCP)."""
    return str(rec.get("transport") or "tcp")


def _key(rec: dict[str, Any]) -> tuple[str, str, int, str, int]:
    """(transport, client address, client port, server address, server port)."""
    return (_transport(rec), _ip(rec["src_ip"]), int(rec["src_port"]), _ip(rec["dst_ip"]), int(rec["dst_port"]))


# --------------------------------------------------------------------------------------
# Measuring a command
# --------------------------------------------------------------------------------------


@dataclass
class Run:
    """One timed execution of a command."""

    wall: float
    rss_kib: int  # ru_maxrss of the reaped child (KiB on Linux)
    tree_rss_kib: int  # peak of the sampled RSS sum over the process tree
    returncode: int
    stderr: str


@dataclass
class ToolResult:
    """Everything measured for one tool."""

    name: str
    command: list[str]
    runs: list[Run] = field(default_factory=list)
    found: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def best(self) -> Run | None:
        """The fastest successful run."""
        ok = [r for r in self.runs if r.returncode == 0]
        return min(ok, key=lambda r: r.wall) if ok else None

    @property
    def peak_rss_kib(self) -> int:
        """Largest peak RSS over all runs (tree sampling or rusage, whichever is larger)."""
        return max((max(r.rss_kib, r.tree_rss_kib) for r in self.runs), default=0)


def _children_map() -> dict[int, list[int]]:
    """Map parent pid -> child pids, from /proc."""
    kids: dict[int, list[int]] = collections.defaultdict(list)
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(b")") + 2 :].split()[1])
        kids[ppid].append(int(entry.name))
    return kids


def _rss_kib(pid: int) -> int:
    """Current VmRSS of ``pid`` in KiB (0 if gone)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class TreeSampler(threading.Thread):
    """Samples the summed RSS of a process and its descendants (catches multi-process tools)."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        """Sample until stopped."""
        if not os.path.isdir("/proc"):
            return
        while not self.stop.is_set():
            kids = _children_map()
            todo, total = [self.pid], 0
            while todo:
                pid = todo.pop()
                total += _rss_kib(pid)
                todo.extend(kids.get(pid, ()))
            self.peak = max(self.peak, total)
            self.stop.wait(self.interval)


def measure(cmd: list[str], stdout_path: Path, cwd: Path | None = None) -> Run:
    """Run ``cmd`` once with stdout to ``stdout_path``; time it and take its peak RSS."""
    with stdout_path.open("wb") as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=cwd)
        sampler = TreeSampler(proc.pid)
        sampler.start()
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        sampler.stop.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
    return Run(wall, int(usage.ru_maxrss), sampler.peak, proc.returncode, stderr)


# --------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------


def score_tlsprobe(jsonl: Path, truth: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    """Match tlsprobe's JSONL records to the ground truth by transport and 5-tuple.

    TLS over TCP: ``ja3`` and ``sni`` must agree. QUIC: ``sni`` must agree; tshark's JA3
    (when the truth has one) is compared for information only.
    """
    by_tuple: dict[tuple[str, str, int, str, int], list[dict[str, Any]]] = collections.defaultdict(list)
    records = bad_lines = quic_records = 0
    with jsonl.open() as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                key = _key(rec)
            except (ValueError, KeyError, TypeError):
                bad_lines += 1
                continue
            records += 1
            quic_records += key[0] == "quic"
            by_tuple[key].append(rec)
    found = wrong = missing = dup_flows = 0
    quic_truth = quic_found = quic_ja3_checked = quic_ja3_agree = 0
    quic_ja3_differs: dict[str, str] = {}  # hello source -> "tshark X, tlsprobe Y"
    ja4_checked = ja4_agree = 0
    ja4_differs: dict[str, str] = {}  # hello source -> "expected X, got Y" (distinct hellos)
    examples: list[str] = []
    truth_keys = set()
    for t in truth:
        key = _key(t)
        quic = key[0] == "quic"
        quic_truth += quic
        truth_keys.add(key)
        recs = by_tuple.get(key, [])
        if len(recs) > 1:
            dup_flows += 1
        same_sni = [r for r in recs if _sni(r.get("sni")) == _sni(t["sni"])]
        hit = next((r for r in same_sni if r.get("ja3") == t["ja3"]), None)
        if hit is None and quic:
            hit = next(iter(same_sni), None)
        if hit is not None:
            found += 1
            if quic:
                quic_found += 1
                if t.get("ja3"):
                    quic_ja3_checked += 1
                    if hit.get("ja3") == t["ja3"]:
                        quic_ja3_agree += 1
                    else:
                        quic_ja3_differs[str(t.get("hello_source"))] = f"tshark {t['ja3']}, tlsprobe {hit.get('ja3')}"
            if t.get("ja4"):
                ja4_checked += 1
                if hit.get("ja4") == t["ja4"]:
                    ja4_agree += 1
                else:
                    ja4_differs[str(t.get("hello_source"))] = (
                        f"{t['ja4']} ({t.get('ja4_source')}) vs tlsprobe {hit.get('ja4')}"
                    )
        elif recs:
            wrong += 1
            if len(examples) < 5:
                r = recs[0]
                examples.append(
                    f"{key}: ja3 {r.get('ja3')} sni {r.get('sni')!r}, expected {t['ja3']} {t['sni']!r}"
                    f" ({t.get('hello_source')})"
                )
        else:
            missing += 1
            if len(examples) < 5:
                how = (
                    f"Initial datagrams {t.get('client_initial_datagrams')}"
                    if quic
                    else f"segments {t.get('ch_segments')}"
                )
                examples.append(f"{key}: no record ({t.get('hello_source')}, {how})")
    extra = sum(len(v) for k, v in by_tuple.items() if k not in truth_keys)
    return found, {
        "records": records,
        "quic_records": quic_records,
        "unparsable_lines": bad_lines,
        "wrong_values": wrong,
        "missing": missing,
        "flows_with_several_records": dup_flows,
        "records_not_in_truth": extra,
        "quic_truth": quic_truth,
        "quic_found": quic_found,
        "quic_ja3_checked": quic_ja3_checked,
        "quic_ja3_agree": quic_ja3_agree,
        "quic_ja3_differs": quic_ja3_differs,
        "ja4_checked": ja4_checked,
        "ja4_agree": ja4_agree,
        "ja4_differs": ja4_differs,
        "examples": examples,
    }


def score_tshark(out: Path, truth: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    """Match tshark's JA3 values against the ground truth's, as multisets.

    The QUIC part of the matches is, per JA3 value, what is left after crediting the TCP
    hellos with that value (QUIC and TCP hellos rarely share a JA3: QUIC adds extension 57).
    """
    got: collections.Counter[str] = collections.Counter()
    with out.open() as fh:
        for line in fh:
            for value in line.strip().split(","):
                if value:
                    got[value] += 1
    want = collections.Counter(t["ja3"] for t in truth if t.get("ja3"))
    tcp_want = collections.Counter(t["ja3"] for t in truth if t.get("ja3") and _transport(t) != "quic")
    quic_want = collections.Counter(t["ja3"] for t in truth if t.get("ja3") and _transport(t) == "quic")
    matched = sum((got & want).values())
    quic_matched = sum(max(0, min(got[v], want[v]) - tcp_want[v]) for v in quic_want)
    return matched, {
        "ja3_values": sum(got.values()),
        "unmatched_values": sum((got - want).values()),
        "quic_truth": sum(_transport(t) == "quic" for t in truth),
        "quic_found": quic_matched,
        "quic_ja3_shared_with_tcp": len(set(quic_want) & set(tcp_want)),
        "quic_distinct": len({t.get("hello_source") for t in truth if _transport(t) == "quic"}),
    }


def diagnose_tshark(tshark: str, capture: Path, truth: list[dict[str, Any]]) -> dict[str, int]:
    """Untimed extra tshark pass with addresses: break tshark's misses down by cause."""
    cmd = [
        tshark, "-n", "-r", str(capture), "-Y", TSHARK_FILTER, "-T", "fields", "-E", "separator=/t",
        "-e", "ip.src", "-e", "ipv6.src", "-e", "tcp.srcport", "-e", "udp.srcport", "-e", "tls.handshake.ja3",
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=False).stdout
    seen: set[tuple[str, int, str]] = set()
    for line in out.splitlines():
        v4, v6, tport, uport, ja3s = [*line.split("\t"), "", "", "", "", ""][:5]
        port = tport or uport
        if port:
            for ja3 in ja3s.split(","):
                seen.add((_ip(v4 or v6), int(port), ja3))
    causes: collections.Counter[str] = collections.Counter()
    replayed: set[str] = set()  # QUIC connections already replayed earlier (same DCID)
    for t in sorted(truth, key=lambda t: t.get("flow_start", 0)):
        quic_seen_before = _transport(t) == "quic" and t.get("hello_source") in replayed
        if _transport(t) == "quic":
            replayed.add(str(t.get("hello_source")))
        if (_ip(t["src_ip"]), int(t["src_port"]), t["ja3"]) in seen:
            continue
        if quic_seen_before:
            causes["QUIC connection replayed earlier in the capture (same DCID)"] += 1
        elif _transport(t) == "quic":
            causes["QUIC, first replay of the connection"] += 1
        elif t["dst_port"] == 8080:
            causes["port 8080 (decoded as HTTP)"] += 1
        elif t.get("ch_out_of_order"):
            causes["ClientHello segments out of order"] += 1
        elif t.get("ch_segments", 1) > 1:
            causes["ClientHello split over segments (in order)"] += 1
        elif t.get("ch_retransmitted"):
            causes["ClientHello retransmitted"] += 1
        else:
            causes["other"] += 1
    return dict(causes.most_common())


# --------------------------------------------------------------------------------------
# Machine facts and report
# --------------------------------------------------------------------------------------


def machine_info(tshark: str | None) -> dict[str, str]:
    """CPU model, core count, OS, Python / tshark / tlsprobe versions."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": str(os.cpu_count() or "?"),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }
    try:
        mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
        info["memory"] = f"{mem_kib / 1024**2:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    if tshark:
        try:
            line = subprocess.run([tshark, "--version"], capture_output=True, text=True, check=True).stdout
            first = line.splitlines()[0].replace("TShark (Wireshark) ", "").strip()
            info["tshark"] = first.split(" ")[0] if first else "unknown"
        except (OSError, subprocess.CalledProcessError, IndexError):
            info["tshark"] = "unavailable"
    try:
        from importlib.metadata import version

        info["tlsprobe"] = version("tlsprobe")
    except Exception:  # not installed: report the source tree instead
        info["tlsprobe"] = "source tree"
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        if rev.returncode == 0:
            info["commit"] = rev.stdout.strip()
            dirty = subprocess.run(
                ["git", "-C", str(REPO), "status", "--porcelain", "--", "tlsprobe"], capture_output=True, text=True
            )
            if dirty.stdout.strip():
                info["commit"] += " + uncommitted changes in tlsprobe/"
    except OSError:
        pass
    return info


def _fmt_int(n: float) -> str:
    return f"{n:,.0f}"


def render(
    capture: Path,
    packets: int,
    meta: dict[str, Any],
    truth_n: int,
    info: dict[str, str],
    results: list[ToolResult],
    repeat: int,
    tshark_causes: dict[str, int] | None,
    quic_n: int = 0,
) -> str:
    """The Markdown report."""
    size_mb = capture.stat().st_size / 1e6
    flows = meta.get("flows")
    lines = [
        f"### tlsprobe vs tshark on `{capture.name}`",
        "",
        f"Capture: {_fmt_int(packets)} packets, "
        + (f"{_fmt_int(flows)} flows, " if flows else "")
        + (
            f"{_fmt_int(truth_n)} ClientHellos in the ground truth ({_fmt_int(truth_n - quic_n)} TLS over TCP, "
            f"{_fmt_int(quic_n)} QUIC), "
            if truth_n
            else "no ground truth, "
        )
        + f"{size_mb:,.1f} MB"
        + (f" (`make_capture.py --seed {meta['seed']}`)" if "seed" in meta else "")
        + ".",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores"
        + (f", {info['memory']} RAM" if "memory" in info else "")
        + f", {info['os']}; Python {info['python']}, TShark {info.get('tshark', '-')}, "
        f"tlsprobe {info.get('tlsprobe', '-')}" + (f" (commit {info['commit']})" if "commit" in info else "") + ".",
        "",
        f"| tool | wall time (best of {repeat}) | packets/s | peak RSS | ClientHellos found | recall "
        "| QUIC found | QUIC recall |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    pps: dict[str, float] = {}
    for res in results:
        best = res.best
        if best is None:
            lines.append(f"| {res.name} | failed | - | - | - | - | - | - |")
            continue
        pps[res.name] = packets / best.wall
        recall = f"{res.found / truth_n:.4f}" if res.found is not None and truth_n else "-"
        found = f"{_fmt_int(res.found)} / {_fmt_int(truth_n)}" if res.found is not None else "-"
        q_found, q_recall = "-", "-"
        if res.found is not None and quic_n and "quic_found" in res.detail:
            q = res.detail["quic_found"]
            q_found, q_recall = f"{_fmt_int(q)} / {_fmt_int(quic_n)}", f"{q / quic_n:.4f}"
        lines.append(
            f"| {res.name} | {best.wall:.2f} s | {_fmt_int(pps[res.name])} | "
            f"{res.peak_rss_kib / 1024:,.0f} MiB | {found} | {recall} | {q_found} | {q_recall} |"
        )
    lines.append("")
    if "tlsprobe" in pps and "tshark" in pps:
        lines.append(f"tlsprobe / tshark packets-per-second ratio: **{pps['tlsprobe'] / pps['tshark']:.2f}×**")
        lines.append("")
    lines.append("Commands (stdout to a file):")
    lines.append("")
    for res in results:
        shown = [("CAPTURE" if a == str(capture) else a) for a in res.command]
        lines.append(f"- {res.name}: `{shlex.join(shown)}`")
    notes: list[str] = []
    for res in results:
        if res.error:
            notes.append(f"{res.name}: {res.error}")
        d = res.detail
        if res.name == "tlsprobe" and d:
            notes.append(
                f"tlsprobe: {_fmt_int(d['records'])} records; {d['missing']} hellos without a record, "
                f"{d['wrong_values']} with a different ja3/sni, {d['records_not_in_truth']} records on "
                f"flows outside the truth, {d['flows_with_several_records']} truth flows with >1 record"
                + (f"; JA4 agrees with the corpus' third-party JA4 on {d['ja4_agree']}/{d['ja4_checked']}")
            )
            if d["quic_truth"]:
                notes.append(
                    f"tlsprobe QUIC: {_fmt_int(d['quic_records'])} QUIC records, {d['quic_found']}/{d['quic_truth']} "
                    f"QUIC hellos found (matched on SNI); JA3 equals tshark's on {d['quic_ja3_agree']}/"
                    f"{d['quic_ja3_checked']} (informational: JA3 over QUIC is not standardised)"
                )
                if d["quic_ja3_differs"]:
                    notes.append("tlsprobe JA3 differs from tshark's for these QUIC hellos (informational):")
                    notes.extend(f"  - `{src}`: {txt}" for src, txt in sorted(d["quic_ja3_differs"].items()))
            notes.extend(f"  - {e}" for e in d["examples"])
            if d["ja4_differs"]:
                notes.append("tlsprobe JA4 differs from the corpus' third-party JA4 for these hellos (informational):")
                notes.extend(f"  - `{src}`: {txt}" for src, txt in sorted(d["ja4_differs"].items()))
        if res.name == "tshark" and d:
            notes.append(
                f"tshark: {_fmt_int(d['ja3_values'])} JA3 values printed, {d['unmatched_values']} not in the truth"
                + (
                    f"; QUIC: {d['quic_found']}/{d['quic_truth']} matched by JA3 (the QUIC flows replay "
                    f"{d['quic_distinct']} distinct corpus connections and tshark ties an Initial whose DCID it "
                    "has already seen to the earlier connection, mostly without reporting its ClientHello again)"
                    + (
                        f" ({d['quic_ja3_shared_with_tcp']} QUIC JA3 values also occur on TCP, credited to TCP first)"
                        if d["quic_ja3_shared_with_tcp"]
                        else ""
                    )
                    if d["quic_truth"]
                    else ""
                )
            )
        messages = {
            line.strip()
            for run in (res.runs if res.name == "tshark" else [])  # tlsprobe's stderr is its summary
            for line in run.stderr.splitlines()
            if line.strip() and "dangerous" not in line  # tshark's "running as root" warning
        }
        if messages:
            notes.append(f"{res.name} stderr: " + " | ".join(sorted(messages)[:5]))
    if tshark_causes:
        notes.append("tshark misses by cause: " + ", ".join(f"{k}: {_fmt_int(v)}" for k, v in tshark_causes.items()))
    if notes:
        lines += ["", "Notes:", ""] + [n if n.startswith("  ") else f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


def tlsprobe_command(override: str | None, capture: Path, jobs: int | None = None) -> list[str]:
    """``tlsprobe analyze CAPTURE --format jsonl [-j N]`` via the console script if it works."""
    tail = ["analyze", str(capture), "--format", "jsonl", *(["-j", str(jobs)] if jobs else [])]
    if override:
        return [*shlex.split(override), *tail]
    script = shutil.which("tlsprobe")
    if script:
        probe = subprocess.run([script, "--help"], capture_output=True, check=False, cwd=REPO)
        if probe.returncode == 0:
            return [script, *tail]
    return [sys.executable, "-m", "tlsprobe", *tail]


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("capture", nargs="?", type=Path, help="pcap to use (default: bench/out/bench.pcap)")
    ap.add_argument("--repeat", type=int, default=None, help="runs per tool, best is kept (default 3)")
    ap.add_argument("--quick", action="store_true", help=f"{QUICK_PACKETS:,}-packet capture, 1 repeat")
    ap.add_argument("--packets", type=int, default=None, help="packets when generating (default 1,000,000)")
    ap.add_argument("--flows", type=int, default=None, help="flows when generating (default packets/50)")
    ap.add_argument("--seed", type=int, default=1, help="seed when generating (default 1)")
    ap.add_argument("--regenerate", action="store_true", help="regenerate the capture even if it exists")
    ap.add_argument("--markdown", type=Path, help="also write the Markdown report to this file")
    ap.add_argument("--tlsprobe", help="tlsprobe command to use (default: console script or python -m)")
    ap.add_argument("--jobs", type=int, help="pass -j N to tlsprobe (default: its own choice, one per core)")
    ap.add_argument("--tshark", default="tshark", help="tshark binary (default: tshark)")
    ap.add_argument("--skip-tshark", action="store_true", help="do not run tshark")
    ap.add_argument("--skip-tlsprobe", action="store_true", help="do not run tlsprobe (exit status 0)")
    ap.add_argument("--diagnose", action="store_true", help="extra untimed tshark pass explaining its misses")
    args = ap.parse_args(argv)

    repeat = args.repeat if args.repeat is not None else (1 if args.quick else 3)
    packets_wanted = args.packets or (QUICK_PACKETS if args.quick else 1_000_000)
    capture: Path = args.capture or (OUT_DIR / ("quick.pcap" if args.quick else "bench.pcap"))
    truth_path = capture.with_name(capture.name + ".truth.jsonl")
    if args.regenerate or not capture.exists() or not truth_path.exists():
        if args.capture is not None and capture.exists() and not args.regenerate:
            print(f"warning: {truth_path} missing: recall cannot be computed", file=sys.stderr)
        else:
            gen = [sys.executable, str(BENCH_DIR / "make_capture.py"), "-o", str(capture)]
            gen += ["--packets", str(packets_wanted), "--seed", str(args.seed)]
            if args.flows:
                gen += ["--flows", str(args.flows)]
            print(f"generating {capture} ...", file=sys.stderr)
            subprocess.run(gen, check=True)
    meta_path = capture.with_name(capture.name + ".meta.json")
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    truth = load_truth(truth_path) if truth_path.exists() else []

    # Counting reads every record header, which also warms the page cache for both tools.
    packets = count_packets(capture)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    tshark = shutil.which(args.tshark)
    results: list[ToolResult] = []
    if not args.skip_tlsprobe:
        results.append(ToolResult("tlsprobe", tlsprobe_command(args.tlsprobe, capture, args.jobs)))
    if not args.skip_tshark:
        if tshark is None:
            print(f"warning: {args.tshark} not found, skipping tshark", file=sys.stderr)
        else:
            cmd = [tshark, "-n", "-r", str(capture), "-Y", TSHARK_FILTER, "-T", "fields", "-e", "tls.handshake.ja3"]
            results.append(ToolResult("tshark", cmd))

    for res in results:
        out_file = OUT_DIR / f"{capture.stem}.{res.name}.out"
        for i in range(repeat):
            run = measure(res.command, out_file, cwd=REPO)
            res.runs.append(run)
            print(
                f"{res.name} run {i + 1}/{repeat}: {run.wall:.2f} s, rc {run.returncode}, "
                f"rss {run.rss_kib / 1024:.0f} MiB (tree {run.tree_rss_kib / 1024:.0f} MiB)",
                file=sys.stderr,
            )
            if run.returncode != 0:
                tail = run.stderr.strip().splitlines()[-3:]
                res.error = f"exit status {run.returncode}: " + " | ".join(tail)
                break
        if res.best is None or not truth:
            continue
        if res.name == "tlsprobe":
            res.found, res.detail = score_tlsprobe(out_file, truth)
        else:
            res.found, res.detail = score_tshark(out_file, truth)

    causes = diagnose_tshark(tshark, capture, truth) if args.diagnose and tshark and truth else None
    quic_n = sum(_transport(t) == "quic" for t in truth)
    report = render(capture, packets, meta, len(truth), machine_info(tshark), results, repeat, causes, quic_n)
    print(report)
    if args.markdown:
        args.markdown.write_text(report)

    if args.skip_tlsprobe:
        return 0
    tp = results[0]
    if tp.best is None:
        print("FAIL: tlsprobe did not run successfully", file=sys.stderr)
        return 1
    if not truth:
        print("FAIL: no ground truth, tlsprobe recall unknown", file=sys.stderr)
        return 1
    if tp.found is None or tp.found < len(truth):
        q = tp.detail.get("quic_found", 0)
        print(
            f"FAIL: tlsprobe recall {tp.found or 0}/{len(truth)} < 1.0 (QUIC {q}/{quic_n}, "
            f"TLS over TCP {(tp.found or 0) - q}/{len(truth) - quic_n})",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
