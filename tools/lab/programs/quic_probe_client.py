"""QUIC probe client (aioquic): one connection from a chosen local UDP port, one JSON report.

    python3 quic_probe_client.py --host 10.77.2.2 --port 4443 --sni x.test --local-port 42001 \\
        --ca root.pem --timeout 4

Prints ``{"ok", "local_ip", "local_port", "error"}``; exit 0 when the handshake
completed and a PING was answered.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from aioquic.asyncio import connect
from aioquic.quic.configuration import QuicConfiguration


class Done(Exception):
    """The PING was answered: leave without sitting out the closing period."""


async def probe(args: argparse.Namespace) -> None:
    """Handshake and PING, then CONNECTION_CLOSE.

    ``connect`` would wait for the closing period (3 PTO) on the way out; after a slow
    server's first answer the PTO is seconds long, so the CONNECTION_CLOSE is sent and
    the socket closed at once, as a browser that is done with the connection does.
    """
    cfg = QuicConfiguration(is_client=True, alpn_protocols=["h3"], server_name=args.sni)
    cfg.load_verify_locations(args.ca)
    try:
        async with connect(args.host, args.port, configuration=cfg, local_port=args.local_port,
                           wait_connected=True) as conn:
            await conn.ping()
            conn.close()
            await asyncio.sleep(0.05)
            raise Done
    except Done:
        pass


def main() -> int:
    """Parse arguments, probe once, print the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--sni", required=True)
    parser.add_argument("--local-port", type=int, required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--timeout", type=float, default=4.0)
    args = parser.parse_args()
    report: dict[str, Any] = {"ok": False, "local_ip": None, "local_port": args.local_port, "error": None}
    report["local_ip"] = "::" if ":" in args.host else "0.0.0.0"
    try:
        asyncio.run(asyncio.wait_for(probe(args), args.timeout))
        report["ok"] = True
    except (asyncio.TimeoutError, TimeoutError):
        report["error"] = "timeout"
    except Exception as exc:  # any handshake failure is a result, not a crash
        report["error"] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(report), flush=True)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
