#!/usr/bin/env python3
"""Measure the JA4 of the TLS clients installed here and write ``tlsprobe/data/known_clients.csv``.

Run as root (tcpdump) from the repository root::

    sudo python3 tools/lab/known_clients.py            # add --dry-run to print only

Every client talks to its own ``openssl s_server`` on loopback (one port per client,
so a handshake's destination port says which client sent it) while ``tcpdump -i lo``
captures; tlsprobe then computes each ClientHello's JA4.  Clients, run with their
default TLS settings and SNI ``localhost``: curl, wget, ``openssl s_client``, Python
``urllib``, node ``https``, headless Chromium.  A missing program is skipped.

The CSV keeps every row whose source is not this script (entries taken from public
references, each naming its source), and replaces the measured ones.  Processes are
stopped by their PID.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tlsprobe import iter_records  # noqa: E402
from tlsprobe.report.clients import COLUMNS  # noqa: E402

OUT = REPO / "tlsprobe" / "data" / "known_clients.csv"
SOURCE = "measured: tools/lab/known_clients.py"
BASE_PORT = 44301
HOST = "localhost"


def _version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False)
    except OSError:
        return "?"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr).strip() else "?"


def clients(port_of: dict[str, int], tmp: Path) -> list[tuple[str, str, list[str]]]:
    """(name, version, command) of every client found on this machine."""
    url = {name: f"https://{HOST}:{port}/" for name, port in port_of.items()}
    py = sys.executable
    out: list[tuple[str, str, list[str]]] = []
    if shutil.which("curl"):
        out.append(("curl", _version(["curl", "--version"]).split(" (")[0].replace("curl ", ""),
                    ["curl", "-sk", "-o", "/dev/null", "--max-time", "10", url["curl"]]))
    if shutil.which("wget"):
        out.append(("wget", _version(["wget", "--version"]).split(" built")[0].replace("GNU Wget ", ""),
                    ["wget", "-q", "--no-check-certificate", "-O", "/dev/null", "--tries=1", "--timeout=10",
                     url["wget"]]))
    if shutil.which("openssl"):
        out.append(("openssl s_client", _version(["openssl", "version"]).replace("OpenSSL ", "").split(" ")[0],
                    ["openssl", "s_client", "-connect", f"127.0.0.1:{port_of['openssl s_client']}",
                     "-servername", HOST]))
    code = ("import ssl, sys, urllib.request; "
            f"urllib.request.urlopen({url['python urllib']!r}, context=ssl._create_unverified_context(), "
            "timeout=10).read()")
    pyver = _version([py, "-c", "import ssl, sys; print(sys.version.split()[0], '(' + ssl.OPENSSL_VERSION + ')')"])
    out.append(("python urllib", pyver, [py, "-c", code]))
    if shutil.which("node"):
        js = (f"require('https').get({{host: '127.0.0.1', servername: '{HOST}', port: {port_of['node https']}, "
              "rejectUnauthorized: false}, r => { r.resume(); r.on('end', () => process.exit(0)); })"
              ".on('error', e => { console.error(String(e)); process.exit(1); });")
        out.append(("node https", _version(["node", "--version"]).lstrip("v"), ["node", "-e", js]))
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium:
        out.append(("chromium", _version([chromium, "--version"]).replace("Chromium ", "").split(" ")[0],
                    [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--ignore-certificate-errors", f"--user-data-dir={tmp / 'chromium'}", "--dump-dom",
                     url["chromium"]]))
    return out


def _os_name() -> str:
    try:
        return platform.freedesktop_os_release().get("PRETTY_NAME", "Linux")
    except OSError:
        return platform.platform()


NAMES = ("curl", "wget", "openssl s_client", "python urllib", "node https", "chromium")


def measure(verbose: bool) -> list[dict[str, str]]:
    """Run every client against its own server under tcpdump; one row per (client, JA4)."""
    port_of = {name: BASE_PORT + i for i, name in enumerate(NAMES)}
    today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    with tempfile.TemporaryDirectory(prefix="tlsprobe-clients-") as tmpname:
        tmp = Path(tmpname)
        key, cert = tmp / "key.pem", tmp / "cert.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={HOST}",
                        "-addext", f"subjectAltName=DNS:{HOST}"], check=True, capture_output=True)
        pcap = tmp / "clients.pcap"
        procs: list[subprocess.Popen[bytes]] = []
        try:
            for port in port_of.values():
                procs.append(subprocess.Popen(
                    ["openssl", "s_server", "-quiet", "-www", "-accept", str(port), "-key", str(key),
                     "-cert", str(cert)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL))
            dump = subprocess.Popen(["tcpdump", "-i", "lo", "-s", "0", "-U", "-w", str(pcap),
                                     f"tcp portrange {BASE_PORT}-{BASE_PORT + len(NAMES)}"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            procs.append(dump)
            time.sleep(1.5)  # tcpdump listening, servers bound
            versions: dict[str, str] = {}
            for name, version, cmd in clients(port_of, tmp):
                versions[name] = version
                r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=60, check=False)
                if verbose:
                    print(f"{name} {version}: exit {r.returncode}", file=sys.stderr)
            time.sleep(1.0)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT if proc.args[0] == "tcpdump" else signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        client_of = {port: name for name, port in port_of.items()}
        rows: dict[tuple[str, str], dict[str, str]] = {}
        for rec in iter_records([str(pcap)]):
            d = rec.to_dict()
            name = client_of.get(d["dst_port"])
            if name is None or not d.get("ja4"):
                continue
            rows[(d["ja4"], name)] = {"ja4": d["ja4"], "client": name, "version": versions.get(name, "?"),
                                      "source": f"{SOURCE} ({_os_name()}, defaults, SNI {HOST})", "date": today}
    return sorted(rows.values(), key=lambda r: (r["client"], r["ja4"]))


def merge(measured: list[dict[str, str]], existing: str) -> str:
    """The new CSV text: comment header, measured rows, then the kept reference rows."""
    kept = [row for row in csv.DictReader(ln for ln in existing.splitlines() if not ln.startswith("#"))
            if not str(row.get("source", "")).startswith(SOURCE)]
    buf = io.StringIO()
    buf.write("# JA4 of common TLS clients, for tlsprobe report's fingerprint tables.\n"
              "# Rows whose source starts with 'measured:' are written by tools/lab/known_clients.py\n"
              "# (re-run it to refresh them); other rows come from the public reference they name.\n")
    writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in [*measured, *kept]:
        writer.writerow({c: row.get(c, "") for c in COLUMNS})
    return buf.getvalue()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--dry-run", action="store_true", help="print the CSV instead of writing it")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("known_clients.py: run as root (tcpdump on lo)", file=sys.stderr)
        return 2
    measured = measure(args.verbose)
    if not measured:
        print("known_clients.py: no handshake captured", file=sys.stderr)
        return 1
    text = merge(measured, OUT.read_text(encoding="utf-8") if OUT.exists() else "")
    if args.dry_run:
        print(text, end="")
    else:
        OUT.write_text(text, encoding="utf-8")
        print(f"wrote {OUT.relative_to(REPO)}: {len(measured)} measured rows", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
