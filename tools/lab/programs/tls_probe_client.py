"""Python ``ssl`` probe client: one TCP connection, one TLS handshake (or HTTP request).

Unlike ``py_tls_client.py`` it reports failures too, so it can be pointed at a
middlebox that resets, blocks or blackholes the connection. It prints exactly one
JSON object: the local address (known as soon as TCP connected, before any TLS
byte), whether the handshake and the request worked, the error otherwise, the
negotiated version and the leaf certificate's issuer and subject::

    python3 tls_probe_client.py --host 10.77.2.2 --port 9443 --sni blocked.tlsprobe.test \\
        --ca root.pem --timeout 5

``--sni ''`` sends no server_name extension; ``--filler-alpn N`` offers N long
made-up ALPN names so the ClientHello grows beyond one TCP segment; ``--plain``
sends an HTTP/1.1 GET without TLS. Exit status 0 when the request succeeded,
1 otherwise. Stdlib only.
"""

from __future__ import annotations

import argparse
import json
import socket
import ssl
import sys
from typing import Any

VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def make_context(args: argparse.Namespace) -> ssl.SSLContext:
    """Client context: lab CA (or none with ``--insecure``), optional version caps and ALPN."""
    if args.insecure:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context(cafile=args.ca)
        ctx.check_hostname = bool(args.sni)
    if args.max_version:
        ctx.maximum_version = VERSIONS[args.max_version]
    if args.min_version:
        ctx.minimum_version = VERSIONS[args.min_version]
    alpn = list(args.alpn)
    alpn += [f"x-tlsprobe-filler-{i:02d}-".ljust(60, "x") for i in range(args.filler_alpn)]
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def name_of(rdns: Any) -> str:
    """``((('commonName', 'x'),),)`` -> ``CN=x`` style text."""
    short = {"commonName": "CN", "organizationName": "O", "countryName": "C"}
    return ", ".join(f"{short.get(k, k)}={v}" for rdn in rdns for k, v in rdn)


def probe(args: argparse.Namespace) -> dict[str, Any]:
    """Connect, handshake, GET; never raises for network errors."""
    report: dict[str, Any] = {"ok": False, "stage": "connect", "error": None}
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    raw = socket.socket(family, socket.SOCK_STREAM)
    raw.settimeout(args.timeout)
    host_header = args.sni or args.host
    try:
        raw.connect((args.host, args.port))
        local = raw.getsockname()
        report.update(local_ip=local[0], local_port=local[1])
        if args.plain:
            report["stage"] = "http"
            raw.sendall(f"GET / HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: tlsprobe-lab\r\n\r\n".encode())
            data = raw.recv(65536)
            report["response_head"] = data.split(b"\r\n\r\n", 1)[0].decode(errors="replace")
            report["ok"] = bool(data)
            return report
        report["stage"] = "handshake"
        conn = make_context(args).wrap_socket(raw, server_hostname=args.sni or None)
        raw = conn
        report["version"] = conn.version()
        report["cipher"] = conn.cipher()[0] if conn.cipher() else None
        cert = conn.getpeercert() or {}
        report["issuer"] = name_of(cert.get("issuer", ()))
        report["subject"] = name_of(cert.get("subject", ()))
        report["stage"] = "request"
        conn.sendall(f"GET / HTTP/1.1\r\nHost: {host_header}\r\nConnection: close\r\n\r\n".encode())
        response = b""
        while chunk := conn.recv(4096):
            response += chunk
        report["status"] = response.split(b"\r\n", 1)[0].decode(errors="replace")
        report["ok"] = True
    except (OSError, ssl.SSLError) as exc:
        report["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        raw.close()
    return report


def main() -> int:
    """Parse arguments, probe once, print the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--sni", default="", help="server name; empty sends none")
    parser.add_argument("--ca", help="CA file to verify against")
    parser.add_argument("--insecure", action="store_true", help="do not verify the server")
    parser.add_argument("--max-version", choices=sorted(VERSIONS))
    parser.add_argument("--min-version", choices=sorted(VERSIONS))
    parser.add_argument("--alpn", action="append", default=[])
    parser.add_argument("--filler-alpn", type=int, default=0, help="extra long ALPN names to grow the hello")
    parser.add_argument("--plain", action="store_true", help="plain HTTP instead of TLS")
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()
    if not args.plain and not args.insecure and not args.ca:
        parser.error("--ca or --insecure is required for TLS")
    report = probe(args)
    print(json.dumps(report), flush=True)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
