"""TLS server that looks at the ClientHello first, like an SNI router or a load balancer.

For each accepted connection it waits for the first TLS record (``MSG_PEEK``, so
the bytes stay queued), reads the SNI and then

* ``--always rst|fin``: closes without answering, whatever the SNI (a listener with
  no healthy backend); ``rst`` is an abortive close (``SO_LINGER`` 0 -> RST),
  ``fin`` reads the hello and closes normally (FIN);
* a SNI not in ``--known-sni`` -> ``--unknown-sni rst|fin`` (HAProxy-style
  "reject unless req.ssl_sni is known");
* a known SNI -> a normal TLS handshake (Python ``ssl``) and a short HTTP answer,
  after ``--answer-delay-ms`` (a slow backend: the ServerHello comes late);
  ``--known-sni '*'`` knows every name.

Each decision is printed as one JSON line on stdout. Stdlib only::

    python3 tcp_gate_server.py --port 10443 --cert fullchain.pem --key leaf.key \\
        --known-sni demo.tlsprobe.test --unknown-sni rst
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import ssl
import struct
import sys
import threading
import time

PEEK_TIMEOUT = 5.0


def log(**fields: object) -> None:
    """One JSON line on stdout."""
    print(json.dumps(fields), flush=True)


def peek_hello(conn: socket.socket) -> bytes:
    """Return the first TLS record (or whatever arrived) without consuming it."""
    deadline = time.monotonic() + PEEK_TIMEOUT
    data = b""
    while time.monotonic() < deadline:
        data = conn.recv(16384, socket.MSG_PEEK)
        if not data:
            return b""
        if len(data) >= 5 and len(data) >= 5 + struct.unpack("!H", data[3:5])[0]:
            return data
        time.sleep(0.01)
    return data


def sni_of(record: bytes) -> str | None:
    """server_name of a ClientHello record, or ``None``."""
    try:
        body = record[5:]
        pos = 4 + 2 + 32
        pos += 1 + body[pos]
        pos += 2 + struct.unpack("!H", body[pos : pos + 2])[0]
        pos += 1 + body[pos]
        end = pos + 2 + struct.unpack("!H", body[pos : pos + 2])[0]
        pos += 2
        while pos + 4 <= end:
            etype, elen = struct.unpack("!HH", body[pos : pos + 4])
            if etype == 0:
                name_len = struct.unpack("!H", body[pos + 7 : pos + 9])[0]
                return body[pos + 9 : pos + 9 + name_len].decode("ascii", "replace")
            pos += 4 + elen
    except (IndexError, struct.error):
        return None
    return None


def close_as(conn: socket.socket, how: str) -> None:
    """Close with RST (abortive) or FIN (after consuming what was received)."""
    if how == "rst":
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    else:
        conn.setblocking(False)
        try:
            while conn.recv(65536):
                pass
        except BlockingIOError:
            pass
    conn.close()


def handle(ctx: ssl.SSLContext, conn: socket.socket, peer: tuple[str, int], args: argparse.Namespace) -> None:
    """Decide on one connection."""
    conn.settimeout(PEEK_TIMEOUT)
    try:
        record = peek_hello(conn)
        sni = sni_of(record) if record[:1] == b"\x16" else None
        if args.always:
            log(peer=list(peer[:2]), sni=sni, action=args.always, why="always")
            close_as(conn, args.always)
            return
        if sni not in args.known_sni and "*" not in args.known_sni:
            log(peer=list(peer[:2]), sni=sni, action=args.unknown_sni, why="unknown sni")
            close_as(conn, args.unknown_sni)
            return
        log(peer=list(peer[:2]), sni=sni, action="tls", delay_ms=args.answer_delay_ms)
        if args.answer_delay_ms:
            time.sleep(args.answer_delay_ms / 1000.0)
        with ctx.wrap_socket(conn, server_side=True) as tls:
            tls.recv(4096)
            body = b"hello from tcp_gate_server\n"
            tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
            with contextlib.suppress(OSError, ssl.SSLError):
                tls.unwrap()  # close_notify, so clients see a clean TLS close
    except (OSError, ssl.SSLError) as exc:
        log(peer=list(peer[:2]), error=str(exc))
        conn.close()


def main() -> int:
    """Listen dual-stack and handle each connection in a thread."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--known-sni", action="append", default=[])
    parser.add_argument("--unknown-sni", choices=("rst", "fin"), default="rst")
    parser.add_argument("--always", choices=("rst", "fin"))
    parser.add_argument("--answer-delay-ms", type=float, default=0.0, help="wait before the TLS handshake")
    args = parser.parse_args()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    srv = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    srv.bind(("::", args.port))
    srv.listen(16)
    log(listening=args.port)
    while True:
        conn, peer = srv.accept()
        threading.Thread(target=handle, args=(ctx, conn, peer, args), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
