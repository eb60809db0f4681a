#!/usr/bin/env python3
"""Produce small real captures of on-path interception in ``pcaps/interception/``.

Run as root from the repository root::

    sudo python3 tools/lab/make_interception_pcaps.py                 # every capture
    sudo python3 tools/lab/make_interception_pcaps.py --only rst-injection
    sudo python3 tools/lab/make_interception_pcaps.py --list

Each capture gets a fresh ``tp-client`` <-> ``tp-router`` <-> ``tp-server`` lab
(``netns.py``). The router's kernel forwarding is switched off and
``programs/middlebox.py`` forwards instead (``AF_PACKET`` on both router
interfaces), with a 40 ms one-way delay on the router<->server link (the kernel has
no netem) and per-scenario rules: inject TCP resets shaped like the USTC
webcontrol, GFW type II, Henan and Aliyun devices of
``shared/docs/interception-patterns.md``, answer with block pages, inject a TLS
alert, drop the ClientHello once (packet loss) or for good (blackhole). The
certificate-substitution capture adds policy routing in the router and
``programs/tls_intercept_proxy.py`` (``IP_TRANSPARENT``), which terminates TLS with
a leaf issued by its own "tlsprobe lab interception CA".

All servers (openssl s_server, Python ``ssl``, node, ``programs/tcp_gate_server.py``)
and clients (curl, openssl s_client, Python ``ssl``, node) are real programs using
kernel sockets; only the middlebox's injected segments are built by hand (struct).

Labels (``<capture>.labels.json``) are written from the scenario that ran: ports,
SNI, pattern, outcome and injector parameters come from the scenario table and the
rule given to the middlebox; client addresses come from each client tool. Nothing in
a label is computed from the capture. Afterwards every capture is checked with
``tshark`` against its labels (outcome, RST fields, block page markers, alert,
retransmitted hellos, substituted issuer, what reached the server) and a table is
printed; only captures that pass are installed. ``pcaps/interception/README.md``
is rewritten from all labels files present.

Everything is torn down in ``finally``: the namespaces this script created and the
processes it started (stopped by PID). Traffic never leaves the lab's namespaces.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import make_demo_pcap as demo
import make_edge_pcaps as edge
import pki as pkimod
from netns import (
    CLIENT_IF,
    CLIENT_NET_V4,
    CLIENT_NET_V6,
    CLIENT_NS,
    CLIENT_V4,
    CLIENT_V6,
    ROUTER_CLIENT_IF,
    ROUTER_NS,
    ROUTER_SERVER_IF,
    ROUTER_SERVER_V4,
    SERVER_IF,
    SERVER_NET_V4,
    SERVER_NET_V6,
    SERVER_NS,
    SERVER_V4,
    SERVER_V6,
    Lab,
    LabError,
)

REPO = Path(__file__).resolve().parents[2]
LAB_DIR = Path(__file__).resolve().parent
PROGRAMS = LAB_DIR / "programs"
OUT_DIR = REPO / "pcaps" / "interception"
MAX_TOTAL_BYTES = 1_000_000

DEMO = "demo.tlsprobe.test"
BLOCKED = "blocked.tlsprobe.test"
ALLOWED = "allowed.tlsprobe.test"
UNKNOWN = "unknown.tlsprobe.test"
SERVER_NAMES = (DEMO, BLOCKED, ALLOWED, "www.tlsprobe.test")

LINK_DELAY_MS = 40  # one-way, router <-> server, emulated in middlebox.py
PAUSE = 0.6  # seconds between flows
CLIENT_INITIAL_TTL = 64  # Linux default; what a "copy" injector sees at the router
INTERCEPT_CA_CN = "tlsprobe lab interception CA"
TLS_PORTS = (443, 2053, 4433, 7443, 7444, 8443, 9443, 10443)
HTTP_PORTS = (3000, 8888)

BEAVER_ID = "00000000004886285392"
BEAVER_BODY = (
    '<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8">\n'
    "<title>Non-compliance ICP Filing</title>\n</head>\n<body>\n"
    '<iframe id="mainFrame" src="" frameborder="0" width="100%" height="100%"></iframe>\n'
    '<script>\ndocument.getElementById("mainFrame").src = '
    f'"http://www.aliyun.com/beian/beian-block?id={BEAVER_ID}";\n</script>\n</body>\n</html>\n'
)
BEAVER_403 = (
    "HTTP/1.1 403 Forbidden\r\nServer: Beaver\r\nContent-Type: text/html\r\n"
    f"Content-Length: {len(BEAVER_BODY)}\r\nConnection: close\r\n\r\n{BEAVER_BODY}"
)
TENCENT_302 = (
    "HTTP/1.1 302 Found\r\nContent-Length: 0\r\nConnection: close\r\n"
    f"Location: https://dnspod.qcloud.com/static/webblock.html?d={BLOCKED}\r\n\r\n"
)
TLS_ALERT_HANDSHAKE_FAILURE = "15030300020228"
HENAN_PAYLOAD = "01020304050607080900"


# -- middlebox rules (the scenario's own description of the injector) ------------------


def inject(to: str, flags: str, **params: Any) -> dict[str, Any]:
    """One injected-segment spec for ``middlebox.py``; unspecified IP/TCP fields default."""
    spec: dict[str, Any] = {"to": to, "flags": flags, "count": 1, "ttl": 64, "ip_id": 0, "df": 0, "window": 0}
    spec.update(params)
    return spec


def rule(name: str, provider: str, ports: Sequence[int], **params: Any) -> dict[str, Any]:
    """A middlebox rule keyed on a blocked SNI (defaults) on ``ports``."""
    doc: dict[str, Any] = {
        "name": name,
        "provider": provider,
        "ports": list(ports),
        "trigger": "tls_sni",
        "match": [BLOCKED],
        "single_segment_only": True,
        "forward_trigger": True,
        "after": "pass",
        "delay_ms": 0,
        "inject": [],
    }
    doc.update(params)
    return doc


def webcontrol_rule() -> dict[str, Any]:
    """USTC webcontrol: one RST (no ACK) to the client, client's IP header copied and swapped."""
    spec = inject("client", "R", ttl="copy", ip_id="copy", df="copy", window="copy")
    return rule("webcontrol-tls", "lab-webcontrol", [443], inject=[spec])


def gfw_rule(port: int, rng: random.Random) -> dict[str, Any]:
    """GFW type II: three identical RST+ACK to both ends, DF set, one random IP ID, TTL 101."""
    params = {
        "count": 3,
        "ttl": 101,
        "ip_id": rng.randrange(0x00A3, 0xFE5F),
        "df": 1,
        "window": rng.randrange(1, 65535),
    }
    return rule(
        "gfw-type2",
        "lab-gfw",
        [port],
        delay_ms=18,
        inject=[inject("client", "RA", **params), inject("server", "RA", **params)],
    )


def henan_rule() -> dict[str, Any]:
    """Henan: one RST+ACK to the client, IP ID 1, DF 0, TTL 58, 10-byte payload; 20-byte TCP headers only."""
    spec = inject("client", "RA", ttl=58, ip_id=1, df=0, window=0, payload=HENAN_PAYLOAD)
    return rule("henan", "lab-henan", [2053], require_tcp_header_len=20, delay_ms=3, inject=[spec])


def aliyun_rst_rule(port: int) -> dict[str, Any]:
    """Aliyun-like in-line: ClientHello dropped, one RST+ACK to the client (TTL 52), flow blocked."""
    spec = inject("client", "RA", ttl=52, ip_id=0, df=0, window=0)
    return rule("aliyun-inline-rst", "lab-aliyun", [port], forward_trigger=False, after="block", inject=[spec])


def aliyun_page_rule(port: int, trigger: str) -> dict[str, Any]:
    """Aliyun Beaver 403 instead of the server's answer (request dropped), then FIN."""
    page = inject("client", "PA", ttl=52, payload_text=BEAVER_403)
    fin = inject("client", "FA", ttl=52)
    return rule(
        f"aliyun-beaver-{trigger}",
        "lab-aliyun",
        [port],
        trigger=trigger,
        forward_trigger=False,
        after="block",
        inject=[page, fin],
    )


def tencent_rule() -> dict[str, Any]:
    """Tencent-like on-path: request forwarded, 302 + FIN to the client, RST+ACK to the server."""
    return rule(
        "tencent-webblock",
        "lab-tencent",
        [8888],
        trigger="http_host",
        inject=[
            inject("client", "PA", ttl=57, ip_id=0x3C1A, payload_text=TENCENT_302),
            inject("client", "FA", ttl=57, ip_id=0x3C1B),
            inject("server", "RA", ttl=57, ip_id=0x3C1C),
        ],
    )


def alert_rule() -> dict[str, Any]:
    """In-line TLS alert injection: ClientHello dropped, fatal handshake_failure record, then RST+ACK."""
    alert = inject("client", "PA", ttl=50, payload=TLS_ALERT_HANDSHAKE_FAILURE)
    rst = inject("client", "RA", ttl=50)
    return rule("alert-inject", "lab-generic", [2053], forward_trigger=False, after="block", inject=[alert, rst])


def blackhole_rule() -> dict[str, Any]:
    """Every client payload segment to 9443 after the TCP handshake is silently dropped."""
    return rule(
        "blackhole", "lab-generic", [9443], trigger="payload", match=[], forward_trigger=False, after="blackhole"
    )


def drop_once_rule() -> dict[str, Any]:
    """Packet loss: only the first transmission of the first client payload segment is dropped."""
    return rule(
        "drop-first-hello", "lab-impairment", [443], trigger="first_payload_once", match=[], forward_trigger=False
    )


def injector_label(doc: dict[str, Any] | None) -> dict[str, Any] | None:
    """The label form of a rule: the parameters the brief asks for, plus every packet spec."""
    if doc is None:
        return None
    packets = []
    for spec in doc["inject"]:
        p = {k: spec[k] for k in ("to", "flags", "count", "ttl", "ip_id", "df", "window")}
        p["payload_hex"] = spec["payload_text"].encode().hex() if "payload_text" in spec else spec.get("payload", "")
        p["payload_len"] = len(bytes.fromhex(p["payload_hex"]))
        if p["ttl"] == "copy":
            p["ttl_value"] = CLIENT_INITIAL_TTL
        packets.append(p)
    first = packets[0] if packets else {}
    return {
        "rule": doc["name"],
        "mode": "on-path (trigger forwarded)" if doc["forward_trigger"] else "in-line (trigger dropped)",
        "trigger": doc["trigger"],
        "match": doc["match"],
        "ports": doc["ports"],
        "single_segment_only": doc["single_segment_only"],
        "require_tcp_header_len": doc.get("require_tcp_header_len"),
        "after": doc["after"],
        "delay_ms": doc["delay_ms"],
        "targets": sorted({p["to"] for p in packets}),
        "count": first.get("count"),
        "flags": first.get("flags"),
        "ttl": first.get("ttl"),
        "ip_id": first.get("ip_id"),
        "df": first.get("df"),
        "window": first.get("window"),
        "payload_hex": first.get("payload_hex"),
        "copy_means": "taken from the triggering client packet as the router received it (USTC webcontrol copies "
        "the client's IP header and swaps the addresses)",
        "tcp_options": "none",
        "seq": "exact: trigger's ack number towards the client, trigger's end towards the server",
        "packets": packets,
    }


# -- the scenario table ------------------------------------------------------------------


@dataclass
class Env:
    """Run-time paths the scenario table refers to."""

    work: Path
    ca: Path  # the lab's genuine root CA
    intercept_ca: Path
    logs: Path
    rng: random.Random
    local_port: int = 41000

    def next_port(self) -> int:
        """A fresh local port for clients that can bind one (curl)."""
        self.local_port += 1
        return self.local_port


@dataclass
class FlowSpec:
    """One TCP connection: how to make it and what the labels say about it."""

    scenario: str
    description: str
    runner: str  # curl | s_client | python | node
    argv: tuple[str, ...]
    port: int
    server_program: str
    pattern: str | None
    outcome: str  # server_hello | tls_alert | rst | fin | plaintext | silence
    provider: str | None = None
    rules: dict[str, Any] | None = None
    protocol: str = "tls"
    sni: str | None = BLOCKED
    http_host: str | None = None
    ip_version: int = 4
    client_ok: bool = False
    client_error: tuple[str, ...] = ()  # one of these must be in the client's error text
    client_sysctls: tuple[str, ...] = ()  # applied in tp-client for this flow only
    comparison_group: str | None = None
    stdin: str = ""
    expect: dict[str, Any] = field(default_factory=dict)  # extra facts the tshark check verifies
    server_view: dict[str, Any] = field(default_factory=dict)  # what the server-side capture should show
    proxied: bool = False

    @property
    def server_ip(self) -> str:
        """Server address for this flow's IP version."""
        return SERVER_V6 if self.ip_version == 6 else SERVER_V4


def curl(
    env: Env, host: str, port: int, *extra: str, scheme: str = "https", max_time: int = 10, ca: Path | None = None
) -> tuple[str, ...]:
    """curl pinned to the lab server with --resolve, bound to a fresh local port, trusting ``ca`` (lab root)."""
    return (
        "curl",
        "-sS",
        "-v",
        "--max-time",
        str(max_time),
        "--local-port",
        str(env.next_port()),
        "--cacert",
        str(ca or env.ca),
        "--resolve",
        f"{host}:{port}:{SERVER_V4}",
        *extra,
        f"{scheme}://{host}:{port}/",
    )


def s_client(env: Env, port: int, *extra: str) -> tuple[str, ...]:
    """openssl s_client to the lab server, verifying the chain against the lab root."""
    return (
        "openssl",
        "s_client",
        "-connect",
        f"{SERVER_V4}:{port}",
        "-CAfile",
        str(env.ca),
        "-verify_return_error",
        "-ign_eof",
        "-nocommands",
        *extra,
    )


def py_probe(env: Env, port: int, sni: str, *extra: str, ip: str = SERVER_V4) -> tuple[str, ...]:
    """``programs/tls_probe_client.py`` (Python ssl)."""
    return (
        sys.executable,
        str(PROGRAMS / "tls_probe_client.py"),
        "--host",
        ip,
        "--port",
        str(port),
        "--sni",
        sni,
        *extra,
    )


def node_probe(env: Env, port: int, sni: str, ip: str = SERVER_V4, ca: Path | None = None) -> tuple[str, ...]:
    """``programs/node_tls_probe.js`` (node tls)."""
    return ("node", str(PROGRAMS / "node_tls_probe.js"), ip, str(port), sni, str(ca or env.ca), "6000")


HTTP10 = "GET / HTTP/1.0\r\nHost: {host}\r\n\r\n"
RESET_ERRORS = ("reset", "ECONNRESET", "errno=104", "Connection reset", "SSL_ERROR_SYSCALL")


@dataclass
class CaptureSpec:
    """One capture file (plus optionally its server-side twin) and how to make it."""

    name: str
    title: str
    servers: Callable[[Env, pkimod.Pki], dict[int, tuple[str, list[str]]]]
    flows: Callable[[Env], list[FlowSpec]]
    server_side: bool = False
    tproxy_ports: tuple[int, ...] = ()

    @property
    def files(self) -> list[str]:
        """Capture file names this spec produces."""
        return [f"{self.name}.pcap"] + ([f"{self.name}.server.pcap"] if self.server_side else [])


def s_server(key: pkimod.Pki, port: int, *extra: str) -> tuple[str, list[str]]:
    """openssl s_server -www with the lab chain."""
    argv = [
        "openssl",
        "s_server",
        "-www",
        "-accept",
        str(port),
        "-cert",
        str(key.leaf_cert),
        "-key",
        str(key.leaf_key),
        "-cert_chain",
        str(key.intermediate_cert),
        *extra,
    ]
    return "openssl s_server", argv


def py_https(key: pkimod.Pki, port: int) -> tuple[str, list[str]]:
    """``programs/py_https_server.py`` (threaded Python ssl, dual-stack, 10 s idle timeout)."""
    argv = [sys.executable, str(PROGRAMS / "py_https_server.py"), "--port", str(port)]
    return "python-ssl (py_https_server.py)", [*argv, "--cert", str(key.fullchain), "--key", str(key.leaf_key)]


def node_https(key: pkimod.Pki, port: int) -> tuple[str, list[str]]:
    """``programs/node_https_server.js``."""
    argv = ["node", str(PROGRAMS / "node_https_server.js"), str(port), str(key.fullchain), str(key.leaf_key)]
    return "node https (node_https_server.js)", argv


def gate(key: pkimod.Pki, port: int, *extra: str) -> tuple[str, list[str]]:
    """``programs/tcp_gate_server.py``."""
    argv = [sys.executable, str(PROGRAMS / "tcp_gate_server.py"), "--port", str(port)]
    return "tcp_gate_server.py", [*argv, "--cert", str(key.fullchain), "--key", str(key.leaf_key), *extra]


def http_server(env: Env, port: int) -> tuple[str, list[str]]:
    """python -m http.server serving a one-line page."""
    www = env.work / "www"
    www.mkdir(exist_ok=True)
    (www / "index.html").write_text("<html><body>plain http, tlsprobe lab origin</body></html>\n")
    return "python http.server", [
        sys.executable,
        "-m",
        "http.server",
        str(port),
        "--bind",
        "::",
        "--directory",
        str(www),
    ]


# -- capture: rst-injection -----------------------------------------------------------------


def rst_servers(env: Env, key: pkimod.Pki) -> dict[int, tuple[str, list[str]]]:
    """443 Python, 8443 s_server, 2053 node, 9443 Python."""
    return {443: py_https(key, 443), 8443: s_server(key, 8443), 2053: node_https(key, 2053), 9443: py_https(key, 9443)}


def rst_flows(env: Env) -> list[FlowSpec]:
    """Scenarios 1-4 plus two fail-open negatives (Henan with TCP options, Aliyun with a 2-segment hello)."""
    gfw4 = gfw_rule(8443, env.rng)
    gfw6 = gfw_rule(2053, env.rng)
    return [
        FlowSpec(
            "rst-client-only-webcontrol",
            "USTC-webcontrol-style on-path injector on 443: one RST (no ACK) to the client only, IP header "
            "copied from the ClientHello (IP ID, TTL 64, DF) with addresses swapped, TCP window copied, no "
            "options; the ClientHello is forwarded, so the real ServerHello arrives after the RST (race)",
            "curl",
            curl(env, BLOCKED, 443),
            443,
            "python-ssl (py_https_server.py)",
            "rst_injection",
            "rst",
            "lab-webcontrol",
            webcontrol_rule(),
            client_error=RESET_ERRORS,
            expect={
                "rst": {
                    "flags": "R",
                    "count": 1,
                    "ttl": "copy",
                    "ip_id": "copy",
                    "df": "copy",
                    "window": "copy",
                    "payload": "",
                },
                "server_data_after_rst": True,
                "faster_than_rtt": True,
            },
            server_view={"trigger_reaches_server": True, "rst_to_server": False},
        ),
        FlowSpec(
            "rst-gfw-type2",
            "GFW-type-II-style on-path injector on 8443: three identical RST+ACK (DF=1, one random IP ID, "
            "TTL 101, random window) to the client and to the server, 18 ms after the ClientHello, which "
            "is forwarded",
            "s_client",
            s_client(env, 8443, "-servername", BLOCKED),
            8443,
            "openssl s_server",
            "rst_injection",
            "rst",
            "lab-gfw",
            gfw4,
            stdin=HTTP10.format(host=BLOCKED),
            client_error=(*RESET_ERRORS, "errno=", "write:"),
            expect={"rst": _rst_expect(gfw4), "faster_than_rtt": True},
            server_view={"trigger_reaches_server": True, "rst_to_server": _rst_expect(gfw4)},
        ),
        FlowSpec(
            "rst-gfw-type2-ipv6",
            "the GFW-type-II-style injector over IPv6 on 2053 (node server): three identical RST+ACK, hop "
            "limit 101, to both ends",
            "python",
            py_probe(env, 2053, BLOCKED, "--ca", str(env.ca), ip=SERVER_V6),
            2053,
            "node https (node_https_server.js)",
            "rst_injection",
            "rst",
            "lab-gfw",
            gfw6,
            ip_version=6,
            client_error=RESET_ERRORS,
            expect={"rst": _rst_expect(gfw6, v6=True), "faster_than_rtt": True},
            server_view={"trigger_reaches_server": True, "rst_to_server": _rst_expect(gfw6, v6=True)},
        ),
        FlowSpec(
            "rst-henan",
            "Henan-style on-path injector on 2053: one RST+ACK to the client only, IP ID 1, DF 0, TTL 58, "
            "10-byte payload 01..0900, 3 ms after the ClientHello; it only inspects segments with a 20-byte "
            "TCP header, so the client runs with net.ipv4.tcp_timestamps=0",
            "node",
            node_probe(env, 2053, BLOCKED),
            2053,
            "node https (node_https_server.js)",
            "rst_injection",
            "rst",
            "lab-henan",
            henan_rule(),
            client_sysctls=("net.ipv4.tcp_timestamps=0",),
            client_error=("ECONNRESET",),
            comparison_group="henan-tcp-header-length",
            expect={
                "rst": {
                    "flags": "RA",
                    "count": 1,
                    "ttl": 58,
                    "ip_id": 1,
                    "df": 0,
                    "window": 0,
                    "payload": HENAN_PAYLOAD,
                },
                "server_data_after_rst": True,
                "faster_than_rtt": True,
                "hello_tcp_header_len": 20,
            },
            server_view={"trigger_reaches_server": True, "rst_to_server": False},
        ),
        FlowSpec(
            "henan-failopen-tcp-options",
            "negative: the same Henan-style rule is active, but the client sends TCP timestamps (32-byte "
            "header), which this injector does not inspect, so the handshake completes",
            "node",
            node_probe(env, 2053, BLOCKED),
            2053,
            "node https (node_https_server.js)",
            None,
            "server_hello",
            None,
            henan_rule(),
            client_ok=True,
            comparison_group="henan-tcp-header-length",
            expect={"no_rst": True, "hello_tcp_header_len": 32},
            server_view={"trigger_reaches_server": True, "rst_to_server": False},
        ),
        FlowSpec(
            "rst-inline-drop",
            "Aliyun-like in-line device on 9443: the ClientHello is dropped (never reaches the server) "
            "and one RST+ACK with TTL 52 (SYN-ACK arrives with 63) goes to the client; the flow stays "
            "blocked both ways",
            "python",
            py_probe(env, 9443, BLOCKED, "--ca", str(env.ca)),
            9443,
            "python-ssl (py_https_server.py)",
            "rst_injection",
            "rst",
            "lab-aliyun",
            aliyun_rst_rule(9443),
            client_error=RESET_ERRORS,
            comparison_group="aliyun-hello-segments",
            expect={
                "rst": {"flags": "RA", "count": 1, "ttl": 52, "ip_id": 0, "df": 0, "window": 0, "payload": ""},
                "no_server_data": True,
                "faster_than_rtt": True,
            },
            server_view={"trigger_reaches_server": False, "rst_to_server": False},
        ),
        FlowSpec(
            "aliyun-failopen-two-segment-hello",
            "negative: the same Aliyun-like rule on 9443, but the ClientHello (30 long made-up ALPN "
            "names) spans two TCP segments; the device only parses single-segment hellos and lets it pass",
            "python",
            py_probe(env, 9443, BLOCKED, "--ca", str(env.ca), "--alpn", "http/1.1", "--filler-alpn", "30"),
            9443,
            "python-ssl (py_https_server.py)",
            None,
            "server_hello",
            None,
            aliyun_rst_rule(9443),
            client_ok=True,
            comparison_group="aliyun-hello-segments",
            expect={"no_rst": True, "hello_segments_min": 2},
            server_view={"trigger_reaches_server": True, "rst_to_server": False},
        ),
    ]


def _rst_expect(doc: dict[str, Any], v6: bool = False) -> dict[str, Any]:
    """Expected RST fields (towards the client) from a rule's first packet spec."""
    spec = doc["inject"][0]
    return {
        "flags": spec["flags"],
        "count": spec["count"],
        "ttl": spec["ttl"],
        "ip_id": None if v6 else spec["ip_id"],
        "df": None if v6 else spec["df"],
        "window": spec["window"],
        "payload": spec.get("payload", ""),
    }


# -- capture: block-pages -------------------------------------------------------------------


def page_servers(env: Env, key: pkimod.Pki) -> dict[int, tuple[str, list[str]]]:
    """8443 Python TLS, 3000 and 8888 python http.server."""
    return {8443: py_https(key, 8443), 3000: http_server(env, 3000), 8888: http_server(env, 8888)}


def page_flows(env: Env) -> list[FlowSpec]:
    """Scenarios 5 and 6, plus a bare-IP Host control."""
    page = BEAVER_403.split("\r\n\r\n")[0]
    return [
        FlowSpec(
            "blockpage-on-tls",
            "Aliyun-like in-line device on 8443: ClientHello dropped, the client gets a plaintext HTTP 403 "
            "Beaver block page (PSH+ACK) and then FIN+ACK; the device ACKs the client's FIN",
            "curl",
            curl(env, BLOCKED, 8443),
            8443,
            "python-ssl (py_https_server.py)",
            "block_page",
            "plaintext",
            "lab-aliyun",
            aliyun_page_rule(8443, "tls_sni"),
            client_error=("wrong version number", "record", "SSL"),
            expect={
                "plaintext_contains": [
                    "HTTP/1.1 403 Forbidden",
                    "Server: Beaver",
                    "<title>Non-compliance ICP Filing</title>",
                    f"beian-block?id={BEAVER_ID}",
                ],
                "fin_after_page": True,
                "no_server_data_except_injected": True,
                "faster_than_rtt": True,
            },
            server_view={"trigger_reaches_server": False, "rst_to_server": False},
            stdin="",
        ),
        FlowSpec(
            "blockpage-http-aliyun",
            "Aliyun-like in-line device, plain HTTP on 3000 with Host: blocked.tlsprobe.test: the GET is "
            "dropped, the Beaver 403 and a FIN are injected",
            "curl",
            curl(env, BLOCKED, 3000, scheme="http"),
            3000,
            "python http.server",
            "block_page",
            "plaintext",
            "lab-aliyun",
            aliyun_page_rule(3000, "http_host"),
            protocol="http",
            comparison_group="aliyun-http-host",
            sni=None,
            http_host=f"{BLOCKED}:3000",
            client_ok=True,
            expect={
                "plaintext_contains": [page.split("\r\n")[0], "Server: Beaver", "Non-compliance ICP Filing"],
                "fin_after_page": True,
                "faster_than_rtt": True,
            },
            server_view={"trigger_reaches_server": False, "rst_to_server": False},
        ),
        FlowSpec(
            "http-ip-host-control",
            "negative control on 3000: the same client and server with Host = the server's IP; the rule "
            "ignores IP literals, the origin answers 200",
            "curl",
            (
                "curl",
                "-sS",
                "-v",
                "--max-time",
                "10",
                "--local-port",
                str(env.next_port()),
                f"http://{SERVER_V4}:3000/",
            ),
            3000,
            "python http.server",
            None,
            "plaintext",
            None,
            aliyun_page_rule(3000, "http_host"),
            protocol="http",
            sni=None,
            http_host=f"{SERVER_V4}:3000",
            client_ok=True,
            comparison_group="aliyun-http-host",
            expect={"plaintext_contains": ["HTTP/1.0 200 OK", "Server: SimpleHTTP"]},
            server_view={"trigger_reaches_server": True, "rst_to_server": False},
        ),
        FlowSpec(
            "blockpage-http-tencent",
            "Tencent-like on-path device, plain HTTP on 8888: the GET is forwarded, the client gets a 302 "
            "to dnspod webblock plus FIN, and a RST+ACK goes to the server (which may race an answer back)",
            "curl",
            curl(env, BLOCKED, 8888, scheme="http"),
            8888,
            "python http.server",
            "block_page",
            "plaintext",
            "lab-tencent",
            tencent_rule(),
            protocol="http",
            sni=None,
            http_host=f"{BLOCKED}:8888",
            client_ok=True,
            expect={
                "plaintext_contains": [
                    "HTTP/1.1 302 Found",
                    f"Location: https://dnspod.qcloud.com/static/webblock.html?d={BLOCKED}",
                ],
                "fin_after_page": True,
                "faster_than_rtt": True,
            },
            server_view={"trigger_reaches_server": True, "rst_to_server": {"flags": "RA", "ttl": 57}},
        ),
    ]


# -- capture: alert-and-blackhole -----------------------------------------------------------


def alert_servers(env: Env, key: pkimod.Pki) -> dict[int, tuple[str, list[str]]]:
    """2053 node, 9443 Python."""
    return {2053: node_https(key, 2053), 9443: py_https(key, 9443)}


def alert_flows(env: Env) -> list[FlowSpec]:
    """Scenarios 7 and 8 (the blackhole last: its client retransmits until it gives up)."""
    return [
        FlowSpec(
            "alert-injection",
            "in-line device on 2053: ClientHello dropped, a TLS alert record 15 03 03 00 02 02 28 (fatal "
            "handshake_failure) then RST+ACK injected towards the client",
            "python",
            py_probe(env, 2053, BLOCKED, "--ca", str(env.ca)),
            2053,
            "node https (node_https_server.js)",
            "tls_alert_injection",
            "tls_alert",
            "lab-generic",
            alert_rule(),
            client_error=("HANDSHAKE_FAILURE", "handshake failure"),
            expect={
                "alert_desc": 40,
                "rst_after_alert": True,
                "no_server_data_except_injected": True,
                "faster_than_rtt": True,
            },
            server_view={"trigger_reaches_server": False, "rst_to_server": False},
        ),
        FlowSpec(
            "blackhole",
            "every client segment with payload to 9443 is dropped after the TCP handshake; curl "
            "(--max-time 5) retransmits the ClientHello and gives up",
            "curl",
            curl(env, BLOCKED, 9443, max_time=5),
            9443,
            "python-ssl (py_https_server.py)",
            "blackhole",
            "silence",
            "lab-generic",
            blackhole_rule(),
            client_error=("timed out", "Timeout"),
            expect={"hello_retransmits_min": 2, "no_server_data": True},
            server_view={"trigger_reaches_server": False, "rst_to_server": False},
        ),
    ]


# -- capture: cert-substitution -------------------------------------------------------------


def cert_servers(env: Env, key: pkimod.Pki) -> dict[int, tuple[str, list[str]]]:
    """443 Python, 8443 s_server (both behind the proxy), 9443 Python (direct control)."""
    return {443: py_https(key, 443), 8443: s_server(key, 8443), 9443: py_https(key, 9443)}


def cert_flows(env: Env) -> list[FlowSpec]:
    """Scenario 9 on 443 and 8443, plus a direct TLS 1.2 control on 9443."""
    issuer = {"issuer_contains": INTERCEPT_CA_CN, "tls_version": "TLSv1.2"}
    return [
        FlowSpec(
            "cert-substitution",
            "transparent TLS proxy in the router (policy routing + IP_TRANSPARENT) on 443: the client gets "
            "a leaf for its SNI issued by 'tlsprobe lab interception CA'; curl trusts that CA (--cacert), "
            "TLS 1.2 so the certificate is visible",
            "curl",
            curl(env, DEMO, 443, "--tlsv1.2", "--tls-max", "1.2", "--http1.1", ca=env.intercept_ca),
            443,
            "python-ssl (py_https_server.py), behind tls_intercept_proxy.py",
            "certificate_substitution",
            "server_hello",
            "lab-interception-proxy",
            None,
            sni=DEMO,
            client_ok=True,
            expect=issuer,
            server_view={"proxied": True},
            proxied=True,
        ),
        FlowSpec(
            "cert-substitution-8443",
            "the same proxy on 8443, Python ssl client capped at TLS 1.2, SNI www.tlsprobe.test",
            "python",
            py_probe(env, 8443, "www.tlsprobe.test", "--ca", str(env.intercept_ca), "--max-version", "1.2"),
            8443,
            "openssl s_server, behind tls_intercept_proxy.py",
            "certificate_substitution",
            "server_hello",
            "lab-interception-proxy",
            None,
            sni="www.tlsprobe.test",
            client_ok=True,
            expect=issuer,
            server_view={"proxied": True},
            proxied=True,
        ),
        FlowSpec(
            "genuine-certificate-control",
            "negative control: port 9443 is not intercepted; the same client type gets the server's genuine "
            "chain (lab intermediate CA) over TLS 1.2",
            "python",
            py_probe(env, 9443, DEMO, "--ca", str(env.ca), "--max-version", "1.2"),
            9443,
            "python-ssl (py_https_server.py)",
            None,
            "server_hello",
            None,
            None,
            sni=DEMO,
            client_ok=True,
            expect={
                "issuer_contains": pkimod.INTERMEDIATE_CN,
                "issuer_absent": INTERCEPT_CA_CN,
                "tls_version": "TLSv1.2",
            },
            server_view={"trigger_reaches_server": True, "rst_to_server": False},
        ),
    ]


# -- capture: negatives ------------------------------------------------------------------------


def neg_servers(env: Env, key: pkimod.Pki) -> dict[int, tuple[str, list[str]]]:
    """Real servers that refuse in their own ways, with no middlebox rule."""
    return {
        10443: gate(key, 10443, "--known-sni", DEMO, "--unknown-sni", "rst"),
        8081: ("node http (node_http_server.js)", ["node", str(PROGRAMS / "node_http_server.js"), "8081"]),
        7443: gate(key, 7443, "--always", "fin"),
        7444: gate(key, 7444, "--always", "rst"),
        443: py_https(key, 443),
        4433: s_server(key, 4433, "-tls1_3"),
    }


def neg_flows(env: Env) -> list[FlowSpec]:
    """Scenarios 10-14 (pattern null)."""
    return [
        FlowSpec(
            "server-rst-unknown-sni",
            "a real server (tcp_gate_server.py, SNI router) resets with SO_LINGER 0 when the SNI is not one "
            "it serves; no middlebox rule",
            "s_client",
            s_client(env, 10443, "-servername", UNKNOWN),
            10443,
            "tcp_gate_server.py --unknown-sni rst",
            None,
            "rst",
            None,
            None,
            sni=UNKNOWN,
            client_error=("errno=104", "errno=", "write:", "SSL_ERROR_SYSCALL"),
            comparison_group="sni-gate",
            expect={"rst": {"flags": "RA", "count": 1, "ttl": 63}},
        ),
        FlowSpec(
            "server-known-sni-control",
            "control: the same server and client with an SNI it serves completes the handshake",
            "s_client",
            s_client(env, 10443, "-servername", DEMO),
            10443,
            "tcp_gate_server.py --unknown-sni rst",
            None,
            "server_hello",
            None,
            None,
            sni=DEMO,
            client_ok=True,
            comparison_group="sni-gate",
            stdin=HTTP10.format(host=DEMO),
        ),
        FlowSpec(
            "not-tls-port",
            "a plain HTTP server (node:http) on 8081 receives the ClientHello and answers 'HTTP/1.1 400 Bad Request'",
            "python",
            py_probe(env, 8081, DEMO, "--ca", str(env.ca)),
            8081,
            "node http (node_http_server.js)",
            None,
            "plaintext",
            None,
            None,
            sni=DEMO,
            client_error=("WRONG_VERSION_NUMBER", "wrong version number"),
            expect={"plaintext_contains": ["HTTP/1.1 400 Bad Request"]},
        ),
        FlowSpec(
            "lb-no-backend-fin",
            "a listener with no backend (tcp_gate_server.py --always fin) reads the ClientHello and closes "
            "normally (FIN)",
            "python",
            py_probe(env, 7443, DEMO, "--ca", str(env.ca)),
            7443,
            "tcp_gate_server.py --always fin",
            None,
            "fin",
            None,
            None,
            sni=DEMO,
            client_error=("EOF", "UNEXPECTED_EOF", "closed"),
        ),
        FlowSpec(
            "lb-no-backend-rst",
            "the same without a backend, but aborting (SO_LINGER 0 -> RST)",
            "node",
            node_probe(env, 7444, DEMO),
            7444,
            "tcp_gate_server.py --always rst",
            None,
            "rst",
            None,
            None,
            sni=DEMO,
            client_error=("ECONNRESET",),
            expect={"rst": {"flags": "RA", "count": 1, "ttl": 63}},
        ),
        FlowSpec(
            "packet-loss",
            "the router drops only the first transmission of the ClientHello (a lossy link); the client's "
            "retransmission gets through and the handshake completes",
            "curl",
            curl(env, DEMO, 443),
            443,
            "python-ssl (py_https_server.py)",
            None,
            "server_hello",
            None,
            drop_once_rule(),
            sni=DEMO,
            client_ok=True,
            expect={"hello_retransmits_exact": 1},
        ),
        FlowSpec(
            "genuine-alert",
            "openssl s_server -tls1_3 and s_client -tls1_2: the real server answers with a fatal "
            "protocol_version alert",
            "s_client",
            s_client(env, 4433, "-servername", DEMO, "-tls1_2"),
            4433,
            "openssl s_server -tls1_3",
            None,
            "tls_alert",
            None,
            None,
            sni=DEMO,
            client_error=("alert protocol version", "protocol version"),
            expect={"alert_desc": 70},
        ),
    ]


# -- capture: port-comparison --------------------------------------------------------------------


def cmp_servers(env: Env, key: pkimod.Pki) -> dict[int, tuple[str, list[str]]]:
    """The same Python server program on 443 and 8443."""
    return {443: py_https(key, 443), 8443: py_https(key, 8443)}


def cmp_flows(env: Env) -> list[FlowSpec]:
    """Scenario 15: one client (s_client), one server IP, SNI and port varied."""
    doc = aliyun_rst_rule(8443)
    group = "port-comparison"
    common = {"server_program": "python-ssl (py_https_server.py)", "comparison_group": group, "rules": doc}
    ok = {"pattern": None, "outcome": "server_hello", "client_ok": True}
    return [
        FlowSpec(
            "cmp-443-blocked-sni",
            f"SNI {BLOCKED} on 443: the middlebox only inspects 8443 here, handshake completes",
            "s_client",
            s_client(env, 443, "-servername", BLOCKED),
            443,
            sni=BLOCKED,
            stdin=HTTP10.format(host=BLOCKED),
            **ok,
            **common,
        ),
        FlowSpec(
            "cmp-8443-blocked-sni",
            f"SNI {BLOCKED} on 8443: ClientHello dropped, RST+ACK (TTL 52) injected",
            "s_client",
            s_client(env, 8443, "-servername", BLOCKED),
            8443,
            sni=BLOCKED,
            pattern="rst_injection",
            outcome="rst",
            provider="lab-aliyun",
            client_error=("errno=104", "errno=", "write:", "SSL_ERROR_SYSCALL"),
            expect={"rst": {"flags": "RA", "count": 1, "ttl": 52, "ip_id": 0, "df": 0, "window": 0}},
            **common,
        ),
        FlowSpec(
            "cmp-8443-ip-sni",
            f"SNI = the server's IP ({SERVER_V4}) on 8443: IP literals are not inspected",
            "s_client",
            s_client(env, 8443, "-servername", SERVER_V4),
            8443,
            sni=SERVER_V4,
            stdin=HTTP10.format(host=SERVER_V4),
            **ok,
            **common,
        ),
        FlowSpec(
            "cmp-8443-no-sni",
            "no server_name extension on 8443 (-noservername)",
            "s_client",
            s_client(env, 8443, "-noservername"),
            8443,
            sni=None,
            stdin=HTTP10.format(host=SERVER_V4),
            **ok,
            **common,
        ),
        FlowSpec(
            "cmp-8443-allowed-sni",
            f"a different SNI ({ALLOWED}) on 8443",
            "s_client",
            s_client(env, 8443, "-servername", ALLOWED),
            8443,
            sni=ALLOWED,
            stdin=HTTP10.format(host=ALLOWED),
            **ok,
            **common,
        ),
    ]


SPECS = (
    CaptureSpec(
        "rst-injection",
        "injected TCP resets: webcontrol, GFW type II (v4+v6), Henan, Aliyun-like in-line",
        rst_servers,
        rst_flows,
        server_side=True,
    ),
    CaptureSpec(
        "block-pages",
        "plaintext block pages: Beaver 403 on TLS and HTTP, Tencent 302, control",
        page_servers,
        page_flows,
        server_side=True,
    ),
    CaptureSpec(
        "alert-and-blackhole",
        "injected TLS alert; silent drop of the ClientHello",
        alert_servers,
        alert_flows,
        server_side=True,
    ),
    CaptureSpec(
        "cert-substitution",
        "transparent TLS proxy with its own CA; direct control",
        cert_servers,
        cert_flows,
        server_side=True,
        tproxy_ports=(443, 8443),
    ),
    CaptureSpec("negatives", "genuine server behaviour that looks like blocking", neg_servers, neg_flows),
    CaptureSpec(
        "port-comparison", "same client, server IP and SNI across ports and SNI variants", cmp_servers, cmp_flows
    ),
)


# -- running ----------------------------------------------------------------------------------


class MiddleboxProc:
    """``middlebox.py`` in tp-router, with its JSON events collected by a reader thread."""

    def __init__(self, lab: Lab, rules_path: Path, log: Path) -> None:
        self.rules_path = rules_path
        self.events: list[dict[str, Any]] = []
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        rules_path.write_text(json.dumps({"rules": []}))
        mac = {
            ns: lab.run_in(ns, ["cat", f"/sys/class/net/{CLIENT_IF}/address"]).stdout.strip()
            for ns in (CLIENT_NS, SERVER_NS)
        }
        argv = [
            sys.executable,
            "-u",
            str(PROGRAMS / "middlebox.py"),
            "--rules",
            str(rules_path),
            "--client-if",
            ROUTER_CLIENT_IF,
            "--client-mac",
            mac[CLIENT_NS],
            "--server-if",
            ROUTER_SERVER_IF,
            "--server-mac",
            mac[SERVER_NS],
            "--client-net",
            CLIENT_NET_V4,
            "--client-net",
            CLIENT_NET_V6,
            "--server-net",
            SERVER_NET_V4,
            "--server-net",
            SERVER_NET_V6,
            "--delay-ms",
            str(LINK_DELAY_MS),
        ]
        self.log = log.open("w")
        self.proc = lab.spawn_in(ROUTER_NS, argv, stdout=subprocess.PIPE, stderr=self.log, text=True)
        threading.Thread(target=self._read, daemon=True).start()
        self.wait_event("ready")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.log.write(line)
            self.log.flush()
            with contextlib.suppress(json.JSONDecodeError):
                event = json.loads(line)
                self.events.append(event)
                self.lines.put(event)

    def wait_event(self, name: str, timeout: float = 15.0) -> dict[str, Any]:
        """Block until the middlebox prints an event called ``name``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                event = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            if event.get("event") == name:
                return event
        raise LabError(f"middlebox did not report {name!r}; see {self.log.name}")

    def load(self, rules: dict[str, Any] | None, local_ports: Sequence[int]) -> None:
        """Give the middlebox a new rule set (SIGHUP) and wait until it took it."""
        doc = {"rules": [rules] if rules else [], "local_ports": list(local_ports)}
        self.rules_path.write_text(json.dumps(doc, indent=1))
        self.proc.send_signal(signal.SIGHUP)
        self.wait_event("reloaded")

    def events_for(self, client_ip: str, client_port: int) -> list[dict[str, Any]]:
        """Events whose flow key has this client address."""
        return [e for e in self.events if e.get("flow", [None, None])[:2] == [client_ip, client_port]]


@dataclass
class ClientResult:
    """What a client reported about its one connection."""

    local_ip: str
    local_port: int
    ok: bool
    error: str
    info: dict[str, Any] = field(default_factory=dict)


def run_client(lab: Lab, fs: FlowSpec, env: Env) -> ClientResult:
    """Run one flow's client in tp-client; its local address comes from the tool itself."""
    log = env.logs / f"client-{fs.scenario}.log"
    if fs.runner == "s_client":
        return _run_s_client(lab, fs, log)
    result = lab.run_in(CLIENT_NS, fs.argv, check=False, timeout=60)
    log.write_text(
        f"$ {' '.join(fs.argv)}\n--- rc {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}\n"
    )
    if fs.runner == "curl":
        port = int(fs.argv[fs.argv.index("--local-port") + 1])
        ok = result.returncode == 0
        status = re.search(r"^< (HTTP/\S+ \d+.*)$", result.stderr, re.M)
        version = re.search(r"SSL connection using (TLSv[\d.]+)", result.stderr)
        issuer = re.search(r"issuer: (.*)", result.stderr)
        info = {
            "exit": result.returncode,
            "status": status and status.group(1).strip(),
            "version": version and version.group(1),
            "issuer": issuer and issuer.group(1).strip(),
        }
        ip = CLIENT_V6 if fs.ip_version == 6 else CLIENT_V4
        last = (result.stderr.strip().splitlines() or [""])[-1]
        return ClientResult(ip, port, ok, "" if ok else last, info)
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    if not lines or lines[-1].get("local_port") is None:
        raise LabError(f"{fs.scenario}: client gave no local address; see {log}")
    rep = lines[-1]
    return ClientResult(rep["local_ip"], int(rep["local_port"]), bool(rep["ok"]), rep.get("error") or "", rep)


def _run_s_client(lab: Lab, fs: FlowSpec, log: Path) -> ClientResult:
    """s_client has no way to print its local port: read it from tp-client's socket table while it connects."""
    before = _sockets(lab, fs)
    with log.open("w") as out:
        out.write(f"$ {' '.join(fs.argv)}\n")
        out.flush()
        proc = lab.spawn_in(CLIENT_NS, fs.argv, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT, text=True)
        local: tuple[str, int] | None = None
        deadline = time.monotonic() + 10
        while local is None and time.monotonic() < deadline:
            new = _sockets(lab, fs) - before
            if new:
                local = sorted(new)[0]
            elif proc.poll() is not None:
                break
        assert proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            time.sleep(0.3 if fs.client_ok else 0)
            proc.stdin.write(fs.stdin)
            proc.stdin.flush()
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            code = -1
        finally:
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()
            lab.stop(proc)
    text = log.read_text()
    if local is None:
        raise LabError(f"{fs.scenario}: could not see s_client's socket; see {log}")
    version = re.search(r"Protocol\s*: (TLSv[\d.]+)", text)
    ok = code == 0 and version is not None and "HTTP/1." in text
    errors = [
        line for line in text.splitlines()[1:] if "error" in line.lower() or "errno" in line.lower() or "alert" in line
    ]
    info = {"exit": code, "version": version and version.group(1)}
    return ClientResult(local[0], local[1], ok, " | ".join(errors[-3:]), info)


def _sockets(lab: Lab, fs: FlowSpec) -> set[tuple[str, int]]:
    """(local ip, local port) of every tp-client TCP socket towards the flow's server port."""
    out = lab.run_in(CLIENT_NS, ["ss", "-Htan", "dst", fs.server_ip, "dport", "=", f":{fs.port}"], check=False).stdout
    found = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 5:  # State Recv-Q Send-Q Local:Port Peer:Port
            host, _, port = parts[3].rpartition(":")
            found.add((host.strip("[]"), int(port)))
    return found


def check_client(fs: FlowSpec, res: ClientResult, events: list[dict[str, Any]]) -> list[str]:
    """Does what the client and the middlebox reported match the scenario?"""
    problems = []
    if res.ok != fs.client_ok:
        problems.append(f"client ok={res.ok}, scenario expects {fs.client_ok} ({res.error or res.info})")
    if not fs.client_ok and fs.client_error and not any(e.lower() in res.error.lower() for e in fs.client_error):
        problems.append(f"client error {res.error!r} has none of {fs.client_error}")
    fired = [e for e in events if e["event"] == "trigger"]
    if fs.pattern in ("rst_injection", "block_page", "tls_alert_injection", "blackhole") and not fired:
        problems.append("the middlebox rule did not fire")
    if fs.pattern is None and fs.rules and fired and fs.rules.get("trigger") != "first_payload_once":
        problems.append(f"a rule fired on a negative flow: {fired}")
    return problems


def flow_label(fs: FlowSpec, res: ClientResult, index: int) -> dict[str, Any]:
    """The label of one flow, from the scenario and the client's own report."""
    rules = fs.rules if fs.pattern else None
    label: dict[str, Any] = {
        "index": index,
        "scenario": fs.scenario,
        "description": fs.description,
        "comparison_group": fs.comparison_group,
        "ip_version": fs.ip_version,
        "protocol": fs.protocol,
        "client_ip": res.local_ip,
        "client_port": res.local_port,
        "server_ip": fs.server_ip,
        "server_port": fs.port,
        "sni": fs.sni if fs.protocol == "tls" else None,
        "http_host": fs.http_host,
        "pattern": fs.pattern,
        "outcome": fs.outcome,
        "provider": fs.provider,
        "injector": injector_label(rules),
        "middlebox_rule_active": fs.rules["name"] if fs.rules else None,
        "trigger_reaches_server": reaches_server(fs),
        "client_tool": {"curl": "curl", "s_client": "openssl s_client", "python": "python ssl", "node": "node tls"}[
            fs.runner
        ],
        "client_command": " ".join(demo._portable_argv(fs.argv)),
        "client_sysctls": list(fs.client_sysctls),
        "client_reported": {"ok": res.ok, "error": res.error or None, **_short_info(res.info)},
        "server_program": fs.server_program,
        "expect": fs.expect,
    }
    if fs.pattern is None and fs.rules and fs.rules.get("trigger") == "first_payload_once":
        label["impairment"] = {"drop": "first transmission of the ClientHello", "rule": fs.rules["name"]}
    if fs.pattern is None and fs.rules and fs.rules.get("trigger") != "first_payload_once":
        label["note"] = "a middlebox rule was active on this port but must not fire (negative/control flow)"
    return label


def reaches_server(fs: FlowSpec) -> bool:
    """Does the client's trigger (hello / request) reach the real server, by the scenario's design?"""
    if "trigger_reaches_server" in fs.server_view:
        return bool(fs.server_view["trigger_reaches_server"])
    if fs.proxied:
        return False
    if fs.pattern and fs.rules:
        return bool(fs.rules["forward_trigger"])
    return True  # no rule fired (a dropped-once hello is retransmitted and arrives)


def _short_info(info: dict[str, Any]) -> dict[str, Any]:
    keep = ("version", "status", "issuer", "subject", "exit", "response_head")
    return {k: info[k] for k in keep if info.get(k) is not None}


@contextlib.contextmanager
def fresh_lab(verbose: bool) -> Iterator[Lab]:
    """A newly built lab, torn down (namespaces and processes) however the block ends."""
    lab = Lab(verbose=verbose)
    try:
        lab.setup()
        yield lab
    finally:
        lab.teardown()


@dataclass
class Output:
    """One capture file with its labels."""

    filename: str
    path: Path
    labels: dict[str, Any]


def setup_tproxy(lab: Lab, env: Env, ports: Sequence[int]) -> subprocess.Popen[Any]:
    """Policy routing for the intercepted ports and the proxy itself, in tp-router."""
    for prio, port in enumerate(ports, start=100):
        lab.run_in(
            ROUTER_NS,
            [
                "ip",
                "rule",
                "add",
                "iif",
                ROUTER_CLIENT_IF,
                "to",
                SERVER_V4,
                "ipproto",
                "tcp",
                "dport",
                str(port),
                "lookup",
                "100",
                "priority",
                str(prio),
            ],
        )
    lab.run_in(ROUTER_NS, ["ip", "route", "add", "local", "0.0.0.0/0", "dev", "lo", "table", "100"])
    argv = [
        sys.executable,
        "-u",
        str(PROGRAMS / "tls_intercept_proxy.py"),
        "--ca-cert",
        str(env.intercept_ca),
        "--ca-key",
        str(env.intercept_ca.with_suffix(".key")),
        "--workdir",
        str(env.work / "proxy"),
        "--upstream-ca",
        str(env.ca),
    ]
    for port in ports:
        argv += ["--port", str(port)]
    log = (env.logs / "proxy.log").open("w")
    proc = lab.spawn_in(ROUTER_NS, argv, stdout=log, stderr=subprocess.STDOUT)
    for port in ports:
        lab.wait_for_listen(ROUTER_NS, port)
    return proc


def proxy_upstreams(env: Env) -> list[dict[str, Any]]:
    """Connection reports of the intercepting proxy (client, original_dst, sni, upstream_local)."""
    path = env.logs / "proxy.log"
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith('{"client"')]


def run_capture(spec: CaptureSpec, env: Env, key: pkimod.Pki, work: Path, verbose: bool) -> list[Output]:
    """Build a lab, run the spec's flows under tcpdump, return the capture(s) with labels."""
    flows = spec.flows(env)
    pcap = work / f"{spec.name}.pcap"
    spcap = work / f"{spec.name}.server.pcap"
    labels: list[dict[str, Any]] = []
    server_labels: list[dict[str, Any]] = []
    with fresh_lab(verbose) as lab:
        lab.sysctl(ROUTER_NS, "net.ipv4.ip_forward=0", "net.ipv6.conf.all.forwarding=0")
        mbox = MiddleboxProc(lab, work / f"{spec.name}.rules.json", env.logs / f"{spec.name}-middlebox.log")
        if spec.tproxy_ports:
            setup_tproxy(lab, env, spec.tproxy_ports)
        servers = spec.servers(env, key)
        for port, (_, argv) in servers.items():
            with (env.logs / f"{spec.name}-server-{port}.log").open("w") as log:
                lab.spawn_in(SERVER_NS, argv, stdout=log, stderr=subprocess.STDOUT)
        for port in servers:
            lab.wait_for_listen(SERVER_NS, port)
        dumps = [edge.start_tcpdump(lab, CLIENT_NS, CLIENT_IF, pcap)]
        if spec.server_side:
            dumps.append(edge.start_tcpdump(lab, SERVER_NS, SERVER_IF, spcap))
        problems: list[str] = []
        for index, fs in enumerate(flows):
            mbox.load(fs.rules, spec.tproxy_ports)
            if fs.client_sysctls:
                lab.sysctl(CLIENT_NS, *fs.client_sysctls)
            try:
                res = run_client(lab, fs, env)
            finally:
                if fs.client_sysctls:
                    lab.sysctl(CLIENT_NS, *(s.split("=")[0] + "=1" for s in fs.client_sysctls))
            time.sleep(PAUSE)
            events = mbox.events_for(res.local_ip, res.local_port)
            problems += [f"{fs.scenario}: {p}" for p in check_client(fs, res, events)]
            labels.append(flow_label(fs, res, index))
            print(
                f"   {fs.scenario:<36} {res.local_ip}:{res.local_port} -> :{fs.port} ok={res.ok} "
                f"{(res.error or '')[:70]}"
            )
        time.sleep(1.0)
        stats = []
        for proc in dumps:
            lab.stop(proc, sig=signal.SIGINT, wait=10)
            assert proc.stderr is not None
            stats.append(proc.stderr.read().decode(errors="replace").strip().splitlines()[-3:])
        if spec.tproxy_ports:
            ups = proxy_upstreams(env)
            for lab_flow in labels:
                match = [u for u in ups if u.get("client", [None, None])[1] == lab_flow["client_port"]]
                if lab_flow["expect"].get("issuer_contains") == INTERCEPT_CA_CN:
                    if not match or "upstream_local" not in match[0]:
                        problems.append(f"{lab_flow['scenario']}: the proxy reported no upstream connection")
                        continue
                    lab_flow["proxy"] = {"reported": match[0]}
        if problems:
            raise LabError("; ".join(problems))
    outputs = [Output(pcap.name, pcap, labels_doc(spec, pcap.name, "client", labels, key, env, stats[0]))]
    if spec.server_side:
        server_labels = [server_flow_label(lf) for lf in labels]
        outputs.append(
            Output(spcap.name, spcap, labels_doc(spec, spcap.name, "server", server_labels, key, env, stats[1]))
        )
    return outputs


def server_flow_label(client_label: dict[str, Any]) -> dict[str, Any]:
    """What the server-side capture should show for one flow (from the scenario and the proxy's report)."""
    out = {
        k: client_label[k]
        for k in (
            "index",
            "scenario",
            "pattern",
            "outcome",
            "provider",
            "server_ip",
            "server_port",
            "sni",
            "http_host",
            "protocol",
            "ip_version",
        )
    }
    proxy = client_label.get("proxy")
    if proxy:
        up = proxy["reported"]["upstream_local"]
        out.update(
            seen_from_ip=up[0],
            seen_from_port=up[1],
            proxied=True,
            trigger_reaches_server=True,
            note="the server sees the interception proxy's own TLS connection from the router's address; the "
            "client's connection never reaches it",
        )
    else:
        out.update(
            seen_from_ip=client_label["client_ip"],
            seen_from_port=client_label["client_port"],
            proxied=False,
            trigger_reaches_server=client_label["trigger_reaches_server"],
        )
    inj = client_label["injector"]
    to_server = [p for p in inj["packets"] if p["to"] == "server"] if inj else []
    out["injected_to_server"] = to_server or None
    out["client_index"] = client_label["index"]
    return out


def labels_doc(
    spec: CaptureSpec,
    filename: str,
    side: str,
    flows: list[dict[str, Any]],
    key: pkimod.Pki,
    env: Env,
    stats: list[str],
) -> dict[str, Any]:
    """The complete labels document of one capture file."""
    doc: dict[str, Any] = {
        "capture": filename,
        "title": spec.title,
        "generated_by": "tools/lab/make_interception_pcaps.py",
        "generated_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "note": "Every value comes from the scenario the script ran (ports, SNI, pattern, outcome, the rule "
        "given to the middlebox) and from each client tool's own report (client address); nothing is "
        "parsed from the capture. 'index' is the order in which the flows were started. 'outcome' is the "
        "first server-direction reaction after the ClientHello (or HTTP request) as the client sees it. "
        "Decode ports " + ", ".join(str(p) for p in TLS_PORTS if p != 443) + " as TLS.",
        "capture_point": {
            "side": side,
            "namespace": CLIENT_NS if side == "client" else SERVER_NS,
            "interface": CLIENT_IF if side == "client" else SERVER_IF,
            "tool": "tcpdump -s 0",
            "link_type": "EN10MB",
        },
        "lab": {
            "client": [CLIENT_V4, CLIENT_V6],
            "server": [SERVER_V4, SERVER_V6],
            "router": "tools/lab/programs/middlebox.py: userspace AF_PACKET forwarder (kernel forwarding off), "
            "rules reloaded per flow",
            "router_server_link_one_way_delay_ms": LINK_DELAY_MS,
            "expected_rtt_ms": 2 * LINK_DELAY_MS,
            "client_initial_ttl": CLIENT_INITIAL_TTL,
            "server_ttl_seen_by_client": CLIENT_INITIAL_TTL - 1,
            "interception_proxy": (
                {
                    "ports": list(spec.tproxy_ports),
                    "how": "ip rule to <server> ipproto tcp dport <port> lookup 100; "
                    "ip route add local 0.0.0.0/0 dev lo table 100; IP_TRANSPARENT listener "
                    "(tools/lab/programs/tls_intercept_proxy.py); upstream from " + ROUTER_SERVER_V4,
                }
                if spec.tproxy_ports
                else None
            ),
        },
        "pki": key.describe(),
        "tools": demo.tool_versions(),
        "tcpdump_stats": stats,
        "flows": flows,
    }
    if spec.tproxy_ports:
        doc["interception_ca"] = {"subject_cn": INTERCEPT_CA_CN, "sha256": pkimod.der_sha256(env.intercept_ca)}
    return doc


def make_intercept_ca(workdir: Path) -> Path:
    """A self-signed 'tlsprobe lab interception CA' (key next to it as .key)."""
    workdir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "intercept-ca.key"],
        cwd=workdir,
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-new",
            "-key",
            "intercept-ca.key",
            "-subj",
            f"/O=tlsprobe lab/CN={INTERCEPT_CA_CN}",
            "-days",
            "3650",
            "-sha256",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-out",
            "intercept-ca.pem",
        ],
        cwd=workdir,
        check=True,
        capture_output=True,
    )
    return workdir / "intercept-ca.pem"


# -- tshark verification -----------------------------------------------------------------------

FIELDS = (
    "frame.number",
    "frame.time_relative",
    "ip.src",
    "ipv6.src",
    "ip.dst",
    "ipv6.dst",
    "tcp.srcport",
    "tcp.dstport",
    "tcp.flags",
    "ip.ttl",
    "ipv6.hlim",
    "ip.id",
    "ip.flags.df",
    "tcp.window_size_value",
    "tcp.seq_raw",
    "tcp.ack_raw",
    "tcp.len",
    "tcp.hdr_len",
    "tcp.payload",
    "tls.handshake.extensions_server_name",
    "x509sat.uTF8String",
    "tls.alert_message.desc",
    "tls.handshake.type",
    "tcp.stream",
)


@dataclass
class Pkt:
    """One TCP packet as tshark shows it."""

    t: float
    src: str
    dst: str
    sport: int
    dport: int
    flags: int
    ttl: int
    ip_id: int | None
    df: int | None
    window: int
    seq: int
    ack: int
    hdr_len: int
    payload: bytes
    sni: str
    x509: str
    alert: str
    hs_types: str
    stream: int

    def has(self, letters: str) -> bool:
        """All of the TCP flags in ``letters`` (F S R P A) are set."""
        bits = {"F": 1, "S": 2, "R": 4, "P": 8, "A": 16}
        return all(self.flags & bits[c] for c in letters)

    @property
    def flag_text(self) -> str:
        """Flags as letters, e.g. ``RA``."""
        return "".join(c for c, b in (("S", 2), ("F", 1), ("R", 4), ("P", 8), ("A", 16)) if self.flags & b)


def tshark_packets(pcap: Path) -> list[Pkt]:
    """Every TCP packet of a capture, with TLS decoding on the lab's odd ports."""
    cmd = [
        "tshark",
        "-r",
        str(pcap),
        "-Y",
        "tcp",
        "-T",
        "fields",
        "-E",
        "separator=\t",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=|",
    ]
    for port in TLS_PORTS:
        cmd += ["-d", f"tcp.port=={port},tls"]
    for port in HTTP_PORTS:
        cmd += ["-d", f"tcp.port=={port},http"]
    for name in FIELDS:
        cmd += ["-e", name]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120).stdout
    rst_payloads = reset_payloads(pcap)
    pkts = []
    for line in out.splitlines():
        f = dict(zip(FIELDS, (line.split("\t") + [""] * len(FIELDS))[: len(FIELDS)], strict=True))
        v6 = not f["ip.src"]
        pkts.append(
            Pkt(
                t=float(f["frame.time_relative"]),
                src=f["ipv6.src"] if v6 else f["ip.src"],
                dst=f["ipv6.dst"] if v6 else f["ip.dst"],
                sport=int(f["tcp.srcport"]),
                dport=int(f["tcp.dstport"]),
                flags=int(f["tcp.flags"], 16),
                ttl=int(f["ipv6.hlim"] if v6 else f["ip.ttl"]),
                ip_id=None if v6 else int(f["ip.id"], 16),
                df=None if v6 else int(f["ip.flags.df"] in ("1", "True")),
                window=int(f["tcp.window_size_value"]),
                seq=int(f["tcp.seq_raw"]),
                ack=int(f["tcp.ack_raw"]),
                hdr_len=int(f["tcp.hdr_len"]),
                payload=bytes.fromhex(f["tcp.payload"].replace(":", ""))
                if f["tcp.payload"]
                else rst_payloads.get(int(f["frame.number"]), b""),
                sni=f["tls.handshake.extensions_server_name"],
                x509=f["x509sat.uTF8String"],
                alert=f["tls.alert_message.desc"],
                hs_types=f["tls.handshake.type"],
                stream=int(f["tcp.stream"]),
            )
        )
    return pkts


def reset_payloads(pcap: Path) -> dict[int, bytes]:
    """Payload bytes of RST segments that carry data (tshark shows them only as 'Reset cause')."""
    cmd = ["tshark", "-r", str(pcap), "-Y", "tcp.flags.reset == 1 && tcp.len > 0", "-T", "json", "-x"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120).stdout
    found: dict[int, bytes] = {}

    def walk(node: Any) -> str | None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "tcp.reset_cause_raw":
                    return str(value[0])
                hit = walk(value)
                if hit:
                    return hit
        elif isinstance(node, list):
            for value in node:
                hit = walk(value)
                if hit:
                    return hit
        return None

    for packet in json.loads(out or "[]"):
        layers = packet["_source"]["layers"]
        raw = walk(layers.get("tcp", {}))
        if raw:
            found[int(layers["frame"]["frame.number"])] = bytes.fromhex(raw)
    return found


def classify(p: Pkt) -> str:
    """Outcome class of a server-direction packet (RST first, then payload, then FIN)."""
    if p.has("R"):
        return "rst"
    if p.payload:
        if p.payload[:1] == b"\x16" and len(p.payload) > 5 and p.payload[5] == 2:
            return "server_hello"
        if p.payload[:1] == b"\x15":
            return "tls_alert"
        return "plaintext"
    return "fin" if p.has("F") else ""


@dataclass
class Verdict:
    """Result of checking one labelled flow in one capture."""

    observed: str
    facts: list[str]
    problems: list[str]


def verify_client_flow(flow: dict[str, Any], pkts: list[Pkt]) -> Verdict:
    """Check one flow of a client-side capture against its label."""
    cip, cport, sip, sport = flow["client_ip"], flow["client_port"], flow["server_ip"], flow["server_port"]
    c2s = [p for p in pkts if (p.src, p.sport, p.dst, p.dport) == (cip, cport, sip, sport)]
    s2c = [p for p in pkts if (p.src, p.sport, p.dst, p.dport) == (sip, sport, cip, cport)]
    facts: list[str] = []
    problems: list[str] = []
    syn = next((p for p in c2s if p.has("S")), None)
    synack = next((p for p in s2c if p.has("S") and p.has("A")), None)
    data = [p for p in c2s if p.payload]
    if not syn or not synack or not data:
        return Verdict("?", [], [f"no handshake/payload for {cip}:{cport} -> {sip}:{sport}"])
    if syn.stream != flow["index"]:
        problems.append(f"tcp.stream {syn.stream} != index {flow['index']}")
    rtt = (synack.t - syn.t) * 1000
    trig = data[0]
    is_hello = trig.payload[:1] == b"\x16"
    if flow["protocol"] == "tls" and not is_hello:
        problems.append("first client payload is not a TLS handshake record")
    sni = next((p.sni for p in c2s if p.sni), None)  # on the last segment of a reassembled hello
    if flow["protocol"] == "tls" and sni != flow["sni"]:
        problems.append(f"SNI {sni!r} != label {flow['sni']!r}")
    if flow["protocol"] == "http" and f"Host: {flow['http_host']}".encode() not in trig.payload:
        problems.append("HTTP request without the labelled Host")
    reactions = [p for p in s2c if p.t >= trig.t and (p.payload or p.has("R") or p.has("F"))]
    first = reactions[0] if reactions else None
    observed = classify(first) if first else "silence"
    if observed != flow["outcome"]:
        problems.append(f"first reaction {observed} != label {flow['outcome']}")
    facts.append(f"rtt {rtt:.0f}ms")
    if first:
        dt = (first.t - trig.t) * 1000
        facts.append(f"{observed} after {dt:.1f}ms ttl {first.ttl}")
    exp = flow["expect"]
    rsts = [p for p in s2c if p.has("R") and p.t >= trig.t]
    if "rst" in exp:
        problems += _check_rst(exp["rst"], rsts, trig, facts)
    if exp.get("no_rst") and rsts:
        problems.append("unexpected RST")
    if exp.get("faster_than_rtt") and first and (first.t - trig.t) * 1000 >= rtt:
        problems.append("injection not faster than the RTT")
    if "server_data_after_rst" in exp and rsts:
        late = [p for p in s2c if p.payload and p.t > rsts[0].t]
        facts.append(f"server data after RST: {bool(late)}" + (f" ({classify(late[0])})" if late else ""))
        if bool(late) != exp["server_data_after_rst"]:
            problems.append("race (server data after the RST) not as labelled")
    if exp.get("no_server_data") and any(p.payload for p in s2c):
        problems.append("server data seen although the trigger was dropped / blackholed")
    if exp.get("no_server_data_except_injected") and any(p.payload for p in s2c if p.ttl == CLIENT_INITIAL_TTL - 1):
        problems.append("server data from the real server although the trigger was dropped")
    for text in exp.get("plaintext_contains", []):
        body = b"".join(p.payload for p in s2c).decode("latin-1")
        if text not in body:
            problems.append(f"response lacks {text!r}")
    if exp.get("plaintext_contains"):
        facts.append(repr(first.payload.split(b"\r\n", 1)[0].decode("latin-1")) if first and first.payload else "")
    if exp.get("fin_after_page") and not any(p.has("F") for p in s2c if first and p.t >= first.t):
        problems.append("no FIN after the page")
    if "alert_desc" in exp:
        alert = next((p for p in s2c if p.payload[:1] == b"\x15"), None)
        desc = alert.payload[6] if alert and len(alert.payload) >= 7 else None
        facts.append(f"alert {alert.payload[:7].hex() if alert else None}")
        if desc != exp["alert_desc"]:
            problems.append(f"alert description {desc} != {exp['alert_desc']}")
        if exp.get("rst_after_alert") and not any(p.has("R") for p in s2c if alert and p.t >= alert.t):
            problems.append("no RST after the alert")
    retrans = [p for p in data[1:] if p.seq == trig.seq]
    if "hello_retransmits_min" in exp or "hello_retransmits_exact" in exp:
        facts.append(f"hello sent {1 + len(retrans)}x")
        if "hello_retransmits_min" in exp and len(retrans) < exp["hello_retransmits_min"]:
            problems.append(f"only {len(retrans)} hello retransmissions")
        if "hello_retransmits_exact" in exp and len(retrans) != exp["hello_retransmits_exact"]:
            problems.append(f"{len(retrans)} hello retransmissions != {exp['hello_retransmits_exact']}")
    if "hello_tcp_header_len" in exp:
        facts.append(f"hello tcp hdr {trig.hdr_len}")
        if trig.hdr_len != exp["hello_tcp_header_len"]:
            problems.append(f"hello TCP header {trig.hdr_len} != {exp['hello_tcp_header_len']}")
    if "hello_segments_min" in exp:
        record_len = int.from_bytes(trig.payload[3:5], "big") + 5
        segs = 1 + sum(1 for p in data[1:] if p.seq != trig.seq and p.t - trig.t < 0.05)
        facts.append(f"hello {record_len}B in >= {segs} segments")
        if record_len <= len(trig.payload) or segs < exp["hello_segments_min"]:
            problems.append("ClientHello fits in one segment")
    if "issuer_contains" in exp:
        names = "|".join(p.x509 for p in s2c if p.x509)
        facts.append(f"cert names: {names[:80]}")
        if exp["issuer_contains"] not in names:
            problems.append(f"certificate chain lacks {exp['issuer_contains']!r}")
        if exp.get("issuer_absent") and exp["issuer_absent"] in names:
            problems.append(f"certificate chain contains {exp['issuer_absent']!r}")
    return Verdict(observed, [f for f in facts if f], problems)


def _check_rst(want: dict[str, Any], rsts: list[Pkt], trig: Pkt, facts: list[str]) -> list[str]:
    """Compare the injected RST(s) towards the client with the rule's parameters."""
    if not rsts:
        return ["no RST"]
    r = rsts[0]
    same = [p for p in rsts if (p.ttl, p.ip_id, p.seq, p.flag_text) == (r.ttl, r.ip_id, r.seq, r.flag_text)]
    facts.append(
        f"RST x{len(same)} {r.flag_text} ttl={r.ttl} id={r.ip_id} df={r.df} win={r.window} "
        f"hdr={r.hdr_len} pay={r.payload.hex() or '-'} seq_exact={r.seq == trig.ack}"
    )
    problems = []
    resolved = {
        "ttl": CLIENT_INITIAL_TTL if want.get("ttl") == "copy" else want.get("ttl"),
        "ip_id": trig.ip_id if want.get("ip_id") == "copy" else want.get("ip_id"),
        "df": trig.df if want.get("df") == "copy" else want.get("df"),
        "window": trig.window if want.get("window") == "copy" else want.get("window"),
    }
    checks = [("flags", r.flag_text, want.get("flags")), ("count", len(same), want.get("count"))]
    checks += [(k, getattr(r, k), v) for k, v in resolved.items()]
    if "payload" in want:
        checks.append(("payload", r.payload.hex(), want["payload"]))
    for name, got, expected in checks:
        if expected is not None and got != expected:
            problems.append(f"RST {name} {got!r} != {expected!r}")
    if r.seq != trig.ack:
        problems.append("RST sequence number is not the ClientHello's ack number")
    return problems


def verify_server_flow(flow: dict[str, Any], pkts: list[Pkt]) -> Verdict:
    """Check one flow of a server-side capture: did the trigger arrive, did an injected RST arrive?"""
    cip, cport, sip, sport = flow["seen_from_ip"], flow["seen_from_port"], flow["server_ip"], flow["server_port"]
    c2s = [p for p in pkts if (p.src, p.sport, p.dst, p.dport) == (cip, cport, sip, sport)]
    s2c = [p for p in pkts if (p.src, p.sport, p.dst, p.dport) == (sip, sport, cip, cport)]
    facts: list[str] = []
    problems: list[str] = []
    if not any(p.has("S") for p in c2s):
        return Verdict("?", [], [f"no SYN from {cip}:{cport}"])
    arrived = any(p.payload for p in c2s)
    facts.append(f"trigger at server: {arrived}")
    if arrived != flow["trigger_reaches_server"]:
        problems.append(f"trigger at server {arrived} != label {flow['trigger_reaches_server']}")
    answer = next((p for p in s2c if p.payload), None)
    facts.append(f"server answered: {classify(answer) if answer else 'no'}")
    inj = flow.get("injected_to_server") or []
    genuine_ttl = CLIENT_INITIAL_TTL if flow.get("proxied") else CLIENT_INITIAL_TTL - 1  # proxy: router's own stack
    forged = [p for p in c2s if p.has("R") and p.ttl != genuine_ttl]
    if inj:
        want = inj[0]
        if not forged:
            problems.append("no injected RST at the server")
        else:
            r = forged[0]
            facts.append(f"RST from 'client' x{len(forged)} ttl={r.ttl} id={r.ip_id}")
            if r.ttl != want["ttl"] or len(forged) != want["count"]:
                problems.append(f"server-side RST ttl/count {r.ttl}/{len(forged)} != {want['ttl']}/{want['count']}")
    elif forged:
        problems.append("unexpected forged RST at the server")
    genuine_rst = [p for p in c2s if p.has("R") and p.ttl == genuine_ttl]
    if genuine_rst:
        facts.append("client kernel RST")
    if flow.get("proxied"):
        names = "|".join(p.x509 for p in s2c if p.x509)
        facts.append(f"genuine chain: {pkimod.INTERMEDIATE_CN in names}")
        if pkimod.INTERMEDIATE_CN not in names:
            problems.append("the server did not send its genuine chain to the proxy")
    return Verdict("-", facts, problems)


def check_output(out: Output) -> list[tuple[dict[str, Any], Verdict]]:
    """Verify every flow of one capture."""
    pkts = tshark_packets(out.path)
    side = out.labels["capture_point"]["side"]
    fn = verify_client_flow if side == "client" else verify_server_flow
    return [(flow, fn(flow, pkts)) for flow in out.labels["flows"]]


def print_table(results: list[tuple[Output, list[tuple[dict[str, Any], Verdict]]]]) -> None:
    """One row per flow and capture."""
    print(
        f"\n{'capture':<28} {'#':>2} {'scenario':<34} {'port':>5} {'pattern':<25} {'label':<12} "
        f"{'tshark':<12} result / facts"
    )
    for out, rows in results:
        for flow, v in rows:
            status = "OK" if not v.problems else "FAIL: " + "; ".join(v.problems)
            print(
                f"{out.filename:<28} {flow['index']:>2} {flow['scenario']:<34} {flow['server_port']:>5} "
                f"{flow['pattern'] or '-':<25} {flow['outcome']:<12} {v.observed:<12} {status}"
            )
            print(f"{'':<28}    {'; '.join(v.facts)}")


# -- README ---------------------------------------------------------------------------------------

README_HEAD = (
    (LAB_DIR / "interception_readme.md.in").read_text() if (LAB_DIR / "interception_readme.md.in").exists() else ""
)


def readme_text() -> str:
    """Static description plus one flow table per labels file present."""
    parts = [README_HEAD.rstrip() + "\n"]
    for labels_path in sorted(OUT_DIR.glob("*.labels.json")):
        doc = json.loads(labels_path.read_text())
        pcap = OUT_DIR / doc["capture"]
        size = pcap.stat().st_size if pcap.exists() else 0
        side = doc["capture_point"]["side"]
        parts.append(f"\n### `{doc['capture']}` ({side} side, {size:,} bytes)\n\n{doc['title']}.\n")
        if side == "client":
            parts.append(
                "\n| # | scenario | client -> server | SNI / Host | pattern | outcome | provider | group |\n"
                "|---|---|---|---|---|---|---|---|\n"
            )
            for f in doc["flows"]:
                host = f["sni"] or (f"Host: {f['http_host']}" if f["http_host"] else "(none)")
                parts.append(
                    f"| {f['index']} | {f['scenario']} | {_ep(f['client_ip'], f['client_port'])} -> "
                    f"{_ep(f['server_ip'], f['server_port'])} | {host} | {f['pattern'] or '-'} | {f['outcome']} | "
                    f"{f['provider'] or '-'} | {f['comparison_group'] or '-'} |\n"
                )
        else:
            parts.append(
                "\n| # | scenario | seen from | trigger reaches server | injected to server |\n|---|---|---|---|---|\n"
            )
            for f in doc["flows"]:
                inj = f["injected_to_server"]
                inj_text = f"{inj[0]['count']}x {inj[0]['flags']} ttl {inj[0]['ttl']}" if inj else "-"
                parts.append(
                    f"| {f['index']} | {f['scenario']} | {_ep(f['seen_from_ip'], f['seen_from_port'])}"
                    f"{' (proxy)' if f['proxied'] else ''} | {f['trigger_reaches_server']} | {inj_text} |\n"
                )
    total = sum(p.stat().st_size for p in OUT_DIR.iterdir() if p.is_file() and p.name != "README.md")
    parts.append(f"\nTotal size of the captures and labels: {total:,} bytes.\n")
    return "".join(parts)


def _ep(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


# -- main ------------------------------------------------------------------------------------------


def preflight() -> None:
    """Exit with a helpful message when not root or a required program is missing."""
    if os.geteuid() != 0:
        sys.exit("run as root: sudo python3 tools/lab/make_interception_pcaps.py")
    for prog, pkg in (
        ("ip", "iproute2"),
        ("ss", "iproute2"),
        ("openssl", "openssl"),
        ("curl", "curl"),
        ("tcpdump", "tcpdump"),
        ("tshark", "tshark"),
        ("node", "nodejs"),
    ):
        if shutil.which(prog) is None:
            sys.exit(f"{prog} not found: apt-get install {pkg}")


def install(out: Output) -> None:
    """Copy a verified capture and its labels into pcaps/interception/."""
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(out.path, OUT_DIR / out.filename)
    stem = out.filename.rsplit(".", 1)[0]
    (OUT_DIR / f"{stem}.labels.json").write_text(json.dumps(out.labels, indent=2) + "\n")


def generate(specs: Sequence[CaptureSpec], verbose: bool) -> int:
    """Make, check and install the captures of ``specs``; rewrite the README."""
    failed = False
    results: list[tuple[Output, list[tuple[dict[str, Any], Verdict]]]] = []
    with tempfile.TemporaryDirectory(prefix="tlsprobe-interception-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)
        key = pkimod.make_pki(work / "pki", SERVER_NAMES, [SERVER_V4, SERVER_V6])
        env = Env(
            work=work,
            ca=key.root_cert,
            intercept_ca=make_intercept_ca(work / "intercept"),
            logs=work / "logs",
            rng=random.Random(),
        )
        env.logs.mkdir()
        for spec in specs:
            print(f"== {spec.name}: {', '.join(spec.files)}")
            try:
                outputs = run_capture(spec, env, key, work, verbose)
            except (LabError, subprocess.SubprocessError, OSError) as exc:
                print(f"error: {spec.name}: {exc}", file=sys.stderr)
                failed = True
                continue
            checked = [(out, check_output(out)) for out in outputs]
            results += checked
            if any(v.problems for _, rows in checked for _, v in rows):
                failed = True
                keep = Path(tempfile.mkdtemp(prefix="tlsprobe-interception-failed-"))
                for out in outputs:
                    shutil.copyfile(out.path, keep / out.filename)
                    (keep / f"{out.filename}.labels.json").write_text(json.dumps(out.labels, indent=2))
                print(f"{spec.name}: not installed; kept in {keep}", file=sys.stderr)
            else:
                for out in outputs:
                    install(out)
        print_table(results)
        if failed:
            keep = Path(tempfile.mkdtemp(prefix="tlsprobe-interception-logs-"))
            shutil.copytree(env.logs, keep / "logs")
            print(f"logs kept in {keep}", file=sys.stderr)
    if OUT_DIR.exists():
        (OUT_DIR / "README.md").write_text(readme_text())
        total = sum(f.stat().st_size for f in OUT_DIR.iterdir() if f.is_file())
        print(f"\npcaps/interception/: {total} bytes in total")
        if total > MAX_TOTAL_BYTES:
            print(f"error: pcaps/interception/ is over {MAX_TOTAL_BYTES} bytes", file=sys.stderr)
            failed = True
    return 1 if failed else 0


def find_spec(name: str) -> CaptureSpec:
    """The capture spec called ``name`` (exits with the list otherwise)."""
    for spec in SPECS:
        if spec.name == name:
            return spec
    sys.exit(f"unknown capture {name!r}; choose from: {', '.join(s.name for s in SPECS)}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", metavar="NAME", help="make only this capture (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the captures and their flows, then exit")
    parser.add_argument("-v", "--verbose", action="store_true", help="echo lab commands")
    args = parser.parse_args(argv)
    if args.list:
        env = Env(Path("/tmp"), Path("root.pem"), Path("intercept-ca.pem"), Path("/tmp"), random.Random(0))
        for spec in SPECS:
            print(f"{spec.name:<22} {', '.join(spec.files)}: {spec.title}")
            for fs in spec.flows(env):
                print(f"    {fs.scenario:<36} :{fs.port:<5} {fs.pattern or '-':<25} {fs.outcome}")
        return 0
    specs = [find_spec(n) for n in args.only] if args.only else list(SPECS)
    preflight()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: sys.exit(128 + signum))
    try:
        return generate(specs, args.verbose)
    except KeyboardInterrupt:
        print("interrupted; lab torn down", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
