"""How many packets per second ``tlsprobe sniff`` keeps up with before the kernel drops.

Replays the benchmark capture (``bench/make_capture.py``: real TLS and QUIC traffic,
1M packets) with ``tcpreplay`` inside a network namespace of its own - into its
loopback (``--on lo``, the default) or into one end of a veth pair (``--on veth``) -
while ``tlsprobe sniff`` captures on loopback or the pair's other end; at each offered rate
it reads the kernel's drop counter (PACKET_STATISTICS, in the summary) and how many
of the replayed handshakes came out.  Needs root and tcpreplay (``apt-get install
tcpreplay``).  Nothing leaves the namespace.

    sudo python3 bench/live.py --rates 20000,50000,80000,120000 --packets 300000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
NS = f"tp-bench-{os.getpid()}"


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


@contextlib.contextmanager
def namespace() -> Iterator[None]:
    sh("ip", "netns", "add", NS)
    try:
        sh("ip", "-n", NS, "link", "add", "replay0", "type", "veth", "peer", "name", "sniff0")
        for dev in ("replay0", "sniff0", "lo"):
            sh("ip", "-n", NS, "link", "set", dev, "up")
        yield
    finally:
        subprocess.run(["ip", "netns", "del", NS], capture_output=True)


def offline_handshakes(pcap: Path, packets: int, tmp: Path) -> tuple[Path, int]:
    """The first ``packets`` packets as a capture of their own, and the handshakes
    ``tlsprobe analyze`` finds in it: what a capture with no drop must yield."""
    from tlsprobe import iter_records
    from tlsprobe.capture.files import CaptureFile
    from tlsprobe.capture.writer import PcapWriter

    head = tmp / "head.pcap"
    writer = None
    for n, (ts, linktype, frame) in enumerate(CaptureFile(str(pcap))):
        if n == packets:
            break
        writer = writer or PcapWriter(str(head), linktype)
        writer.write(ts, linktype, frame)
    assert writer is not None
    writer.close()
    return head, sum(1 for _ in iter_records([str(head)]))


def children_cpu() -> float:
    """User + system CPU of every child waited for so far (with their own children)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def peak_rss_mib(pid: int) -> float:
    """Peak resident memory of a running process (VmHWM), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def one_rate(pcap: Path, rate: int, packets: int, jobs_dir: Path, on: str) -> dict[str, Any]:
    replay_if, sniff_if = ("lo", "lo") if on == "lo" else ("replay0", "sniff0")
    summary = jobs_dir / f"summary-{rate}.json"
    sniff = subprocess.Popen(
        ["ip", "netns", "exec", NS, sys.executable, "-m", "tlsprobe", "sniff", "-i", sniff_if, "-F", "jsonl",
         "-o", os.devnull, "--summary-json", str(summary)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert sniff.stderr is not None
    err = b""
    while b"listening on" not in err:
        if sniff.poll() is not None or not select.select([sniff.stderr], [], [], 20)[0]:
            raise SystemExit(f"sniff did not start: {err.decode(errors='replace')}")
        err += os.read(sniff.stderr.fileno(), 4096)
    replay = subprocess.run(["ip", "netns", "exec", NS, "tcpreplay", "-i", replay_if, f"--pps={rate}",
                             f"--limit={packets}", str(pcap)], capture_output=True, text=True)
    time.sleep(3)  # let sniff drain its socket buffer and close the last windows
    rss = peak_rss_mib(sniff.pid)  # `ip netns exec` execs python: same pid
    before = children_cpu()
    sniff.send_signal(signal.SIGINT)
    sniff.communicate(timeout=120)
    cpu = children_cpu() - before  # the whole run of sniff, start-up included
    data = json.loads(summary.read_text())
    achieved = re.search(r"Rated: [\d.]+ Bps, [\d.]+ Mbps, ([\d.]+) pps", replay.stdout)
    live = data["live"]
    seen = live["kernel_received"]
    return {
        "offered_pps": rate,
        "achieved_pps": round(float(achieved.group(1))) if achieved else None,
        "replayed": packets,
        "kernel_received": seen,
        "kernel_dropped": live["kernel_dropped"],
        "drop_share": round(live["kernel_dropped"] / max(1, seen), 4),  # tp_packets counts drops too
        "analysed": data["packets"],
        "handshakes": data["handshakes"],
        "sniff_cpu_s": round(cpu, 2),
        "sniff_us_per_packet": round(cpu / max(1, data["packets"]) * 1e6, 1),
        "peak_rss_mib": round(rss, 1),
    }


def one_rate_tshark(pcap: Path, rate: int, packets: int, on: str) -> dict[str, Any]:
    """The same replay with ``tshark -i`` dissecting live: ClientHellos it printed and the
    drops dumpcap reported (tshark lags behind instead of dropping while dumpcap's ring
    has room; it is given until 120 s after the replay to finish)."""
    sniff_if = "lo" if on == "lo" else "sniff0"
    replay_if = "lo" if on == "lo" else "replay0"
    proc = subprocess.Popen(
        ["ip", "netns", "exec", NS, "tshark", "-n", "-i", sniff_if, "-B", "32", "-Y", "tls.handshake.type == 1",
         "-T", "fields", "-e", "frame.number"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = b""
    while b"Capturing on" not in err:
        if proc.poll() is not None or not select.select([proc.stderr], [], [], 30)[0]:
            raise SystemExit(f"tshark did not start: {err.decode(errors='replace')}")
        err += os.read(proc.stderr.fileno(), 4096)
    before = children_cpu()
    replay = subprocess.run(["ip", "netns", "exec", NS, "tcpreplay", "-i", replay_if, f"--pps={rate}",
                             f"--limit={packets}", str(pcap)], capture_output=True, text=True)
    replay_cpu = children_cpu() - before
    ended = time.monotonic()
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    out, rest = proc.communicate(timeout=180)
    lag = time.monotonic() - ended - 3
    cpu = children_cpu() - before - replay_cpu  # tshark and its dumpcap, to their exit
    text = (err + rest).decode(errors="replace")
    dropped = sum(int(n) for n in re.findall(r"(\d+) packets? dropped", text))
    achieved = re.search(r"Rated: [\d.]+ Bps, [\d.]+ Mbps, ([\d.]+) pps", replay.stdout)
    return {"offered_pps": rate, "achieved_pps": round(float(achieved.group(1))) if achieved else None,
            "tshark_dropped": dropped, "tshark_hellos": len(out.split()), "tshark_cpu_s": round(cpu, 2),
            "tshark_exit_after_stop_s": round(lag, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pcap", type=Path, default=HERE / "out" / "bench.pcap",
                    help="capture to replay (default: bench/out/bench.pcap from bench/make_capture.py)")
    ap.add_argument("--rates", default="20000,40000,60000,80000,100000,140000",
                    help="offered packets per second, comma-separated")
    ap.add_argument("--packets", type=int, default=300_000, help="packets replayed per rate")
    ap.add_argument("--on", choices=("lo", "veth"), default="lo", help="replay into loopback or a veth pair")
    ap.add_argument("--tshark", action="store_true",
                    help="also replay each rate to 'tshark -i' (dissecting TLS live) as the reference")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/live.py needs root (network namespace, packet sockets)")
    if not args.pcap.exists():
        raise SystemExit(f"{args.pcap} missing: run python3 bench/make_capture.py first")
    rows = []
    with namespace(), tempfile.TemporaryDirectory() as tmp:
        head, want = offline_handshakes(args.pcap, args.packets, Path(tmp))
        for rate in (int(r) for r in args.rates.split(",")):
            row = one_rate(head, rate, args.packets, Path(tmp), args.on)
            row["expected_handshakes"] = want
            if args.tshark:
                row.update({k: v for k, v in one_rate_tshark(head, rate, args.packets, args.on).items()
                            if k.startswith("tshark")})
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    if args.markdown:
        print("| offered pps | achieved pps | kernel dropped | drop share | handshakes (offline) | sniff CPU s "
              "| µs CPU per packet | peak RSS MiB |" + (" tshark dropped | tshark ClientHellos | tshark CPU s "
                                                  "| tshark done after stop s |" if args.tshark else ""))
        print("|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|---:|---:|" if args.tshark else ""))
        for r in rows:
            print(f"| {r['offered_pps']:,} | {r['achieved_pps'] or 0:,} | {r['kernel_dropped']:,} | "
                  f"{r['drop_share']:.2%} | {r['handshakes']:,} ({r['expected_handshakes'] or '?'}) | "
                  f"{r['sniff_cpu_s']} | {r['sniff_us_per_packet']} | {r['peak_rss_mib']} |"
                  + (f" {r['tshark_dropped']:,} | {r['tshark_hellos']:,} | {r['tshark_cpu_s']} | "
                     f"{r['tshark_exit_after_stop_s']} |" if args.tshark else ""))
    else:
        print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
