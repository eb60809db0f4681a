"""``tlsprobe sniff`` on real traffic: a client and a server in two network namespaces,
real TLS programs (openssl, curl, python ssl, node), tcpdump capturing in parallel, and
tshark as the reference for SNI, JA3 and JA4.

Needs root (network namespaces, packet sockets), ``ip``, ``openssl``, ``curl``,
``tcpdump`` and ``tshark``; skips with the reason otherwise.  CI runs as root and
installs the tools.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tlsprobe import iter_records
from tlsprobe.limits import LIVE_SETTLE_S

TOOLS = ("ip", "openssl", "curl", "tcpdump", "tshark")
CLIENT_IP, SERVER_IP = "10.99.0.1", "10.99.0.2"
CLIENT_IP6, SERVER_IP6 = "fd99::1", "fd99::2"


def _why_not() -> str | None:
    if sys.platform != "linux":
        return "live capture is Linux-only"
    if os.geteuid() != 0:
        return "needs root for network namespaces and packet sockets (CI runs as root)"
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return f"needs {', '.join(missing)} (apt-get install iproute2 openssl curl tcpdump tshark)"
    probe = f"tps-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


REASON = _why_not()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")


@dataclass
class Net:
    """Two namespaces joined by a veth pair; processes started in them are ended by PID."""

    client: str
    server: str
    tmp: Path
    procs: list[subprocess.Popen[Any]] = field(default_factory=list)

    def argv(self, ns: str, cmd: list[str]) -> list[str]:
        return ["ip", "netns", "exec", ns, *cmd]

    def run(self, ns: str, cmd: list[str], timeout: float = 30, **kw: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(ns, cmd), capture_output=True, text=True, timeout=timeout, **kw)

    def spawn(self, ns: str, cmd: list[str], **kw: Any) -> subprocess.Popen[Any]:
        proc = subprocess.Popen(self.argv(ns, cmd), **kw)
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[Any], sig: int = signal.SIGTERM) -> None:
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    tag = os.getpid()
    n = Net(f"tps-c-{tag}", f"tps-s-{tag}", tmp_path_factory.mktemp("sniff"))
    made: list[str] = []
    try:
        for ns in (n.client, n.server):
            _ip("netns", "add", ns)
            made.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", n.client, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", n.server)
        for ns, v4, v6 in ((n.client, CLIENT_IP, CLIENT_IP6), (n.server, SERVER_IP, SERVER_IP6)):
            _ip("-n", ns, "addr", "add", f"{v4}/24", "dev", "eth0")
            _ip("-n", ns, "-6", "addr", "add", f"{v6}/64", "dev", "eth0", "nodad")
            _ip("-n", ns, "link", "set", "eth0", "up")
        key, cert = n.tmp / "key.pem", n.tmp / "cert.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "30", "-subj", "/CN=svc.test",
                        "-addext", "subjectAltName=DNS:svc.test,DNS:*.svc.test"],
                       check=True, capture_output=True)
        # openssl on 8443 (TLS 1.2/1.3), a python ssl server on 4433 that speaks ALPN,
        # and on 9443 a TCP server that resets every connection once the hello arrived.
        n.spawn(n.server, ["openssl", "s_server", "-accept", "8443", "-cert", str(cert), "-key", str(key),
                           "-www", "-quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        n.spawn(n.server, [sys.executable, "-c", _PY_SERVER, str(cert), str(key)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        n.spawn(n.server, [sys.executable, "-c", _RESET_SERVER], stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)
        for port in (8443, 4433, 9443):
            _wait_port(n, port)
        yield n
    finally:
        for proc in n.procs:
            n.stop(proc)
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


_PY_SERVER = r"""
import socket, ssl, sys, threading
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
ctx.set_alpn_protocols(["h2", "http/1.1"])
srv = socket.create_server(("::", 4433), family=socket.AF_INET6, dualstack_ipv6=True)
def serve(conn):
    try:
        with ctx.wrap_socket(conn, server_side=True) as tls:
            tls.recv(4096)
            tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    except Exception:
        pass
while True:
    conn, _ = srv.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""

_RESET_SERVER = r"""
import socket, struct
srv = socket.create_server(("0.0.0.0", 9443))
while True:
    conn, _ = srv.accept()
    conn.recv(4096)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()
"""

_PY_CLIENT = r"""
import socket, ssl, sys
host, port, sni, alpn = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4].split(",")
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(alpn)
try:
    with socket.create_connection((host, port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=sni) as tls:
            tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            tls.recv(4096)
except OSError as exc:
    print(type(exc).__name__, exc)
"""


def _wait_port(n: Net, port: int) -> None:
    for _ in range(100):
        probe = n.run(n.server, ["ss", "-Hltn", f"sport = :{port}"]) if shutil.which("ss") else None
        if probe is None or probe.stdout.strip():
            return
        time.sleep(0.05)
    raise RuntimeError(f"server on :{port} did not start")


class Sniffer:
    """``tlsprobe sniff`` as a subprocess in a namespace, its stdout read line by line."""

    def __init__(self, n: Net, args: list[str]) -> None:
        self.proc = n.spawn(n.client, [sys.executable, "-m", "tlsprobe", "sniff", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.n = n
        self.buf = b""
        self.err = b""
        self.rest = ""
        self._wait_stderr(b"listening on")

    def _wait_stderr(self, marker: bytes, timeout: float = 20) -> None:
        end = time.monotonic() + timeout
        assert self.proc.stderr is not None
        while marker not in self.err:
            left = end - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise AssertionError(f"sniff did not say {marker!r}: {self.err.decode(errors='replace')}")
            if select.select([self.proc.stderr], [], [], left)[0]:
                self.err += os.read(self.proc.stderr.fileno(), 65536)

    def records(self, n: int, timeout: float = 15) -> list[dict[str, Any]]:
        """Wait for ``n`` more JSON lines while the capture keeps running."""
        out: list[dict[str, Any]] = []
        end = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while len(out) < n:
            while b"\n" in self.buf and len(out) < n:
                line, self.buf = self.buf.split(b"\n", 1)
                out.append(json.loads(line))
            if len(out) >= n:
                break
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"only {len(out)} of {n} records within {timeout} s: {out}")
            if select.select([self.proc.stdout], [], [], left)[0]:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    raise AssertionError(f"sniff ended early: {self.err.decode(errors='replace')}")
                self.buf += chunk
        return out

    def finish(self, sig: int | None = signal.SIGINT, timeout: float = 20) -> tuple[int, list[dict[str, Any]], str]:
        """Signal (or wait for) the end; return exit code, the remaining records, stderr."""
        if sig is not None:
            self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=timeout)
        self.rest = (self.buf + out).decode()
        lines = [json.loads(line) for line in self.rest.splitlines() if line.startswith("{")]
        return self.proc.returncode, lines, (self.err + err).decode(errors="replace")


def _tshark_hellos(pcap: Path) -> dict[int, dict[str, Any]]:
    """Client port -> SNI, JA3 and JA4 of every ClientHello, as tshark dissects it."""
    fields = ["tcp.srcport", "tls.handshake.extensions_server_name", "tls.handshake.ja3",
              "tls.handshake.version", "tls.handshake.extensions.supported_version",
              "tls.handshake.ciphersuite", "tls.handshake.extension.type", "tls.handshake.sig_hash_alg",
              "tls.handshake.extensions_alpn_str"]
    argv = ["tshark", "-r", str(pcap), "-Y", "tls.handshake.type == 1", "-T", "fields",
            "-E", "separator=/t", "-E", "occurrence=a", "-E", "aggregator=,"]
    for f in fields:
        argv += ["-e", f]
    native = _tshark_has_ja4()
    if native:
        argv += ["-e", "tls.handshake.ja4"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    hellos = {}
    for line in out.splitlines():
        port, sni, ja3, version, supported, ciphers, exts, sigs, alpn, ja4 = (line.split("\t") + [""] * 10)[:10]
        # tshark >= 4.2 computes JA4 itself; older ones give the fields it is made of
        hellos[int(port)] = {"sni": sni or None, "ja3": ja3,
                             "ja4": ja4 if native else _ja4(version, supported, ciphers, exts, sigs, alpn, bool(sni))}
    return hellos


@functools.cache
def _tshark_has_ja4() -> bool:
    fields = subprocess.run(["tshark", "-G", "fields"], capture_output=True, text=True).stdout
    return "\ttls.handshake.ja4\t" in fields


def _ja4(version: str, supported: str, ciphers: str, exts: str, sigs: str, alpn: str, has_sni: bool) -> str:
    """JA4 from tshark's fields, written from the FoxIO spec independently of tlsprobe."""
    def num(v: str) -> int:
        return int(v, 0)

    def grease(v: int) -> bool:
        return v & 0x0F0F == 0x0A0A and v >> 8 == v & 0xFF

    versions = [num(v) for v in supported.split(",") if v and not grease(num(v))] or [num(version)]
    names = {0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10", 0x0300: "s3"}
    cs = [num(c) for c in ciphers.split(",") if c and not grease(num(c))]
    ex = [num(e) for e in exts.split(",") if e and not grease(num(e))]
    first = alpn.split(",")[0] if alpn else ""
    a = (f"t{names.get(max(versions), '00')}{'d' if has_sni else 'i'}{min(len(cs), 99):02d}{min(len(ex), 99):02d}"
         f"{(first[0] + first[-1]) if first else '00'}")
    b = hashlib.sha256(",".join(sorted(f"{c:04x}" for c in cs)).encode()).hexdigest()[:12]
    rest = ",".join(sorted(f"{e:04x}" for e in ex if e not in (0x0000, 0x0010)))
    sig = ",".join(f"{num(s):04x}" for s in sigs.split(",") if s)
    c = hashlib.sha256((rest + ("_" + sig if sig else "")).encode()).hexdigest()[:12]
    return f"{a}_{b}_{c}"


def _clients(n: Net) -> list[tuple[str, list[str]]]:
    """(SNI, argv) of every real client run against the servers."""
    clients = [
        ("curl.svc.test", ["curl", "-sk", "--max-time", "5", "--resolve", f"curl.svc.test:8443:{SERVER_IP}",
                           "https://curl.svc.test:8443/", "-o", "/dev/null"]),
        ("curl6.svc.test", ["curl", "-sk", "--max-time", "5", "--http1.1", "--resolve",
                            f"curl6.svc.test:4433:[{SERVER_IP6}]", "https://curl6.svc.test:4433/", "-o", "/dev/null"]),
        ("openssl.svc.test", ["openssl", "s_client", "-connect", f"{SERVER_IP}:8443", "-servername",
                              "openssl.svc.test", "-alpn", "h2,http/1.1", "-tls1_2"]),
        ("python.svc.test", [sys.executable, "-c", _PY_CLIENT, SERVER_IP, "4433", "python.svc.test", "h2,http/1.1"]),
    ]
    if shutil.which("node"):
        clients.append(("node.svc.test", ["node", "-e", _NODE_CLIENT, SERVER_IP, "8443", "node.svc.test"]))
    return clients


_NODE_CLIENT = r"""
const tls = require("tls");
const [host, port, sni] = process.argv.slice(1);
const s = tls.connect({host, port: +port, servername: sni, rejectUnauthorized: false, ALPNProtocols: ["http/1.1"]},
  () => { s.end(); });
s.on("error", () => {});
"""


def _tcpdump(n: Net, path: Path) -> subprocess.Popen[Any]:
    proc = n.spawn(n.client, ["tcpdump", "-i", "eth0", "--immediate-mode", "-U", "-w", str(path), "tcp or udp"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = b""
    end = time.monotonic() + 20
    while b"listening on" not in err and time.monotonic() < end:
        if select.select([proc.stderr], [], [], 1)[0]:
            err += os.read(proc.stderr.fileno(), 4096)
    return proc


def test_live_records_match_tshark_and_sigint_stops_cleanly(net: Net) -> None:
    ref, written, summary_path = net.tmp / "ref.pcap", net.tmp / "live.pcap", net.tmp / "summary.json"
    dump = _tcpdump(net, ref)
    sniff = Sniffer(net, ["-i", "eth0", "-F", "jsonl", "-w", str(written), "--summary-json", str(summary_path),
                          "tcp or udp"])
    live: list[dict[str, Any]] = []
    for sni, argv in _clients(net):
        net.run(net.client, argv, input="", timeout=30)
        # each handshake is printed while the capture is still running
        got = sniff.records(1)
        assert got[0]["sni"] == sni
        live += got
    rc, rest, err = sniff.finish(signal.SIGINT)
    net.stop(dump, signal.SIGINT)
    assert rc == 0, err
    assert "Traceback" not in err
    assert rest == []  # every handshake was already out
    assert "stopped by: SIGINT" in err and "dropped" in err
    summary = json.loads(summary_path.read_text())
    assert summary["handshakes"] == len(live) == len(_clients(net))
    assert summary["live"]["kernel_dropped"] == 0
    assert summary["live"]["written"] == summary["packets"] > 0

    # the same handshakes, fingerprinted by tshark from tcpdump's capture
    reference = _tshark_hellos(ref)
    assert len(reference) == len(live)
    for rec in live:
        expected = reference[rec["src_port"]]
        assert (rec["sni"], rec["ja3"], rec["ja4"]) == (expected["sni"], expected["ja3"], expected["ja4"])
        assert rec["outcome"] == "server_hello"
        assert rec["interception"] is None
    assert {r["ip_version"] for r in live} == {4, 6}

    # the pcap file written on the way is complete and valid for other tools
    check = subprocess.run(["tshark", "-r", str(written), "-q"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert _tshark_hellos(written) == reference
    offline = {d["src_port"]: (d["sni"], d["ja3"], d["ja4"], d["outcome"])
               for d in (r.to_dict() for r in iter_records([str(written)]))}
    assert offline == {r["src_port"]: (r["sni"], r["ja3"], r["ja4"], r["outcome"]) for r in live}


def test_verdict_waits_for_its_window_then_comes_without_more_traffic(net: Net) -> None:
    """A reset right after the hello: the record waits for the evidence window to close
    and, without a verdict, for the settle window (the flows around it may still show the
    reset foreign: docs/detection.md), and is emitted by the idle tick."""
    sniff = Sniffer(net, ["-i", "eth0", "-F", "jsonl", "tcp"])
    net.run(net.client, [sys.executable, "-c", _PY_CLIENT, SERVER_IP, "9443", "reset.svc.test", "http/1.1"])
    reset_at = time.monotonic()
    rec = sniff.records(1, timeout=LIVE_SETTLE_S + 10)[0]
    waited = time.monotonic() - reset_at
    assert rec["sni"] == "reset.svc.test"
    assert rec["outcome"] == "rst"
    # after the settle window, not at the end of the capture
    assert LIVE_SETTLE_S - 1 < waited < LIVE_SETTLE_S + 5, waited
    rc, rest, err = sniff.finish(signal.SIGTERM)
    assert rc == 0 and rest == [], err
    assert "stopped by: SIGTERM" in err


def test_count_duration_and_handshakes_stop_by_themselves(net: Net) -> None:
    written = net.tmp / "count.pcapng"
    sniff = Sniffer(net, ["-i", "eth0", "-F", "jsonl", "-c", "5", "-w", str(written), "tcp"])
    net.run(net.client, _clients(net)[0][1])
    rc, _, err = sniff.finish(None)
    assert rc == 0, err
    assert "stopped by: count" in err
    pcapng = subprocess.run(["tshark", "-r", str(written), "-T", "fields", "-e", "frame.number"],
                            capture_output=True, text=True, check=True)
    assert len(pcapng.stdout.split()) == 5
    assert written.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"  # pcapng, as the name asked

    started = time.monotonic()
    sniff = Sniffer(net, ["-i", "eth0", "-F", "csv", "--duration", "1.5"])
    rc, _, err = sniff.finish(None)
    assert rc == 0 and "stopped by: duration" in err, err
    assert sniff.rest.startswith("ts,")  # the CSV header, and no record: nothing happened
    assert 1.5 <= time.monotonic() - started < 15

    sniff = Sniffer(net, ["-i", "any", "-F", "jsonl", "--handshakes", "1"])
    net.run(net.client, _clients(net)[0][1])
    rc, records, err = sniff.finish(None)
    assert rc == 0 and "stopped by: handshakes" in err, err
    assert len(records) == 1 and records[0]["sni"] == "curl.svc.test"


@pytest.mark.parametrize(("args", "message"), [
    (["-i", "nosuch0"], "no such interface: nosuch0"),
    (["-i", "eth0", "-f", "tcp port (("], "invalid capture filter"),
    (["-i", "eth0", "-w", "/nonexistent/dir/x.pcap"], "cannot write /nonexistent/dir/x.pcap"),
])
def test_errors_are_one_line(net: Net, args: list[str], message: str) -> None:
    done = net.run(net.client, [sys.executable, "-m", "tlsprobe", "sniff", *args])
    assert done.returncode == 2
    assert done.stderr.startswith("tlsprobe: error: ") and message in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr


def test_no_permission_says_what_to_do(net: Net) -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv (util-linux) to drop CAP_NET_RAW")
    done = net.run(net.client, ["setpriv", "--bounding-set=-net_raw", sys.executable, "-m", "tlsprobe",
                                "sniff", "-i", "eth0"])
    assert done.returncode == 2
    assert "no permission to capture on eth0" in done.stderr and "CAP_NET_RAW" in done.stderr.upper()
    assert done.stderr.count("\n") == 1


def test_interface_going_down_ends_with_summary_and_valid_pcap(net: Net) -> None:
    _ip("-n", net.client, "link", "add", "tap-down", "type", "veth", "peer", "name", "tap-peer")
    try:
        _ip("-n", net.client, "link", "set", "tap-down", "up")
        _ip("-n", net.client, "link", "set", "tap-peer", "up")
        written = net.tmp / "down.pcap"
        sniff = Sniffer(net, ["-i", "tap-down", "-F", "jsonl", "-w", str(written)])
        time.sleep(0.5)
        _ip("-n", net.client, "link", "set", "tap-down", "down")
        rc, _, err = sniff.finish(None)
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("-n", net.client, "link", "del", "tap-down")
    assert rc == 3, err
    assert "tlsprobe: error: interface tap-down went down" in err
    assert "stopped by: interface down" in err and "Traceback" not in err
    check = subprocess.run(["tshark", "-r", str(written), "-q"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_loopback_frames_are_seen_once(net: Net) -> None:
    """Linux shows every loopback frame twice (out and in); a handshake must not double."""
    sniff = Sniffer(net, ["-i", "lo", "-F", "jsonl", "tcp"])
    srv = net.spawn(net.client, ["openssl", "s_server", "-accept", "127.0.0.1:7443", "-cert", str(net.tmp / "cert.pem"),
                                 "-key", str(net.tmp / "key.pem"), "-www", "-quiet"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        net.run(net.client, ["curl", "-sk", "--max-time", "5", "--resolve", "lo.svc.test:7443:127.0.0.1",
                             "https://lo.svc.test:7443/", "-o", "/dev/null"])
        rec = sniff.records(1)[0]
        rc, rest, err = sniff.finish()
    finally:
        net.stop(srv)
    assert rc == 0, err
    assert rec["sni"] == "lo.svc.test" and rec["outcome"] == "server_hello"
    assert rest == []
    assert "anomalies: none" in err  # duplicated segments would show as retransmissions/overlaps


def test_any_skips_interfaces_that_are_down_and_a_named_one_is_an_error(net: Net) -> None:
    _ip("-n", net.client, "link", "add", "dn0", "type", "veth", "peer", "name", "dn1")
    try:
        sniff = Sniffer(net, ["-i", "any", "-F", "jsonl", "--duration", "0.5"])
        rc, _, err = sniff.finish(None)
        assert rc == 0, err
        assert "down, not captured: dn0, dn1" in err
        assert "listening on eth0 (Ethernet), lo (Ethernet)" in err
        done = net.run(net.client, [sys.executable, "-m", "tlsprobe", "sniff", "-i", "dn0"])
        assert done.returncode == 2
        assert done.stderr == "tlsprobe: error: interface dn0 is down (bring it up: ip link set dn0 up)\n"

        # with -i any, one interface going down does not end the capture on the others
        _ip("-n", net.client, "link", "set", "dn0", "up")
        _ip("-n", net.client, "link", "set", "dn1", "up")
        sniff = Sniffer(net, ["-i", "any", "-F", "jsonl", "--duration", "2"])
        _ip("-n", net.client, "link", "set", "dn0", "down")
        rc, _, err = sniff.finish(None)
        assert rc == 0, err
        assert "stopped by: duration" in err
        assert "went down during the capture (the others went on): dn0" in err
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("-n", net.client, "link", "del", "dn0")


_QUIC_SERVER = r"""
import asyncio, sys
from aioquic.asyncio import serve
from aioquic.quic.configuration import QuicConfiguration
async def main():
    cfg = QuicConfiguration(is_client=False, alpn_protocols=["h3"])
    cfg.load_cert_chain(sys.argv[1], sys.argv[2])
    await serve("::", 4443, configuration=cfg)
    await asyncio.Future()
asyncio.run(main())
"""

_QUIC_CLIENT = r"""
import asyncio, ssl, sys
from aioquic.asyncio import connect
from aioquic.quic.configuration import QuicConfiguration
async def main():
    cfg = QuicConfiguration(is_client=True, alpn_protocols=["h3"], verify_mode=ssl.CERT_NONE,
                            server_name=sys.argv[3])
    async with connect(sys.argv[1], int(sys.argv[2]), configuration=cfg, wait_connected=True) as c:
        await c.ping()
asyncio.run(asyncio.wait_for(main(), 10))
"""


def test_live_quic_handshake_matches_tshark(net: Net) -> None:
    """QUIC on a non-standard UDP port (aioquic client and server): the ClientHello is
    decrypted from the live Initials, as offline; tshark agrees on SNI and JA3."""
    pytest.importorskip("aioquic", reason="needs aioquic (the test extra) for a real QUIC client and server")
    server = net.spawn(net.server, [sys.executable, "-c", _QUIC_SERVER, str(net.tmp / "cert.pem"),
                                    str(net.tmp / "key.pem")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        ref, written = net.tmp / "quic-ref.pcap", net.tmp / "quic-live.pcap"
        dump = _tcpdump(net, ref)
        sniff = Sniffer(net, ["-i", "eth0", "-F", "jsonl", "-w", str(written), "udp"])
        for _ in range(100):  # the server binds its socket after start-up
            if net.run(net.server, ["ss", "-Hlun", "sport = :4443"]).stdout.strip():
                break
            time.sleep(0.1)
        done = net.run(net.client, [sys.executable, "-c", _QUIC_CLIENT, SERVER_IP, "4443", "quic.svc.test"])
        assert done.returncode == 0, done.stderr
        rec = sniff.records(1)[0]
        rc, _, err = sniff.finish(signal.SIGINT)
        net.stop(dump, signal.SIGINT)
    finally:
        net.stop(server)
    assert rc == 0, err
    assert rec["transport"] == "quic" and rec["dst_port"] == 4443
    assert rec["sni"] == "quic.svc.test" and rec["alpn"] == ["h3"]
    assert rec["ja4"].startswith("q13d") and rec["quic"]["version"] == "0x00000001"
    out = subprocess.run(["tshark", "-r", str(ref), "-Y", "tls.handshake.type == 1", "-T", "fields",
                          "-e", "tls.handshake.extensions_server_name", "-e", "tls.handshake.ja3"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out[:2] == [rec["sni"], rec["ja3"]]
    offline = [r.to_dict() for r in iter_records([str(written)])]
    assert [(r["sni"], r["ja4"], r["transport"]) for r in offline] == [(rec["sni"], rec["ja4"], "quic")]
