"""Minimal QUIC server (aioquic) for the lab: completes handshakes, answers PINGs.

    python3 quic_server.py --port 4443 --cert fullchain.pem --key leaf.key

Listens on ``--host`` addresses (repeatable; default dual-stack ``::``) with ALPN ``h3``;
prints ``ready`` once bound.  Bind the addresses clients use when the host has several:
a socket on ``::`` answers from the kernel's preferred source address, not from the
address the client sent to, and the client drops those datagrams.
``--first-answer-delay-ms N`` makes a slow server: every datagram from a client
address is held until N ms after that address's first datagram (so the first
answer comes N ms late; the client's retransmitted Initials are answered then).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from aioquic.asyncio import serve
from aioquic.asyncio.server import QuicServer
from aioquic.quic.configuration import QuicConfiguration


def slow_down(delay_s: float) -> None:
    """Hold each client address's datagrams until ``delay_s`` after its first one."""
    original = QuicServer.datagram_received
    first_seen: dict[Any, float] = {}

    def datagram_received(self: QuicServer, data: bytes | str, addr: Any) -> None:
        now = time.monotonic()
        due = first_seen.setdefault(addr[:2], now) + delay_s
        if now >= due:
            original(self, data, addr)
        else:
            asyncio.get_running_loop().call_later(due - now, original, self, data, addr)

    QuicServer.datagram_received = datagram_received  # type: ignore[method-assign]


async def run(args: argparse.Namespace) -> None:
    """Serve until killed."""
    if args.first_answer_delay_ms:
        slow_down(args.first_answer_delay_ms / 1000.0)
    cfg = QuicConfiguration(is_client=False, alpn_protocols=["h3"])
    cfg.load_cert_chain(args.cert, args.key)
    for host in args.host or ["::"]:
        await serve(host, args.port, configuration=cfg)
    print("ready", flush=True)
    await asyncio.Future()


def main() -> int:
    """Parse arguments and serve."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", action="append", default=[])
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--first-answer-delay-ms", type=float, default=0.0)
    asyncio.run(run(parser.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
