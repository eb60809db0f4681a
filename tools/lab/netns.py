"""Three-namespace TLS lab: ``tp-client`` <-> ``tp-router`` <-> ``tp-server``.

The lab is built from real Linux network namespaces joined by veth pairs, so every
packet seen in a capture was produced by the kernel's own TCP/IP stack:

    tp-client                tp-router                          tp-server
    eth0 10.77.1.2/24  <->  eth-client 10.77.1.1/24
         fd77:1::2/64            fd77:1::1/64
                            eth-server 10.77.2.1/24  <->  eth0 10.77.2.2/24
                                 fd77:2::1/64                  fd77:2::2/64

The router forwards IPv4 and IPv6 between the two /24 (and /64) networks and has no
other route, so nothing in the lab can reach any address outside it. A later
middlebox (for instance a TLS-intercepting proxy) can be started in ``tp-router``
with :meth:`Lab.spawn_in` once :meth:`Lab.setup` has run.

Usage as a library::

    with Lab() as lab:
        lab.run_in(CLIENT_NS, ["ip", "addr"])

Usage from the command line (as root)::

    python3 tools/lab/netns.py up      # build the lab and leave it running
    python3 tools/lab/netns.py down    # delete the three namespaces

Veth offloads (checksum, TSO/GSO, scatter-gather) are switched off with the
``SIOCETHTOOL`` ioctl so that captures contain MSS-sized segments with valid
checksums, exactly as they would appear on a physical wire; ``ethtool`` is not needed.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

CLIENT_NS = "tp-client"
ROUTER_NS = "tp-router"
SERVER_NS = "tp-server"
NAMESPACES = (CLIENT_NS, ROUTER_NS, SERVER_NS)

CLIENT_IF = "eth0"
SERVER_IF = "eth0"
ROUTER_CLIENT_IF = "eth-client"
ROUTER_SERVER_IF = "eth-server"

CLIENT_V4 = "10.77.1.2"
ROUTER_CLIENT_V4 = "10.77.1.1"
ROUTER_SERVER_V4 = "10.77.2.1"
SERVER_V4 = "10.77.2.2"
CLIENT_V6 = "fd77:1::2"
ROUTER_CLIENT_V6 = "fd77:1::1"
ROUTER_SERVER_V6 = "fd77:2::1"
SERVER_V6 = "fd77:2::2"
CLIENT_NET_V4 = "10.77.1.0/24"
SERVER_NET_V4 = "10.77.2.0/24"
CLIENT_NET_V6 = "fd77:1::/64"
SERVER_NET_V6 = "fd77:2::/64"

DEFAULT_MTU = 1500
IPV6_MIN_MTU = 1280

# Legacy ethtool "set" commands (linux/ethtool.h): TX checksum, scatter-gather,
# TSO, GSO, GRO. Each takes a struct ethtool_value {u32 cmd; u32 data;}.
_SIOCETHTOOL = 0x8946
_ETHTOOL_SET_CMDS = {"tx-checksum": 0x17, "sg": 0x19, "tso": 0x1F, "gso": 0x24, "gro": 0x2C}


@dataclass(frozen=True)
class Iface:
    """One end of a veth pair, with the addresses it carries."""

    ns: str
    name: str
    addrs: tuple[str, ...]


@dataclass(frozen=True)
class Route:
    """A static route inside one namespace."""

    ns: str
    dst: str
    via: str

    @property
    def family_flag(self) -> str:
        """Return ``-6`` for IPv6 routes and ``-4`` otherwise."""
        return "-6" if ":" in self.dst else "-4"


IFACES: tuple[Iface, ...] = (
    Iface(CLIENT_NS, CLIENT_IF, (f"{CLIENT_V4}/24", f"{CLIENT_V6}/64")),
    Iface(ROUTER_NS, ROUTER_CLIENT_IF, (f"{ROUTER_CLIENT_V4}/24", f"{ROUTER_CLIENT_V6}/64")),
    Iface(ROUTER_NS, ROUTER_SERVER_IF, (f"{ROUTER_SERVER_V4}/24", f"{ROUTER_SERVER_V6}/64")),
    Iface(SERVER_NS, SERVER_IF, (f"{SERVER_V4}/24", f"{SERVER_V6}/64")),
)

# Only the lab's own networks are routable: no default route anywhere.
ROUTES: tuple[Route, ...] = (
    Route(CLIENT_NS, SERVER_NET_V4, ROUTER_CLIENT_V4),
    Route(CLIENT_NS, SERVER_NET_V6, ROUTER_CLIENT_V6),
    Route(SERVER_NS, CLIENT_NET_V4, ROUTER_SERVER_V4),
    Route(SERVER_NS, CLIENT_NET_V6, ROUTER_SERVER_V6),
)

# veth pairs as (A end, B end), matching IFACES.
VETH_PAIRS: tuple[tuple[Iface, Iface], ...] = ((IFACES[0], IFACES[1]), (IFACES[2], IFACES[3]))

_COMMON_SYSCTLS = (
    "net.ipv6.conf.all.accept_dad=0",
    "net.ipv6.conf.default.accept_dad=0",
    "net.ipv6.conf.all.accept_ra=0",
    "net.ipv6.conf.default.accept_ra=0",
    "net.ipv6.conf.all.router_solicitations=0",
    "net.ipv6.conf.default.router_solicitations=0",
)
_ROUTER_SYSCTLS = ("net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")


class LabError(RuntimeError):
    """Raised when the lab cannot be built or a command inside it fails."""


def ns_argv(ns: str, cmd: Sequence[str]) -> list[str]:
    """Return the argv that runs ``cmd`` inside namespace ``ns``."""
    return ["ip", "netns", "exec", ns, *cmd]


def existing_namespaces() -> set[str]:
    """Return the names listed by ``ip netns list``."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


@dataclass
class Lab:
    """Builds, uses and tears down the client/router/server namespaces.

    Every namespace and process the lab creates is remembered, and
    :meth:`teardown` removes exactly those (processes are stopped by PID).
    """

    namespaces: tuple[str, ...] = NAMESPACES
    verbose: bool = False
    prefix: str = "tp"
    _created: list[str] = field(default_factory=list)
    _procs: list[subprocess.Popen[Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.prefix != "tp" and self.namespaces == NAMESPACES:
            self.namespaces = tuple(self.ns(n) for n in NAMESPACES)

    def ns(self, name: str) -> str:
        """The real name of a lab namespace: ``tp-client`` -> ``<prefix>-client``.

        Every method that takes a namespace maps it, so callers keep using
        ``CLIENT_NS``/``ROUTER_NS``/``SERVER_NS`` while two labs with different
        prefixes run side by side.
        """
        if self.prefix != "tp" and name.startswith("tp-"):
            return f"{self.prefix}-{name[3:]}"
        return name

    # -- lifecycle -------------------------------------------------------------

    def __enter__(self) -> Lab:
        self.setup()
        return self

    def __exit__(self, *exc: object) -> None:
        self.teardown()

    def setup(self) -> None:
        """Create namespaces, veth pairs, addresses, routes and forwarding."""
        stale = existing_namespaces() & set(self.namespaces)
        if stale:
            names = " ".join(sorted(stale))
            raise LabError(
                f"namespaces already exist: {names} (left by an earlier run?); "
                f"remove them with: python3 tools/lab/netns.py down"
            )
        for ns in self.namespaces:
            self._ip("netns", "add", ns)
            self._created.append(ns)
            self._ip("-n", ns, "link", "set", "lo", "up")
        self._tune_namespaces()
        for a_end, b_end in VETH_PAIRS:
            self._ip(
                "-n",
                self.ns(a_end.ns),
                "link",
                "add",
                a_end.name,
                "type",
                "veth",
                "peer",
                "name",
                b_end.name,
                "netns",
                self.ns(b_end.ns),
            )
        for iface in IFACES:
            self._disable_offloads(iface)
            self._ip("-n", self.ns(iface.ns), "link", "set", iface.name, "up")
        self.configure_addresses()

    def teardown(self) -> None:
        """Stop processes started through the lab, then delete its namespaces."""
        for proc in reversed(self._procs):
            self.stop(proc)
        self._procs.clear()
        for ns in reversed(self._created):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
        self._created.clear()

    def configure_addresses(self, ns: str | None = None) -> None:
        """(Re)apply addresses and routes; idempotent, optionally for one namespace.

        Needed again after an interface's MTU went below 1280, because the kernel
        then drops every IPv6 address of that interface.
        """
        ns = None if ns is None else self.ns(ns)
        for iface in IFACES:
            if ns is None or self.ns(iface.ns) == ns:
                for addr in iface.addrs:
                    extra = ["nodad"] if ":" in addr else []
                    self._ip("-n", self.ns(iface.ns), "addr", "replace", addr, "dev", iface.name, *extra)
        for route in ROUTES:
            if ns is None or self.ns(route.ns) == ns:
                self._ip(
                    "-n",
                    self.ns(route.ns),
                    route.family_flag,
                    "route",
                    "replace",
                    route.dst,
                    "via",
                    route.via,
                )

    def set_mtu(self, ns: str, ifname: str, mtu: int) -> None:
        """Set an interface MTU, restoring IPv6 configuration if it was lost."""
        self._ip("-n", self.ns(ns), "link", "set", ifname, "mtu", str(mtu))
        if mtu >= IPV6_MIN_MTU:
            self.configure_addresses(ns)

    @contextlib.contextmanager
    def temporary_mtu(self, ns: str, ifname: str, mtu: int) -> Iterator[None]:
        """Lower an interface MTU for the duration of a ``with`` block."""
        self.set_mtu(ns, ifname, mtu)
        try:
            yield
        finally:
            self.set_mtu(ns, ifname, DEFAULT_MTU)

    def sysctl(self, ns: str, *assignments: str) -> None:
        """Apply ``key=value`` sysctls inside ``ns`` (per-namespace keys only)."""
        args = [arg for kv in assignments for arg in ("--sysctl", kv)]
        self.run_in(ns, [sys.executable, str(Path(__file__).resolve()), "helper", *args])

    def ifindex(self, ns: str, ifname: str) -> int:
        """Return the interface index of ``ifname`` inside ``ns``."""
        out = self.run_in(ns, ["cat", f"/sys/class/net/{ifname}/ifindex"]).stdout
        return int(out.strip())

    # -- running things ----------------------------------------------------------

    def run_in(
        self,
        ns: str,
        cmd: Sequence[str],
        *,
        check: bool = True,
        timeout: float = 60.0,
        input_text: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` to completion inside ``ns`` and return its captured output."""
        argv = ns_argv(self.ns(ns), cmd)
        self._log(argv)
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, input=input_text, check=False
        )
        if check and result.returncode != 0:
            raise LabError(
                f"command failed ({result.returncode}) in {ns}: {' '.join(cmd)}\n"
                f"stdout: {result.stdout[-2000:]}\nstderr: {result.stderr[-2000:]}"
            )
        return result

    def spawn_in(
        self,
        ns: str,
        cmd: Sequence[str],
        *,
        stdin: int | IO[Any] | None = subprocess.DEVNULL,
        stdout: int | IO[Any] | None = subprocess.DEVNULL,
        stderr: int | IO[Any] | None = subprocess.DEVNULL,
        text: bool = False,
    ) -> subprocess.Popen[Any]:
        """Start a long-running ``cmd`` inside ``ns``; it is stopped by :meth:`teardown`.

        ``ip netns exec`` execs the command, so the returned PID is the program's own.
        """
        argv = ns_argv(self.ns(ns), cmd)
        self._log(argv)
        proc = subprocess.Popen(
            argv, stdin=stdin, stdout=stdout, stderr=stderr, text=text, start_new_session=True
        )
        self._procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, wait: float = 5) -> None:
        """Stop one process this lab started: ``sig`` first, SIGKILL after ``wait`` s."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=wait)
        if proc in self._procs:
            self._procs.remove(proc)

    def wait_for_listen(self, ns: str, port: int, timeout: float = 15.0) -> None:
        """Block until some socket in ``ns`` listens on TCP ``port``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.run_in(ns, ["ss", "-Hltn"], check=False).stdout
            if any(_port_of(line.split()[3]) == port for line in out.splitlines() if line.strip()):
                return
            time.sleep(0.1)
        raise LabError(f"nothing listens on tcp/{port} in {ns} after {timeout}s")

    def established_local(self, ns: str, dst_ip: str, dst_port: int) -> tuple[str, int] | None:
        """Return (local ip, local port) of an established TCP connection to a peer."""
        out = self.run_in(
            ns,
            ["ss", "-Htn", "state", "established", "dst", dst_ip, "dport", "=", f":{dst_port}"],
            check=False,
        ).stdout
        for line in out.splitlines():
            fields = line.split()
            if len(fields) >= 4:
                host, _, port = fields[2].rpartition(":")
                return host.strip("[]"), int(port)
        return None

    # -- internals ----------------------------------------------------------------

    def _ip(self, *args: str) -> None:
        argv = ["ip", *args]
        self._log(argv)
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise LabError(f"{' '.join(argv)} failed: {result.stderr.strip()}")

    def _tune_namespaces(self) -> None:
        for ns in self._created:
            sysctls = list(_COMMON_SYSCTLS)
            if ns == self.ns(ROUTER_NS):
                sysctls += _ROUTER_SYSCTLS
            args = [arg for kv in sysctls for arg in ("--sysctl", kv)]
            self.run_in(ns, [sys.executable, str(Path(__file__).resolve()), "helper", *args])

    def _disable_offloads(self, iface: Iface) -> None:
        helper = [sys.executable, str(Path(__file__).resolve()), "helper"]
        self.run_in(iface.ns, [*helper, "--offloads-off", iface.name])

    def _log(self, argv: Sequence[str]) -> None:
        if self.verbose:
            print("+", " ".join(argv), file=sys.stderr)


def _port_of(endpoint: str) -> int:
    """Return the port of an ``ss`` endpoint such as ``[::]:443`` or ``0.0.0.0:25``."""
    _, _, port = endpoint.rpartition(":")
    return int(port) if port.isdigit() else -1


# -- helpers that must run inside a namespace (invoked via ``ip netns exec``) -------


def write_sysctl(assignment: str) -> None:
    """Apply ``key=value`` by writing /proc/sys (no procps needed)."""
    key, _, value = assignment.partition("=")
    Path("/proc/sys", *key.split(".")).write_text(value + "\n")


def ethtool_set(ifname: str, cmd: int, value: int) -> None:
    """Issue one legacy ETHTOOL_S* ioctl on ``ifname`` in the current namespace."""
    ev = ctypes.create_string_buffer(struct.pack("II", cmd, value), 8)
    ifreq = struct.pack("16sP", ifname.encode(), ctypes.addressof(ev)) + bytes(16)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        fcntl.ioctl(sock, _SIOCETHTOOL, ifreq)


def offloads_off(ifname: str) -> None:
    """Turn off checksum/segmentation offloads so captures show wire-exact packets."""
    for name, cmd in _ETHTOOL_SET_CMDS.items():
        try:
            ethtool_set(ifname, cmd, 0)
        except OSError as exc:  # a feature the driver cannot change is not fatal
            print(f"warning: {ifname}: cannot disable {name}: {exc}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``up``, ``down`` and the in-namespace ``helper``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="build the lab and leave it running")
    sub.add_parser("down", help="delete the lab namespaces (tp-client, tp-router, tp-server)")
    helper = sub.add_parser("helper", help=argparse.SUPPRESS)
    helper.add_argument("--sysctl", action="append", default=[])
    helper.add_argument("--offloads-off", action="append", default=[])
    args = parser.parse_args(argv)

    if args.command == "helper":
        for assignment in args.sysctl:
            write_sysctl(assignment)
        for ifname in args.offloads_off:
            offloads_off(ifname)
        return 0
    if os.geteuid() != 0:
        print("must run as root", file=sys.stderr)
        return 1
    if args.command == "up":
        lab = Lab(verbose=True)
        try:
            lab.setup()
        except (LabError, subprocess.SubprocessError):
            lab.teardown()
            raise
        print("lab is up; remove it with: python3 tools/lab/netns.py down")
        return 0
    for ns in sorted(existing_namespaces() & set(NAMESPACES)):
        subprocess.run(["ip", "netns", "del", ns], check=True)
        print(f"deleted {ns}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
