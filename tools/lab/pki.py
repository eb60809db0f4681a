"""Throwaway PKI for the lab: root CA -> intermediate CA -> server leaf, via ``openssl``.

All keys are ECDSA P-256 and live only in the caller's temporary directory. Servers
send ``leaf + intermediate`` (``fullchain.pem``), so a TLS 1.2 Certificate message
carries exactly two certificates; clients trust only ``root.pem``.
"""

from __future__ import annotations

import hashlib
import secrets
import ssl
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT_CN = "tlsprobe demo root CA"
INTERMEDIATE_CN = "tlsprobe demo intermediate CA"
LEAF_CN = "demo.tlsprobe.test"

_CA_EXT = """\
basicConstraints = critical, CA:TRUE{pathlen}
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""

_LEAF_EXT = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = {sans}
"""


@dataclass(frozen=True)
class Pki:
    """Paths of the generated material."""

    root_cert: Path
    intermediate_cert: Path
    leaf_cert: Path
    leaf_key: Path
    fullchain: Path

    def describe(self) -> dict[str, object]:
        """Return subjects and SHA-256 fingerprints (of the DER) for the labels file."""
        return {
            "key_type": "ECDSA P-256",
            "root": {"subject_cn": ROOT_CN, "sha256": der_sha256(self.root_cert)},
            "intermediate": {
                "subject_cn": INTERMEDIATE_CN,
                "sha256": der_sha256(self.intermediate_cert),
            },
            "leaf": {"subject_cn": LEAF_CN, "sha256": der_sha256(self.leaf_cert)},
            "chain_sent_by_servers": ["leaf", "intermediate"],
        }


def der_sha256(pem_path: Path) -> str:
    """SHA-256 of the first certificate in a PEM file, as lowercase hex."""
    der = ssl.PEM_cert_to_DER_cert(pem_path.read_text())
    return hashlib.sha256(der).hexdigest()


def _openssl(args: Sequence[str], cwd: Path) -> None:
    result = subprocess.run(
        ["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{result.stderr}")


def _new_key(name: str, cwd: Path) -> None:
    _openssl(
        ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", name], cwd
    )


def _serial() -> str:
    return "0x" + secrets.token_hex(12)


def _sign(csr: str, out: str, ca: str, ca_key: str, ext: str, days: int, cwd: Path) -> None:
    (cwd / "ext.cnf").write_text(ext)
    _openssl(
        [
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            ca,
            "-CAkey",
            ca_key,
            "-set_serial",
            _serial(),
            "-days",
            str(days),
            "-sha256",
            "-extfile",
            "ext.cnf",
            "-out",
            out,
        ],
        cwd,
    )


def make_pki(workdir: Path, dns_names: Sequence[str], ip_addrs: Sequence[str]) -> Pki:
    """Create root, intermediate and leaf certificates inside ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    for key in ("root.key", "inter.key", "leaf.key"):
        _new_key(key, workdir)
    _openssl(
        [
            "req",
            "-x509",
            "-new",
            "-key",
            "root.key",
            "-subj",
            f"/CN={ROOT_CN}",
            "-set_serial",
            _serial(),
            "-days",
            "3650",
            "-sha256",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-out",
            "root.pem",
        ],
        workdir,
    )
    _openssl(
        [
            "req",
            "-new",
            "-key",
            "inter.key",
            "-subj",
            f"/CN={INTERMEDIATE_CN}",
            "-out",
            "inter.csr",
        ],
        workdir,
    )
    _sign(
        "inter.csr",
        "inter.pem",
        "root.pem",
        "root.key",
        _CA_EXT.format(pathlen=", pathlen:0"),
        3650,
        workdir,
    )
    sans = ", ".join([f"DNS:{n}" for n in dns_names] + [f"IP:{a}" for a in ip_addrs])
    _openssl(
        ["req", "-new", "-key", "leaf.key", "-subj", f"/CN={LEAF_CN}", "-out", "leaf.csr"], workdir
    )
    _sign(
        "leaf.csr", "leaf.pem", "inter.pem", "inter.key", _LEAF_EXT.format(sans=sans), 825, workdir
    )
    fullchain = workdir / "fullchain.pem"
    fullchain.write_text((workdir / "leaf.pem").read_text() + (workdir / "inter.pem").read_text())
    return Pki(
        root_cert=workdir / "root.pem",
        intermediate_cert=workdir / "inter.pem",
        leaf_cert=workdir / "leaf.pem",
        leaf_key=workdir / "leaf.key",
        fullchain=fullchain,
    )
