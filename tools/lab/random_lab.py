#!/usr/bin/env python3
"""Randomised interception lab: one seed -> one client-side capture plus honest labels.

Run as root from the repository root::

    sudo PYTHONPATH=. python3 tools/lab/random_lab.py --seed 7 --out /tmp/lab7
    sudo PYTHONPATH=. python3 tools/lab/random_lab.py --seed 7 --list     # the draw only

Unlike ``make_interception_pcaps.py`` (fixed scenarios, fixed injector parameters),
every seed draws a new set of scenarios and, per scenario, new injector parameters
within realistic ranges (TTL offset from the server's, IP ID behaviour, RST flags and
count, targets, in-path or on-path, DF, window, reaction delay), new ports, server
addresses, host names, client programs and IP versions.  The lab is the same
3-namespace lab (``netns.py``, namespaces ``tr<seed>-client|router|server`` so it never
collides with ``tp-*``): ``programs/middlebox.py`` forwards and injects in the router
with one rule set for the whole run.  TLS interception is transparent: two Debian
``sslsplit`` instances (``tproxy`` NAT engine, TLS 1.2 forced) and one TLS 1.3 capable
transparent proxy (``programs/tls_intercept_proxy.py``) each own some ports of some
server addresses; policy routing in the router (``ip rule iif eth-client to ADDR
ipproto tcp dport PORT lookup 100`` + ``local`` routes in table 100, no netfilter)
delivers those connections to the proxy's ``IP_TRANSPARENT`` listener, which answers
*as the server's address* and connects upstream to the original destination; every
other port or address goes to the real server.  Each proxy has its own freshly
generated CA with a made-up name.  Real servers (Python ``ssl``, node,
``tcp_gate_server.py``, aioquic) answer real clients (curl, Python ``ssl``, node,
aioquic).  Flows run concurrently
(a few at a time) under one ``tcpdump`` on the client's interface.

``<out>/random-<seed>.pcap`` and ``<out>/random-<seed>.labels.json`` are written.
Every label (pattern, provider, ip_version, trigger, injector parameters) comes
from the scenario drawn, never from tlsprobe or the capture; the only values taken
from the run are the client's local address (reported by the client tool) and what
the client said happened.  ``lab_problems`` lists any flow where the middlebox or a
client did not behave as the scenario says (a lab bug, not a detection miss).
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import make_edge_pcaps as edge
import make_interception_pcaps as mk
import pki as pkimod
from netns import (
    CLIENT_IF,
    CLIENT_NS,
    CLIENT_V4,
    CLIENT_V6,
    ROUTER_CLIENT_IF,
    ROUTER_NS,
    SERVER_IF,
    SERVER_NS,
    Lab,
    LabError,
)

REPO = Path(__file__).resolve().parents[2]
PROGRAMS = Path(__file__).resolve().parent / "programs"

SERVER_TTL_SEEN = 63  # Linux initial 64, one hop (the router)
DOMAIN = "tlsprobe.test"
SERVER_POOL = list(range(10, 30))  # host parts of the server addresses: 10.77.2.N, fd77:2::N
TPROXY_TABLE = "100"  # router routing table with the ``local`` routes for intercepted flows
MAX_WORKERS = 6
STAGGER_S = 0.12  # between flow starts
BLACKHOLE_WAIT_S = 12.0  # capture at least this long: py_https_server closes idle connections after 10 s
TLS_PORT_POOL = [443, 444, 1443, 2053, 2083, 2087, 3443, 4433, 4443, 5443, 6443, 7443, 8443, 8444, 8843, 9443,
                 9444, 10443, 11443, 12443, 18443]
HTTP_PORT_POOL = [80, 3000, 8000, 8080, 8888, 9080]
ADMIN_PORT_POOL = [8006, 8834, 9090, 10000, 5001, 7071, 9200, 4343, 8181, 8291]
QUIC_PORT_POOL = [443, 4433, 4443, 7443, 8443, 9443, 10443]
BROWSE_KINDS = ["shop", "news", "mail", "media", "travel", "bank", "games", "tube", "cloud", "market", "wiki", "social"]
BROWSE_PREFIXES = ["", "www.", "www.", "mail.", "static.", "api.", "m.", "cdn.", "login."]
SYLLABLES = ["ka", "lo", "ver", "min", "tas", "do", "rel", "qua", "zen", "fi", "mor", "bat", "sil", "nex", "tor",
             "vy", "pel", "gra", "hu", "ost", "ran", "ble", "cy", "dru"]

RESET_ERRORS = ("reset", "ECONNRESET", "errno=104", "Connection reset", "SSL_ERROR_SYSCALL", "EOF", "closed")


def v4(n: int) -> str:
    """Server address N in the lab's IPv4 server network."""
    return f"10.77.2.{n}"


def v6(n: int) -> str:
    """Server address N in the lab's IPv6 server network."""
    return f"fd77:2::{n}"


def word(rng: random.Random, n: int = 3) -> str:
    """A made-up pronounceable word."""
    return "".join(rng.choice(SYLLABLES) for _ in range(n))


# -- the draw -----------------------------------------------------------------------------------


@dataclass
class Server:
    """One server program in the server namespace (listens on all addresses, dual-stack)."""

    port: int
    kind: str  # py_https | node_https | gate | http | node_http | quic
    cert: str = "lab"  # lab | selfsigned:<i> | org:<i>
    args: list[str] = field(default_factory=list)
    transport: str = "tcp"


@dataclass
class Flow:
    """One connection: how to make it and its labels."""

    name: str
    category: str
    pattern: str | None
    provider: str | None
    ip_version: int
    transport: str  # tcp | udp
    protocol: str  # tls | http | quic
    server_host: int  # N of 10.77.2.N / fd77:2::N
    port: int
    sni: str | None
    client: str  # python | curl | node | quic
    trigger: str | None = None  # tls_sni | http_host | quic_sni | quic_residual | None
    injector: dict[str, Any] | None = None
    hard_negative: bool = False
    client_ok: bool = False
    trust: str = "lab"  # lab | proxy:<i> | org
    max_tls: str | None = None
    filler_alpn: int = 0
    timeout: float = 5.0
    chain: str | None = None  # flows of one chain run in order, in one worker
    expect_fire: bool | None = None  # must the middlebox rule fire on this flow?
    no_timestamps: bool = False  # run with net.ipv4.tcp_timestamps=0 in the client namespace
    description: str = ""

    @property
    def server_ip(self) -> str:
        """The address the client connects to."""
        return v6(self.server_host) if self.ip_version == 6 else v4(self.server_host)

    @property
    def client_ip(self) -> str:
        """The client's own address for this IP version."""
        return CLIENT_V6 if self.ip_version == 6 else CLIENT_V4


@dataclass
class Proxy:
    """One transparent intercepting proxy: the server addresses and ports it takes over."""

    index: int
    software: str  # sslsplit | tls_intercept_proxy
    ca_name: dict[str, str]
    hosts: list[int]  # server addresses (N) whose ``ports`` it intercepts
    ports: list[int]

    @property
    def tls(self) -> str:
        """What the proxy negotiates with the client."""
        if self.software == "sslsplit":
            return "TLS 1.2 forced (sslsplit -r tls12)"
        return "the client's version (TLS 1.3), mirrored upstream"

    def dsts(self) -> list[tuple[str, int]]:
        """Every (server address, port) it intercepts, IPv4 and IPv6."""
        return [(a, port) for h in self.hosts for a in (v4(h), v6(h)) for port in self.ports]


@dataclass
class Draw:
    """Everything one seed decided."""

    seed: int
    link_delay_ms: int
    servers: dict[tuple[str, int], Server]
    rules: list[dict[str, Any]]
    flows: list[Flow]
    proxies: list[Proxy]
    ttl_wander: list[dict[str, Any]]
    org: dict[str, Any]
    selfsigned: list[dict[str, str]]
    browse_domains: list[str]


class Drawer:
    """Draws scenarios for one seed; all randomness comes from ``rng``."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.link = self.rng.randint(15, 40)  # router<->server one-way delay (ms); RTT ~ 2x
        self.proxy_ports: set[int] = set()
        self.origins: dict[tuple[int, ...], int] = {}
        self.browse_domains = []
        for _ in range(7):
            dom = f"{word(self.rng, 2)}-{self.rng.choice(BROWSE_KINDS)}.{self.rng.choice(['test', 'example'])}"
            if dom not in self.browse_domains:
                self.browse_domains.append(dom)
        self.servers: dict[tuple[str, int], Server] = {}
        self.rules: list[dict[str, Any]] = []
        self.flows: list[Flow] = []
        self.used_names: set[str] = set()
        self.free_tls = self.rng.sample(TLS_PORT_POOL, len(TLS_PORT_POOL))
        self.free_http = self.rng.sample(HTTP_PORT_POOL, len(HTTP_PORT_POOL))
        self.free_admin = self.rng.sample(ADMIN_PORT_POOL, len(ADMIN_PORT_POOL))
        self.hosts = self.rng.sample(SERVER_POOL, len(SERVER_POOL))
        self.counter = 0

    # -- helpers --

    def name(self, kind: str = "") -> str:
        """A fresh host name under the lab domain (covered by the lab's wildcard leaf)."""
        while True:
            n = f"{kind or word(self.rng, 2)}-{word(self.rng, 2)}.{DOMAIN}"
            if n not in self.used_names:
                self.used_names.add(n)
                return n

    def browse_name(self) -> str:
        """A name a browsing client asks for: one of several unrelated registrable domains."""
        return self.rng.choice(BROWSE_PREFIXES) + self.rng.choice(self.browse_domains)

    def host(self) -> int:
        """A server address (host part) from the pool; addresses are reused across scenarios."""
        return self.rng.choice(self.hosts[:12])

    def tls_port(self) -> int:
        """A TLS port with a genuine server (created on first use)."""
        existing = [p for (t, p), s in self.servers.items()
                    if t == "tcp" and s.kind in ("py_https", "node_https") and s.cert == "lab"
                    and p not in self.proxy_ports]
        if existing and (len(existing) >= 5 or self.rng.random() < 0.5):
            return self.rng.choice(existing)
        port = self.free_tls.pop()
        self.servers[("tcp", port)] = Server(port, self.rng.choice(["py_https", "node_https"]))
        return port

    def http_port(self) -> int:
        """A plain-HTTP port with a genuine server."""
        existing = [p for (t, p), s in self.servers.items() if t == "tcp" and s.kind == "http"]
        if existing and (len(existing) >= 2 or self.rng.random() < 0.5):
            return self.rng.choice(existing)
        port = self.free_http.pop()
        self.servers[("tcp", port)] = Server(port, "http")
        return port

    def version(self) -> int:
        """IP version of a single (non-twin) flow."""
        return self.rng.choice((4, 6))

    def tls_client(self) -> str:
        """A TLS client program."""
        return self.rng.choice(("python", "curl", "node"))

    def ttl_offset(self) -> int:
        """Offset of an injected packet's TTL from the server's, 1..60, 1 often, either sign."""
        off = 1 if self.rng.random() < 0.35 else self.rng.randint(2, 60)
        sign = self.rng.choice((-1, 1))
        return sign * off

    def ttl(self) -> tuple[int, int]:
        """(TTL as seen by the client, offset from the server's)."""
        off = self.ttl_offset()
        return max(1, min(255, SERVER_TTL_SEEN + off)), off

    def rule(self, name: str, port: int, match: list[str], **params: Any) -> dict[str, Any]:
        """Add one middlebox rule."""
        doc: dict[str, Any] = {
            "name": name,
            "ports": [port],
            "trigger": "tls_sni",
            "match": match,
            "single_segment_only": True,
            "forward_trigger": True,
            "after": "pass",
            "delay_ms": 0,
            "inject": [],
        }
        doc.update(params)
        self.rules.append(doc)
        return doc

    def flow(self, **kw: Any) -> Flow:
        """Add one flow."""
        self.counter += 1
        f = Flow(name=f"{self.counter:02d}-{kw.pop('label')}", **kw)
        self.flows.append(f)
        return f

    # -- injector parameter draws --

    def reaction_delay(self, off: int, on_path: bool, near_client: tuple[float, float]) -> float:
        """Injection delay (ms) from the injector's position, which the TTL offset tells.

        An injector one or two hops before the server (``|off| <= 2``) sits next to it:
        the client's hello reaches it about when it reaches the server, and its packets
        travel back as far as the server's, so its reaction arrives 0.9-1.1 x RTT after
        the hello (RTT = 2 x the router<->server delay, which is where the lab puts the
        path).  On-path, a reaction later than the server's own answer would be out of
        window and useless, so on-path near-server injectors stay at 0.9-0.97 x RTT.
        Further away (larger offsets) it is near the client: ``near_client`` ms.
        """
        if abs(off) <= 2:
            return round(self.rng.uniform(0.9, 0.97 if on_path else 1.1) * 2 * self.link, 1)
        return round(self.rng.uniform(*near_client), 1)

    def reset_params(self, style: str) -> dict[str, Any]:
        """Injector parameters of a reset injector of ``style`` (generic or a provider's shape)."""
        ttl, off = self.ttl()
        rng = self.rng
        if style == "gfw_type1":
            return {"style": style, "ttl": ttl, "ttl_offset": off, "ip_id_mode": "fixed", "ip_id": 0, "flags": "R",
                    "count": 1, "targets": ["client", "server"], "mode": "on-path", "df": 0,
                    "window": rng.choice([0, rng.randrange(1, 65536)]),
                    "delay_ms": self.reaction_delay(off, True, (5, 20))}
        if style == "gfw_type2":
            return {"style": style, "ttl": ttl, "ttl_offset": off, "ip_id_mode": "fixed",
                    "ip_id": rng.randrange(0x00A3, 0xFE5F), "flags": "RA", "count": 3,
                    "targets": ["client", "server"], "mode": "on-path", "df": 1, "window": rng.randrange(1, 65536),
                    "delay_ms": self.reaction_delay(off, True, (5, 20))}
        if style == "henan":
            return {"style": style, "ttl": ttl, "ttl_offset": off, "ip_id_mode": "fixed", "ip_id": 1, "flags": "RA",
                    "count": 1, "targets": ["client"], "mode": "on-path", "df": 0, "window": 0,
                    "payload_hex": mk.HENAN_PAYLOAD, "delay_ms": self.reaction_delay(off, True, (0.5, 5)),
                    "inspects": "only segments without TCP options (20-byte TCP header)"}
        path = rng.choice(["in-path", "on-path"])
        delay = self.reaction_delay(off, path == "on-path", (0, 20))
        if abs(off) <= 2 and rng.random() < 0.5:
            # next to the server and imitating its kernel's abort: one RST+ACK, IP ID 0, DF, the server's
            # window, TCP timestamps on the server's clock, the server's IPv6 flow label - only the TTL differs
            return {"style": "generic", "imitates": "linux_server_reset", "ttl": ttl, "ttl_offset": off,
                    "ip_id_mode": "fixed", "ip_id": 0, "ip_id_base": None, "flags": "RA", "count": 1,
                    "targets": rng.choice([["client"], ["client", "server"]]), "mode": path, "df": 1,
                    "window": "server", "tcp_timestamps": True, "flow_label": "server", "delay_ms": delay}
        mode = rng.choice(["fixed", "random", "increment", "copy"])
        ip_id: int | None = None
        if mode == "fixed":
            ip_id = rng.choice([0, 1, rng.randrange(2, 65536)])
        return {
            "style": "generic",
            "ttl": ttl,
            "ttl_offset": off,
            "ip_id_mode": mode,
            "ip_id": ip_id,
            "ip_id_base": rng.randrange(0, 65536) if mode == "increment" else None,
            "flags": rng.choice(["RA", "R"]),
            "count": rng.randint(1, 3),
            "targets": rng.choice([["client"], ["client", "server"]]),
            "mode": path,
            "df": rng.choice([0, 1]),
            "window": rng.choice([0, rng.randrange(1, 65536)]),
            "delay_ms": delay,
        }

    def box_params(self, on_path: bool = False) -> dict[str, Any]:
        """IP/TCP behaviour of an injector that also serves pages (TTL, IP ID, DF, window)."""
        ttl, off = self.ttl()
        mode = self.rng.choice(["fixed", "random", "increment"])
        return {"ttl": ttl, "ttl_offset": off, "ip_id_mode": mode,
                "ip_id": self.rng.choice([0, self.rng.randrange(2, 65536)]) if mode == "fixed" else None,
                "ip_id_base": self.rng.randrange(0, 65536) if mode == "increment" else None,
                "df": self.rng.choice([0, 1]), "window": self.rng.choice([0, self.rng.randrange(1, 65536)]),
                "delay_ms": self.reaction_delay(off, on_path, (0, 15))}

    @staticmethod
    def spec(to: str, flags: str, p: dict[str, Any], **extra: Any) -> dict[str, Any]:
        """A middlebox inject spec from drawn parameters."""
        mode = p["ip_id_mode"]
        ip_id: Any = p["ip_id"] if mode == "fixed" else mode
        doc: dict[str, Any] = {"to": to, "flags": flags, "count": p.get("count", 1), "ttl": p["ttl"],
                               "ip_id": ip_id, "df": p["df"], "window": p["window"]}
        for key in ("tcp_timestamps", "flow_label"):
            if p.get(key):
                doc[key] = p[key]
        if mode == "increment":
            doc["ip_id_base"] = p["ip_id_base"]
            doc["counter"] = p.get("counter", "")
            if not doc["counter"]:
                del doc["counter"]
        doc.update(extra)
        return doc

    def reset_rule(self, name: str, port: int, match: list[str], p: dict[str, Any], trigger: str) -> dict[str, Any]:
        """A reset-injection rule from drawn parameters."""
        payload = {"payload": p["payload_hex"]} if p.get("payload_hex") else {}
        inject = [self.spec(t, p["flags"], p, **payload) for t in p["targets"]]
        in_path = p["mode"] == "in-path"
        return self.rule(name, port, match, trigger=trigger, forward_trigger=not in_path,
                         after="block" if in_path else "pass", delay_ms=p["delay_ms"], inject=inject)

    # -- scenario families --

    def resets(self) -> None:
        """Reset injectors, each run on an IPv4 and an IPv6 twin with the same parameters."""
        styles = ["generic"] * 4 + self.rng.sample(["gfw_type1", "gfw_type2", "henan"], 2)
        providers = {"gfw_type1": "gfw", "gfw_type2": "gfw", "henan": "henan_firewall", "generic": None}
        for i, style in enumerate(styles):
            p = self.reset_params(style)
            http = style in ("generic", "gfw_type1", "gfw_type2") and self.rng.random() < 0.3
            port = self.http_port() if http else self.tls_port()
            name = self.name("blocked")
            trigger = "http_host" if http else "tls_sni"
            rule = self.reset_rule(f"reset-{i}-{style}", port, [name], p, trigger)
            henan = style == "henan"
            if henan:
                rule["require_tcp_header_len"] = 20  # only segments without TCP options
            host = self.host()
            client = "curl" if http and self.rng.random() < 0.5 else ("python" if http else self.tls_client())
            for ver in (4, 6):
                self.flow(label=f"rst-{style}-v{ver}", category="rst_injection", pattern="rst_injection",
                          provider=providers[style], ip_version=ver, transport="tcp",
                          protocol="http" if http else "tls", server_host=host, port=port, sni=name, client=client,
                          trigger=trigger, injector=p, expect_fire=True, no_timestamps=henan,
                          description=f"{style} reset injector ({p['mode']}, {p['count']}x {p['flags']}, "
                          f"TTL {p['ttl']} = server {p['ttl_offset']:+d}, IP ID {p['ip_id_mode']}, "
                          f"to {'+'.join(p['targets'])}, {p['delay_ms']} ms) keyed on "
                          f"{'Host' if http else 'SNI'}"
                          + ("; the client has TCP timestamps off, so its hello has no TCP options" if henan else ""))
            if henan:
                self.flow(label="henan-options-ignored", category="dpi_ignores_tcp_options", pattern=None,
                          provider=None, ip_version=self.version(), transport="tcp", protocol="tls", server_host=host,
                          port=port, sni=name, client=client, client_ok=True, expect_fire=False,
                          description="the Henan-style box's blocked name, but the client sends TCP timestamps: "
                          "a hello with TCP options is not inspected, nothing happens")
            # a control: same server and port, a name the injector does not list
            if self.rng.random() < 0.6:
                self.flow(label="control-allowed", category="control", pattern=None, provider=None,
                          ip_version=self.version(), transport="tcp", protocol="http" if http else "tls",
                          server_host=host, port=port, sni=self.name("allowed"), client=client, client_ok=True,
                          expect_fire=False, description="allowed name to a server and port an injector watches")

    def same_box(self) -> None:
        """One Aliyun-style box: Beaver page for plain-HTTP Host requests and resets for TLS hellos."""
        p = self.box_params()
        p["counter"] = "aliyun-box"
        host, hport, tport = self.host(), self.http_port(), self.tls_port()
        name = self.name("unfiled")
        page = mk.BEAVER_403
        self.rule("aliyun-box-http", hport, [name], trigger="http_host", forward_trigger=False, after="block",
                  delay_ms=p["delay_ms"], inject=[self.spec("client", "PA", p, payload_text=page),
                                                   self.spec("client", "FA", p)])
        rp = dict(p, flags="RA", count=1, targets=["client"], mode="in-path", style="aliyun_same_box")
        self.reset_rule("aliyun-box-tls", tport, [name], rp, "tls_sni")
        self.flow(label="aliyun-box-page", category="block_page", pattern="block_page", provider="alibaba_cloud",
                  ip_version=4, transport="tcp", protocol="http", server_host=host, port=hport, sni=name,
                  client="curl", trigger="http_host", injector=dict(p, page="beaver-403"), client_ok=True,
                  expect_fire=True, description="Aliyun Beaver 403 for the Host (same box as the resets)")
        for ver in (4, 6):
            self.flow(label=f"aliyun-box-rst-v{ver}", category="rst_injection", pattern="rst_injection",
                      provider="alibaba_cloud", ip_version=ver, transport="tcp", protocol="tls", server_host=host,
                      port=tport, sni=name, client=self.tls_client(), trigger="tls_sni", injector=rp,
                      expect_fire=True, description="the same Aliyun box resets the TLS hello (same TTL, IP ID "
                      "behaviour and window as its page); provider only attributable across flows")

    def block_pages(self) -> None:
        """Block pages on a TLS port and on plain HTTP: Beaver, Tencent webblock, an unknown one."""
        # Beaver on a TLS port (in-line, hello dropped)
        p = self.box_params()
        port, name = self.tls_port(), self.name("icp")
        self.rule("beaver-tls", port, [name], forward_trigger=False, after="block", delay_ms=p["delay_ms"],
                  inject=[self.spec("client", "PA", p, payload_text=mk.BEAVER_403), self.spec("client", "FA", p)])
        self.flow(label="beaver-on-tls", category="block_page", pattern="block_page", provider="alibaba_cloud",
                  ip_version=self.version(), transport="tcp", protocol="tls", server_host=self.host(), port=port,
                  sni=name, client=self.tls_client(), trigger="tls_sni", injector=dict(p, page="beaver-403"),
                  expect_fire=True, description="Beaver 403 in plaintext instead of a ServerHello")
        # Tencent webblock on plain HTTP (on-path: 302 + FIN to the client, RST+ACK to the server)
        p = self.box_params(on_path=True)
        port, name = self.http_port(), self.name("site")
        page = mk.TENCENT_302.replace(mk.BLOCKED, name)
        self.rule("tencent-webblock", port, [name], trigger="http_host", delay_ms=p["delay_ms"],
                  inject=[self.spec("client", "PA", p, payload_text=page), self.spec("client", "FA", p),
                          self.spec("server", "RA", p)])
        self.flow(label="tencent-webblock", category="block_page", pattern="block_page", provider="tencent_cloud",
                  ip_version=self.version(), transport="tcp", protocol="http", server_host=self.host(), port=port,
                  sni=name, client="curl", trigger="http_host", injector=dict(p, page="tencent-302"),
                  client_ok=True, expect_fire=True, description="Tencent-style 302 to dnspod webblock")
        # an unknown generic page, on TLS and on HTTP
        for proto in ("tls", "http"):
            in_path = proto == "tls" or self.rng.random() < 0.5
            p = self.box_params(on_path=not in_path)
            port = self.tls_port() if proto == "tls" else self.http_port()
            name = self.name("policy")
            title = self.rng.choice(["Access denied", "Site blocked", "Web Filter", "Restricted content",
                                     "Request rejected"])
            body = (f"<html><head><title>{title}</title></head><body><h1>{title}</h1>"
                    f"<p>The site {name} is not available on this network ({word(self.rng)} policy "
                    f"{self.rng.randrange(100, 999)}).</p></body></html>\n")
            status = self.rng.choice(["403 Forbidden", "200 OK", "451 Unavailable For Legal Reasons"])
            page = (f"HTTP/1.1 {status}\r\nContent-Type: text/html\r\nContent-Length: {len(body)}\r\n"
                    f"Connection: close\r\n\r\n{body}")
            self.rule(f"generic-page-{proto}", port, [name], trigger="tls_sni" if proto == "tls" else "http_host",
                      forward_trigger=not in_path, after="block" if in_path else "pass", delay_ms=p["delay_ms"],
                      inject=[self.spec("client", "PA", p, payload_text=page), self.spec("client", "FA", p)])
            self.flow(label=f"generic-page-{proto}", category="block_page", pattern="block_page", provider=None,
                      ip_version=self.version(), transport="tcp", protocol=proto, server_host=self.host(), port=port,
                      sni=name, client=self.tls_client() if proto == "tls" else "curl",
                      trigger="tls_sni" if proto == "tls" else "http_host",
                      injector=dict(p, page=f"generic {status}", mode="in-path" if in_path else "on-path"),
                      client_ok=proto == "http", expect_fire=True,
                      description=f"an unknown vendor's block page ({status}) on {proto}")

    def alerts_and_blackholes(self) -> None:
        """Injected TLS alerts and TCP blackholes."""
        for _ in range(2):
            p = self.box_params()
            desc = self.rng.choice([40, 49, 80, 112])
            after = self.rng.choice(["RA", "FA", None])
            port, name = self.tls_port(), self.name("blocked")
            inject = [self.spec("client", "PA", p, payload=f"150303000202{desc:02x}")]
            if after:
                inject.append(self.spec("client", after, p))
            self.rule("alert", port, [name], forward_trigger=False, after="block", delay_ms=p["delay_ms"],
                      inject=inject)
            self.flow(label="alert", category="tls_alert_injection", pattern="tls_alert_injection", provider=None,
                      ip_version=self.version(), transport="tcp", protocol="tls", server_host=self.host(), port=port,
                      sni=name, client=self.tls_client(), trigger="tls_sni",
                      injector=dict(p, alert_description=desc, then=after), expect_fire=True,
                      description=f"in-line fatal alert {desc} then {after or 'nothing'}")
        port, name = self.tls_port(), self.name("blocked")
        self.rule("blackhole", port, [name], forward_trigger=False, after="blackhole")
        host = self.host()
        for ver in (4, 6):
            self.flow(label=f"blackhole-v{ver}", category="blackhole", pattern="blackhole", provider=None,
                      ip_version=ver, transport="tcp", protocol="tls", server_host=host, port=port, sni=name,
                      client=self.rng.choice(["python", "curl"]), trigger="tls_sni",
                      injector={"mode": "in-path", "after": "every client payload segment dropped",
                                "server_idle_close_s": 10 if self.servers[("tcp", port)].kind == "py_https" else None},
                      timeout=6.0,
                      expect_fire=True, description="ClientHello dropped for good (TCP handshake completes)")

    def alt_svc_origin(self, udp_ports: list[int]) -> int:
        """A TLS-over-TCP server whose responses announce HTTP/3 on ``udp_ports`` (Alt-Svc); its TCP port."""
        key = tuple(udp_ports)
        if key in self.origins:
            return self.origins[key]
        if udp_ports[0] in self.free_tls and ("tcp", udp_ports[0]) not in self.servers:
            port = udp_ports[0]  # h3 on the same port number as the TCP origin, as most sites do
            self.free_tls.remove(port)
        else:
            port = self.free_tls.pop()
        alt = ", ".join(f'h3=":{p}"; ma=86400' for p in udp_ports)
        self.servers[("tcp", port)] = Server(port, "py_https", args=["--alt-svc", alt])
        self.origins[key] = port
        return port

    def discovery(self, ver: int, host: int, udp_ports: list[int], sni: str, chain: str) -> None:
        """The HTTPS (TCP) fetch a browser makes before it tries HTTP/3: it learns Alt-Svc from it."""
        port = self.alt_svc_origin(udp_ports)
        self.flow(label=f"quic-discovery-v{ver}", category="quic_discovery", pattern=None, provider=None,
                  ip_version=ver, transport="tcp", protocol="tls", server_host=host, port=port, sni=sni,
                  client=self.rng.choice(["curl", "curl", "python"]), client_ok=True, chain=chain, expect_fire=False,
                  description=f"HTTPS over TCP to the same server address first; the response's Alt-Svc announces "
                  f"h3 on udp/{'+'.join(map(str, udp_ports))}")

    def quic(self, servers: dict[tuple[str, int], Server]) -> None:
        """QUIC as browsers use it: an HTTPS (TCP) fetch teaches Alt-Svc, then HTTP/3 is tried.

        Initial drops keyed on the decrypted SNI with residual blocking of server:port, a control,
        and hard negatives: no server on the announced port (ICMP port unreachable), a slow server,
        one lost Initial.
        """
        rng = self.rng
        qport, qport2, qnone, qslow = rng.sample(QUIC_PORT_POOL, 4)
        slow_ms = rng.randint(1000, 2000)
        for port in (qport, qport2):
            servers[("udp", port)] = Server(port, "quic", transport="udp")
        servers[("udp", qslow)] = Server(qslow, "quic", transport="udp",
                                         args=["--first-answer-delay-ms", str(slow_ms)])
        name = self.name("blocked")
        residual = rng.randint(90, 180)
        host = self.host()
        self.rule("gfw-quic", qport, [name], trigger="quic_sni", residual_s=residual)
        inj = {"mode": "in-path", "drops": "every UDP datagram of the connection", "residual_s": residual,
               "residual_key": "client ip, server ip, server port"}
        control_ver = rng.choice((4, 6))
        for ver in (4, 6):
            chain = f"quic-v{ver}"
            self.discovery(ver, host, [qport, qport2], name if rng.random() < 0.6 else self.name("www"), chain)
            items = ["drop"] + (["residual"] if ver == 4 or rng.random() < 0.5 else [])
            if ver == control_ver:
                items.insert(rng.randint(0, len(items)), "control")
            dropped = False
            for item in items:
                if item == "drop":
                    dropped = True
                    self.flow(label=f"quic-sni-drop-v{ver}", category="blackhole", pattern="blackhole",
                              provider="gfw", ip_version=ver, transport="udp", protocol="quic", server_host=host,
                              port=qport, sni=name, client="quic", trigger="quic_sni", injector=inj, chain=chain,
                              timeout=3.0, expect_fire=True,
                              description="QUIC Initial with a blocked SNI: all datagrams dropped")
                elif item == "residual":
                    self.flow(label=f"quic-residual-v{ver}", category="blackhole", pattern="blackhole",
                              provider="gfw", ip_version=ver, transport="udp", protocol="quic", server_host=host,
                              port=qport, sni=self.name("allowed"), client="quic", trigger="quic_residual",
                              injector=inj, chain=chain, timeout=3.0, expect_fire=False,
                              description="an allowed name to the same server:port within the residual window: "
                              "dropped")
                else:
                    port = qport2 if dropped else qport
                    self.flow(label=f"quic-control-v{ver}", category="control", pattern=None, provider=None,
                              ip_version=ver, transport="udp", protocol="quic", server_host=host, port=port,
                              sni=self.name("allowed"), client="quic", client_ok=True, chain=chain, timeout=8.0,
                              expect_fire=False,
                              description="QUIC with an allowed name, "
                              + ("after the drop, to the other announced port: completes" if dropped else
                                 "before any drop on that server:port: completes"))
        # hard negatives, each after its own discovery
        h, ver, n = self.host(), self.version(), self.name("www")
        self.discovery(ver, h, [qnone], n, "quic-noserver")
        self.flow(label="quic-no-server", category="quic_no_server", pattern=None, provider=None, ip_version=ver,
                  transport="udp", protocol="quic", server_host=h, port=qnone, sni=n, client="quic",
                  hard_negative=True, chain="quic-noserver", timeout=3.0, expect_fire=False,
                  injector={"server": f"nothing listens on udp/{qnone}; the server's kernel answers ICMP port "
                            "unreachable, forwarded by the router"},
                  description="HTTP/3 announced on a port with no QUIC server: ICMP port unreachable")
        h, ver, n = self.host(), self.version(), self.name("www")
        self.discovery(ver, h, [qslow], n, "quic-slow")
        self.flow(label="quic-slow-server", category="slow_server", pattern=None, provider=None, ip_version=ver,
                  transport="udp", protocol="quic", server_host=h, port=qslow, sni=n, client="quic", client_ok=True,
                  hard_negative=True, chain="quic-slow", timeout=10.0, expect_fire=False,
                  injector={"server_delay_ms": slow_ms},
                  description=f"a slow QUIC server: first answer {slow_ms} ms after the first Initial")
        h, ver, n = self.host(), self.version(), self.name("www")
        self.rule("quic-lost-initial", qport2, [n], trigger="quic_drop_once")
        self.discovery(ver, h, [qport, qport2], n, "quic-lost")
        self.flow(label="quic-lost-initial", category="packet_loss", pattern=None, provider=None, ip_version=ver,
                  transport="udp", protocol="quic", server_host=h, port=qport2, sni=n, client="quic",
                  client_ok=True, hard_negative=True, chain="quic-lost", timeout=8.0, expect_fire=True,
                  injector={"impairment": "the client's first Initial datagram dropped once"},
                  description="packet loss: the first Initial is lost, the retransmission is answered")

    def split_hello(self) -> None:
        """A single-segment DPI that fails open when the hello spans two segments."""
        p = self.reset_params("generic")
        port, name = self.tls_port(), self.name("blocked")
        self.reset_rule("single-segment-dpi", port, [name], p, "tls_sni")
        for ver in self.rng.sample([4, 6], self.rng.randint(1, 2)):
            self.flow(label=f"split-hello-failopen-v{ver}", category="split_hello_failopen", pattern=None,
                      provider=None, ip_version=ver, transport="tcp", protocol="tls", server_host=self.host(),
                      port=port, sni=name, client="python", filler_alpn=30, client_ok=True, hard_negative=True,
                      injector=None, expect_fire=False,
                      description="blocked name, but the hello spans two segments: the box does not act")

    def proxy_port(self) -> int:
        """A TLS port with a genuine server that only a proxy's own flows (and bypass controls) use."""
        port = self.free_tls.pop()
        self.servers[("tcp", port)] = Server(port, self.rng.choice(["py_https", "node_https"]))
        self.proxy_ports.add(port)
        return port

    def proxies(self) -> list[Proxy]:
        """Transparent TLS interception: two sslsplit instances (TLS 1.2) and a TLS 1.3 capable proxy.

        Each takes over 1-2 ports of 1-2 server addresses (policy routing, the proxy answers as the
        server's address); the same addresses' other ports and the same ports of other addresses
        reach the real server (bypass controls, run in random order with the intercepted flows).
        """
        out = []
        rng = self.rng
        for i, software in enumerate(("sslsplit", "sslsplit", "tls_intercept_proxy")):
            org = word(rng, 2).capitalize() + " " + rng.choice(["Networks", "Systems", "Labs", "Group",
                                                                "Technologies", "Holdings"])
            cn = f"{org} {rng.choice(['Root', 'Trust', 'Gateway', 'Edge'])} {rng.choice(['CA', 'Authority'])}"
            cn += f" {rng.choice(['R1', 'G2', '2021', 'X3', ''])}".rstrip()
            ports = [self.proxy_port() for _ in range(1 if software != "sslsplit" else rng.randint(1, 2))]
            hosts = rng.sample(self.hosts[:12], rng.randint(1, 2))
            proxy = Proxy(i, software, {"O": org, "CN": cn}, hosts, ports)
            out.append(proxy)
            trusted = rng.randrange(3)
            for k in range(3):
                trusts = k == trusted
                client = rng.choice(["python", "curl"] if software == "sslsplit" else ["python", "curl", "node"])
                self.flow(label=f"proxy{i}-{'trusted' if trusts else 'untrusted'}",
                          category="certificate_substitution", pattern="certificate_substitution", provider=None,
                          ip_version=self.version(), transport="tcp", protocol="tls", server_host=rng.choice(hosts),
                          port=rng.choice(ports), sni=self.browse_name(), client=client, client_ok=trusts,
                          trust=f"proxy:{i}" if trusts else "lab",
                          injector={"software": "sslsplit (Debian), tproxy NAT engine" if software == "sslsplit"
                                    else "programs/tls_intercept_proxy.py (IP_TRANSPARENT)",
                                    "ca": {"O": org, "CN": cn}, "client_trusts_proxy_ca": trusts, "tls": proxy.tls,
                                    "transparent": True, "intercepts_ports": ports,
                                    "intercepts_addresses": [a for h in hosts for a in (v4(h), v6(h))]},
                          description=f"transparent {software} (answers as the server's address), leaf minted from "
                          f"its own CA, {proxy.tls}; "
                          + ("a corporate client that has the proxy CA installed" if trusts else
                             "the client does not trust that CA and aborts"))
            self.flow(label=f"proxy{i}-bypass-port", category="control", pattern=None, provider=None,
                      ip_version=self.version(), transport="tcp", protocol="tls", server_host=rng.choice(hosts),
                      port=self.tls_port(), sni=self.browse_name(), client=self.tls_client(), client_ok=True,
                      expect_fire=False, description="a server address a proxy intercepts, on a port it does not "
                      "intercept: the real server")
            others = [h for h in self.hosts[:12] if h not in hosts]
            if rng.random() < 0.6:
                self.flow(label=f"proxy{i}-bypass-address", category="control", pattern=None, provider=None,
                          ip_version=self.version(), transport="tcp", protocol="tls", server_host=rng.choice(others),
                          port=rng.choice(ports), sni=self.browse_name(), client=self.tls_client(), client_ok=True,
                          expect_fire=False, description="a port a proxy intercepts, on a server address it does "
                          "not intercept: the real server")
        return out

    def negatives(self, ttl_wander: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, str]]]:
        """Hard negatives (pattern null) that look like interception."""
        rng = self.rng
        # self-signed admin panels
        selfsigned: list[dict[str, str]] = []
        for i in range(3):
            port = self.free_admin.pop()
            cn = rng.choice(["localhost", f"{word(rng, 2)}.local", f"{word(rng)}-nas", "192.168.1.1",
                             f"{word(rng, 2)}.lan"])
            selfsigned.append({"CN": cn, "O": rng.choice(["", word(rng, 2).capitalize()])})
            self.servers[("tcp", port)] = Server(port, "py_https", cert=f"selfsigned:{i}")
            self.flow(label="self-signed-admin", category="self_signed", pattern=None, provider=None,
                      ip_version=self.version(), transport="tcp", protocol="tls", server_host=self.host(), port=port,
                      sni=self.name("admin"), client=rng.choice(["python", "curl"]), max_tls=rng.choice(["1.2", None]),
                      hard_negative=True, description=f"self-signed admin panel (CN {cn}); the client aborts")
        # a private CA for several names of one organisation
        org = word(rng, 2).capitalize() + " " + rng.choice(["GmbH", "Inc", "Ltd", "AG", "S.A."])
        ca_cn = f"{org} Internal {rng.choice(['Root CA', 'CA', 'Issuing CA'])}"
        # one organisation's names under its own domain (like *.corp-internal.test)
        org_domain = f"{org.split()[0].lower()}-{rng.choice(['internal', 'corp', 'intra', 'office'])}.test"
        org_doc: dict[str, Any] = {"O": org, "CN": ca_cn, "domain": org_domain, "names": []}
        for i, sub in enumerate(rng.sample(["vpn", "git", "grafana", "intranet", "jira", "nas", "mail"], 3)):
            port = self.free_admin.pop()
            n = f"{sub}.{org_domain}"
            org_doc["names"].append(n)
            self.servers[("tcp", port)] = Server(port, "py_https", cert=f"org:{i}")
            trusts = i == 0 and rng.random() < 0.5
            self.flow(label="private-ca", category="private_ca", pattern=None, provider=None,
                      ip_version=self.version(), transport="tcp", protocol="tls", server_host=self.host(), port=port,
                      sni=n, client=rng.choice(["python", "curl"]), max_tls="1.2", hard_negative=True,
                      client_ok=trusts, trust="org" if trusts else "lab",
                      description=f"private CA of {org} signing {n}; "
                      + ("an employee's client trusts it" if trusts else "the client does not trust it (unknown_ca)"))
        # a server that resets unknown names itself
        port = self.free_tls.pop()
        known = self.name("www")
        self.servers[("tcp", port)] = Server(port, "gate", args=["--known-sni", known, "--unknown-sni", "rst"])
        host = self.host()
        for ver in (4, 6):
            self.flow(label=f"server-rst-unknown-v{ver}", category="server_rst_unknown_sni", pattern=None,
                      provider=None, ip_version=ver, transport="tcp", protocol="tls", server_host=host, port=port,
                      sni=self.name("unknown"), client=self.tls_client(), hard_negative=True,
                      description="the server itself resets a name it does not serve")
        self.flow(label="server-known-sni", category="control", pattern=None, provider=None,
                  ip_version=self.version(), transport="tcp", protocol="tls", server_host=host, port=port, sni=known,
                  client=self.tls_client(), client_ok=True, description="the same server, a name it serves")
        # TLS to a plain-HTTP port
        port = self.free_http.pop()
        self.servers[("tcp", port)] = Server(port, "node_http")
        self.flow(label="tls-to-http-port", category="tls_to_http", pattern=None, provider=None,
                  ip_version=self.version(), transport="tcp", protocol="tls", server_host=self.host(), port=port,
                  sni=self.name(), client="python", hard_negative=True,
                  description="a TLS client to a plain-HTTP server: 400 Bad Request in plaintext")
        # slow servers
        for _ in range(2):
            port = self.free_tls.pop()
            delay = rng.randint(300, 1500)
            self.servers[("tcp", port)] = Server(port, "gate", args=["--known-sni", "*", "--answer-delay-ms",
                                                                      str(delay)])
            self.flow(label="slow-server", category="slow_server", pattern=None, provider=None,
                      ip_version=self.version(), transport="tcp", protocol="tls", server_host=self.host(), port=port,
                      sni=self.name(), client=self.tls_client(), client_ok=True, hard_negative=True,
                      injector={"server_delay_ms": delay}, description=f"the server answers after {delay} ms")
        # packet loss: the hello dropped once, then delivered
        for _ in range(2):
            port, name = self.tls_port(), self.name()
            self.rule("lossy-link", port, [name], forward_trigger=False, after="pass")
            self.flow(label="packet-loss", category="packet_loss", pattern=None, provider=None,
                      ip_version=self.version(), transport="tcp", protocol="tls", server_host=self.host(), port=port,
                      sni=name, client=self.tls_client(), client_ok=True, hard_negative=True, expect_fire=True,
                      injector={"impairment": "first transmission of the ClientHello dropped"},
                      description="packet loss: the hello is retransmitted and answered")
        # a path whose TTL wanders by 1-2, to a server that resets unknown names
        port = self.free_tls.pop()
        known = self.name("www")
        self.servers[("tcp", port)] = Server(port, "gate", args=["--known-sni", known, "--unknown-sni", "rst"])
        host = self.host()
        max_extra = rng.choice([1, 2])
        for addr in (v4(host), v6(host)):
            ttl_wander.append({"server": addr, "port": port, "max_extra": max_extra, "seed": rng.randrange(1 << 30)})
        for ver, sni, label in ((4, self.name("unknown"), "wander-rst-unknown"),
                                (6, self.name("unknown"), "wander-rst-unknown"),
                                (self.version(), known, "wander-known")):
            ok = sni == known
            self.flow(label=f"{label}-v{ver}", category="ttl_wander", pattern=None, provider=None, ip_version=ver,
                      transport="tcp", protocol="tls", server_host=host, port=port, sni=sni, client=self.tls_client(),
                      client_ok=ok, hard_negative=True, injector={"ttl_wander_extra_hops": f"0..{max_extra}"},
                      description="server TTL wanders by up to "
                      f"{max_extra} hop(s) per packet; the server " + ("serves this name" if ok else "resets it"))
        return org_doc, selfsigned

    def draw(self) -> Draw:
        """The whole seed."""
        quic_servers: dict[tuple[str, int], Server] = {}
        ttl_wander: list[dict[str, Any]] = []
        self.resets()
        self.same_box()
        self.block_pages()
        self.alerts_and_blackholes()
        self.quic(quic_servers)
        self.split_hello()
        proxies = self.proxies()
        org, selfsigned = self.negatives(ttl_wander)
        self.servers.update(quic_servers)
        return Draw(self.seed, self.link, self.servers, self.rules, self.flows, proxies, ttl_wander, org, selfsigned,
                    self.browse_domains)


# -- certificates -------------------------------------------------------------------------------------


def openssl(args: Sequence[str], cwd: Path) -> None:
    """Run the openssl CLI in ``cwd``."""
    res = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise LabError(f"openssl {' '.join(args)}: {res.stderr}")


def subj(d: dict[str, str]) -> str:
    """``/O=../CN=..`` from a dict (empty values left out)."""
    return "".join(f"/{k}={v}" for k, v in d.items() if k in ("O", "CN") and v)


def make_ca(cwd: Path, stem: str, name: dict[str, str]) -> tuple[Path, Path]:
    """A self-signed CA (EC P-256): (cert, key)."""
    cwd.mkdir(parents=True, exist_ok=True)
    openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", f"{stem}.key"], cwd)
    openssl(["req", "-x509", "-new", "-key", f"{stem}.key", "-subj", subj(name), "-days", "3650", "-sha256",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-out", f"{stem}.pem"], cwd)
    return cwd / f"{stem}.pem", cwd / f"{stem}.key"


def make_leaf(cwd: Path, stem: str, cn: str, sans: list[str], ca: tuple[Path, Path] | None,
              org: str = "") -> tuple[Path, Path]:
    """A leaf for ``sans`` signed by ``ca`` (or self-signed): (chain file, key)."""
    cwd.mkdir(parents=True, exist_ok=True)
    openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", f"{stem}.key"], cwd)
    san = ",".join(f"IP:{s}" if s.replace(".", "").isdigit() else f"DNS:{s}" for s in sans)
    name = subj({"O": org, "CN": cn})
    if ca is None:
        openssl(["req", "-x509", "-new", "-key", f"{stem}.key", "-subj", name, "-days", "825", "-sha256",
                 "-addext", f"subjectAltName={san}", "-out", f"{stem}.pem"], cwd)
        return cwd / f"{stem}.pem", cwd / f"{stem}.key"
    openssl(["req", "-new", "-key", f"{stem}.key", "-subj", name, "-out", f"{stem}.csr"], cwd)
    (cwd / f"{stem}.ext").write_text(f"basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                                     f"extendedKeyUsage=serverAuth\nsubjectAltName={san}\n")
    openssl(["x509", "-req", "-in", f"{stem}.csr", "-CA", str(ca[0]), "-CAkey", str(ca[1]), "-set_serial",
             "0x" + os.urandom(8).hex(), "-days", "825", "-sha256", "-extfile", f"{stem}.ext", "-out",
             f"{stem}.pem"], cwd)
    return cwd / f"{stem}.pem", cwd / f"{stem}.key"


# -- running --------------------------------------------------------------------------------------------


@dataclass
class Material:
    """Certificates and keys of one run."""

    lab: pkimod.Pki
    org_ca: Path
    org_leaves: list[tuple[Path, Path]]
    selfsigned: list[tuple[Path, Path]]
    proxy_cas: list[tuple[Path, Path]]


def make_material(work: Path, d: Draw) -> Material:
    """Generate every certificate the draw needs."""
    # the real servers' certificate covers the lab domain and the browsing domains (a shared CDN certificate)
    names = [f"*.{DOMAIN}", DOMAIN] + [n for dom in d.browse_domains for n in (dom, f"*.{dom}")]
    lab = pkimod.make_pki(work / "pki", names, [])
    org_ca = make_ca(work / "org", "org-ca", {"O": d.org["O"], "CN": d.org["CN"]})
    org_leaves = [make_leaf(work / "org", f"leaf{i}", n, [n], org_ca, d.org["O"]) for i, n in enumerate(d.org["names"])]
    selfsigned = [make_leaf(work / "self", f"ss{i}", s["CN"], [s["CN"]], None, s["O"])
                  for i, s in enumerate(d.selfsigned)]
    proxy_cas = [make_ca(work / f"proxy{p.index}", "ca", p.ca_name) for p in d.proxies]
    return Material(lab, org_ca[0], org_leaves, selfsigned, proxy_cas)


def server_argv(s: Server, m: Material) -> list[str]:
    """The command line of one server program."""
    if s.cert.startswith("selfsigned:"):
        chain, key = m.selfsigned[int(s.cert.split(":")[1])]
    elif s.cert.startswith("org:"):
        chain, key = m.org_leaves[int(s.cert.split(":")[1])]
    else:
        chain, key = m.lab.fullchain, m.lab.leaf_key
    py = sys.executable
    if s.kind == "py_https":
        return [py, str(PROGRAMS / "py_https_server.py"), "--port", str(s.port), "--cert", str(chain), "--key",
                str(key), *s.args]
    if s.kind == "node_https":
        return ["node", str(PROGRAMS / "node_https_server.js"), str(s.port), str(chain), str(key)]
    if s.kind == "gate":
        return [py, str(PROGRAMS / "tcp_gate_server.py"), "--port", str(s.port), "--cert", str(chain), "--key",
                str(key), *s.args]
    if s.kind == "http":
        return [py, "-m", "http.server", str(s.port), "--bind", "::", "--directory", str(PROGRAMS)]
    if s.kind == "node_http":
        return ["node", str(PROGRAMS / "node_http_server.js"), str(s.port)]
    if s.kind == "quic":
        hosts = [a for n in [2, *SERVER_POOL] for a in ("--host", v4(n), "--host", v6(n))]
        return [py, str(PROGRAMS / "quic_server.py"), "--port", str(s.port), "--cert", str(chain), "--key", str(key),
                *hosts, *s.args]
    raise ValueError(s.kind)


class Ports:
    """Fresh local ports for clients that take one (curl, the QUIC client)."""

    def __init__(self, start: int) -> None:
        self.next = start
        self.lock = threading.Lock()

    def take(self) -> int:
        """One unused port."""
        with self.lock:
            self.next += 1
            return self.next


def client_argv(f: Flow, m: Material, ports: Ports) -> tuple[list[str], int | None]:
    """The client command of one flow, and the local port when the lab chooses it."""
    ca = str(m.lab.root_cert)
    if f.trust.startswith("proxy:"):
        ca = str(m.proxy_cas[int(f.trust.split(":")[1])][0])
    elif f.trust == "org":
        ca = str(m.org_ca)
    ip = f.server_ip
    sni = f.sni or ""
    if f.client == "quic":
        port = ports.take()
        return [sys.executable, str(PROGRAMS / "quic_probe_client.py"), "--host", ip, "--port", str(f.port), "--sni",
                sni, "--local-port", str(port), "--ca", ca, "--timeout", str(f.timeout)], port
    if f.client == "curl":
        port = ports.take()
        scheme = "http" if f.protocol == "http" else "https"
        addr = f"[{ip}]" if ":" in ip else ip
        argv = ["curl", "-sS", "-v", "--max-time", str(f.timeout), "--local-port", str(port), "--cacert", ca,
                "--resolve", f"{sni}:{f.port}:{addr}", "-o", "/dev/null"]
        if f.max_tls == "1.2":
            argv += ["--tls-max", "1.2"]
        return [*argv, f"{scheme}://{sni}:{f.port}/"], port
    if f.client == "node":
        return ["node", str(PROGRAMS / "node_tls_probe.js"), ip, str(f.port), sni, ca, str(int(f.timeout * 1000))], None
    argv = [sys.executable, str(PROGRAMS / "tls_probe_client.py"), "--host", ip, "--port", str(f.port), "--sni", sni,
            "--timeout", str(f.timeout)]
    if f.protocol == "http":
        argv.append("--plain")
    else:
        argv += ["--ca", ca]
    if f.max_tls:
        argv += ["--max-version", f.max_tls]
    if f.filler_alpn:
        argv += ["--alpn", "http/1.1", "--filler-alpn", str(f.filler_alpn)]
    return argv, None


def run_flow(lab: Lab, f: Flow, m: Material, ports: Ports, logs: Path) -> dict[str, Any]:
    """Run one flow's client; return its report (local address, ok, error)."""
    argv, port = client_argv(f, m, ports)
    res = lab.run_in(CLIENT_NS, argv, check=False, timeout=f.timeout + 20)
    (logs / f"client-{f.name}.log").write_text(f"$ {' '.join(argv)}\nrc {res.returncode}\n{res.stdout}\n"
                                                f"{res.stderr}\n")
    if port is not None:
        ok = res.returncode == 0
        if f.client == "quic":
            lines = [json.loads(x) for x in res.stdout.splitlines() if x.startswith("{")]
            err = (lines[-1].get("error") if lines else res.stderr[-200:]) or ""
        else:
            err = "" if ok else (res.stderr.strip().splitlines() or [""])[-1]
        return {"local_ip": f.client_ip, "local_port": port, "ok": ok, "error": err or None,
                "command": " ".join(argv)}
    lines = [json.loads(x) for x in res.stdout.splitlines() if x.startswith("{")]
    if not lines or lines[-1].get("local_port") is None:
        return {"local_ip": None, "local_port": None, "ok": False, "error": f"no report: {res.stderr[-300:]}",
                "command": " ".join(argv)}
    rep = lines[-1]
    return {"local_ip": rep.get("local_ip"), "local_port": int(rep["local_port"]), "ok": bool(rep.get("ok")),
            "error": rep.get("error"), "command": " ".join(argv)}


def canon(ip: str | None) -> str | None:
    """Canonical text of an address (``::ffff:`` mapped IPv4 unwrapped)."""
    if not ip:
        return ip
    a = ipaddress.ip_address(ip)
    if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped:
        return str(a.ipv4_mapped)
    return str(a)


def setup_tproxy(lab: Lab, proxies: list[Proxy]) -> list[list[Any]]:
    """Policy routing that hands the intercepted (address, port) pairs to local transparent listeners.

    No netfilter: ``ip rule iif eth-client to ADDR ipproto tcp dport PORT lookup 100`` plus
    ``local 0.0.0.0/0`` / ``local ::/0`` routes in table 100 make the router's kernel deliver
    those client SYNs locally, where the proxy's ``IP_TRANSPARENT`` socket accepts them as the
    server's address; the middlebox leaves the same pairs (``local_dsts``) to the kernel.
    Returns ``local_dsts``.
    """
    lab.sysctl(ROUTER_NS, "net.ipv6.bindv6only=1")  # [::]:PORT and 0.0.0.0:PORT listeners side by side
    lab.run_in(ROUTER_NS, ["ip", "-4", "route", "add", "local", "0.0.0.0/0", "dev", "lo", "table", TPROXY_TABLE])
    lab.run_in(ROUTER_NS, ["ip", "-6", "route", "add", "local", "::/0", "dev", "lo", "table", TPROXY_TABLE])
    dsts: list[list[Any]] = []
    prio = 100
    for p in proxies:
        for addr, port in p.dsts():
            fam, plen = ("-6", 128) if ":" in addr else ("-4", 32)
            lab.run_in(ROUTER_NS, ["ip", fam, "rule", "add", "iif", ROUTER_CLIENT_IF, "to", f"{addr}/{plen}",
                                   "ipproto", "tcp", "dport", str(port), "lookup", TPROXY_TABLE, "priority", str(prio)])
            prio += 1
            dsts.append([addr, port])
    return dsts


def start_proxy(lab: Lab, p: Proxy, ca: tuple[Path, Path], root: Path, work: Path, logs: Path) -> None:
    """One transparent proxy in the router: sslsplit (tproxy engine, TLS 1.2) or tls_intercept_proxy.py."""
    if p.software == "sslsplit":
        argv = ["sslsplit", "-D", "-u", "root", "-r", "tls12", "-k", str(ca[1]), "-c", str(ca[0]),
                "-l", str(logs / f"proxy{p.index}.connect.log")]
        for port in p.ports:
            argv += ["ssl", "0.0.0.0", str(port), "tproxy", "ssl", "::", str(port), "tproxy"]
    else:
        argv = [sys.executable, "-u", str(PROGRAMS / "tls_intercept_proxy.py"), "--ca-cert", str(ca[0]),
                "--ca-key", str(ca[1]), "--workdir", str(work / f"proxy{p.index}-leaves"), "--upstream-ca", str(root),
                "--ipv6", "--leaf-org", p.ca_name["O"]]
        for port in p.ports:
            argv += ["--port", str(port)]
    log = (logs / f"proxy{p.index}.log").open("w")
    lab.spawn_in(ROUTER_NS, argv, stdout=log, stderr=subprocess.STDOUT)
    for port in p.ports:
        lab.wait_for_listen(ROUTER_NS, port)


def proxy_evidence(f: Flow, rep: dict[str, Any], p: Proxy, logs: Path) -> tuple[dict[str, Any] | None, list[str]]:
    """What the proxy logged for this flow (the original destination it connected upstream to)."""
    port, dst = rep["local_port"], (canon(f.server_ip), f.port)
    if p.software == "sslsplit":
        path = logs / f"proxy{p.index}.connect.log"
        lines = path.read_text().splitlines() if path.exists() else []
        for line in lines:
            parts = line.split()
            # 2026-01-01 00:00:00 UTC ssl SRC SPORT DST DPORT sni:... (written once both legs are up)
            if len(parts) > 7 and parts[4] == str(canon(rep["local_ip"])) and parts[5] == str(port):
                if (canon(parts[6]), int(parts[7])) != dst:
                    return None, [f"{f.name}: sslsplit went to {parts[6]}:{parts[7]}, not {dst}"]
                return {"proxy_log": " ".join(parts[3:])}, []
        debug = (logs / f"proxy{p.index}.log").read_text()
        target = f"Connecting to [{dst[0]}]:{dst[1]}"
        if f.client_ok:
            return None, [f"{f.name}: no sslsplit connection log line for client port {port}"]
        if target not in debug:
            return None, [f"{f.name}: sslsplit never connected upstream to {dst}"]
        return {"proxy_log": f"{target} (client aborted, no connection log line)"}, []
    for line in (logs / f"proxy{p.index}.log").read_text().splitlines():
        if not line.startswith('{"client"'):
            continue
        doc = json.loads(line)
        if doc["client"][1] != port:
            continue
        if (canon(doc["original_dst"][0]), doc["original_dst"][1]) != dst:
            return None, [f"{f.name}: proxy saw original destination {doc['original_dst']}, not {dst}"]
        if f.client_ok and "upstream_local" not in doc:
            return None, [f"{f.name}: the proxy made no upstream connection ({doc.get('error')})"]
        return {"proxy_log": doc}, []
    return None, [f"{f.name}: the proxy logged nothing for client port {port}"]


def wait_udp(lab: Lab, port: int, timeout: float = 20.0) -> None:
    """Block until a UDP socket in the server namespace is bound to ``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lab.run_in(SERVER_NS, ["ss", "-Hlun", f"sport = :{port}"], check=False).stdout.strip():
            return
        time.sleep(0.1)
    raise LabError(f"nothing bound udp/{port} in the server namespace")


def flow_label(f: Flow, rep: dict[str, Any], d: Draw) -> dict[str, Any]:
    """The label of one flow: the scenario drawn, plus the client's own report."""
    doc = asdict(f)
    for k in ("server_host", "chain", "filler_alpn", "max_tls", "trust", "timeout", "expect_fire", "no_timestamps"):
        doc.pop(k)
    doc.update(
        server_ip=f.server_ip,
        server_port=f.port,
        client_ip=canon(rep["local_ip"]),
        client_port=rep["local_port"],
        http_host=f.sni if f.protocol == "http" else None,
        sni=f.sni if f.protocol != "http" else None,
        client_tls_max=f.max_tls,
        client_trusts=f.trust,
        client_tcp_timestamps=not f.no_timestamps,
        hello_split_alpn_filler=f.filler_alpn or None,
        client_reported={"ok": rep["ok"], "error": rep["error"]},
        client_command=rep["command"],
    )
    return doc


def check_flow(f: Flow, rep: dict[str, Any], events: list[dict[str, Any]]) -> list[str]:
    """Did the lab do what the scenario says (rule fired or not, client succeeded or not)?"""
    problems = []
    if rep["local_port"] is None:
        return [f"{f.name}: client gave no local address ({rep['error']})"]
    if rep["ok"] != f.client_ok:
        problems.append(f"{f.name}: client ok={rep['ok']}, scenario expects {f.client_ok} ({rep['error']})")
    fired = [e for e in events if e.get("event") == "trigger"]
    if f.expect_fire is True and not fired:
        problems.append(f"{f.name}: the middlebox rule did not fire")
    if f.expect_fire is False and fired:
        problems.append(f"{f.name}: a middlebox rule fired on a flow it must not touch")
    if f.trigger == "quic_residual" and not any(e.get("why") == "quic residual" for e in events):
        problems.append(f"{f.name}: no residual drop seen")
    return problems


def run_seed(seed: int, out: Path, verbose: bool = False) -> Path:
    """Build the lab, record one seed, write the capture and labels; return the labels path."""
    t0 = time.monotonic()
    d = Drawer(seed).draw()
    out.mkdir(parents=True, exist_ok=True)
    pcap = out / f"random-{seed}.pcap"
    labels_path = out / f"random-{seed}.labels.json"
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    mk.LINK_DELAY_MS = d.link_delay_ms  # read when MiddleboxProc builds its command line
    with tempfile.TemporaryDirectory(prefix=f"tlsprobe-random-{seed}-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)
        logs = work / "logs"
        logs.mkdir()
        m = make_material(work, d)
        # the real servers' root stands for the public PKI (a real server's chain leads to
        # a root in certifi's bundle); analyses pass it as --trust, the proxies' and the
        # private organisation's CAs stay untrusted
        shutil.copyfile(m.lab.root_cert, out / f"random-{seed}.public-root.pem")
        lab = Lab(verbose=verbose, prefix=f"tr{seed % 100000}")
        problems: list[str] = []
        reports: dict[str, dict[str, Any]] = {}
        try:
            lab.setup()
            lab.sysctl(ROUTER_NS, "net.ipv4.ip_forward=0", "net.ipv6.conf.all.forwarding=0")
            for n in SERVER_POOL:
                lab.run_in(SERVER_NS, ["ip", "addr", "add", f"{v4(n)}/24", "dev", SERVER_IF])
                lab.run_in(SERVER_NS, ["ip", "-6", "addr", "add", f"{v6(n)}/64", "dev", SERVER_IF, "nodad"])
            local_dsts = setup_tproxy(lab, d.proxies)
            mbox = mk.MiddleboxProc(lab, work / "rules.json", logs / "middlebox.log")
            doc = {"rules": d.rules, "local_ports": [], "local_dsts": local_dsts, "ttl_wander": d.ttl_wander}
            mbox.rules_path.write_text(json.dumps(doc, indent=1))
            mbox.proc.send_signal(signal.SIGHUP)
            mbox.wait_event("reloaded")
            for s in d.servers.values():
                with (logs / f"server-{s.transport}-{s.port}.log").open("w") as log:
                    lab.spawn_in(SERVER_NS, server_argv(s, m), stdout=log, stderr=subprocess.STDOUT)
            for p, ca in zip(d.proxies, m.proxy_cas, strict=True):
                start_proxy(lab, p, ca, m.lab.root_cert, work, logs)
            for s in d.servers.values():
                if s.transport == "udp":
                    wait_udp(lab, s.port)
                else:
                    lab.wait_for_listen(SERVER_NS, s.port)
            dump = edge.start_tcpdump(lab, CLIENT_NS, CLIENT_IF, pcap)
            t_ready = time.monotonic()
            ports = Ports(20000 + (seed % 50) * 200)  # below the ephemeral range
            chains: dict[str, list[Flow]] = {}
            for f in d.flows:
                if not f.no_timestamps:
                    chains.setdefault(f.chain or f.name, []).append(f)
            units = list(chains.values())
            random.Random(seed + 1).shuffle(units)
            # blackholes first: their servers may close idle connections (py_https_server after 10 s) and
            # the capture must deterministically contain that close, whatever else the seed drew
            units.sort(key=lambda u: u[0].category != "blackhole" or u[0].transport != "tcp")

            def run_unit(index: int, unit: list[Flow]) -> None:
                time.sleep(index * STAGGER_S / 2)
                for f in unit:
                    reports[f.name] = run_flow(lab, f, m, ports, logs)

            with ThreadPoolExecutor(MAX_WORKERS) as pool:
                futures = [pool.submit(run_unit, i % MAX_WORKERS, u) for i, u in enumerate(units)]
                for fut in futures:
                    fut.result()
            # flows whose client has TCP timestamps off: the sysctl is per namespace, so they run alone
            lab.sysctl(CLIENT_NS, "net.ipv4.tcp_timestamps=0")
            try:
                for f in d.flows:
                    if f.no_timestamps:
                        reports[f.name] = run_flow(lab, f, m, ports, logs)
            finally:
                lab.sysctl(CLIENT_NS, "net.ipv4.tcp_timestamps=1")
            time.sleep(max(1.0, t_ready + BLACKHOLE_WAIT_S - time.monotonic()))
            lab.stop(dump, sig=signal.SIGINT, wait=10)
            t_flows = time.monotonic() - t_ready
            flows = []
            for f in d.flows:
                rep = reports[f.name]
                # the whole 4-tuple: a client's ephemeral port can come back in a later flow to another server
                ev = [e for e in mbox.events if rep["local_ip"] and rep["local_port"]
                      and e.get("flow", [None] * 4)[:4] == [canon(rep["local_ip"]), rep["local_port"],
                                                            canon(f.server_ip), f.port]]
                problems += check_flow(f, rep, ev)
                label = flow_label(f, rep, d)
                proxy = next((p for p in d.proxies if f.transport == "tcp" and (f.server_ip, f.port) in p.dsts()),
                             None)
                if proxy is not None and rep["local_port"]:
                    if f.pattern != "certificate_substitution":
                        problems.append(f"{f.name}: goes to an intercepted address and port but is not labelled so")
                    evidence, trouble = proxy_evidence(f, rep, proxy, logs)
                    problems += trouble
                    label["proxy"] = evidence
                flows.append(label)
        except BaseException:
            keep = Path(tempfile.mkdtemp(prefix=f"tlsprobe-random-{seed}-logs-"))
            shutil.copytree(logs, keep / "logs")
            print(f"random_lab: seed {seed} failed; logs kept in {keep}", file=sys.stderr)
            raise
        finally:
            lab.teardown()
        if problems:
            keep = out / f"random-{seed}-logs"
            shutil.rmtree(keep, ignore_errors=True)
            shutil.copytree(logs, keep)
    labels = {
        "capture": pcap.name,
        "seed": seed,
        "generated_by": "tools/lab/random_lab.py",
        "generated_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "note": "Labels come from the scenario drawn for this seed (pattern, provider, ip_version, trigger, "
        "injector parameters); client_ip/client_port and client_reported come from the client tool. Nothing "
        "is computed by tlsprobe or parsed from the capture.",
        "lab": {
            "namespaces_prefix": lab.prefix,
            "client": [CLIENT_V4, CLIENT_V6],
            "server_addresses": [f"{v4(n)} / {v6(n)}" for n in SERVER_POOL],
            "server_ttl_seen_by_client": SERVER_TTL_SEEN,
            "router_server_link_one_way_delay_ms": d.link_delay_ms,
            "proxies": [{"software": p.software, "transparent": True, "ca": p.ca_name, "tls": p.tls,
                         "intercepts": {"addresses": [a for h in p.hosts for a in (v4(h), v6(h))], "ports": p.ports},
                         "steering": f"ip rule iif {ROUTER_CLIENT_IF} to ADDR ipproto tcp dport PORT lookup "
                         f"{TPROXY_TABLE}; table {TPROXY_TABLE}: local 0.0.0.0/0 and ::/0 dev lo"}
                        for p in d.proxies],
            "browse_domains": d.browse_domains,
            "private_org_ca": d.org,
            "self_signed": d.selfsigned,
            "ttl_wander": d.ttl_wander,
            "middlebox_rules": d.rules,
        },
        "timing_s": {"total": round(time.monotonic() - t0, 1), "flows": round(t_flows, 1)},
        "lab_problems": problems,
        "flows": flows,
    }
    labels_path.write_text(json.dumps(labels, indent=1) + "\n")
    return labels_path


def preflight() -> str | None:
    """Why the lab cannot run here, or ``None``."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for prog in ("ip", "ss", "openssl", "curl", "tcpdump", "node", "sslsplit"):
        if shutil.which(prog) is None:
            return f"{prog} not found (apt-get install {'nodejs' if prog == 'node' else prog})"
    try:
        import aioquic  # noqa: F401
    except ImportError:
        return "aioquic not installed (pip install -e '.[test]')"
    res = subprocess.run(["ip", "netns", "list"], capture_output=True, check=False)
    if res.returncode != 0:
        return "ip netns does not work here"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out", type=Path, default=Path("."))
    parser.add_argument("--list", action="store_true", help="print the draw and exit")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.list:
        d = Drawer(args.seed).draw()
        for f in d.flows:
            print(f"{f.name:<34} v{f.ip_version} {f.protocol:<4} :{f.port:<5} {f.pattern or '-':<25} "
                  f"{f.provider or '-':<14} {f.description}")
        print(f"{len(d.flows)} flows, {len(d.servers)} servers, {len(d.rules)} rules")
        return 0
    why = preflight()
    if why:
        print(f"random_lab: {why}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    path = run_seed(args.seed, args.out, args.verbose)
    doc = json.loads(path.read_text())
    print(f"{path}: {len(doc['flows'])} flows in {doc['timing_s']['total']} s")
    for p in doc["lab_problems"]:
        print(f"lab problem: {p}", file=sys.stderr)
    return 1 if doc["lab_problems"] else 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
