"""Transparent TLS-intercepting proxy for ``tp-router`` (certificate substitution).

Connections reach it through policy routing, without netfilter::

    ip rule add to 10.77.2.2 ipproto tcp dport 443 lookup 100
    ip route add local 0.0.0.0/0 dev lo table 100

The kernel then delivers the client's SYN for 10.77.2.2:443 locally; a listener on
``0.0.0.0:PORT`` with ``IP_TRANSPARENT`` accepts it and answers *as* 10.77.2.2
(the option lets the accepted socket send from an address the router does not
own). The proxy terminates TLS with a leaf certificate for the requested SNI,
issued on first use by its own CA (``--ca-cert``/``--ca-key``, via the
``openssl`` command), then opens its own TLS connection to the original
destination (from the router's address) with the same SNI (and TLS 1.2 when the
client negotiated TLS 1.2) and relays bytes both ways. One JSON line per connection on stdout: client address, original
destination, SNI, TLS version towards the client, the proxy's upstream local
address and port. Stdlib plus the ``openssl`` CLI::

    python3 tls_intercept_proxy.py --port 443 --port 8443 --ca-cert ca.pem --ca-key ca.key \\
        --workdir /tmp/x --upstream-ca root.pem

``--ipv6`` adds an ``[::]:PORT`` listener (``IPV6_TRANSPARENT``, IPv6 only: set
``net.ipv6.bindv6only=1`` or it may clash with the IPv4 one) for the same
policy routing with ``ip -6 rule`` / ``ip -6 route add local ::/0``; ``--leaf-org``
sets the O= of the minted leaves.
"""

from __future__ import annotations

import argparse
import json
import re
import select
import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path

IP_TRANSPARENT = 19
IPV6_TRANSPARENT = 75
LEAF_ORG = "tlsprobe lab interception proxy"
_EXT = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = {san}
"""


def log(**fields: object) -> None:
    """One JSON line on stdout."""
    print(json.dumps(fields), flush=True)


class CertFactory:
    """Issues (and caches) a leaf certificate per server name from the interception CA."""

    def __init__(self, ca_cert: Path, ca_key: Path, workdir: Path, leaf_org: str = LEAF_ORG) -> None:
        self.ca_cert, self.ca_key, self.workdir = ca_cert, ca_key, workdir
        self.leaf_org = leaf_org
        self.lock = threading.Lock()
        self.contexts: dict[str, ssl.SSLContext] = {}
        workdir.mkdir(parents=True, exist_ok=True)
        self.key = workdir / "forged-leaf.key"
        self._openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(self.key))

    def _openssl(self, *args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=self.workdir)

    def context_for(self, name: str) -> ssl.SSLContext:
        """Server context presenting ``leaf(name) + interception CA``."""
        with self.lock:
            if name not in self.contexts:
                safe = re.sub(r"[^A-Za-z0-9.-]", "_", name)
                try:
                    socket.inet_pton(socket.AF_INET6 if ":" in name else socket.AF_INET, name)
                    san = f"IP:{name}"
                except OSError:
                    san = f"DNS:{name}"
                (self.workdir / f"{safe}.ext").write_text(_EXT.format(san=san))
                self._openssl(
                    "req",
                    "-new",
                    "-key",
                    str(self.key),
                    "-subj",
                    f"/O={self.leaf_org}/CN={name}",
                    "-out",
                    f"{safe}.csr",
                )
                self._openssl(
                    "x509",
                    "-req",
                    "-in",
                    f"{safe}.csr",
                    "-CA",
                    str(self.ca_cert),
                    "-CAkey",
                    str(self.ca_key),
                    "-CAcreateserial",
                    "-days",
                    "30",
                    "-sha256",
                    "-extfile",
                    f"{safe}.ext",
                    "-out",
                    f"{safe}.pem",
                )
                chain = self.workdir / f"{safe}.chain.pem"
                chain.write_text((self.workdir / f"{safe}.pem").read_text() + self.ca_cert.read_text())
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.load_cert_chain(str(chain), str(self.key))
                self.contexts[name] = ctx
            return self.contexts[name]


def relay(a: ssl.SSLSocket, b: ssl.SSLSocket) -> None:
    """Copy bytes both ways until either side closes."""
    socks = [a, b]
    peer = {a: b, b: a}
    while True:
        pending = [s for s in socks if s.pending()]
        ready = pending or select.select(socks, [], [], 30)[0]
        if not ready:
            return
        for s in ready:
            data = s.recv(16384)
            if not data:
                return
            peer[s].sendall(data)


def handle(raw: socket.socket, peer: tuple[str, int], factory: CertFactory, args: argparse.Namespace) -> None:
    """Terminate the client's TLS, connect upstream, relay."""
    orig = raw.getsockname()
    names: list[str] = []
    default_name = args.default_name or orig[0]

    def on_sni(sslobj: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        names.append(server_name or "")
        sslobj.context = factory.context_for(server_name or default_name)

    front = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    front.sni_callback = on_sni  # type: ignore[assignment]
    front.load_cert_chain(*factory_default(factory, default_name))
    entry: dict[str, object] = {"client": list(peer[:2]), "original_dst": list(orig[:2])}
    try:
        raw.settimeout(15)
        client = front.wrap_socket(raw, server_side=True)
        sni = names[0] if names else None
        entry.update(sni=sni or None, client_version=client.version())
        back_ctx = (
            ssl.create_default_context(cafile=args.upstream_ca) if args.upstream_ca else ssl.create_default_context()
        )
        back_ctx.check_hostname = False
        if client.version() == "TLSv1.2":  # mirror the client's version, so both legs are TLS 1.2
            back_ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        up_raw = socket.create_connection((orig[0], orig[1]), timeout=15)
        up_local = up_raw.getsockname()
        entry.update(upstream_local=[up_local[0], up_local[1]])
        upstream = back_ctx.wrap_socket(up_raw, server_hostname=sni or None)
        entry.update(upstream_version=upstream.version())
        log(**entry)
        with client, upstream:
            relay(client, upstream)
    except (OSError, ssl.SSLError) as exc:
        entry["error"] = str(exc)
        log(**entry)
        raw.close()


def factory_default(factory: CertFactory, name: str) -> tuple[str, str]:
    """Cert/key files for the default (no-SNI) name, creating them if needed."""
    factory.context_for(name)
    safe = re.sub(r"[^A-Za-z0-9.-]", "_", name)
    return str(factory.workdir / f"{safe}.chain.pem"), str(factory.key)


def serve(port: int, factory: CertFactory, args: argparse.Namespace, family: int = socket.AF_INET) -> None:
    """Accept loop for one transparent listener."""
    srv = socket.socket(family, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        srv.setsockopt(socket.IPPROTO_IPV6, IPV6_TRANSPARENT, 1)
        srv.bind(("::", port))
    else:
        srv.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
        srv.bind(("0.0.0.0", port))
    srv.listen(16)
    log(listening=port)
    while True:
        conn, peer = srv.accept()
        threading.Thread(target=handle, args=(conn, peer, factory, args), daemon=True).start()


def main() -> int:
    """Start one transparent listener per ``--port``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, action="append", required=True)
    parser.add_argument("--ca-cert", required=True, type=Path)
    parser.add_argument("--ca-key", required=True, type=Path)
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--upstream-ca", help="CA file to verify the real server with")
    parser.add_argument("--default-name", help="certificate name when the client sends no SNI")
    parser.add_argument("--ipv6", action="store_true", help="also listen on [::]:PORT (IPv6 only)")
    parser.add_argument("--leaf-org", default=LEAF_ORG, help="O= of the minted leaf certificates")
    args = parser.parse_args()
    factory = CertFactory(args.ca_cert, args.ca_key, args.workdir, args.leaf_org)
    families = [socket.AF_INET, socket.AF_INET6] if args.ipv6 else [socket.AF_INET]
    threads = [
        threading.Thread(target=serve, args=(p, factory, args, fam), daemon=True) for p in args.port for fam in families
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
