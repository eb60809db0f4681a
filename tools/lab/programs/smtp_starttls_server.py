"""Tiny SMTP server with STARTTLS for the lab (stdlib only).

Understands EHLO/HELO, STARTTLS, NOOP, RSET and QUIT, which is what
``openssl s_client -starttls smtp`` needs; no mail is accepted. Connections are
served one after another.

    python3 smtp_starttls_server.py --port 587 --cert fullchain.pem --key leaf.key
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import ssl
import sys

HOSTNAME = "mail.tlsprobe.test"
CONN_TIMEOUT = 10.0


def log(msg: str) -> None:
    """Log one line to stderr."""
    print(f"smtp_starttls_server: {msg}", file=sys.stderr, flush=True)


class LineConn:
    """CRLF line reader/writer over a plain or TLS socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def readline(self) -> str | None:
        """Return the next line without its line ending, or None at EOF."""
        while b"\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                return None
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.rstrip(b"\r").decode("ascii", "replace")

    def reply(self, *lines: str) -> None:
        """Send a (possibly multi-line) SMTP reply; each line starts with its code."""
        out = [f"{ln[:3]}-{ln[4:]}" for ln in lines[:-1]] + [lines[-1]]
        self.sock.sendall("".join(f"{ln}\r\n" for ln in out).encode())


def ehlo_lines(tls_active: bool) -> list[str]:
    """EHLO response lines; STARTTLS is advertised only before TLS."""
    lines = [f"250 {HOSTNAME} greets you", "250 SIZE 1048576", "250 8BITMIME"]
    if not tls_active:
        lines.append("250 STARTTLS")
    return lines


def session(ctx: ssl.SSLContext, raw: socket.socket, peer: str) -> None:
    """Run one SMTP session, upgrading to TLS on STARTTLS."""
    conn = LineConn(raw)
    try:
        dialogue(ctx, conn, peer)
    finally:
        conn.sock.close()


def dialogue(ctx: ssl.SSLContext, conn: LineConn, peer: str) -> None:
    """Answer commands until QUIT or EOF; ``conn`` is switched to TLS on STARTTLS."""
    raw = conn.sock
    tls_active = False
    conn.reply(f"220 {HOSTNAME} ESMTP tlsprobe-lab")
    while (line := conn.readline()) is not None:
        verb = line.split(" ", 1)[0].upper()
        if verb in ("EHLO", "HELO"):
            conn.reply(*ehlo_lines(tls_active))
        elif verb == "STARTTLS" and not tls_active:
            if conn.buf:
                conn.reply("501 5.5.4 pipelined data after STARTTLS")
                return
            conn.reply("220 2.0.0 Ready to start TLS")
            tls_sock = ctx.wrap_socket(raw, server_side=True)
            log(f"{peer} STARTTLS -> {tls_sock.version()}")
            conn.sock, conn.buf = tls_sock, b""
            tls_active = True
        elif verb in ("NOOP", "RSET"):
            conn.reply("250 2.0.0 OK")
        elif verb == "QUIT":
            conn.reply("221 2.0.0 Bye")
            if isinstance(conn.sock, ssl.SSLSocket):
                with contextlib.suppress(ssl.SSLError, OSError):
                    conn.sock.unwrap()
            return
        else:
            conn.reply("502 5.5.2 Command not implemented")


def main() -> int:
    """Parse arguments and serve until killed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", required=True, help="PEM chain: leaf then intermediate")
    parser.add_argument("--key", required=True)
    args = parser.parse_args()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(("::", args.port))
        sock.listen(8)
        log(f"listening on [::]:{args.port}")
        while True:
            raw, addr = sock.accept()
            raw.settimeout(CONN_TIMEOUT)
            peer = f"[{addr[0]}]:{addr[1]}"
            try:
                session(ctx, raw, peer)
            except (ssl.SSLError, OSError) as exc:
                log(f"{peer} error: {exc}")
            finally:
                raw.close()


if __name__ == "__main__":
    sys.exit(main())
