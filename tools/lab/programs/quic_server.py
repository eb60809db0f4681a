"""Minimal QUIC server (aioquic) for the lab: completes handshakes, answers PINGs.

    python3 quic_server.py --port 4443 --cert fullchain.pem --key leaf.key

Listens on ``--host`` addresses (repeatable; default dual-stack ``::``) with ALPN ``h3``;
prints ``ready`` once bound.  Bind the addresses clients use when the host has several:
a socket on ``::`` answers from the kernel's preferred source address, not from the
address the client sent to, and the client drops those datagrams.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from aioquic.asyncio import serve
from aioquic.quic.configuration import QuicConfiguration


async def run(args: argparse.Namespace) -> None:
    """Serve until killed."""
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
    asyncio.run(run(parser.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
