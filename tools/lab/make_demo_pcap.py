#!/usr/bin/env python3
"""Produce ``pcaps/demo.pcap`` from real TLS traffic between network namespaces.

Run as root from the repository root::

    sudo python3 tools/lab/make_demo_pcap.py

What it does:

1. builds the ``tp-client`` <-> ``tp-router`` <-> ``tp-server`` lab (see ``netns.py``),
   switches the router's kernel forwarding off and starts ``programs/middlebox.py``
   there instead: a userspace router with a 40 ms one-way delay on the server link and
   a few censorship rules for one name (``blocked.tlsprobe.test``): a GFW-type-II-shaped
   reset burst on 8443, an Aliyun-style ``Server: Beaver`` block page for plain HTTP on
   8080 and an injected TLS alert on 2053 (rule shapes from
   ``make_interception_pcaps.py``), loaded once for the whole capture;
2. makes a throwaway root -> intermediate -> leaf PKI with ``openssl`` (``pki.py``);
3. starts real servers in ``tp-server`` (``openssl s_server``, Python ``ssl``, node
   ``http2``, Python ``http.server``, a Python SMTP server with STARTTLS);
4. captures on the client veth with ``tcpdump`` while real clients (curl,
   ``openssl s_client``, Python ``ssl``, node ``https``) run one scenario at a time:
   clean handshakes of every kind, the blocked name on the watched ports (intercepted)
   and on 443 (not watched: it succeeds), over IPv4 and IPv6;
5. writes ``pcaps/demo.labels.json`` from the scenario table (what each flow was
   set up to do, and for an intercepted flow the ``pattern`` and ``provider`` of the
   middlebox rule it was sent into, cross-checked against what each client itself
   reported and which rule the middlebox said fired, never derived from the capture),
   ``pcaps/README.md`` and ``pcaps/demo-ca.pem``;
6. if ``tshark`` is installed, checks that every expected ClientHello is in the
   capture (including the one split over two TCP segments) and that every injected
   packet the rules describe is there, and prints a table.
   The files in ``pcaps/`` are only replaced when that check passes.

Everything is torn down in ``finally``: the namespaces it created and the processes
it started (by PID).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from random import Random
from string import Template
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import netns
import pki as pkimod
from netns import CLIENT_IF, CLIENT_NS, ROUTER_NS, SERVER_NS, SERVER_V4, SERVER_V6, Lab, LabError

REPO = Path(__file__).resolve().parents[2]
LAB_DIR = Path(__file__).resolve().parent
PROGRAMS = LAB_DIR / "programs"
OUT_DIR = REPO / "pcaps"
PCAP_NAME = "demo.pcap"

DEMO = "demo.tlsprobe.test"
ALT = "alt.tlsprobe.test"
MAIL = "mail.tlsprobe.test"
BLOCKED = "blocked.tlsprobe.test"  # the one name the middlebox's rules match
SPLIT_MTU = 400
PAUSE = 0.4  # seconds between scenarios, so flows are cleanly sequential
MAX_OUTPUT_BYTES = 150_000  # pcaps/ stays small
LINK_DELAY_MS = 40  # one-way, router <-> server, emulated in middlebox.py
RULE_SEED = 2053  # fixed draw of the GFW-shaped injector's IP ID and window

# Ports where tshark needs "decode as TLS" (443 and SMTP 587 are dissected natively).
ODD_TLS_PORTS = (2053, 4433, 5228, 8443)
PSK_EXTENSION = 41  # pre_shared_key: present in a resuming TLS 1.3 ClientHello
HRR_RANDOM = "cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c"
WIRE_VERSIONS = {"0x0301": "TLSv1", "0x0302": "TLSv1.1", "0x0303": "TLSv1.2", "0x0304": "TLSv1.3"}
LEGACY_VERSIONS = ("TLSv1", "TLSv1.1", "TLSv1.2")  # certificates travel in clear


def long_sni() -> str:
    """A 253-character host name (the DNS maximum) under tlsprobe.test."""
    suffix = ".tlsprobe.test"
    labels = [f"long-sni-label-{i}-".ljust(63, "x") for i in range(1, 4)]
    name = ".".join(labels)
    fill = 253 - len(name) - len(suffix) - 1
    return f"{name}.{'long-sni-label-4-'.ljust(fill, 'x')}{suffix}"


LONG_SNI = long_sni()


# -- scenario table ----------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """One client run against one server; it yields one or two TCP connections.

    Every field except ``argv``/``stdin``/``runner`` is an expectation that goes
    into the labels file unchanged.
    """

    name: str
    description: str
    runner: str  # "curl" | "s_client" | "python" | "node"
    client_tool: str
    server_program: str
    server_port: int
    argv: tuple[str, ...]
    ip_version: int = 4
    tls: bool = True
    sni: str | None = DEMO
    alpn_offered: tuple[str, ...] = ()
    alpn_negotiated: str | None = None
    tls_version: str | None = "TLSv1.3"
    hrr: bool = False
    hello_split: bool = False
    client_mtu: int | None = None
    starttls: str | None = None
    resumption: bool = False  # a second connection resumes the first one's session
    stdin: str = ""
    http_host: str | None = None  # Host header of a plain HTTP request
    rule: str | None = None  # the middlebox rule this flow is sent into (it must fire)
    outcome: str = "server_hello"  # first server-direction reaction the client sees (http_response: HTTP)
    client_ok: bool = True  # the client tool succeeds (exit 0)
    client_says: tuple[str, ...] = ()  # one of these must be in the client's output

    @property
    def server_ip(self) -> str:
        """Server address for this scenario's IP version."""
        return SERVER_V6 if self.ip_version == 6 else SERVER_V4


@dataclass
class ConnResult:
    """What a client reported about one of its connections."""

    local_ip: str
    local_port: int
    version: str | None
    alpn: str | None
    resumed: bool = False


@dataclass
class Paths:
    """Run-time files the scenarios refer to."""

    work: Path
    ca: Path
    logs: Path = field(init=False)

    def __post_init__(self) -> None:
        self.logs = self.work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)


def curl_argv(
    p: Paths, host: str, port: int, ip: str, *extra: str, scheme: str = "https"
) -> tuple[str, ...]:
    """curl command fetching ``/`` from ``host:port`` pinned to ``ip`` via --resolve."""
    pin = f"[{ip}]" if ":" in ip else ip
    url = f"{scheme}://{host}:{port}/"
    return (
        "curl",
        "-sS",
        "-v",
        "--max-time",
        "15",
        "--cacert",
        str(p.ca),
        "--resolve",
        f"{host}:{port}:{pin}",
        *extra,
        url,
    )


def s_client_argv(p: Paths, port: int, *extra: str, sni: str = DEMO) -> tuple[str, ...]:
    """openssl s_client command that verifies the chain and waits for server close."""
    return (
        "openssl",
        "s_client",
        "-connect",
        f"{SERVER_V4}:{port}",
        "-servername",
        sni,
        "-CAfile",
        str(p.ca),
        "-verify_return_error",
        "-ign_eof",
        "-nocommands",
        *extra,
    )


def py_client_argv(p: Paths, *extra: str) -> tuple[str, ...]:
    """Python ssl client command."""
    return (sys.executable, str(PROGRAMS / "py_tls_client.py"), "--ca", str(p.ca), *extra)


def node_client_argv(p: Paths, ip: str, port: int, sni: str, alpn: str) -> tuple[str, ...]:
    """node https client command."""
    return ("node", str(PROGRAMS / "node_https_client.js"), ip, str(port), sni, str(p.ca), alpn)


HTTP10 = f"GET / HTTP/1.0\r\nHost: {DEMO}\r\n\r\n"
RESET_ERRORS = ("reset by peer", "SSL_ERROR_SYSCALL")


# -- the middlebox's rules -----------------------------------------------------------------

GFW_RULE = "gfw-type2-8443"
BEAVER_RULE = "aliyun-beaver-http-8080"
ALERT_RULE = "alert-inject-2053"


def middlebox_rules() -> list[dict[str, Any]]:
    """The rules ``middlebox.py`` runs for the whole capture, all keyed on ``BLOCKED``.

    The shapes are the interception lab's (``make_interception_pcaps.py``); each rule
    also says which pattern it is and which real provider it imitates, in tlsprobe's
    vocabulary: an intercepted flow's ``pattern``/``provider`` labels are copied from
    the rule it was sent into.
    """
    import make_interception_pcaps as mip  # late: it imports this module

    gfw = mip.gfw_rule(8443, Random(RULE_SEED))
    beaver = mip.aliyun_page_rule(8080, "http_host")
    alert = mip.alert_rule()
    assert [gfw["match"], beaver["match"], alert["match"]] == [[BLOCKED]] * 3
    assert alert["ports"] == [2053]
    return [
        {**gfw, "name": GFW_RULE, "pattern": "rst_injection", "provider": "gfw"},
        {**beaver, "name": BEAVER_RULE, "pattern": "block_page", "provider": "alibaba_cloud"},
        {**alert, "name": ALERT_RULE, "pattern": "tls_alert_injection", "provider": None},
    ]


def describe_rule(doc: dict[str, Any]) -> str:
    """One line about a rule, for README.md."""
    mode = "on-path (trigger forwarded)" if doc["forward_trigger"] else "in-line (trigger dropped)"
    packets = "; ".join(
        f"{spec['count']}x {spec['flags']} to the {spec['to']} (TTL {spec['ttl']}, IP ID {spec['ip_id']}, "
        f"DF {spec['df']}, window {spec['window']}"
        + (f", {len(spec['payload_text'])}-byte payload" if spec.get("payload_text") else "")
        + (f", payload {spec['payload']}" if spec.get("payload") else "")
        + ")"
        for spec in doc["inject"]
    )
    delay = f", {doc['delay_ms']} ms after the trigger" if doc["delay_ms"] else ""
    return (
        f"`{doc['name']}`: {doc['trigger']} = `{', '.join(doc['match'])}` on port "
        f"{', '.join(map(str, doc['ports']))}, {mode}{delay}, flow afterwards: {doc['after']}; "
        f"injects {packets}"
    )


def build_scenarios(p: Paths) -> list[Scenario]:
    """The scenario table, in capture order."""
    v4, v6 = SERVER_V4, SERVER_V6
    h2_h1 = ("h2", "http/1.1")
    return [
        Scenario(
            "curl-tls13-h2",
            "curl, TLS 1.3, ALPN h2+http/1.1, h2 negotiated on 443",
            "curl",
            "curl",
            "python-ssl",
            443,
            curl_argv(p, DEMO, 443, v4, "--tlsv1.3", "--http2"),
            alpn_offered=h2_h1,
            alpn_negotiated="h2",
        ),
        Scenario(
            "curl-tls12-h1",
            "curl capped at TLS 1.2: ServerHello + 2-cert Certificate "
            "in clear, ALPN http/1.1 only, SNI alt name",
            "curl",
            "curl",
            "python-ssl",
            443,
            curl_argv(p, ALT, 443, v4, "--tlsv1.2", "--tls-max", "1.2", "--http1.1"),
            sni=ALT,
            alpn_offered=("http/1.1",),
            alpn_negotiated="http/1.1",
            tls_version="TLSv1.2",
        ),
        Scenario(
            "curl-blocked-sni-443",
            f"SNI {BLOCKED} on 443: the middlebox watches this name on 8443 only, "
            "so the handshake completes (the port comparison's good side)",
            "curl",
            "curl",
            "python-ssl",
            443,
            curl_argv(p, BLOCKED, 443, v4),
            sni=BLOCKED,
            alpn_offered=h2_h1,
            alpn_negotiated="h2",
        ),
        Scenario(
            "gfw-rst-8443",
            f"intercepted: the same curl and SNI {BLOCKED} on 8443; a GFW-type-II-shaped "
            "on-path injector sends three identical RST+ACK (TTL 101, DF, one IP ID) to both "
            "ends 18 ms after the ClientHello, which it forwards: the real ServerHello races in",
            "curl",
            "curl",
            "openssl s_server",
            8443,
            curl_argv(p, BLOCKED, 8443, v4),
            sni=BLOCKED,
            alpn_offered=h2_h1,
            tls_version=None,
            rule=GFW_RULE,
            outcome="rst",
            client_ok=False,
            client_says=RESET_ERRORS,
        ),
        Scenario(
            "s_client-tls12",
            "openssl s_client forced to TLS 1.2 on odd port 8443, no ALPN",
            "s_client",
            "openssl s_client",
            "openssl s_server",
            8443,
            s_client_argv(p, 8443, "-tls1_2"),
            tls_version="TLSv1.2",
            stdin=HTTP10,
        ),
        Scenario(
            "s_client-tls11",
            "legacy TLS 1.1 (SECLEVEL=0 on both ends)",
            "s_client",
            "openssl s_client",
            "openssl s_server",
            8443,
            s_client_argv(p, 8443, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"),
            tls_version="TLSv1.1",
            stdin=HTTP10,
        ),
        Scenario(
            "s_client-tls10",
            "legacy TLS 1.0 (SECLEVEL=0 on both ends)",
            "s_client",
            "openssl s_client",
            "openssl s_server",
            8443,
            s_client_argv(p, 8443, "-tls1", "-cipher", "DEFAULT@SECLEVEL=0"),
            tls_version="TLSv1",
            stdin=HTTP10,
        ),
        Scenario(
            "s_client-hrr",
            "client key share X25519, server accepts only P-256: "
            "HelloRetryRequest and a second ClientHello in the same stream",
            "s_client",
            "openssl s_client",
            "openssl s_server -groups P-256",
            4433,
            s_client_argv(p, 4433, "-tls1_3", "-groups", "X25519:P-256"),
            hrr=True,
            stdin=HTTP10,
        ),
        Scenario(
            "plain-http",
            "plain HTTP on 8080: TCP noise that must not be reported as TLS",
            "curl",
            "curl",
            "python http.server",
            8080,
            curl_argv(p, "www.tlsprobe.test", 8080, v4, scheme="http"),
            tls=False,
            sni=None,
            tls_version=None,
            http_host="www.tlsprobe.test:8080",
            outcome="http_response",
        ),
        Scenario(
            "beaver-page-http-8080",
            f"intercepted: plain HTTP on 8080 with Host {BLOCKED}; an Aliyun-style in-line "
            "device drops the GET and answers with its 'Server: Beaver' 403 ICP-filing page "
            "(TTL 52) and a FIN",
            "curl",
            "curl",
            "python http.server",
            8080,
            curl_argv(p, BLOCKED, 8080, v4, scheme="http"),
            tls=False,
            sni=None,
            tls_version=None,
            http_host=f"{BLOCKED}:8080",
            rule=BEAVER_RULE,
            outcome="http_response",  # the injected 403 page is the answer to the request
            client_says=("< Server: Beaver",),
        ),
        Scenario(
            "python-no-sni",
            "Python ssl client connecting by IP address: no SNI "
            "extension (certificate matched by IP SAN)",
            "python",
            "python ssl",
            "python-ssl",
            443,
            py_client_argv(p, "--host", v4, "--port", "443", "--alpn", "http/1.1"),
            sni=None,
            alpn_offered=("http/1.1",),
            alpn_negotiated="http/1.1",
        ),
        Scenario(
            "python-resume",
            "Python ssl client, no ALPN; second connection resumes "
            "the first (TLS 1.3 PSK from a session ticket)",
            "python",
            "python ssl",
            "python-ssl",
            443,
            py_client_argv(p, "--host", v4, "--port", "443", "--sni", DEMO, "--resume"),
            resumption=True,
        ),
        Scenario(
            "python-ipv6-tls12",
            "Python ssl client over IPv6, capped at TLS 1.2",
            "python",
            "python ssl",
            "python-ssl",
            443,
            py_client_argv(
                p,
                "--host",
                v6,
                "--port",
                "443",
                "--sni",
                ALT,
                "--alpn",
                "http/1.1",
                "--max-version",
                "1.2",
            ),
            ip_version=6,
            sni=ALT,
            alpn_offered=("http/1.1",),
            alpn_negotiated="http/1.1",
            tls_version="TLSv1.2",
        ),
        Scenario(
            "curl-ipv6-node-h2",
            "curl over IPv6 to node http2 server on odd port 2053",
            "curl",
            "curl",
            "node http2",
            2053,
            curl_argv(p, DEMO, 2053, v6, "-6", "--http2"),
            ip_version=6,
            alpn_offered=h2_h1,
            alpn_negotiated="h2",
        ),
        Scenario(
            "curl-ipv6-blocked-sni-443",
            f"SNI {BLOCKED} over IPv6 on 443 (not watched): the handshake completes",
            "curl",
            "curl",
            "python-ssl",
            443,
            curl_argv(p, BLOCKED, 443, v6, "-6"),
            ip_version=6,
            sni=BLOCKED,
            alpn_offered=h2_h1,
            alpn_negotiated="h2",
        ),
        Scenario(
            "gfw-rst-8443-ipv6",
            "intercepted: the same over IPv6 on 8443; the GFW-shaped injector's three "
            "RST+ACK carry hop limit 101",
            "curl",
            "curl",
            "openssl s_server",
            8443,
            curl_argv(p, BLOCKED, 8443, v6, "-6"),
            ip_version=6,
            sni=BLOCKED,
            alpn_offered=h2_h1,
            tls_version=None,
            rule=GFW_RULE,
            outcome="rst",
            client_ok=False,
            client_says=RESET_ERRORS,
        ),
        Scenario(
            "curl-long-sni",
            f"curl with a {len(LONG_SNI)}-character SNI to node on 2053",
            "curl",
            "curl",
            "node http2",
            2053,
            curl_argv(p, LONG_SNI, 2053, v4, "--http2"),
            sni=LONG_SNI,
            alpn_offered=h2_h1,
            alpn_negotiated="h2",
        ),
        Scenario(
            "alert-inject-2053",
            f"intercepted: SNI {BLOCKED} to node on 2053; an in-line device drops the "
            "ClientHello and injects a fatal handshake_failure alert, then RST+ACK (TTL 50)",
            "curl",
            "curl",
            "node http2",
            2053,
            curl_argv(p, BLOCKED, 2053, v4, "--http2"),
            sni=BLOCKED,
            alpn_offered=h2_h1,
            tls_version=None,
            rule=ALERT_RULE,
            outcome="tls_alert",
            client_ok=False,
            client_says=("handshake failure",),
        ),
        Scenario(
            "node-client",
            "node https client, ALPN http/1.1 offered but the server "
            "(s_server without -alpn) ignores it",
            "node",
            "node https",
            "openssl s_server",
            8443,
            node_client_argv(p, v4, 8443, ALT, "http/1.1"),
            sni=ALT,
            alpn_offered=("http/1.1",),
        ),
        Scenario(
            "curl-split-hello",
            f"client MTU {SPLIT_MTU}: the ClientHello spans two TCP segments; odd port 5228",
            "curl",
            "curl",
            "python-ssl",
            5228,
            curl_argv(p, DEMO, 5228, v4, "--http2"),
            alpn_offered=h2_h1,
            alpn_negotiated="h2",
            hello_split=True,
            client_mtu=SPLIT_MTU,
        ),
        Scenario(
            "smtp-starttls",
            "SMTP submission on 587, TLS after STARTTLS",
            "s_client",
            "openssl s_client -starttls smtp",
            "python smtp",
            587,
            s_client_argv(p, 587, "-starttls", "smtp", "-name", "client.tlsprobe.test", sni=MAIL),
            sni=MAIL,
            starttls="smtp",
            stdin="EHLO client.tlsprobe.test\r\nQUIT\r\n",
        ),
    ]


# -- servers -------------------------------------------------------------------------


def server_commands(key: pkimod.Pki, www: Path) -> dict[int, list[str]]:
    """Command for each server port in tp-server."""
    s_server = [
        "openssl",
        "s_server",
        "-www",
        "-cert",
        str(key.leaf_cert),
        "-key",
        str(key.leaf_key),
        "-cert_chain",
        str(key.intermediate_cert),
    ]
    chain = ["--cert", str(key.fullchain), "--key", str(key.leaf_key)]
    py_https = [sys.executable, str(PROGRAMS / "py_https_server.py"), *chain]
    return {
        8443: [
            *s_server,
            "-accept",
            "8443",
            "-cipher",
            "DEFAULT@SECLEVEL=0",
            "-min_protocol",
            "TLSv1",
        ],
        4433: [*s_server, "-accept", "4433", "-groups", "P-256"],
        443: [*py_https, "--port", "443"],
        5228: [*py_https, "--port", "5228"],
        2053: [
            "node",
            str(PROGRAMS / "node_https_server.js"),
            "2053",
            str(key.fullchain),
            str(key.leaf_key),
        ],
        8080: [
            sys.executable,
            "-m",
            "http.server",
            "8080",
            "--bind",
            "::",
            "--directory",
            str(www),
        ],
        587: [sys.executable, str(PROGRAMS / "smtp_starttls_server.py"), "--port", "587", *chain],
    }


def start_servers(lab: Lab, key: pkimod.Pki, paths: Paths) -> None:
    """Start every server in tp-server and wait until all of them listen."""
    www = paths.work / "www"
    www.mkdir(exist_ok=True)
    (www / "index.html").write_text("<html><body>plain http, tlsprobe lab</body></html>\n")
    for port, cmd in server_commands(key, www).items():
        with (paths.logs / f"server-{port}.log").open("w") as log:
            lab.spawn_in(SERVER_NS, cmd, stdout=log, stderr=subprocess.STDOUT)
    for port in server_commands(key, www):
        lab.wait_for_listen(SERVER_NS, port)


# -- capture -------------------------------------------------------------------------


def start_capture(lab: Lab, pcap: Path) -> subprocess.Popen[Any]:
    """Start tcpdump on the client veth and wait until it reports it is listening."""
    cmd = ["tcpdump", "-i", CLIENT_IF, "-w", str(pcap), "-s", "0", "-n", "-U", "-Z", "root"]
    proc = lab.spawn_in(CLIENT_NS, cmd, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], 0.5)
        if ready:
            line = proc.stderr.readline().decode(errors="replace")
            if "listening on" in line:
                return proc
            if not line and proc.poll() is not None:
                break
    raise LabError("tcpdump did not start listening")


def stop_capture(lab: Lab, proc: subprocess.Popen[Any]) -> str:
    """Stop tcpdump with SIGINT (by PID) and return its closing statistics."""
    time.sleep(1.0)  # let the last FIN/ACKs arrive
    lab.stop(proc, sig=signal.SIGINT, wait=10)
    assert proc.stderr is not None
    stats: bytes = proc.stderr.read()
    return stats.decode(errors="replace").strip()


# -- client runners ------------------------------------------------------------------


def _run_logged(lab: Lab, sc: Scenario, paths: Paths) -> subprocess.CompletedProcess[str]:
    result = lab.run_in(CLIENT_NS, sc.argv, check=False, timeout=60, input_text=sc.stdin or None)
    (paths.logs / f"client-{sc.name}.log").write_text(
        f"$ {' '.join(sc.argv)}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}\n"
    )
    if (result.returncode == 0) != sc.client_ok:
        want = "success" if sc.client_ok else "failure"
        raise LabError(f"{sc.name}: client exited {result.returncode}, want {want}: {result.stderr[-1500:]}")
    said = result.stdout + result.stderr
    if sc.client_says and not any(text in said for text in sc.client_says):
        raise LabError(f"{sc.name}: client output has none of {sc.client_says}: {result.stderr[-1500:]}")
    return result


def run_curl(lab: Lab, sc: Scenario, paths: Paths) -> list[ConnResult]:
    """Run curl; local address from ``-w``, TLS version and ALPN from ``-v``."""
    argv = (*sc.argv[:-1], "-o", "/dev/null", "-w", "%{local_ip} %{local_port}\\n", sc.argv[-1])
    result = _run_logged(lab, dataclasses.replace(sc, argv=argv), paths)
    local_ip, local_port = result.stdout.split()[-2:]
    version = re.search(r"SSL connection using (TLSv[\d.]+)", result.stderr)
    alpn = re.search(r"ALPN: server accepted (\S+)", result.stderr)
    return [
        ConnResult(local_ip, int(local_port), version and version.group(1), alpn and alpn.group(1))
    ]


def run_s_client(lab: Lab, sc: Scenario, paths: Paths) -> list[ConnResult]:
    """Run s_client; its local port is read with ``ss`` before stdin is sent."""
    log = paths.logs / f"client-{sc.name}.log"
    with log.open("w") as out:
        out.write(f"$ {' '.join(sc.argv)}\n")
        out.flush()
        proc = lab.spawn_in(
            CLIENT_NS,
            sc.argv,
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
        local = _wait_established(lab, proc, sc)
        assert proc.stdin is not None
        proc.stdin.write(sc.stdin)
        proc.stdin.close()
        try:
            code = proc.wait(timeout=30)
        finally:
            lab.stop(proc)
    text = log.read_text()
    if code != 0:
        raise LabError(f"{sc.name}: s_client exited {code}; see {log}")
    version = re.search(r"Protocol\s*: (TLSv[\d.]+)", text)
    alpn = re.search(r"ALPN protocol: (\S+)", text)
    return [ConnResult(local[0], local[1], version and version.group(1), alpn and alpn.group(1))]


def _wait_established(lab: Lab, proc: subprocess.Popen[Any], sc: Scenario) -> tuple[str, int]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and proc.poll() is None:
        local = lab.established_local(CLIENT_NS, sc.server_ip, sc.server_port)
        if local:
            return local
        time.sleep(0.05)
    raise LabError(f"{sc.name}: no established connection to {sc.server_ip}:{sc.server_port}")


def run_json_client(lab: Lab, sc: Scenario, paths: Paths) -> list[ConnResult]:
    """Run the Python or node client, which print one JSON report per connection."""
    result = _run_logged(lab, sc, paths)
    reports = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return [
        ConnResult(
            r["local_ip"],
            int(r["local_port"]),
            r["version"],
            r["alpn"],
            bool(r.get("session_reused", False)),
        )
        for r in reports
    ]


RUNNERS: dict[str, Callable[[Lab, Scenario, Paths], list[ConnResult]]] = {
    "curl": run_curl,
    "s_client": run_s_client,
    "python": run_json_client,
    "node": run_json_client,
}


def run_scenario(lab: Lab, sc: Scenario, paths: Paths) -> list[ConnResult]:
    """Run one scenario (with a lowered client MTU if it asks for one)."""
    if sc.client_mtu:
        with lab.temporary_mtu(CLIENT_NS, CLIENT_IF, sc.client_mtu):
            return RUNNERS[sc.runner](lab, sc, paths)
    return RUNNERS[sc.runner](lab, sc, paths)


def check_outcome(sc: Scenario, results: list[ConnResult]) -> None:
    """Fail if a client's own report contradicts what the scenario expects."""
    expected_conns = 2 if sc.resumption else 1
    if len(results) != expected_conns:
        raise LabError(f"{sc.name}: {len(results)} connections reported, want {expected_conns}")
    for i, res in enumerate(results):
        problems = []
        if sc.tls and res.version != sc.tls_version:
            problems.append(f"version {res.version} != {sc.tls_version}")
        if sc.tls and res.alpn != sc.alpn_negotiated:
            problems.append(f"alpn {res.alpn} != {sc.alpn_negotiated}")
        if sc.resumption and res.resumed != (i == 1):
            problems.append(f"connection {i} resumed={res.resumed}")
        if problems:
            raise LabError(f"{sc.name}: " + "; ".join(problems))


# -- labels --------------------------------------------------------------------------


def flow_labels(
    sc: Scenario, results: list[ConnResult], first_index: int, rules: dict[str, dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """Label dicts for the TCP connections of one scenario.

    ``pattern`` and ``provider`` are copied from the middlebox rule the scenario sends
    the flow into (``rules`` by name); a flow sent into no rule has both null.
    """
    rule = (rules or {})[sc.rule] if sc.rule else None
    flows = []
    for i, res in enumerate(results):
        flows.append(
            {
                "index": first_index + i,
                "scenario": sc.name,
                "description": sc.description,
                "tls": sc.tls,
                "protocol": "tls" if sc.tls else "http",
                "pattern": rule["pattern"] if rule else None,
                "provider": rule["provider"] if rule else None,
                "middlebox_rule": sc.rule,
                "outcome": sc.outcome,
                "client_tool": sc.client_tool,
                "client_command": " ".join(_portable_argv(sc.argv)),
                "server_program": sc.server_program,
                "ip_version": sc.ip_version,
                "client_ip": res.local_ip,
                "client_port": res.local_port,
                "server_ip": sc.server_ip,
                "server_port": sc.server_port,
                "sni": sc.sni if sc.tls else None,
                "http_host": sc.http_host,
                "alpn_offered": list(sc.alpn_offered),
                "alpn_negotiated": sc.alpn_negotiated,
                "tls_version": sc.tls_version,
                "hrr": sc.hrr,
                "client_hellos": (2 if sc.hrr else 1) if sc.tls else 0,
                "hello_split": sc.hello_split,
                "client_mtu": sc.client_mtu or netns.DEFAULT_MTU,
                "starttls": sc.starttls,
                "resumed": sc.resumption and i == 1,
                "certificates_in_clear": 2 if sc.tls and sc.tls_version in LEGACY_VERSIONS else 0,
            }
        )
    return flows


def _portable_argv(argv: Sequence[str]) -> list[str]:
    """Replace temp-dir and interpreter paths in a command line by stable names."""
    out = []
    for arg in argv:
        if arg == sys.executable:
            out.append("python3")
        elif arg.startswith(str(PROGRAMS)):
            out.append(str(Path(arg).relative_to(REPO)))
        elif arg.startswith("/tmp/") or arg.startswith(tempfile.gettempdir() + "/"):
            out.append(Path(arg).name)
        else:
            out.append(arg)
    return out


def tool_versions() -> dict[str, str]:
    """Versions of the programs that produced the traffic."""

    def first_line(cmd: Sequence[str]) -> str:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=10)
        except OSError:
            return "missing"
        return (out.stdout or out.stderr).strip().splitlines()[0]

    return {
        "kernel": platform.release(),
        "python": platform.python_version(),
        "openssl": first_line(["openssl", "version"]),
        "curl": first_line(["curl", "--version"]),
        "node": first_line(["node", "--version"]),
        "tcpdump": first_line(["tcpdump", "--version"]),
    }


def build_labels(
    flows: list[dict[str, Any]], key: pkimod.Pki, stats: str, rules: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The complete labels document."""
    return {
        "capture": PCAP_NAME,
        "generated_by": "tools/lab/make_demo_pcap.py",
        "generated_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "note": "Expected values come from the scenario the script ran (cross-checked against "
        "each client's own report and, for intercepted flows, the middlebox's report of "
        "which rule fired), not from parsing the capture. 'pattern' and 'provider' are "
        "copied from the middlebox rule a flow was sent into (null: no rule fired). "
        "'outcome' is the first server-direction reaction the client sees. 'index' is the "
        "order of the TCP connection in the capture, equal to tshark's tcp.stream.",
        "capture_point": {"namespace": CLIENT_NS, "interface": CLIENT_IF, "link_type": "EN10MB"},
        "topology": {
            "client": [netns.CLIENT_V4, netns.CLIENT_V6],
            "router": [
                netns.ROUTER_CLIENT_V4,
                netns.ROUTER_SERVER_V4,
                netns.ROUTER_CLIENT_V6,
                netns.ROUTER_SERVER_V6,
            ],
            "server": [SERVER_V4, SERVER_V6],
        },
        "middlebox": {
            "program": "tools/lab/programs/middlebox.py",
            "how": "userspace AF_PACKET router in tp-router (kernel forwarding off); the rules "
            "below are loaded once, before the capture starts, and stay active throughout",
            "router_server_link_one_way_delay_ms": LINK_DELAY_MS,
            "expected_rtt_ms": 2 * LINK_DELAY_MS,
            "rules": rules or [],
        },
        "pki": key.describe(),
        "tools": tool_versions(),
        "tcpdump_stats": stats.splitlines()[-3:],
        "flows": flows,
    }


# -- tshark cross-check ----------------------------------------------------------------


def tshark_rows(pcap: Path, display_filter: str, fields: Sequence[str]) -> Iterator[list[str]]:
    """Rows of ``tshark -T fields`` output with decode-as rules for odd TLS ports."""
    cmd = [
        "tshark",
        "-r",
        str(pcap),
        "-Y",
        display_filter,
        "-T",
        "fields",
        "-E",
        "separator=\t",
        "-E",
        "aggregator=,",
        "-E",
        "occurrence=a",
    ]
    for port in ODD_TLS_PORTS:
        cmd += ["-d", f"tcp.port=={port},tls"]
    for name in fields:
        cmd += ["-e", name]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120)
    for line in out.stdout.splitlines():
        yield (line.split("\t") + [""] * len(fields))[: len(fields)]


@dataclass
class Observed:
    """What tshark shows for one TCP stream."""

    client_port: int = 0
    server_port: int = 0
    hellos: list[dict[str, str]] = field(default_factory=list)
    version: str | None = None
    hrr: bool = False
    certs: int = 0


def observe(pcap: Path) -> dict[int, Observed]:
    """Collect ClientHello, ServerHello and Certificate facts per tcp.stream."""
    streams: dict[int, Observed] = {}
    hello_fields = [
        "tcp.stream",
        "tcp.srcport",
        "tcp.dstport",
        "tls.handshake.extensions_server_name",
        "tls.handshake.extensions_alpn_str",
        "tcp.segment.count",
        "tls.handshake.ja3",
        "tls.handshake.extension.type",
    ]
    for stream, sport, dport, sni, alpn, segs, ja3, ext_types in tshark_rows(
        pcap, "tls.handshake.type == 1", hello_fields
    ):
        obs = streams.setdefault(int(stream), Observed(int(sport), int(dport)))
        psk = str(PSK_EXTENSION) in ext_types.split(",")
        obs.hellos.append(
            {"sni": sni, "alpn": alpn, "segments": segs or "1", "ja3": ja3, "psk": str(psk)}
        )
    sh_fields = [
        "tcp.stream",
        "tls.handshake.random",
        "tls.handshake.version",
        "tls.handshake.extensions.supported_version",
    ]
    for stream, random, version, selected in tshark_rows(
        pcap, "tls.handshake.type == 2", sh_fields
    ):
        obs = streams.setdefault(int(stream), Observed())
        if HRR_RANDOM in random:
            obs.hrr = True
        else:
            wire = selected.split(",")[-1] if selected else version.split(",")[0]
            obs.version = WIRE_VERSIONS.get(wire, wire)
    for stream, lengths in tshark_rows(
        pcap, "tls.handshake.type == 11", ["tcp.stream", "tls.handshake.certificate_length"]
    ):
        obs = streams.setdefault(int(stream), Observed())
        obs.certs = max(obs.certs, len([x for x in lengths.split(",") if x]))
    return streams


def compare(flow: dict[str, Any], obs: Observed | None) -> list[str]:
    """Differences between one label and what tshark saw in the same stream."""
    if obs is None:
        return [] if not flow["tls"] else ["no ClientHello in this stream"]
    if not flow["tls"]:
        return ["TLS seen in a non-TLS flow"] if obs.hellos else []
    problems = []
    first = obs.hellos[0]
    if flow["middlebox_rule"]:  # intercepted: the hello is the client's; what follows is checked apart
        checks = [
            ("server port", obs.server_port, flow["server_port"]),
            ("client port", obs.client_port, flow["client_port"]),
            ("sni", first["sni"] or None, flow["sni"]),
            ("alpn offered", [a for a in first["alpn"].split(",") if a], flow["alpn_offered"]),
            ("client hellos", len(obs.hellos), flow["client_hellos"]),
        ]
        return [f"{what}: capture {seen!r} != label {want!r}" for what, seen, want in checks if seen != want]
    checks = [
        ("server port", obs.server_port, flow["server_port"]),
        ("client port", obs.client_port, flow["client_port"]),
        ("sni", first["sni"] or None, flow["sni"]),
        ("alpn offered", [a for a in first["alpn"].split(",") if a], flow["alpn_offered"]),
        ("client hellos", len(obs.hellos), flow["client_hellos"]),
        ("split", int(first["segments"]) >= 2, flow["hello_split"]),
        ("version", obs.version, flow["tls_version"]),
        ("hrr", obs.hrr, flow["hrr"]),
        ("certificates in clear", obs.certs, flow["certificates_in_clear"]),
        ("pre_shared_key offered", first["psk"] == "True", flow["resumed"]),
    ]
    for what, seen, want in checks:
        if seen != want:
            problems.append(f"{what}: capture {seen!r} != label {want!r}")
    return problems


def injection_problems(pcap: Path, flow: dict[str, Any], rule: dict[str, Any]) -> list[str]:
    """Every packet the rule injects towards the client is in the flow's stream, as specified.

    Matched on the stream, direction, TTL (hop limit), RST/FIN flags and payload length
    from the rule's packet specs; the rule is what was given to the middlebox.
    """
    problems = []
    for spec in rule["inject"]:
        if spec["to"] != "client":
            continue
        payload = spec["payload_text"].encode() if "payload_text" in spec else bytes.fromhex(spec.get("payload", ""))
        ttl_field = "ipv6.hlim" if flow["ip_version"] == 6 else "ip.ttl"
        display = (
            f"tcp.stream == {flow['index']} && tcp.srcport == {flow['server_port']} && "
            f"{ttl_field} == {spec['ttl']} && tcp.len == {len(payload)} && "
            f"tcp.flags.reset == {int('R' in spec['flags'])} && tcp.flags.fin == {int('F' in spec['flags'])}"
        )
        seen = len(list(tshark_rows(pcap, display, ["frame.number"])))
        if seen < spec["count"]:
            problems.append(
                f"injected {spec['flags']} (TTL {spec['ttl']}, {len(payload)} bytes): {seen} in the capture, "
                f"rule sends {spec['count']}"
            )
    return problems


def cross_check(pcap: Path, flows: list[dict[str, Any]], rules: list[dict[str, Any]]) -> bool:
    """Print a table of the capture's ClientHellos against the labels; True if all match."""
    by_name = {r["name"]: r for r in rules}
    streams = observe(pcap)
    print(
        f"\n{'strm':>4} {'client':<18} {'port':>5} {'sni':<26} {'version':<8} "
        f"{'split':<5} {'hrr':<5} {'segs':<4} ja3"
    )
    ok = True
    for flow in flows:
        obs = streams.get(flow["index"])
        first = obs.hellos[0] if obs and obs.hellos else {}
        sni = (first.get("sni") or "-") if flow["tls"] else "(plain tcp)"
        sni = sni if len(sni) <= 26 else f"{sni[:12]}..({len(sni)})"
        print(
            f"{flow['index']:>4} {flow['client_tool'][:18]:<18} {flow['server_port']:>5} "
            f"{sni:<26} {(obs.version if obs else None) or '-':<8} "
            f"{flow['hello_split']!s:<5} {flow['hrr']!s:<5} "
            f"{first.get('segments', '-'):<4} {first.get('ja3', '-')}"
        )
        problems = compare(flow, obs)
        if flow["middlebox_rule"]:
            problems += injection_problems(pcap, flow, by_name[flow["middlebox_rule"]])
            print(f"     {flow['middlebox_rule']}: {flow['pattern']}, provider {flow['provider']}")
        for problem in problems:
            ok = False
            print(f"     MISMATCH: {problem}")
    extra = sorted(set(streams) - {f["index"] for f in flows})
    if extra:
        ok = False
        print(f"     MISMATCH: unexpected TLS streams {extra}")
    return ok


# -- output files --------------------------------------------------------------------


README_TEMPLATE = Template((LAB_DIR / "demo_readme.md.in").read_text())


def flow_table_md(flows: list[dict[str, Any]]) -> str:
    """Markdown table of the flows for README.md."""
    rows = [
        "| stream | scenario | client | server | port | IP | SNI / Host | TLS | ALPN offered "
        "| split | HRR | pattern (provider) | what it exercises |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for f in flows:
        name = f["sni"] if f["tls"] else f["http_host"]
        name = name if name is None or len(name) < 30 else f"({len(name)} chars)"
        tls = (f["tls_version"] or "not completed") if f["tls"] else "plain HTTP"
        verdict = f"**{f['pattern']}** ({f['provider'] or '—'})" if f["pattern"] else ""
        rows.append(
            f"| {f['index']} | {f['scenario']} | {f['client_tool']} | {f['server_program']} "
            f"| {f['server_port']} | v{f['ip_version']} | {name or '—'} "
            f"| {tls} | {', '.join(f['alpn_offered']) or '—'} "
            f"| {'yes' if f['hello_split'] else ''} | {'yes' if f['hrr'] else ''} | {verdict} "
            f"| {f['description']}{' (resumed)' if f['resumed'] else ''} |"
        )
    return "\n".join(rows)


def rules_md(rules: list[dict[str, Any]]) -> str:
    """Markdown list of the middlebox's rules for README.md."""
    return "\n".join(
        f"   - {describe_rule(r)}. Labels: pattern `{r['pattern']}`, provider "
        f"{'`' + r['provider'] + '`' if r['provider'] else 'null'}."
        for r in rules
    )


def write_outputs(pcap: Path, labels: dict[str, Any], key: pkimod.Pki) -> None:
    """Install the capture, labels, CA certificate and README into pcaps/."""
    OUT_DIR.mkdir(exist_ok=True)
    shutil.copyfile(pcap, OUT_DIR / PCAP_NAME)
    (OUT_DIR / "demo.labels.json").write_text(json.dumps(labels, indent=2) + "\n")
    shutil.copyfile(key.root_cert, OUT_DIR / "demo-ca.pem")
    (OUT_DIR / "README.md").write_text(
        README_TEMPLATE.substitute(
            flow_table=flow_table_md(labels["flows"]),
            n_flows=len(labels["flows"]),
            pcap_size=(OUT_DIR / PCAP_NAME).stat().st_size,
            long_sni_len=len(LONG_SNI),
            split_mtu=SPLIT_MTU,
            n_intercepted=sum(1 for f in labels["flows"] if f["pattern"]),
            link_delay_ms=LINK_DELAY_MS,
            rtt_ms=2 * LINK_DELAY_MS,
            blocked=BLOCKED,
            middlebox_rules=rules_md(labels["middlebox"]["rules"]),
            tools="\n".join(f"- {k}: {v}" for k, v in labels["tools"].items()),
            leaf_sha256=labels["pki"]["leaf"]["sha256"],
        )
    )


# -- main ------------------------------------------------------------------------------


def preflight() -> None:
    """Exit with a helpful message when not root or a required program is missing."""
    if os.geteuid() != 0:
        sys.exit("run as root: sudo python3 tools/lab/make_demo_pcap.py")
    if shutil.which("tcpdump") is None:
        sys.exit("tcpdump not found: apt-get install tcpdump")
    for prog, pkg in (
        ("ip", "iproute2"),
        ("ss", "iproute2"),
        ("openssl", "openssl"),
        ("curl", "curl"),
        ("node", "nodejs"),
    ):
        if shutil.which(prog) is None:
            sys.exit(f"{prog} not found: apt-get install {pkg}")


def start_middlebox(lab: Lab, paths: Paths, rules: list[dict[str, Any]]) -> Any:
    """Kernel forwarding off in tp-router, ``middlebox.py`` forwarding with ``rules`` loaded."""
    import make_interception_pcaps as mip  # late: it imports this module

    if mip.LINK_DELAY_MS != LINK_DELAY_MS:
        raise LabError(f"middlebox link delay {mip.LINK_DELAY_MS} ms, labels say {LINK_DELAY_MS}")
    lab.sysctl(ROUTER_NS, "net.ipv4.ip_forward=0", "net.ipv6.conf.all.forwarding=0")
    mbox = mip.MiddleboxProc(lab, paths.work / "rules.json", paths.logs / "middlebox.log")
    mbox.rules_path.write_text(json.dumps({"rules": rules, "local_ports": []}, indent=1))
    mbox.proc.send_signal(signal.SIGHUP)
    loaded = mbox.wait_event("reloaded").get("rules")
    if loaded != [r["name"] for r in rules]:
        raise LabError(f"middlebox loaded {loaded}, want {[r['name'] for r in rules]}")
    return mbox


def check_rules_fired(mbox: Any, sc: Scenario, results: list[ConnResult]) -> None:
    """The middlebox fired exactly the scenario's rule on its connections (none on clean ones)."""
    want = [sc.rule] if sc.rule else []
    for res in results:
        events = mbox.events_for(res.local_ip, res.local_port)
        fired = [e["rule"] for e in events if e.get("event") == "trigger"]
        if fired != want:
            raise LabError(f"{sc.name}: middlebox rules fired {fired}, scenario expects {want}")


def capture_all(
    lab: Lab, scenarios: list[Scenario], paths: Paths, pcap: Path, mbox: Any, rules: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], str]:
    """Run every scenario under tcpdump; return flow labels and tcpdump's statistics."""
    by_name = {r["name"]: r for r in rules}
    flows: list[dict[str, Any]] = []
    tcpdump = start_capture(lab, pcap)
    time.sleep(PAUSE)
    for sc in scenarios:
        results = run_scenario(lab, sc, paths)
        check_outcome(sc, results)
        time.sleep(PAUSE)  # also lets the middlebox's event reader catch up
        check_rules_fired(mbox, sc, results)
        flows += flow_labels(sc, results, len(flows), by_name)
        fired = f"  [{sc.rule}]" if sc.rule else ""
        print(f"  ok  {sc.name:<26} {', '.join(f'{r.local_ip}:{r.local_port}' for r in results)}{fired}")
    return flows, stop_capture(lab, tcpdump)


def generate(args: argparse.Namespace) -> int:
    """Build the lab, capture, label, check and install the outputs."""
    with tempfile.TemporaryDirectory(prefix="tlsprobe-lab-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)
        key = pkimod.make_pki(work / "pki", [DEMO, ALT, MAIL, BLOCKED, LONG_SNI], [SERVER_V4, SERVER_V6])
        paths = Paths(work=work, ca=key.root_cert)
        pcap = work / PCAP_NAME
        rules = middlebox_rules()
        lab = Lab(verbose=args.verbose)
        try:
            lab.setup()
            mbox = start_middlebox(lab, paths, rules)
            start_servers(lab, key, paths)
            print(
                f"lab up, middlebox routing with rules {[r['name'] for r in rules]}, servers "
                f"listening; capturing on {CLIENT_NS}/{CLIENT_IF}"
            )
            flows, stats = capture_all(lab, build_scenarios(paths), paths, pcap, mbox, rules)
        except (LabError, subprocess.SubprocessError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            _keep_logs(paths)
            return 1
        finally:
            lab.teardown()
        print(stats)
        return finish(pcap, flows, key, stats, paths, rules)


def finish(
    pcap: Path,
    flows: list[dict[str, Any]],
    key: pkimod.Pki,
    stats: str,
    paths: Paths,
    rules: list[dict[str, Any]],
) -> int:
    """Cross-check with tshark, then install the files (only if the check passed)."""
    if shutil.which("tshark") is None:
        print("warning: tshark not found (apt-get install tshark); capture not cross-checked")
    elif not cross_check(pcap, flows, rules):
        _keep_logs(paths, pcap)
        print("error: capture does not match the labels; pcaps/ left unchanged", file=sys.stderr)
        return 1
    size = pcap.stat().st_size
    if size > MAX_OUTPUT_BYTES:
        print(f"error: capture is {size} bytes, over {MAX_OUTPUT_BYTES}", file=sys.stderr)
        return 1
    write_outputs(pcap, build_labels(flows, key, stats, rules), key)
    print(
        f"\nwrote {OUT_DIR / PCAP_NAME} ({size} bytes), demo.labels.json ({len(flows)} flows), "
        f"demo-ca.pem, README.md"
    )
    return 0


def _keep_logs(paths: Paths, pcap: Path | None = None) -> None:
    """Copy logs (and a failed capture) somewhere that survives the temp dir."""
    keep = Path(tempfile.mkdtemp(prefix="tlsprobe-lab-failed-"))
    shutil.copytree(paths.logs, keep / "logs")
    if pcap and pcap.exists():
        shutil.copyfile(pcap, keep / pcap.name)
    print(f"logs kept in {keep}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="echo lab commands")
    args = parser.parse_args(argv)
    preflight()
    # Explicit handlers (SIGINT may arrive ignored from a parent shell) so that the
    # finally blocks always tear the lab down.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: sys.exit(128 + signum))
    try:
        return generate(args)
    except KeyboardInterrupt:
        print("interrupted; lab torn down, pcaps/ left unchanged", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
