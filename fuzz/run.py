#!/usr/bin/env python3
"""Run the atheris fuzz targets, each for a given time, and report executions and crashes.

    python3 fuzz/run.py --seconds 10                 # every target (CI)
    python3 fuzz/run.py --seconds 600 tls quic       # long runs, one target at a time

Seed corpora are extracted from ``pcaps/`` and ``../shared/corpus`` (see seeds.py) into
``--work`` (default ``$TMPDIR/tlsprobe-fuzz``), where each target's corpus grows across
runs.  A crash input is kept in ``<work>/<target>/crashes/``; after a crash the target
restarts (up to ``--max-crashes``) with the time left.  Exit status 1 if any target
crashed.  Replay a crash with ``python3 fuzz/fuzz_<target>.py <file>``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TARGETS = {  # target: -max_len (bytes)
    "capture": 65536,
    "decode": 8192,
    "tls": 16384,
    "handshake": 32768,
    "quic": 8192,
    "x509": 8192,
    "http": 8192,
    "pipeline": 65536,
}
_DONE = re.compile(r"Done (\d+) runs in (\d+) second")
_STAT = re.compile(r"#(\d+)\s+\S+\s+cov: (\d+) ft: (\d+)")
_EXECS = re.compile(r"exec/s: (\d+)")


@dataclass
class Result:
    target: str
    seconds: float = 0.0
    executions: int = 0
    cov: int = 0
    ft: int = 0
    crashes: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.executions / self.seconds if self.seconds else 0.0


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(HERE), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def build_seeds(work: Path, targets: list[str]) -> None:
    sys.path[:0] = [str(ROOT), str(HERE)]
    import seeds

    ex = seeds.Extracted().run(seeds.captures())
    for t in targets:
        n = seeds.write(ex, t, work / t / "seeds")
        print(f"{t}: {n} seeds", flush=True)


def run_target(target: str, seconds: int, work: Path, max_crashes: int, log: Path | None) -> Result:
    res = Result(target)
    corpus = work / target / "corpus"
    crashes = work / target / "crashes"
    corpus.mkdir(parents=True, exist_ok=True)
    crashes.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + seconds
    while True:
        left = int(deadline - time.monotonic())
        if left < 1:
            break
        before = set(crashes.iterdir())
        cmd = [
            sys.executable, str(HERE / f"fuzz_{target}.py"), str(corpus), str(work / target / "seeds"),
            f"-max_total_time={left}", f"-max_len={TARGETS[target]}", "-timeout=20", "-rss_limit_mb=2048",
            f"-artifact_prefix={crashes}/", "-print_final_stats=1",
        ]
        t0 = time.monotonic()
        proc = subprocess.run(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              errors="replace", check=False)
        res.seconds += time.monotonic() - t0
        out = proc.stdout
        if log is not None:
            with log.open("a") as f:
                f.write(out)
        done = _DONE.search(out)
        stats = _STAT.findall(out)
        if done:
            res.executions += int(done.group(1))
        elif stats:
            res.executions += int(stats[-1][0])
        if stats:
            res.cov, res.ft = max(res.cov, int(stats[-1][1])), max(res.ft, int(stats[-1][2]))
        new = sorted(set(crashes.iterdir()) - before)
        if proc.returncode == 0 and not new:
            break
        m = re.search(r"=== Uncaught Python exception: ===\n(.*?)\n(?:Traceback|$)", out, re.S)
        what = m.group(1).strip() if m else f"exit {proc.returncode}"
        res.crashes.append(f"{what} ({', '.join(p.name for p in new) or 'no artifact'})")
        if len(res.crashes) >= max_crashes:
            break
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("targets", nargs="*", help=f"targets (default: all of {', '.join(TARGETS)})")
    ap.add_argument("--seconds", type=int, default=10, help="time per target")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "tlsprobe-fuzz")
    ap.add_argument("--max-crashes", type=int, default=3, help="restarts after crashes, per target")
    ap.add_argument("--log", type=Path, help="append libFuzzer output here")
    args = ap.parse_args(argv)
    targets = args.targets or list(TARGETS)
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        ap.error(f"unknown target(s): {', '.join(unknown)} (choose from {', '.join(TARGETS)})")
    build_seeds(args.work, targets)
    results = []
    for t in targets:
        r = run_target(t, args.seconds, args.work, args.max_crashes, args.log)
        results.append(r)
        print(f"{t:10} {r.seconds:7.0f} s {r.executions:10d} execs {r.rate:8.0f}/s  cov {r.cov:5d} ft {r.ft:6d}  "
              f"crashes {len(r.crashes)}", flush=True)
        for c in r.crashes:
            print(f"           crash: {c}", flush=True)
    return 1 if any(r.crashes for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
