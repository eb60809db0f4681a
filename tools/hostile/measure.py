"""Run ``tlsprobe analyze`` on hostile captures; print peak memory, time and anomalies.

For each shape and size: makes the capture (tools/hostile/make_hostile.py; ``benign`` is
bench/make_capture.py) unless it exists, runs ``tlsprobe analyze --format jsonl`` once
with ``-j 1`` and once with the default jobs, and reports the peak RSS (``ru_maxrss`` of
the reaped child for one process; the sampled sum over the process tree for several),
wall and CPU time, time per million packets, records and the anomaly counts from
``--summary-json``.  Prints a Markdown table (and ``--json`` writes the raw results).

    python3 tools/hostile/measure.py --packets 250000 1000000 --shapes syn quic benign
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "bench"))

from make_hostile import SHAPES, write  # noqa: E402
from run import TreeSampler  # noqa: E402  (bench/run.py)

ALL = ["benign", *SHAPES]


def make(shape: str, packets: int, outdir: Path) -> Path:
    path = outdir / f"{shape}-{packets}.pcap"
    if path.exists():
        return path
    tmp = path.with_suffix(".part")
    if shape == "benign":
        cache = REPO / "bench" / "out" / "harvest-cache.json"
        subprocess.run([sys.executable, str(REPO / "bench" / "make_capture.py"), "--packets", str(packets),
                        "-o", str(tmp), "-q", "--cache", str(cache)], check=True)
    else:
        write(shape, packets, tmp)
    tmp.rename(path)
    for extra in outdir.glob(tmp.name + ".*"):  # bench/make_capture.py's .truth.jsonl and .meta.json
        extra.rename(outdir / extra.name.replace(tmp.name, path.name))
    return path


def run_one(capture: Path, jobs: int | None) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "tlsprobe", "analyze", str(capture), "--format", "jsonl"]
    if jobs is not None:
        cmd += ["-j", str(jobs)]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    with tempfile.TemporaryDirectory() as tmp:
        summary = Path(tmp) / "summary.json"
        cmd += ["--summary-json", str(summary)]
        out_path = Path(tmp) / "out.jsonl"
        with out_path.open("wb") as out:
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL, env=env)
            sampler = TreeSampler(proc.pid, 0.05)
            sampler.start()
            _pid, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - t0
            sampler.stop.set()
            sampler.join()
        code = os.waitstatus_to_exitcode(status)
        with out_path.open("rb") as fh:
            records = sum(1 for _ in fh)
        s = json.loads(summary.read_text()) if summary.exists() else {}
    cpu = usage.ru_utime + usage.ru_stime
    return {
        "jobs": jobs or "default", "rc": code, "wall": wall, "cpu": cpu, "rss_mib": usage.ru_maxrss / 1024,
        "tree_mib": max(sampler.peak, usage.ru_maxrss) / 1024, "records": records,
        "packets": s.get("packets", 0), "anomalies": s.get("anomalies", {}),
    }


def render(results: list[dict[str, Any]]) -> str:
    """The docs/robustness.md table: one row per shape, both sizes side by side."""
    by: dict[tuple[str, int, str], dict[str, Any]] = {}
    sizes: list[int] = []
    shapes: list[str] = []
    for r in results:
        by[(r["shape"], r["packets"], str(r["jobs"]))] = r
        if r["packets"] not in sizes:
            sizes.append(r["packets"])
        if r["shape"] not in shapes:
            shapes.append(r["shape"])
    sizes.sort()
    big = sizes[-1]
    head = ["capture", f"MB at {big // 1000}k"]
    for n in sizes:
        head += [f"peak RSS MiB at {n // 1000}k, -j 1 / default", f"CPU s per Mpkt at {n // 1000}k"]
    head += [f"x benign at {big // 1000}k", f"anomalies and records at {big // 1000}k packets (-j 1)"]
    base = by.get(("benign", big, "1"))
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 2) + "---|"]
    for shape in shapes:
        row = [shape]
        one_big = by.get((shape, big, "1"), {})
        row.append(f"{one_big.get('size', 0) / 1e6:,.0f}")
        for n in sizes:
            one, dflt = by.get((shape, n, "1")), by.get((shape, n, "default"))
            rss = f"{one['rss_mib']:.0f}" if one else "-"
            rss += f" / {dflt['tree_mib']:.0f}" if dflt else ""
            row += [rss, f"{one['cpu'] / n * 1e6:.1f}" if one else "-"]
        ratio = one_big["cpu"] / base["cpu"] if one_big and base else None
        row.append(f"{ratio:.1f}" if ratio is not None else "-")
        an = ", ".join(f"`{k}` {v:,}" for k, v in sorted(one_big.get("anomalies", {}).items(), key=lambda kv: -kv[1]))
        row.append((an or "none") + f"; {one_big.get('records', 0):,} records")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", nargs="+", default=ALL, choices=ALL)
    ap.add_argument("--packets", nargs="+", type=int, default=[250_000, 1_000_000])
    ap.add_argument("--outdir", type=Path, default=Path("/tmp/hostile"))
    ap.add_argument("--jobs", nargs="+", default=["1", "default"], help="1, default, or a number")
    ap.add_argument("--keep", action="store_true", help="keep the generated captures")
    ap.add_argument("--json", type=Path, help="write the raw results here")
    ap.add_argument("--render", type=Path, help="print the table of a --json file and exit")
    args = ap.parse_args(argv)
    if args.render:
        print(render(json.loads(args.render.read_text())))
        return 0
    args.outdir.mkdir(parents=True, exist_ok=True)
    results = []
    print("| capture | packets | MB | jobs | peak RSS MiB | wall s | CPU s | wall s/Mpkt | records | anomalies |")
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|---|")
    for shape in args.shapes:
        for packets in args.packets:
            path = make(shape, packets, args.outdir)
            size = path.stat().st_size
            for j in args.jobs:
                r = run_one(path, None if j == "default" else int(j))
                r.update(shape=shape, size=size)
                results.append(r)
                n = r["packets"] or packets
                anomalies = ", ".join(f"{k} {v:,}" for k, v in sorted(r["anomalies"].items(), key=lambda kv: -kv[1]))
                rss = r["rss_mib"] if r["jobs"] == 1 else r["tree_mib"]
                print(f"| {shape} | {n:,} | {size / 1e6:,.0f} | {r['jobs']} | {rss:.0f} | {r['wall']:.2f} | "
                      f"{r['cpu']:.2f} | {r['wall'] / n * 1e6:.2f} | {r['records']:,} | {anomalies or '-'} |"
                      + ("" if r["rc"] == 0 else f" EXIT {r['rc']}"), flush=True)
            if not args.keep:
                for extra in path.parent.glob(path.name + "*"):  # the capture, and benign's .truth/.meta
                    extra.unlink()
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
