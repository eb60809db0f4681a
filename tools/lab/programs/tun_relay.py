"""A point-to-point raw-IP link between two namespaces: two TUN devices and a copy loop.

Creates TUN device ``--name`` in the namespace this process starts in and
``--peer-name`` in the namespace ``--peer-netns`` (entered with ``setns(2)``), then
copies every IP packet the kernel writes to one device into the other, like a
minimal VPN without encryption. The packets are the kernel's own; this process only
moves them, unchanged, so a capture on either TUN device has link type RAW (bare IP
packets, no link-layer header). Addresses and routes are configured by the caller
with ``ip`` once ``ready`` is printed. Both devices disappear when the process exits
(stop it by PID). Stdlib only::

    ip netns exec tp-client python3 tun_relay.py --name tun0 \\
        --peer-netns tp-router --peer-name tun-client
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import os
import select
import signal
import struct
import sys

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
CLONE_NEWNET = 0x40000000
MAX_PACKET = 65536

_libc = ctypes.CDLL(None, use_errno=True)


def open_tun(name: str) -> int:
    """Create TUN device ``name`` (IFF_TUN, no packet-info header) in this namespace."""
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def enter_netns(name: str) -> None:
    """Move this (single-threaded) process into the named network namespace."""
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({name}): {os.strerror(err)}")
    finally:
        os.close(fd)


def relay(a: int, b: int) -> None:
    """Copy packets between the two TUN fds until killed."""
    peer = {a: b, b: a}
    while True:
        ready, _, _ = select.select([a, b], [], [])
        for fd in ready:
            packet = os.read(fd, MAX_PACKET)
            if packet:
                os.write(peer[fd], packet)


def main() -> int:
    """Create both devices, report ``ready``, relay until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="TUN device in this namespace")
    parser.add_argument("--peer-netns", required=True)
    parser.add_argument("--peer-name", required=True, help="TUN device in the peer namespace")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    local = open_tun(args.name)
    enter_netns(args.peer_netns)
    remote = open_tun(args.peer_name)
    print(f"ready {args.name} <-> {args.peer_netns}/{args.peer_name}", flush=True)
    try:
        relay(local, remote)
    except KeyboardInterrupt:
        pass
    finally:
        os.close(local)
        os.close(remote)
    return 0


if __name__ == "__main__":
    sys.exit(main())
