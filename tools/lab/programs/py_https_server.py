"""Small Python ``ssl`` HTTPS server for the lab (HTTP/1.1, plus just enough HTTP/2).

Listens dual-stack on ``[::]:PORT``, offers ALPN ``h2`` and ``http/1.1`` (server
preference), and answers every request with a short text body. When ``h2`` is
negotiated it speaks a minimal HTTP/2: SETTINGS exchange, one response (HEADERS
and DATA) on the client's first stream, then GOAWAY. Stdlib only.

    python3 py_https_server.py --port 443 --cert fullchain.pem --key leaf.key

``--alt-svc 'h3=":443"; ma=86400'`` adds that ``Alt-Svc`` header to every response
(HTTP/1.1 and HTTP/2), as a server that also speaks HTTP/3 announces it.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import ssl
import struct
import sys
import threading

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
H2_DATA, H2_HEADERS, H2_SETTINGS, H2_GOAWAY = 0x0, 0x1, 0x4, 0x7
FLAG_END_STREAM, FLAG_ACK, FLAG_END_HEADERS = 0x1, 0x1, 0x4
CONN_TIMEOUT = 10.0
ALT_SVC = ""  # --alt-svc


def log(msg: str) -> None:
    """Log one line to stderr."""
    print(f"py_https_server: {msg}", file=sys.stderr, flush=True)


def body_for(proto: str, version: str) -> bytes:
    """Return the response body for a negotiated protocol and TLS version."""
    return f"hello from tlsprobe lab (python ssl, {proto}, {version})\n".encode()


def recv_exact(conn: ssl.SSLSocket, n: int) -> bytes:
    """Read exactly ``n`` bytes or raise ConnectionError on EOF."""
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("peer closed")
        buf += chunk
    return buf


def h2_frame(ftype: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    """Serialise one HTTP/2 frame."""
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes([ftype, flags])
        + struct.pack(">I", stream & 0x7FFFFFFF)
        + payload
    )


def h2_read_frame(conn: ssl.SSLSocket) -> tuple[int, int, int, bytes]:
    """Read one HTTP/2 frame: (type, flags, stream id, payload)."""
    header = recv_exact(conn, 9)
    length = int.from_bytes(header[:3], "big")
    stream = int.from_bytes(header[5:9], "big") & 0x7FFFFFFF
    return header[3], header[4], stream, recv_exact(conn, length)


def hpack_literal(index: int, value: str) -> bytes:
    """HPACK literal header field without indexing, name from static table (index < 30)."""
    raw = value.encode()
    return bytes([0x0F, index - 15, len(raw)]) + raw


def h2_response(stream: int, body: bytes) -> bytes:
    """HEADERS (:status 200, content-type, content-length) and DATA frames for ``body``."""
    block = b"\x88" + hpack_literal(31, "text/plain") + hpack_literal(28, str(len(body)))
    if ALT_SVC:  # literal without indexing, new name (no static-table entry for alt-svc)
        value = ALT_SVC.encode()
        block += b"\x00\x07alt-svc" + bytes([len(value)]) + value
    return h2_frame(H2_HEADERS, FLAG_END_HEADERS, stream, block) + h2_frame(
        H2_DATA, FLAG_END_STREAM, stream, body
    )


def serve_h2(conn: ssl.SSLSocket) -> None:
    """Serve one request over HTTP/2, then say GOAWAY and drain until the peer closes."""
    if recv_exact(conn, len(H2_PREFACE)) != H2_PREFACE:
        raise ConnectionError("bad HTTP/2 preface")
    conn.sendall(h2_frame(H2_SETTINGS, 0, 0))
    answered = 0
    while True:
        ftype, flags, stream, _ = h2_read_frame(conn)
        if ftype == H2_SETTINGS and not flags & FLAG_ACK:
            conn.sendall(h2_frame(H2_SETTINGS, FLAG_ACK, 0))
        elif ftype in (H2_HEADERS, H2_DATA) and flags & FLAG_END_STREAM and not answered:
            conn.sendall(h2_response(stream, body_for("h2", str(conn.version()))))
            conn.sendall(h2_frame(H2_GOAWAY, 0, 0, struct.pack(">II", stream, 0)))
            answered = stream
        elif ftype == H2_GOAWAY:
            return


def serve_http1(conn: ssl.SSLSocket) -> None:
    """Read one HTTP/1.x request head and send a ``Connection: close`` response."""
    head = b""
    while b"\r\n\r\n" not in head and len(head) < 65536:
        chunk = conn.recv(4096)
        if not chunk:
            return
        head += chunk
    body = body_for("http/1.1", str(conn.version()))
    conn.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
        + (f"Alt-Svc: {ALT_SVC}\r\n" if ALT_SVC else "").encode()
        + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )


def handle(ctx: ssl.SSLContext, raw: socket.socket, peer: str) -> None:
    """TLS-accept one connection and dispatch on the negotiated ALPN protocol."""
    raw.settimeout(CONN_TIMEOUT)
    try:
        with ctx.wrap_socket(raw, server_side=True) as conn:
            alpn = conn.selected_alpn_protocol()
            log(f"{peer} {conn.version()} alpn={alpn}")
            if alpn == "h2":
                serve_h2(conn)
            else:
                serve_http1(conn)
            with contextlib.suppress(ssl.SSLError, OSError):
                conn.unwrap()
    except (ssl.SSLError, OSError, ConnectionError) as exc:
        log(f"{peer} error: {exc}")
    finally:
        raw.close()


def log_sni(_sock: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
    """SNI callback: only records which name (if any) the client asked for."""
    log(f"client hello sni={server_name!r}")


def make_context(cert: str, key: str) -> ssl.SSLContext:
    """Server context: chain from ``cert`` (leaf + intermediate), ALPN h2 then http/1.1."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    ctx.sni_callback = log_sni
    return ctx


def listen(port: int) -> socket.socket:
    """Dual-stack listening socket on ``[::]:port``."""
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind(("::", port))
    sock.listen(16)
    return sock


def main() -> int:
    """Parse arguments and serve until killed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", required=True, help="PEM chain: leaf then intermediate")
    parser.add_argument("--key", required=True)
    parser.add_argument("--alt-svc", default="", help="Alt-Svc header value (HTTP/3 announcement)")
    args = parser.parse_args()
    global ALT_SVC
    ALT_SVC = args.alt_svc
    ctx = make_context(args.cert, args.key)
    with listen(args.port) as sock:
        log(f"listening on [::]:{args.port}")
        while True:
            raw, addr = sock.accept()
            peer = f"[{addr[0]}]:{addr[1]}"
            threading.Thread(target=handle, args=(ctx, raw, peer), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
