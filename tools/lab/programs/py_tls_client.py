"""Python ``ssl`` HTTPS client for the lab: GET one small page, report what happened.

Prints one JSON object per connection on stdout with the local address, negotiated
TLS version, ALPN and whether the session was resumed. With ``--resume`` it makes a
second connection that resumes the first one's session (TLS 1.3 PSK ticket).
Connecting with ``--sni ''`` and an IP ``--host`` sends no SNI at all (Python
never puts IP addresses into SNI) while still verifying the certificate's IP SAN.

    python3 py_tls_client.py --host 10.77.2.2 --port 443 --ca root.pem --alpn http/1.1
"""

from __future__ import annotations

import argparse
import json
import socket
import ssl
import sys

VERSIONS = {
    "1.0": ssl.TLSVersion.TLSv1,
    "1.1": ssl.TLSVersion.TLSv1_1,
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}


def make_context(args: argparse.Namespace) -> ssl.SSLContext:
    """Client context trusting only the lab root CA."""
    ctx = ssl.create_default_context(cafile=args.ca)
    if args.alpn:
        ctx.set_alpn_protocols(args.alpn)
    if args.max_version:
        ctx.maximum_version = VERSIONS[args.max_version]
    return ctx


def fetch(
    ctx: ssl.SSLContext, args: argparse.Namespace, session: ssl.SSLSession | None
) -> tuple[dict[str, object], ssl.SSLSession | None]:
    """Make one connection, GET ``/``, read to EOF; return report and session."""
    server_hostname = args.sni or args.host
    host_header = args.sni or args.host
    with (
        socket.create_connection((args.host, args.port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname=server_hostname, session=session) as conn,
    ):
        local = conn.getsockname()
        request = f"GET / HTTP/1.1\r\nHost: {host_header}\r\nConnection: close\r\n\r\n"
        conn.sendall(request.encode())
        response = b""
        while chunk := conn.recv(4096):
            response += chunk
        report: dict[str, object] = {
            "local_ip": local[0],
            "local_port": local[1],
            "version": conn.version(),
            "alpn": conn.selected_alpn_protocol(),
            "session_reused": conn.session_reused,
            "status": response.split(b"\r\n", 1)[0].decode(errors="replace"),
        }
        return report, conn.session


def main() -> int:
    """Parse arguments, connect once (or twice with ``--resume``), print JSON lines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True, help="server IP address")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--sni", default="", help="server name; empty means none (use IP)")
    parser.add_argument("--ca", required=True)
    parser.add_argument("--alpn", action="append", default=[])
    parser.add_argument("--max-version", choices=sorted(VERSIONS))
    parser.add_argument("--resume", action="store_true", help="second, resumed connection")
    args = parser.parse_args()
    ctx = make_context(args)
    report, session = fetch(ctx, args, None)
    print(json.dumps(report), flush=True)
    if args.resume:
        report, _ = fetch(ctx, args, session)
        print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
