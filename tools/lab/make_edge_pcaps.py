#!/usr/bin/env python3
"""Produce small real-traffic captures of link-layer and IP edge cases in ``pcaps/edge/``.

Run as root from the repository root::

    sudo python3 tools/lab/make_edge_pcaps.py              # every capture
    sudo python3 tools/lab/make_edge_pcaps.py --only vlan-qinq
    sudo python3 tools/lab/make_edge_pcaps.py --list

Each capture gets a fresh ``tp-client`` <-> ``tp-router`` <-> ``tp-server`` lab
(``netns.py``), a couple of real servers (``openssl s_server``, the Python ``ssl``
server in ``programs/``) on odd ports (2053, 8443, 9443) and a few real clients
(curl, ``openssl s_client``, Python ``ssl``), one after another, while ``tcpdump`` or
``dumpcap`` records. Nothing is crafted: every packet was sent by a kernel TCP/IP
stack on behalf of a real socket. What changes between captures is the lab around
the traffic (MTUs, sysctls, VLAN tags, a TUN link) and how it is recorded (link
type, timestamp precision, file format, interfaces).

For each capture the script writes ``<name>.labels.json`` from the scenario it ran
(cross-checked against what each client itself reported, never parsed from the
capture), then checks the capture with ``tshark`` (ClientHello count and SNI per
connection, negotiated version, plus what the capture is about: fragments, VLAN
tags, interfaces, link type, timestamp precision) and only installs files that
pass. ``pcaps/edge/README.md`` is rewritten from all labels files present.

Everything is torn down in ``finally``: the namespaces it created and the processes
it started (by PID). Traffic never leaves the lab's namespaces.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import make_demo_pcap as demo
import pki as pkimod
from netns import (
    CLIENT_IF,
    CLIENT_NET_V4,
    CLIENT_NS,
    ROUTER_CLIENT_IF,
    ROUTER_NS,
    ROUTER_SERVER_IF,
    ROUTER_SERVER_V4,
    SERVER_IF,
    SERVER_NS,
    SERVER_V4,
    SERVER_V6,
    Lab,
    LabError,
)

REPO = Path(__file__).resolve().parents[2]
LAB_DIR = Path(__file__).resolve().parent
PROGRAMS = LAB_DIR / "programs"
OUT_DIR = REPO / "pcaps" / "edge"
MAX_TOTAL_BYTES = 300_000

DEMO, ALT, LONG_SNI = demo.DEMO, demo.ALT, demo.LONG_SNI
TLS_PORTS = (2053, 8443, 9443)  # tshark needs "decode as TLS" on all of them
H2_H1 = ("h2", "http/1.1")
HTTP10 = demo.HTTP10
PAUSE = 0.4

# ipv4-fragments: the router's link towards the server has this MTU.
FRAG_MTU = 576
FRAG_ADVMSS = 1460

# vlan-qinq: (TPID, VID), outer first.
VLAN_DOT1Q = ((0x8100, 100),)
VLAN_QINQ = ((0x88A8, 200), (0x8100, 300))

# multi-interface: a raw-IP TUN link client <-> router, to a second server address.
TUN_CLIENT_IF = "tun0"
TUN_ROUTER_IF = "tun-client"
TUN_CLIENT_V4 = "10.77.3.2"
TUN_ROUTER_V4 = "10.77.3.1"
TUN_NET_V4 = "10.77.3.0/24"
SERVER_TUN_V4 = "10.77.4.2"
SERVER_TUN_NET_V4 = "10.77.4.0/24"

LOOPBACK_V4 = "127.0.0.1"

LINKTYPE_NAMES = {1: "EN10MB", 101: "RAW", 113: "LINUX_SLL", 276: "LINUX_SLL2"}


def filler_alpn(count: int, length: int) -> tuple[str, ...]:
    """``count`` made-up ALPN protocol names of ``length`` characters (to grow a hello)."""
    return tuple(f"x-tlsprobe-filler-{i:02d}-".ljust(length, "x") for i in range(1, count + 1))


# -- scenarios ------------------------------------------------------------------------


@dataclass(frozen=True)
class EdgeScenario(demo.Scenario):
    """A demo :class:`~make_demo_pcap.Scenario` with a free server address and labels.

    ``interface`` is the client-side interface the connection runs over;
    ``fragmented`` (when not ``None``) says whether the ClientHello is expected in
    IPv4 fragments; ``vlan_tags`` are the (TPID, VID) tags on the captured link.
    """

    server_addr: str = ""
    interface: str = CLIENT_IF
    fragmented: bool | None = None
    vlan_tags: tuple[tuple[int, int], ...] = ()

    @property
    def server_ip(self) -> str:
        """The explicit ``server_addr``, else the lab server for the IP version."""
        return self.server_addr or (SERVER_V6 if self.ip_version == 6 else SERVER_V4)


def s_client_argv(p: demo.Paths, ip: str, port: int, sni: str, *extra: str) -> tuple[str, ...]:
    """openssl s_client that verifies the chain, sends ``sni`` and waits for server close."""
    host = f"[{ip}]" if ":" in ip else ip
    return (
        "openssl",
        "s_client",
        "-connect",
        f"{host}:{port}",
        "-servername",
        sni,
        "-CAfile",
        str(p.ca),
        "-verify_return_error",
        "-ign_eof",
        "-nocommands",
        *extra,
    )


def py_argv(p: demo.Paths, ip: str, port: int, sni: str, alpn: Sequence[str] = (), *extra: str) -> tuple[str, ...]:
    """Python ssl client (``programs/py_tls_client.py``) command."""
    alpn_args = [arg for proto in alpn for arg in ("--alpn", proto)]
    return demo.py_client_argv(p, "--host", ip, "--port", str(port), "--sni", sni, *alpn_args, *extra)


# -- servers --------------------------------------------------------------------------

S_SERVER = "openssl s_server"
PY_SERVER = "python-ssl"


def server_command(key: pkimod.Pki, port: int) -> tuple[str, list[str]]:
    """(program label, argv) of the server for ``port``: 8443 s_server, else Python ssl."""
    if port == 8443:
        return S_SERVER, [
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
        ]
    return PY_SERVER, [
        sys.executable,
        str(PROGRAMS / "py_https_server.py"),
        "--port",
        str(port),
        "--cert",
        str(key.fullchain),
        "--key",
        str(key.leaf_key),
    ]


def start_servers(lab: Lab, ctx: Ctx, ns: str, ports: Sequence[int]) -> None:
    """Start the servers for ``ports`` in ``ns`` and wait until they listen."""
    for port in ports:
        _, cmd = server_command(ctx.key, port)
        with (ctx.paths.logs / f"{ctx.current}-server-{ns}-{port}.log").open("w") as log:
            lab.spawn_in(ns, cmd, stdout=log, stderr=subprocess.STDOUT)
    for port in ports:
        lab.wait_for_listen(ns, port)


# -- capture and helper processes -------------------------------------------------------


def wait_for_line(proc: subprocess.Popen[Any], stream: IO[bytes], needle: str) -> str:
    """Read ``stream`` until a line containing ``needle`` (15 s), or raise LabError.

    Reads the raw fd (no Python buffering), so several lines arriving at once are
    all seen and nothing is left in a buffer that ``select`` cannot see.
    """
    deadline = time.monotonic() + 15
    fd = stream.fileno()
    text = ""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            chunk = os.read(fd, 4096).decode(errors="replace")
            text += chunk
            for line in text.splitlines():
                if needle in line:
                    return line
            if not chunk and proc.poll() is not None:
                break
    raise LabError(f"{proc.args!r} did not print {needle!r}: {text[-1500:]}")


def start_tcpdump(lab: Lab, ns: str, iface: str, pcap: Path, *opts: str) -> subprocess.Popen[Any]:
    """Start tcpdump in ``ns`` on ``iface`` and wait until it is listening."""
    cmd = ["tcpdump", "-i", iface, *opts, "-w", str(pcap), "-s", "0", "-n", "-U", "-Z", "root"]
    proc = lab.spawn_in(ns, cmd, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    wait_for_line(proc, proc.stderr, "listening on")
    return proc


def start_dumpcap(lab: Lab, ns: str, ifaces: Sequence[str], pcapng: Path) -> subprocess.Popen[Any]:
    """Start dumpcap on several interfaces at once (pcapng) and wait until it captures."""
    cmd = ["dumpcap", "-q", "-w", str(pcapng)]
    for iface in ifaces:
        cmd += ["-i", iface, "-s", "0"]
    proc = lab.spawn_in(ns, cmd, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    wait_for_line(proc, proc.stderr, "Capturing on")
    time.sleep(0.5)  # dumpcap announces before every interface's ring is live
    return proc


def start_helper(lab: Lab, ns: str, cmd: Sequence[str]) -> subprocess.Popen[Any]:
    """Start one of ``programs/`` in ``ns`` and wait for its ``ready`` line."""
    proc = lab.spawn_in(ns, cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    wait_for_line(proc, proc.stdout, "ready")
    return proc


def vlan_tagger(lab: Lab, ns: str, iface: str, tags: Sequence[tuple[int, int]]) -> subprocess.Popen[Any]:
    """Put ``iface`` in ``ns`` on the VLAN(s) ``tags`` (see ``programs/vlan_tagger.py``)."""
    cmd = [sys.executable, str(PROGRAMS / "vlan_tagger.py"), "--iface", iface]
    for tpid, vid in tags:
        cmd += ["--tag", f"{tpid:#06x}:{vid}"]
    return start_helper(lab, ns, cmd)


# -- running scenarios and labelling --------------------------------------------------


@contextlib.contextmanager
def fresh_lab(ctx: Ctx) -> Iterator[Lab]:
    """A newly built lab, torn down (namespaces and processes) however the block ends."""
    lab = Lab(verbose=ctx.verbose)
    try:
        lab.setup()
        yield lab
    finally:
        lab.teardown()


@dataclass
class Ctx:
    """State shared by all captures of one run."""

    key: pkimod.Pki
    paths: demo.Paths
    verbose: bool
    current: str = ""


@dataclass
class Output:
    """One capture file produced by a capture function, with its labels."""

    filename: str
    path: Path
    labels: dict[str, Any]


def run_scenarios(lab: Lab, ctx: Ctx, scenarios: Sequence[EdgeScenario], first_index: int = 0) -> list[dict[str, Any]]:
    """Run scenarios one after another; return one connection label per connection."""
    conns: list[dict[str, Any]] = []
    for sc in scenarios:
        sc_logged = _with_log_name(sc, ctx)
        results = demo.run_scenario(lab, sc_logged, ctx.paths)
        demo.check_outcome(sc, results)
        for res in results:
            conns.append(connection_label(sc, res, first_index + len(conns)))
        ends = ", ".join(f"{r.local_ip}:{r.local_port}" for r in results)
        print(f"  ok  {sc.name:<24} {ends} -> {sc.server_ip}:{sc.server_port}")
        time.sleep(PAUSE)
    return conns


def _with_log_name(sc: EdgeScenario, ctx: Ctx) -> EdgeScenario:
    """Prefix the scenario name with the capture name so client logs do not collide."""
    return replace(sc, name=f"{ctx.current}-{sc.name}")


def connection_label(sc: EdgeScenario, res: demo.ConnResult, index: int) -> dict[str, Any]:
    """Label for one TCP connection, from the scenario and the client's own report."""
    label: dict[str, Any] = {
        "index": index,
        "scenario": sc.name,
        "description": sc.description,
        "client_tool": sc.client_tool,
        "client_command": " ".join(demo._portable_argv(sc.argv)),
        "server_program": sc.server_program,
        "ip_version": sc.ip_version,
        "client_ip": res.local_ip,
        "client_port": res.local_port,
        "server_ip": sc.server_ip,
        "server_port": sc.server_port,
        "sni": sc.sni,
        "alpn_offered": list(sc.alpn_offered),
        "alpn_negotiated": sc.alpn_negotiated,
        "tls_version": sc.tls_version,
        "client_hellos": 1,
        "hello_tcp_segments": 2 if sc.hello_split else 1,
        "interface": sc.interface,
    }
    if sc.fragmented is not None:
        label["fragmented"] = sc.fragmented
    if sc.vlan_tags:
        label["vlan"] = [{"tpid": f"{tpid:#06x}", "vid": vid} for tpid, vid in sc.vlan_tags]
    return label


def labels_doc(
    filename: str,
    spec: CaptureSpec,
    conns: list[dict[str, Any]],
    ctx: Ctx,
    *,
    file_format: str,
    link_types: list[dict[str, Any]],
    precision: str,
    capture_point: dict[str, Any],
    setup: dict[str, Any],
    stats: str,
) -> dict[str, Any]:
    """The complete labels document of one capture file."""
    return {
        "capture": filename,
        "generated_by": "tools/lab/make_edge_pcaps.py",
        "generated_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "exercises": spec.exercises,
        "note": "Expected values come from the scenario the script ran (cross-checked "
        "against each client's own report), not from parsing the capture. 'index' is "
        "the order of the TCP connection in the capture, equal to tshark's tcp.stream. "
        "Decode ports 2053, 8443 and 9443 as TLS.",
        "file_format": file_format,
        "link_types": link_types,
        "timestamp_precision": precision,
        "capture_point": capture_point,
        "setup": setup,
        "pki": ctx.key.describe(),
        "tools": tool_versions(),
        "capture_stats": [line for line in stats.splitlines() if line.strip()][-3:],
        "connections": conns,
    }


def tool_versions() -> dict[str, str]:
    """Versions of the programs that produced or recorded the traffic."""
    versions = demo.tool_versions()
    versions.pop("node", None)
    out = subprocess.run(["dumpcap", "--version"], capture_output=True, text=True, check=False)
    versions["dumpcap"] = (out.stdout or out.stderr).strip().splitlines()[0]
    return versions


def link(iface: str, linktype: int) -> dict[str, Any]:
    """One entry of a labels file's ``link_types``."""
    return {"interface": iface, "link_type": linktype, "name": LINKTYPE_NAMES[linktype]}


# -- the captures ---------------------------------------------------------------------


def capture_ipv4_fragments(ctx: Ctx, spec: CaptureSpec, work: Path) -> list[Output]:
    """ClientHellos that the router has to cut into IPv4 fragments (capture at the server)."""
    p = ctx.paths
    big_py = (*filler_alpn(12, 60), "http/1.1")
    big_sc = filler_alpn(30, 60)
    scenarios = [
        EdgeScenario(
            "py-tls13-frag",
            f"Python ssl, TLS 1.3, {len(big_py)} ALPN values: a ~1 KB ClientHello in "
            "one TCP segment, cut by the router into two IPv4 fragments",
            "python",
            "python ssl",
            PY_SERVER,
            9443,
            py_argv(p, SERVER_V4, 9443, DEMO, big_py),
            alpn_offered=big_py,
            alpn_negotiated="http/1.1",
            fragmented=True,
        ),
        EdgeScenario(
            "s_client-tls12-frag-split",
            f"openssl s_client, TLS 1.2, {len(LONG_SNI)}-char SNI and {len(big_sc)} ALPN "
            "values: a ~2.3 KB ClientHello over two TCP segments, each in IPv4 fragments",
            "s_client",
            "openssl s_client",
            S_SERVER,
            8443,
            s_client_argv(p, SERVER_V4, 8443, LONG_SNI, "-tls1_2", "-alpn", ",".join(big_sc)),
            sni=LONG_SNI,
            alpn_offered=big_sc,
            tls_version="TLSv1.2",
            hello_split=True,
            fragmented=True,
            stdin=HTTP10,
        ),
        EdgeScenario(
            "py-tls12-small",
            "control: Python ssl capped at TLS 1.2, no ALPN: the ClientHello fits in one "
            f"{FRAG_MTU}-byte packet and is not fragmented",
            "python",
            "python ssl",
            PY_SERVER,
            2053,
            py_argv(p, SERVER_V4, 2053, ALT, (), "--max-version", "1.2"),
            sni=ALT,
            tls_version="TLSv1.2",
            fragmented=False,
        ),
    ]
    pcap = work / spec.files[0]
    with fresh_lab(ctx) as lab:
        lab.sysctl(CLIENT_NS, "net.ipv4.ip_no_pmtu_disc=1")
        lab.set_mtu(ROUTER_NS, ROUTER_SERVER_IF, FRAG_MTU)
        server_route = [
            "ip", "route", "replace", CLIENT_NET_V4, "via", ROUTER_SERVER_V4,
            "mtu", str(FRAG_MTU), "advmss", str(FRAG_ADVMSS),
        ]  # fmt: skip
        lab.run_in(SERVER_NS, server_route)
        start_servers(lab, ctx, SERVER_NS, (8443, 9443, 2053))
        tcpdump = start_tcpdump(lab, SERVER_NS, SERVER_IF, pcap)
        time.sleep(PAUSE)
        conns = run_scenarios(lab, ctx, scenarios)
        stats = demo.stop_capture(lab, tcpdump)
    labels = labels_doc(
        spec.files[0],
        spec,
        conns,
        ctx,
        file_format="pcap",
        link_types=[link(SERVER_IF, 1)],
        precision="microsecond",
        capture_point={
            "namespace": SERVER_NS,
            "interface": SERVER_IF,
            "tool": f"tcpdump -i {SERVER_IF}",
            "why": "behind the router, so the fragments it made are on the wire",
        },
        setup={
            "client_sysctl": "net.ipv4.ip_no_pmtu_disc=1 (client sends without DF)",
            "router_mtu": {ROUTER_SERVER_IF: FRAG_MTU},
            "server_route": " ".join(server_route[3:]),
            "why_advmss": f"the server advertises MSS {FRAG_ADVMSS} although its packets "
            f"are limited to {FRAG_MTU} bytes, as when the small-MTU hop is further along "
            "the path; the client's full-size segments must then be fragmented",
        },
        stats=stats,
    )
    return [Output(spec.files[0], pcap, labels)]


def capture_vlan_qinq(ctx: Ctx, spec: CaptureSpec, work: Path) -> list[Output]:
    """TLS on an 802.1Q VLAN, then on a QinQ link, between client and router."""
    p = ctx.paths
    dot1q = [
        EdgeScenario(
            "curl-dot1q-h2",
            "curl, TLS 1.3, h2, over 802.1Q VLAN 100",
            "curl",
            "curl",
            PY_SERVER,
            9443,
            demo.curl_argv(p, DEMO, 9443, SERVER_V4, "--http2"),
            alpn_offered=H2_H1,
            alpn_negotiated="h2",
            vlan_tags=VLAN_DOT1Q,
        ),
        EdgeScenario(
            "py-ipv6-dot1q-tls12",
            "Python ssl over IPv6, TLS 1.2, over 802.1Q VLAN 100",
            "python",
            "python ssl",
            PY_SERVER,
            2053,
            py_argv(p, SERVER_V6, 2053, ALT, ("http/1.1",), "--max-version", "1.2"),
            ip_version=6,
            sni=ALT,
            alpn_offered=("http/1.1",),
            alpn_negotiated="http/1.1",
            tls_version="TLSv1.2",
            vlan_tags=VLAN_DOT1Q,
        ),
    ]
    qinq = [
        EdgeScenario(
            "s_client-qinq",
            "openssl s_client, TLS 1.3, over QinQ (802.1ad S-VLAN 200, 802.1Q C-VLAN 300)",
            "s_client",
            "openssl s_client",
            S_SERVER,
            8443,
            s_client_argv(p, SERVER_V4, 8443, DEMO, "-tls1_3"),
            vlan_tags=VLAN_QINQ,
            stdin=HTTP10,
        ),
        EdgeScenario(
            "curl-ipv6-qinq-h1",
            "curl over IPv6, TLS 1.3, http/1.1 only, over QinQ 200/300",
            "curl",
            "curl",
            PY_SERVER,
            9443,
            demo.curl_argv(p, DEMO, 9443, SERVER_V6, "-6", "--http1.1"),
            ip_version=6,
            alpn_offered=("http/1.1",),
            alpn_negotiated="http/1.1",
            vlan_tags=VLAN_QINQ,
        ),
    ]
    pcap = work / spec.files[0]
    with fresh_lab(ctx) as lab:
        start_servers(lab, ctx, SERVER_NS, (8443, 9443, 2053))
        tcpdump = start_tcpdump(lab, CLIENT_NS, CLIENT_IF, pcap)
        conns: list[dict[str, Any]] = []
        for scenarios, tags in ((dot1q, VLAN_DOT1Q), (qinq, VLAN_QINQ)):
            taggers = [
                vlan_tagger(lab, CLIENT_NS, CLIENT_IF, tags),
                vlan_tagger(lab, ROUTER_NS, ROUTER_CLIENT_IF, tags),
            ]
            time.sleep(PAUSE)
            conns += run_scenarios(lab, ctx, scenarios, len(conns))
            for proc in taggers:
                lab.stop(proc)
        stats = demo.stop_capture(lab, tcpdump)
    labels = labels_doc(
        spec.files[0],
        spec,
        conns,
        ctx,
        file_format="pcap",
        link_types=[link(CLIENT_IF, 1)],
        precision="microsecond",
        capture_point={
            "namespace": CLIENT_NS,
            "interface": CLIENT_IF,
            "tool": f"tcpdump -i {CLIENT_IF}",
            "why": "the tagged (parent) interface, so the tags are in the frames",
        },
        setup={
            "tagged_link": f"{CLIENT_NS}/{CLIENT_IF} <-> {ROUTER_NS}/{ROUTER_CLIENT_IF}",
            "phases": [
                {"connections": list(range(len(dot1q))), "tags": "802.1Q (TPID 0x8100) VID 100"},
                {
                    "connections": list(range(len(dot1q), len(conns))),
                    "tags": "802.1ad (TPID 0x88a8) VID 200 outside 802.1Q VID 300",
                },
            ],
            "how": "this kernel has no 8021q module; programs/vlan_tagger.py attaches tcx "
            "eBPF programs that call the kernel's skb_vlan_push on egress and "
            "skb_vlan_pop on ingress at both ends of the link (both directions tagged); "
            "ARP/neighbour traffic in each phase is tagged too",
        },
        stats=stats,
    )
    return [Output(spec.files[0], pcap, labels)]


def capture_any(ctx: Ctx, spec: CaptureSpec, work: Path) -> list[Output]:
    """``tcpdump -i any`` in the client namespace, Linux cooked v2 and v1 at the same time."""
    p = ctx.paths
    scenarios = [
        EdgeScenario(
            "curl-eth0",
            "curl, TLS 1.3, h2, over eth0",
            "curl",
            "curl",
            PY_SERVER,
            9443,
            demo.curl_argv(p, DEMO, 9443, SERVER_V4, "--http2"),
            alpn_offered=H2_H1,
            alpn_negotiated="h2",
        ),
        EdgeScenario(
            "py-ipv6-eth0-tls12",
            "Python ssl over IPv6, TLS 1.2, over eth0",
            "python",
            "python ssl",
            PY_SERVER,
            2053,
            py_argv(p, SERVER_V6, 2053, ALT, ("http/1.1",), "--max-version", "1.2"),
            ip_version=6,
            sni=ALT,
            alpn_offered=("http/1.1",),
            alpn_negotiated="http/1.1",
            tls_version="TLSv1.2",
        ),
        EdgeScenario(
            "s_client-loopback",
            "openssl s_client to an s_server in the client namespace, over lo "
            "(each packet is seen once: libpcap drops lo's outgoing copy)",
            "s_client",
            "openssl s_client",
            f"{S_SERVER} (in {CLIENT_NS})",
            8443,
            s_client_argv(p, LOOPBACK_V4, 8443, DEMO, "-tls1_3"),
            server_addr=LOOPBACK_V4,
            interface="lo",
            stdin=HTTP10,
        ),
    ]
    variants = (("LINUX_SLL2", 276), ("LINUX_SLL", 113))
    pcaps = [work / name for name in spec.files]
    with fresh_lab(ctx) as lab:
        start_servers(lab, ctx, SERVER_NS, (9443, 2053))
        start_servers(lab, ctx, CLIENT_NS, (8443,))
        ifindex = {name: lab.ifindex(CLIENT_NS, name) for name in (CLIENT_IF, "lo")}
        dumps = [
            start_tcpdump(lab, CLIENT_NS, "any", pcap, "-y", dlt)
            for pcap, (dlt, _) in zip(pcaps, variants, strict=True)
        ]
        time.sleep(PAUSE)
        conns = run_scenarios(lab, ctx, scenarios)
        stats = [demo.stop_capture(lab, proc) for proc in dumps]
    for conn in conns:
        conn["ifindex"] = ifindex[conn["interface"]]
    outputs = []
    for filename, pcap, (dlt, linktype), stat in zip(spec.files, pcaps, variants, stats, strict=True):
        labels = labels_doc(
            filename,
            spec,
            [dict(c) for c in conns],
            ctx,
            file_format="pcap",
            link_types=[link("any", linktype)],
            precision="microsecond",
            capture_point={
                "namespace": CLIENT_NS,
                "interface": "any",
                "tool": f"tcpdump -i any -y {dlt}",
                "ifindex": ifindex,
                "why": "the 'any' pseudo-device records every interface of the namespace "
                "with a Linux cooked header instead of the link-layer header; "
                + ("v2 carries the interface index of each packet" if linktype == 276 else "v1 has no interface index"),
            },
            setup={
                "simultaneous": "any-sll2.pcap and any-sll.pcap are two tcpdumps recording "
                "the same three connections at the same time",
                "loopback_server": f"{S_SERVER} on {LOOPBACK_V4}:8443 in {CLIENT_NS}",
            },
            stats=stat,
        )
        outputs.append(Output(filename, pcap, labels))
    return outputs


def capture_nanosecond(ctx: Ctx, spec: CaptureSpec, work: Path) -> list[Output]:
    """A pcap with nanosecond timestamps (magic 0xa1b23c4d)."""
    p = ctx.paths
    scenarios = [
        EdgeScenario(
            "curl-tls13",
            "curl, TLS 1.3, h2",
            "curl",
            "curl",
            PY_SERVER,
            9443,
            demo.curl_argv(p, DEMO, 9443, SERVER_V4, "--http2"),
            alpn_offered=H2_H1,
            alpn_negotiated="h2",
        ),
        EdgeScenario(
            "s_client-tls12",
            "openssl s_client, TLS 1.2",
            "s_client",
            "openssl s_client",
            S_SERVER,
            8443,
            s_client_argv(p, SERVER_V4, 8443, ALT, "-tls1_2"),
            sni=ALT,
            tls_version="TLSv1.2",
            stdin=HTTP10,
        ),
    ]
    pcap = work / spec.files[0]
    with fresh_lab(ctx) as lab:
        start_servers(lab, ctx, SERVER_NS, (8443, 9443))
        tcpdump = start_tcpdump(lab, CLIENT_NS, CLIENT_IF, pcap, "--time-stamp-precision=nano")
        time.sleep(PAUSE)
        conns = run_scenarios(lab, ctx, scenarios)
        stats = demo.stop_capture(lab, tcpdump)
    labels = labels_doc(
        spec.files[0],
        spec,
        conns,
        ctx,
        file_format="pcap",
        link_types=[link(CLIENT_IF, 1)],
        precision="nanosecond",
        capture_point={
            "namespace": CLIENT_NS,
            "interface": CLIENT_IF,
            "tool": f"tcpdump -i {CLIENT_IF} --time-stamp-precision=nano",
        },
        setup={"file_magic": "0xa1b23c4d (nanosecond pcap)"},
        stats=stats,
    )
    return [Output(spec.files[0], pcap, labels)]


def setup_tun_link(lab: Lab) -> subprocess.Popen[Any]:
    """Raw-IP TUN link client <-> router and a second server address reached over it."""
    relay = start_helper(
        lab,
        CLIENT_NS,
        [
            sys.executable,
            str(PROGRAMS / "tun_relay.py"),
            "--name",
            TUN_CLIENT_IF,
            "--peer-netns",
            ROUTER_NS,
            "--peer-name",
            TUN_ROUTER_IF,
        ],
    )
    for ns, dev, local, peer in (
        (CLIENT_NS, TUN_CLIENT_IF, TUN_CLIENT_V4, TUN_ROUTER_V4),
        (ROUTER_NS, TUN_ROUTER_IF, TUN_ROUTER_V4, TUN_CLIENT_V4),
    ):
        lab.sysctl(ns, f"net.ipv6.conf.{dev}.disable_ipv6=1")
        lab.run_in(ns, ["ip", "addr", "add", local, "peer", peer, "dev", dev])
        lab.run_in(ns, ["ip", "link", "set", dev, "up"])
    lab.run_in(CLIENT_NS, ["ip", "route", "add", SERVER_TUN_NET_V4, "dev", TUN_CLIENT_IF])
    lab.run_in(ROUTER_NS, ["ip", "route", "add", SERVER_TUN_NET_V4, "via", SERVER_V4])
    lab.run_in(SERVER_NS, ["ip", "addr", "add", f"{SERVER_TUN_V4}/32", "dev", SERVER_IF])
    lab.run_in(SERVER_NS, ["ip", "route", "add", TUN_NET_V4, "via", ROUTER_SERVER_V4])
    return relay


def capture_multi_interface(ctx: Ctx, spec: CaptureSpec, work: Path) -> list[Output]:
    """dumpcap on an Ethernet veth and a raw-IP TUN device at once, into one pcapng."""
    p = ctx.paths
    scenarios = [
        EdgeScenario(
            "curl-eth0",
            "curl, TLS 1.3, h2, over the Ethernet veth",
            "curl",
            "curl",
            PY_SERVER,
            9443,
            demo.curl_argv(p, DEMO, 9443, SERVER_V4, "--http2"),
            alpn_offered=H2_H1,
            alpn_negotiated="h2",
        ),
        EdgeScenario(
            "s_client-tun-tls12",
            "openssl s_client, TLS 1.2, over the raw-IP TUN link",
            "s_client",
            "openssl s_client",
            S_SERVER,
            8443,
            s_client_argv(p, SERVER_TUN_V4, 8443, ALT, "-tls1_2"),
            server_addr=SERVER_TUN_V4,
            sni=ALT,
            tls_version="TLSv1.2",
            interface=TUN_CLIENT_IF,
            stdin=HTTP10,
        ),
        EdgeScenario(
            "py-tun-tls13",
            "Python ssl, TLS 1.3, over the raw-IP TUN link",
            "python",
            "python ssl",
            PY_SERVER,
            2053,
            py_argv(p, SERVER_TUN_V4, 2053, DEMO, ("http/1.1",)),
            server_addr=SERVER_TUN_V4,
            alpn_offered=("http/1.1",),
            alpn_negotiated="http/1.1",
            interface=TUN_CLIENT_IF,
        ),
    ]
    pcap = work / spec.files[0]
    with fresh_lab(ctx) as lab:
        setup_tun_link(lab)
        start_servers(lab, ctx, SERVER_NS, (8443, 9443, 2053))
        dumpcap = start_dumpcap(lab, CLIENT_NS, (CLIENT_IF, TUN_CLIENT_IF), pcap)
        time.sleep(PAUSE)
        conns = run_scenarios(lab, ctx, scenarios)
        stats = demo.stop_capture(lab, dumpcap)
    labels = labels_doc(
        spec.files[0],
        spec,
        conns,
        ctx,
        file_format="pcapng",
        link_types=[link(CLIENT_IF, 1), link(TUN_CLIENT_IF, 101)],
        precision="nanosecond",  # dumpcap writes if_tsresol=9 on Linux
        capture_point={
            "namespace": CLIENT_NS,
            "interfaces": [CLIENT_IF, TUN_CLIENT_IF],
            "tool": f"dumpcap -i {CLIENT_IF} -i {TUN_CLIENT_IF}",
            "why": "one pcapng, two Interface Description Blocks with different link "
            "types; frame.interface_id says which interface each packet came from",
        },
        setup={
            "tun_link": f"{CLIENT_NS}/{TUN_CLIENT_IF} {TUN_CLIENT_V4} <-> "
            f"{ROUTER_NS}/{TUN_ROUTER_IF} {TUN_ROUTER_V4}, joined by programs/tun_relay.py",
            "routes": f"{SERVER_TUN_NET_V4} via the TUN link; {SERVER_TUN_V4} is a second "
            f"address of the server ({SERVER_NS}/{SERVER_IF})",
        },
        stats=stats,
    )
    return [Output(spec.files[0], pcap, labels)]


# -- capture table --------------------------------------------------------------------


@dataclass(frozen=True)
class CaptureSpec:
    """One capture the script can make (``--only NAME``)."""

    name: str
    files: tuple[str, ...]
    exercises: str
    how: str
    run: Callable[[Ctx, CaptureSpec, Path], list[Output]]
    aliases: tuple[str, ...] = ()


SPECS: tuple[CaptureSpec, ...] = (
    CaptureSpec(
        "ipv4-fragments",
        ("ipv4-fragments.pcap",),
        "ClientHellos carried in IPv4 fragments (made by a real router), one of them "
        "also split over two TCP segments, plus an unfragmented control",
        f"The client namespace sets `net.ipv4.ip_no_pmtu_disc=1`, so its packets leave "
        f"without DF. The router's link towards the server has MTU {FRAG_MTU}. The server's "
        f"route back to the client says `mtu {FRAG_MTU} advmss {FRAG_ADVMSS}`: it advertises "
        f"MSS {FRAG_ADVMSS} (as if the small hop were further along the path) while its own "
        "packets stay small enough for the link. The client therefore sends full-size "
        "segments and the router fragments every one larger than "
        f"{FRAG_MTU} bytes (`ip_fragment()` in the forwarding path). tcpdump runs in "
        "`tp-server` on `eth0`, behind the router, so the fragments are in the file. Large "
        "ClientHellos come from many (made-up) ALPN values and the 253-character SNI.",
        capture_ipv4_fragments,
    ),
    CaptureSpec(
        "vlan-qinq",
        ("vlan-qinq.pcap",),
        "TLS over an 802.1Q VLAN (VID 100), then over QinQ (802.1ad S-tag 200 outside 802.1Q C-tag 300), IPv4 and IPv6",
        "The client <-> router veth pair is tagged in both directions. This kernel has no "
        "`8021q` module (`ip link add ... type vlan` fails) and no bridge VLAN filtering, "
        "so `programs/vlan_tagger.py` attaches two tiny tcx eBPF programs at each end of "
        "the link: egress calls the kernel's `skb_vlan_push()` (one per tag, so QinQ is "
        "two pushes), ingress `skb_vlan_pop()`. The first two connections run with the "
        "802.1Q tag, then the taggers are replaced and the last two run over QinQ. "
        "tcpdump records the parent interface (`tp-client`/`eth0`), so every frame, in "
        "both directions, carries its tags; ARP and neighbour discovery are tagged too.",
        capture_vlan_qinq,
    ),
    CaptureSpec(
        "any",
        ("any-sll2.pcap", "any-sll.pcap"),
        "`tcpdump -i any` (Linux cooked capture): v2 (linktype 276, with interface "
        "index) and v1 (linktype 113), over eth0 and loopback, IPv4 and IPv6",
        "Two tcpdumps run at the same time in `tp-client` on the `any` pseudo-device, one "
        "with `-y LINUX_SLL2`, one with `-y LINUX_SLL`; both files hold the same three "
        "connections (libpcap 1.10 would pick v1 for `any` by default). One connection "
        "goes to an `s_server` inside `tp-client` over `lo`; libpcap drops lo's outgoing "
        "copy, so each packet appears once. In the v2 file `sll.ifindex` tells eth0 from "
        "lo (the indexes are in the labels).",
        capture_any,
        aliases=("any-sll2", "any-sll", "sll"),
    ),
    CaptureSpec(
        "nanosecond",
        ("nanosecond.pcap",),
        "pcap with nanosecond timestamps (magic 0xa1b23c4d)",
        "`tcpdump --time-stamp-precision=nano` on `tp-client`/`eth0`; the sub-microsecond "
        "digits are real (kernel timestamps), not zero padding.",
        capture_nanosecond,
        aliases=("nano",),
    ),
    CaptureSpec(
        "multi-interface",
        ("multi-interface.pcapng",),
        "pcapng with two interfaces of different link types: Ethernet (1) and raw IP (101, a TUN device)",
        "`dumpcap -i eth0 -i tun0` in `tp-client`. `tun0` is one end of a point-to-point "
        "raw-IP link to the router made of two TUN devices joined by "
        "`programs/tun_relay.py` (a copy loop, like an unencrypted VPN); the server got "
        f"a second address {SERVER_TUN_V4} that the client reaches over the TUN link. One "
        "connection goes over eth0, two over tun0 (those frames have no link-layer "
        "header at all).",
        capture_multi_interface,
        aliases=("pcapng",),
    ),
)

NOT_PRODUCED = {
    "ipv6-fragments.pcap": "Not made: Linux TCP over IPv6 never emits fragments from real "
    "sockets. IPv6 routers do not fragment (the lab's router answers an oversized "
    "packet with ICMPv6 Packet Too Big), and at the sender TCP sizes segments from the "
    "path MTU: `ip6_xmit()` refuses (EMSGSIZE) a non-GSO segment larger than the route "
    "MTU instead of fragmenting it, a Packet Too Big only lowers the MSS, and "
    "`IPV6_MTU_DISCOVER`/`IPV6_DONTFRAG` do not change that for TCP. The old "
    "'atomic fragment' path (fragment header on every packet after a Packet Too Big "
    "below 1280) was removed from the kernel in 6.7, and no link can carry IPv6 below "
    "1280 anyway. The only real-socket way left is a tunnel that fragments its outer "
    "IPv6 packets (TCP inside UDP/GRE), which is a different edge case. Checked in "
    "this lab (kernel 6.18): a 1.9 KB ClientHello from a socket with "
    "`IPV6_MTU_DISCOVER=IPV6_PMTUDISC_DONT` and `IPV6_DONTFRAG=0`, through a router "
    "whose server-side link has MTU 1280: the router answered Packet Too Big and the "
    "client resent the hello as 1208-byte TCP segments; neither the client-side nor "
    "the server-side capture had a single fragment header.",
    "loopback-null.pcap": "Not made: the NULL/LOOP link type (BSD loopback) does not "
    "exist on Linux, whose loopback is captured as Ethernet.",
}


def find_spec(name: str) -> CaptureSpec:
    """Look a capture up by name, alias or file name."""
    for spec in SPECS:
        stems = {Path(f).stem for f in spec.files}
        if name in {spec.name, *spec.aliases, *spec.files, *stems}:
            return spec
    known = ", ".join(s.name for s in SPECS)
    raise SystemExit(f"unknown capture {name!r}; known: {known}")


# -- checking a capture -----------------------------------------------------------------


def read_header(path: Path) -> dict[str, Any]:
    """File format, link types and timestamp precision read from the file itself."""
    data = path.read_bytes()
    magic = data[:4]
    pcap_magics = {
        b"\xd4\xc3\xb2\xa1": ("<", "microsecond"),
        b"\xa1\xb2\xc3\xd4": (">", "microsecond"),
        b"\x4d\x3c\xb2\xa1": ("<", "nanosecond"),
        b"\xa1\xb2\x3c\x4d": (">", "nanosecond"),
    }
    if magic in pcap_magics:
        endian, precision = pcap_magics[magic]
        (linktype,) = struct.unpack(endian + "I", data[20:24])
        return {"format": "pcap", "link_types": [linktype], "precision": precision}
    if magic != b"\x0a\x0d\x0d\x0a":
        raise ValueError(f"{path.name}: neither pcap nor pcapng")
    endian = "<" if data[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
    linktypes, resolutions, off = [], [], 0
    while off + 12 <= len(data):
        btype, blen = struct.unpack(endian + "II", data[off : off + 8])
        if btype == 1:  # Interface Description Block
            linktypes.append(struct.unpack(endian + "H", data[off + 8 : off + 10])[0])
            resolutions.append(_idb_tsresol(data[off + 16 : off + blen - 4], endian))
        off += blen
        if blen < 12:
            break
    precision = "nanosecond" if all(r == 9 for r in resolutions) else "microsecond"
    if any(r not in (6, 9) for r in resolutions):
        precision = f"if_tsresol {resolutions}"
    return {"format": "pcapng", "link_types": linktypes, "precision": precision}


def _idb_tsresol(options: bytes, endian: str) -> int:
    """The if_tsresol option of an IDB (decimal exponent), 6 when absent."""
    off = 0
    while off + 4 <= len(options):
        code, length = struct.unpack(endian + "HH", options[off : off + 4])
        if code == 0:
            break
        if code == 9 and length == 1 and options[off + 4] < 0x80:
            return options[off + 4]
        off += 4 + (length + 3) // 4 * 4
    return 6


def tshark_rows(pcap: Path, display_filter: str, fields: Sequence[str]) -> Iterator[list[str]]:
    """Rows of ``tshark -T fields`` with "decode as TLS" on the lab's odd ports."""
    cmd = ["tshark", "-r", str(pcap), "-Y", display_filter, "-T", "fields"]
    cmd += ["-E", "separator=\t", "-E", "aggregator=,", "-E", "occurrence=a"]
    for port in TLS_PORTS:
        cmd += ["-d", f"tcp.port=={port},tls"]
    for name in fields:
        cmd += ["-e", name]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120)
    for line in out.stdout.splitlines():
        yield (line.split("\t") + [""] * len(fields))[: len(fields)]


HELLO_FIELDS = (
    "tcp.stream",
    "ip.src",
    "ipv6.src",
    "tcp.srcport",
    "tcp.dstport",
    "tls.handshake.extensions_server_name",
    "tls.handshake.extensions_alpn_str",
    "tcp.segment.count",
    "ip.fragment.count",
    "eth.type",
    "ieee8021ad.id",
    "vlan.id",
    "frame.interface_name",
    "sll.ifindex",
)


@dataclass
class Seen:
    """What tshark shows for one TCP stream."""

    stream: int
    hellos: list[dict[str, str]] = field(default_factory=list)
    version: str | None = None


def observe(pcap: Path) -> dict[int, Seen]:
    """ClientHello facts and the negotiated version per tcp.stream."""
    streams: dict[int, Seen] = {}
    for row in tshark_rows(pcap, "tls.handshake.type == 1", HELLO_FIELDS):
        facts = dict(zip(HELLO_FIELDS, row, strict=True))
        stream = int(facts["tcp.stream"])
        streams.setdefault(stream, Seen(stream)).hellos.append(facts)
    sh_fields = ["tcp.stream", "tls.handshake.version", "tls.handshake.extensions.supported_version"]
    for stream_text, version, selected in tshark_rows(pcap, "tls.handshake.type == 2", sh_fields):
        wire = selected.split(",")[-1] if selected else version.split(",")[0]
        seen = streams.setdefault(int(stream_text), Seen(int(stream_text)))
        seen.version = demo.WIRE_VERSIONS.get(wire, wire)
    return streams


def _first(value: str) -> str:
    return value.split(",")[0] if value else ""


def check_connection(conn: dict[str, Any], seen: Seen | None) -> list[str]:
    """Differences between one connection label and what tshark saw in its stream."""
    if seen is None or not seen.hellos:
        return [f"conn {conn['index']}: no ClientHello in tcp.stream {conn['index']}"]
    hello = seen.hellos[0]
    src = _first(hello["ip.src"]) or _first(hello["ipv6.src"])
    alpn = [a for a in hello["tls.handshake.extensions_alpn_str"].split(",") if a]
    checks: list[tuple[str, Any, Any]] = [
        ("client ip", src, conn["client_ip"]),
        ("client port", int(_first(hello["tcp.srcport"])), conn["client_port"]),
        ("server port", int(_first(hello["tcp.dstport"])), conn["server_port"]),
        ("sni", hello["tls.handshake.extensions_server_name"] or None, conn["sni"]),
        ("alpn offered", alpn, conn["alpn_offered"]),
        ("client hellos", len(seen.hellos), conn["client_hellos"]),
        ("version", seen.version, conn["tls_version"]),
        ("hello tcp segments", int(hello["tcp.segment.count"] or 1), conn["hello_tcp_segments"]),
    ]
    if "fragmented" in conn:
        frags = int(_first(hello["ip.fragment.count"]) or 0)
        checks.append(("hello in ip fragments", frags >= 2, conn["fragmented"]))
    if "vlan" in conn:
        checks.append(("vlan tags", _vlan_seen(hello), _vlan_label(conn["vlan"])))
    if hello["frame.interface_name"]:
        checks.append(("interface", hello["frame.interface_name"], conn["interface"]))
    if hello["sll.ifindex"]:
        checks.append(("sll ifindex", int(hello["sll.ifindex"]), conn["ifindex"]))
    return [
        f"conn {conn['index']}: {what}: capture {got!r} != label {want!r}" for what, got, want in checks if got != want
    ]


def _vlan_label(tags: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(t["tpid"], t["vid"]) for t in tags]


def _vlan_seen(hello: dict[str, str]) -> list[tuple[str, int]]:
    """Tags of a frame, outer first, as (TPID, VID) from tshark's fields."""
    tags = []
    outer_type = _first(hello["eth.type"])
    if hello["ieee8021ad.id"]:
        tags.append(("0x88a8", int(_first(hello["ieee8021ad.id"]))))
    elif outer_type not in ("0x8100", "0x88a8"):
        return []
    tags += [("0x8100", int(v)) for v in hello["vlan.id"].split(",") if v]
    return tags


def check_capture(out: Output) -> tuple[list[str], dict[str, Any]]:
    """All problems found in one capture, and a summary for the table."""
    labels, pcap = out.labels, out.path
    problems: list[str] = []
    header = read_header(pcap)
    want_types = [lt["link_type"] for lt in labels["link_types"]]
    for what, got, want in (
        ("file format", header["format"], labels["file_format"]),
        ("link types", header["link_types"], want_types),
        ("timestamp precision", header["precision"], labels["timestamp_precision"]),
    ):
        if got != want:
            problems.append(f"{what}: file {got!r} != label {want!r}")
    streams = observe(pcap)
    for conn in labels["connections"]:
        problems += check_connection(conn, streams.get(conn["index"]))
    extra = sorted(set(streams) - {c["index"] for c in labels["connections"]})
    if extra:
        problems.append(f"ClientHellos in unlabelled streams {extra}")
    summary: dict[str, Any] = {
        "hellos": sum(len(s.hellos) for s in streams.values()),
        "snis_ok": all(_sni_seen(streams.get(c["index"])) == c["sni"] for c in labels["connections"]),
        "special": "",
    }
    special = SPECIAL_CHECKS.get(out.filename)
    if special:
        text, more = special(pcap, labels)
        summary["special"] = text
        problems += more
    return problems, summary


def _sni_seen(seen: Seen | None) -> str | None:
    """SNI of a stream's first ClientHello (None when absent)."""
    if seen is None or not seen.hellos:
        return "(no ClientHello)"
    return seen.hellos[0]["tls.handshake.extensions_server_name"] or None


def special_fragments(pcap: Path, labels: dict[str, Any]) -> tuple[str, list[str]]:
    """Count IPv4 fragments and which connections' hellos were reassembled from them."""
    frags = list(tshark_rows(pcap, "ip.flags.mf == 1 || ip.frag_offset > 0", ["ip.id"]))
    datagrams = {row[0] for row in frags}
    want = sum(1 for c in labels["connections"] if c.get("fragmented"))
    text = f"{len(frags)} fragments of {len(datagrams)} datagrams; {want} hellos reassembled"
    return text, [] if frags else ["no IPv4 fragments in the capture"]


def special_vlan(pcap: Path, labels: dict[str, Any]) -> tuple[str, list[str]]:
    """Count frames per outer TPID; every TCP frame must be tagged."""
    rows = list(tshark_rows(pcap, "tcp", ["eth.type"]))
    dot1q = sum(1 for r in rows if _first(r[0]) == "0x8100")
    qinq = sum(1 for r in rows if _first(r[0]) == "0x88a8")
    untagged = len(rows) - dot1q - qinq
    problems = [f"{untagged} untagged TCP frames"] if untagged else []
    return f"TCP frames: {dot1q} 802.1Q, {qinq} QinQ, {untagged} untagged", problems


def special_sll(pcap: Path, labels: dict[str, Any]) -> tuple[str, list[str]]:
    """Interfaces (SLL2) or packet types (SLL) seen on TCP frames."""
    v2 = labels["link_types"][0]["link_type"] == 276
    name = "sll.ifindex" if v2 else "sll.pkttype"
    values = sorted({r[0] for r in tshark_rows(pcap, "tcp", [name])})
    if v2:
        want = sorted({str(c["ifindex"]) for c in labels["connections"]})
        problems = [] if values == want else [f"ifindexes {values} != {want}"]
        return f"ifindex on TCP frames: {', '.join(values)}", problems
    return f"sll.pkttype on TCP frames: {', '.join(values)}", []


def special_nano(pcap: Path, labels: dict[str, Any]) -> tuple[str, list[str]]:
    """Timestamps must carry sub-microsecond digits (not just zero-padded microseconds)."""
    stamps = [r[0] for r in tshark_rows(pcap, "frame", ["frame.time_epoch"])]
    sub_us = sum(1 for s in stamps if "." in s and len(s.split(".")[1]) == 9 and s[-3:] != "000")
    problems = [] if sub_us else ["no timestamp has sub-microsecond digits"]
    return f"{sub_us}/{len(stamps)} timestamps with non-zero ns digits", problems


def special_multi(pcap: Path, labels: dict[str, Any]) -> tuple[str, list[str]]:
    """ClientHellos per interface."""
    counts: dict[str, int] = {}
    for (name,) in tshark_rows(pcap, "tls.handshake.type == 1", ["frame.interface_name"]):
        counts[name] = counts.get(name, 0) + 1
    want: dict[str, int] = {}
    for conn in labels["connections"]:
        want[conn["interface"]] = want.get(conn["interface"], 0) + 1
    problems = [] if counts == want else [f"hellos per interface {counts} != {want}"]
    return "hellos per interface: " + ", ".join(f"{k}={v}" for k, v in counts.items()), problems


SPECIAL_CHECKS: dict[str, Callable[[Path, dict[str, Any]], tuple[str, list[str]]]] = {
    "ipv4-fragments.pcap": special_fragments,
    "vlan-qinq.pcap": special_vlan,
    "any-sll2.pcap": special_sll,
    "any-sll.pcap": special_sll,
    "nanosecond.pcap": special_nano,
    "multi-interface.pcapng": special_multi,
}


# -- output -----------------------------------------------------------------------------


def print_table(rows: list[tuple[Output, list[str], dict[str, Any]]]) -> None:
    """Print the verification table."""
    print(f"\n{'file':<24} {'bytes':>7} {'link':<18} {'conns':>5} {'hellos':>6} {'sni':<4} {'result':<6} special")
    for out, problems, summary in rows:
        linktypes = "+".join(lt["name"] for lt in out.labels["link_types"])
        size = out.path.stat().st_size
        print(
            f"{out.filename:<24} {size:>7} {linktypes:<18} {len(out.labels['connections']):>5} "
            f"{summary.get('hellos', '-'):>6} {'ok' if summary.get('snis_ok') else 'BAD':<4} "
            f"{'ok' if not problems else 'FAIL':<6} {summary.get('special', '')}"
        )
        for problem in problems:
            print(f"    MISMATCH: {problem}")


def install(out: Output) -> None:
    """Copy one checked capture and its labels into pcaps/edge/."""
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(out.path, OUT_DIR / out.filename)
    stem = out.filename.rsplit(".", 1)[0]
    (OUT_DIR / f"{stem}.labels.json").write_text(json.dumps(out.labels, indent=2) + "\n")


README_HEAD = """\
# Edge-case captures: `pcaps/edge/`

Small captures of **real** TLS traffic (real sockets, real clients and servers, real
kernel packets; nothing crafted) that exercise link-layer, IP and file-format edge
cases. They are made by `tools/lab/make_edge_pcaps.py`, which also writes this file;
edit the script, not this file. Each `NAME.pcap`/`NAME.pcapng` has a `NAME.labels.json`
that says, for every TCP connection in it (in capture order, = tshark's `tcp.stream`),
the client and server address and port, SNI, ALPN offered and negotiated, the TLS
version negotiated and what is special about it (`fragmented`, `vlan`, `interface`,
`ifindex`). The labels come from the scenario the script ran, cross-checked against
what each client reported; they are not parsed from the capture.

## Regenerate

```sh
sudo python3 tools/lab/make_edge_pcaps.py                    # all captures
sudo python3 tools/lab/make_edge_pcaps.py --only vlan-qinq   # one (see --list)
```

Needs root, network namespaces, `iproute2`, `openssl`, `curl`, `tcpdump` and
`tshark`/`dumpcap` (`apt-get install tcpdump tshark`); `vlan-qinq` needs a kernel
with tcx (Linux 6.6 or later). The script builds a fresh lab (`tools/lab/netns.py`)
and a throwaway PKI (`tools/lab/pki.py`, same names as the demo capture) for each run,
checks every capture with tshark and only replaces files that pass. Client ports,
random values, keys and timestamps change on every run.

All servers listen on ports tshark does not dissect as TLS by default; use

```sh
tshark -r FILE -d tcp.port==2053,tls -d tcp.port==8443,tls -d tcp.port==9443,tls
```

Servers: 8443 `openssl s_server -www`, 9443 and 2053 the Python `ssl` server
(`tools/lab/programs/py_https_server.py`, ALPN h2 and http/1.1). Clients: curl,
`openssl s_client`, the Python `ssl` client (`tools/lab/programs/py_tls_client.py`).
Lab addresses: client 10.77.1.2 / fd77:1::2, server 10.77.2.2 / fd77:2::2.
"""


def readme_text() -> str:
    """The whole README, from the specs and the labels files in pcaps/edge/."""
    parts = [README_HEAD, "## Captures\n"]
    parts.append("| file | bytes | link type | connections | exercises |")
    parts.append("|---|---|---|---|---|")
    docs: dict[str, dict[str, Any]] = {}
    for spec in SPECS:
        for filename in spec.files:
            labels_path = OUT_DIR / f"{filename.rsplit('.', 1)[0]}.labels.json"
            if not labels_path.exists() or not (OUT_DIR / filename).exists():
                parts.append(f"| `{filename}` | — | — | — | not generated yet |")
                continue
            doc = json.loads(labels_path.read_text())
            docs[filename] = doc
            linktypes = ", ".join(f"{lt['name']} ({lt['link_type']})" for lt in doc["link_types"])
            parts.append(
                f"| `{filename}` | {(OUT_DIR / filename).stat().st_size} | {linktypes} "
                f"| {len(doc['connections'])} | {spec.exercises} |"
            )
    for spec in SPECS:
        parts.append(f"\n## {', '.join(f'`{f}`' for f in spec.files)}\n")
        parts.append(f"{spec.exercises}.\n")
        parts.append(f"{spec.how}\n")
        for filename in spec.files:
            if filename in docs:
                if len(spec.files) > 1:
                    parts.append(f"`{filename}`:\n")
                parts.append(connections_md(docs[filename]))
    parts.append("\n## Not produced\n")
    for filename, why in NOT_PRODUCED.items():
        parts.append(f"- `{filename}`: {why}")
    return "\n".join(parts) + "\n"


def connections_md(doc: dict[str, Any]) -> str:
    """Markdown table of a labels file's connections."""
    rows = [
        "| # | client | → server | IP | SNI | TLS | ALPN | special | what |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in doc["connections"]:
        sni = c["sni"] if c["sni"] is None or len(c["sni"]) < 30 else f"({len(c['sni'])} chars)"
        alpn = c["alpn_offered"]
        alpn_text = ", ".join(alpn) if len(alpn) <= 2 else f"{len(alpn)} values"
        if c["alpn_negotiated"]:
            alpn_text += f" → {c['alpn_negotiated']}"
        special = [f"if {c['interface']}"]
        if "ifindex" in c:
            special[-1] += f" (ifindex {c['ifindex']})"
        if "fragmented" in c:
            special.append("fragmented" if c["fragmented"] else "not fragmented")
        if c["hello_tcp_segments"] > 1:
            special.append(f"hello in {c['hello_tcp_segments']} TCP segments")
        if "vlan" in c:
            special.append(" / ".join(f"{t['tpid']} VID {t['vid']}" for t in c["vlan"]))
        rows.append(
            f"| {c['index']} | {c['client_tool']} {c['client_ip']}:{c['client_port']} "
            f"| {c['server_program']} {c['server_ip']}:{c['server_port']} | v{c['ip_version']} "
            f"| {sni or '—'} | {c['tls_version']} | {alpn_text or '—'} | {'; '.join(special)} "
            f"| {c['description']} |"
        )
    return "\n".join(rows) + "\n"


# -- main -------------------------------------------------------------------------------


def preflight() -> None:
    """Exit with a helpful message when not root or a required program is missing."""
    if os.geteuid() != 0:
        sys.exit("run as root: sudo python3 tools/lab/make_edge_pcaps.py")
    for prog, pkg in (
        ("ip", "iproute2"),
        ("ss", "iproute2"),
        ("openssl", "openssl"),
        ("curl", "curl"),
        ("tcpdump", "tcpdump"),
        ("tshark", "tshark"),
        ("dumpcap", "tshark"),
    ):
        if shutil.which(prog) is None:
            sys.exit(f"{prog} not found: apt-get install {pkg}")


def generate(specs: Sequence[CaptureSpec], verbose: bool) -> int:
    """Make, check and install the captures of ``specs``; rewrite the README."""
    rows: list[tuple[Output, list[str], dict[str, Any]]] = []
    failed = False
    with tempfile.TemporaryDirectory(prefix="tlsprobe-edge-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)
        names = [DEMO, ALT, LONG_SNI, "localhost"]
        addrs = [SERVER_V4, SERVER_V6, SERVER_TUN_V4, LOOPBACK_V4]
        key = pkimod.make_pki(work / "pki", names, addrs)
        ctx = Ctx(key=key, paths=demo.Paths(work=work, ca=key.root_cert), verbose=verbose)
        for spec in specs:
            ctx.current = spec.name
            print(f"== {spec.name}: {', '.join(spec.files)}")
            try:
                outputs = spec.run(ctx, spec, work)
            except (LabError, subprocess.SubprocessError, OSError) as exc:
                print(f"error: {spec.name}: {exc}", file=sys.stderr)
                failed = True
                continue
            for out in outputs:
                problems, summary = check_capture(out)
                rows.append((out, problems, summary))
                failed |= bool(problems)
        print_table(rows)
        for out, problems, _ in rows:
            if not problems:
                install(out)
            else:
                keep = Path(tempfile.mkdtemp(prefix="tlsprobe-edge-failed-"))
                shutil.copyfile(out.path, keep / out.filename)
                print(f"{out.filename} not installed; capture kept in {keep}", file=sys.stderr)
        if failed:
            keep = Path(tempfile.mkdtemp(prefix="tlsprobe-edge-logs-"))
            shutil.copytree(ctx.paths.logs, keep / "logs")
            print(f"logs kept in {keep}", file=sys.stderr)
    if OUT_DIR.exists():
        (OUT_DIR / "README.md").write_text(readme_text())
        total = sum(f.stat().st_size for f in OUT_DIR.iterdir() if f.is_file())
        print(f"\npcaps/edge/: {total} bytes in total")
        if total > MAX_TOTAL_BYTES:
            print(f"error: pcaps/edge/ is over {MAX_TOTAL_BYTES} bytes", file=sys.stderr)
            failed = True
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", action="append", metavar="NAME", help="make only this capture (repeatable; see --list)"
    )
    parser.add_argument("--list", action="store_true", help="list the captures and exit")
    parser.add_argument("-v", "--verbose", action="store_true", help="echo lab commands")
    args = parser.parse_args(argv)
    if args.list:
        for spec in SPECS:
            aliases = f" (also: {', '.join(spec.aliases)})" if spec.aliases else ""
            print(f"{spec.name:<16} {', '.join(spec.files)}{aliases}")
        return 0
    specs = [find_spec(n) for n in args.only] if args.only else list(SPECS)
    preflight()
    # Explicit handlers (SIGINT may arrive ignored from a parent shell) so that the
    # finally blocks always tear the lab down.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: sys.exit(128 + signum))
    try:
        return generate(specs, args.verbose)
    except KeyboardInterrupt:
        print("interrupted; lab torn down, pcaps/edge/ left unchanged", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
