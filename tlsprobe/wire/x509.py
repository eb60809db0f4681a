"""Certificate chain details with ``cryptography`` (DER in, :class:`CertificateInfo` out).

``cryptography`` is imported on first use: most runs see TLS 1.3 only, whose
certificates are encrypted, and the import costs a noticeable share of a short run.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import warnings
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tlsprobe.errors import WireError
from tlsprobe.limits import VERIFY_CACHE_SIZE
from tlsprobe.model import CertificateInfo, CertificateOids

if TYPE_CHECKING:
    from cryptography.x509.verification import Store


def describe_certificate(der: bytes) -> CertificateInfo:
    """Subject, issuer, SANs, validity and SHA-256 of one DER certificate.

    A certificate that does not parse still gets its hash and length, with ``error`` set.
    """
    from cryptography import x509

    info = CertificateInfo(sha256=hashlib.sha256(der).hexdigest(), der_length=len(der))
    with contextlib.suppress(WireError):  # JA4X stays null; cryptography below says what is wrong
        info.oids = certificate_oids(der)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation notes on odd-but-real certificates
        try:
            cert = x509.load_der_x509_certificate(der)
            info.subject = cert.subject.rfc4514_string()
            info.issuer = cert.issuer.rfc4514_string()
            info.serial = format(cert.serial_number, "x")
            info.not_before = cert.not_valid_before_utc.isoformat()
            info.not_after = cert.not_valid_after_utc.isoformat()
            info.self_signed = cert.subject == cert.issuer
        except Exception as exc:  # cryptography raises ValueError and friends on bad DER
            info.error = f"{type(exc).__name__}: {exc}"[:200]
            return info
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            info.san_dns = [str(n) for n in san.get_values_for_type(x509.DNSName)]
            info.san_ip = [str(n) for n in san.get_values_for_type(x509.IPAddress)]
        except x509.ExtensionNotFound:
            pass
        except Exception as exc:  # a malformed SAN extension must not lose the rest
            info.error = f"SAN: {type(exc).__name__}: {exc}"[:200]
    return info


# -- OIDs for JA4X ----------------------------------------------------------------------

_SEQUENCE, _SET, _OID = 0x30, 0x31, 0x06
_CODE = "x509.parse_error"


def _tlv(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, contents start, contents end) of the DER element at ``pos``; ``WireError`` on a
    high tag number, an indefinite or oversized length, or an overrun of ``end``."""
    if pos + 2 > end:
        raise WireError(_CODE, f"element header past the end at offset {pos}")
    tag, first = buf[pos], buf[pos + 1]
    if tag & 0x1F == 0x1F:
        raise WireError(_CODE, f"high tag number at offset {pos}")
    pos += 2
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if n == 0 or n > 4 or pos + n > end:
            raise WireError(_CODE, f"bad length form at offset {pos - 1}")
        length = int.from_bytes(buf[pos : pos + n], "big")
        pos += n
    if pos + length > end:
        raise WireError(_CODE, f"element of {length} bytes overruns at offset {pos}")
    return tag, pos, pos + length


def _expect(buf: bytes, pos: int, end: int, tag: int) -> tuple[int, int]:
    t, start, stop = _tlv(buf, pos, end)
    if t != tag:
        raise WireError(_CODE, f"tag 0x{t:02x} where 0x{tag:02x} belongs at offset {pos}")
    return start, stop


def _name_oids(buf: bytes, start: int, end: int) -> tuple[bytes, ...]:
    """Attribute-type OIDs of a Name (SEQUENCE OF SET OF AttributeTypeAndValue), in order."""
    oids = []
    pos = start
    while pos < end:
        rdn, rdn_end = _expect(buf, pos, end, _SET)
        while rdn < rdn_end:
            atv, atv_end = _expect(buf, rdn, rdn_end, _SEQUENCE)
            oid, oid_end = _expect(buf, atv, atv_end, _OID)
            oids.append(buf[oid:oid_end])
            rdn = atv_end
        pos = rdn_end
    return tuple(oids)


def certificate_oids(der: bytes) -> CertificateOids:
    """Issuer and subject attribute OIDs and extension OIDs of a DER certificate, each as
    the OID's DER contents, in certificate order (what JA4X hashes).

    Walks the TBSCertificate itself (no decoding of values), so certificates that
    ``cryptography`` refuses (duplicate extensions, odd strings) still get their OIDs.
    """
    cert, cert_end = _expect(der, 0, len(der), _SEQUENCE)
    pos, tbs_end = _expect(der, cert, cert_end, _SEQUENCE)
    tag, _, stop = _tlv(der, pos, tbs_end)
    if tag == 0xA0:  # [0] version
        pos = stop
    _, _, pos = _tlv(der, pos, tbs_end)  # serialNumber
    _, pos = _expect(der, pos, tbs_end, _SEQUENCE)  # signature
    start, pos = _expect(der, pos, tbs_end, _SEQUENCE)
    issuer = _name_oids(der, start, pos)
    _, pos = _expect(der, pos, tbs_end, _SEQUENCE)  # validity
    start, pos = _expect(der, pos, tbs_end, _SEQUENCE)
    subject = _name_oids(der, start, pos)
    _, pos = _expect(der, pos, tbs_end, _SEQUENCE)  # subjectPublicKeyInfo
    extensions: list[bytes] = []
    while pos < tbs_end:
        tag, start, stop = _tlv(der, pos, tbs_end)
        if tag == 0xA3:  # [3] extensions
            seq, seq_end = _expect(der, start, stop, _SEQUENCE)
            while seq < seq_end:
                ext, ext_end = _expect(der, seq, seq_end, _SEQUENCE)
                oid, oid_end = _expect(der, ext, ext_end, _OID)
                extensions.append(der[oid:oid_end])
                seq = ext_end
        pos = stop
    return CertificateOids(issuer, subject, tuple(extensions))


# -- chain verification -------------------------------------------------------------

_STORE: Store | None = None
_SYSTEM_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem")


def trust_store() -> Store | None:
    """The public roots: certifi's bundle, else the operating system's; None if neither loads."""
    from cryptography import x509
    from cryptography.x509.verification import Store

    global _STORE
    if _STORE is None:
        paths = []
        try:
            import certifi

            paths.append(certifi.where())
        except ImportError:  # pragma: no cover - certifi is a dependency
            pass
        paths.extend(_SYSTEM_BUNDLES)
        for path in paths:
            try:
                with open(path, "rb") as f:
                    _STORE = Store(x509.load_pem_x509_certificates(f.read()))
                break
            except (OSError, ValueError):
                continue
    return _STORE


_USER_STORE: Store | None = None


def set_user_trust(pem_bundles: list[bytes]) -> frozenset[str]:
    """Trust the CA certificates in ``pem_bundles`` besides the public roots (``--trust``):
    chains that lead to them verify, with ``trusted_by: "user"``.  Returns the names
    (DNS and IP SANs, lower case) of the leaf certificates in the bundles: names whose
    genuine chain the user vouches for.  Raises ValueError for a bundle with no
    certificate.  Replaces any earlier user trust and empties the verification cache.
    """
    from cryptography import x509
    from cryptography.x509.verification import Store

    global _USER_STORE
    roots: list[x509.Certificate] = []
    names: set[str] = set()
    for pem in pem_bundles:
        certs = x509.load_pem_x509_certificates(pem)  # ValueError when there is none
        for cert in certs:
            try:
                ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
            except x509.ExtensionNotFound:
                ca = cert.subject == cert.issuer  # an old self-signed root without the extension
            if ca:
                roots.append(cert)
                continue
            try:
                san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                names.update(str(n).lower() for n in san.get_values_for_type(x509.DNSName))
                names.update(str(n) for n in san.get_values_for_type(x509.IPAddress))
            except x509.ExtensionNotFound:
                pass
    _USER_STORE = Store(roots) if roots else None
    _VERIFIED.clear()
    return frozenset(names)


def name_matches(pattern: str, host: str) -> bool:
    """RFC 6125 host matching: case-insensitive, a wildcard only as the whole leftmost label."""
    p, h = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if p.startswith("*."):
        rest = p[2:]
        head, _, tail = h.partition(".")
        return bool(head) and tail == rest and "." in rest
    return p == h


def verify_chain(ders: list[bytes], sni: str | None, at: datetime) -> dict[str, Any]:
    """Does the chain lead to a public root (at capture time ``at``), and does the leaf name the SNI?

    Returns ``{"chain_verified": bool | None, "verify_error": str | None,
    "leaf_matches_sni": bool | None}``; None where it cannot be decided (no SNI, no
    trust store, unparsable leaf).
    """
    from cryptography import x509
    from cryptography.x509.verification import PolicyBuilder, VerificationError

    out: dict[str, Any] = {"chain_verified": None, "verify_error": None, "leaf_matches_sni": None,
                           "trusted_by": None}
    if not ders:
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            certs = [x509.load_der_x509_certificate(d) for d in ders]
        except Exception as exc:  # bad DER: not verifiable
            out["verify_error"] = f"unparsable certificate: {type(exc).__name__}"
            out["chain_verified"] = False
            return out
        leaf = certs[0]
        if sni:
            try:
                san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                names = [str(n) for n in san.get_values_for_type(x509.DNSName)]
                ips = [str(n) for n in san.get_values_for_type(x509.IPAddress)]
            except Exception:  # no SAN or a malformed one: nothing names the host
                names, ips = [], []
            out["leaf_matches_sni"] = sni in ips or any(name_matches(n, sni) for n in names)
        store = trust_store()
        if store is None or not sni:
            return out
        try:
            subject: x509.GeneralName
            try:
                subject = x509.IPAddress(ipaddress.ip_address(sni))
            except ValueError:
                subject = x509.DNSName(sni)
        except Exception as exc:  # a name the verifier cannot take (not a DNS name)
            out.update(chain_verified=False, verify_error=f"{type(exc).__name__}: {exc}"[:200])
            return out
        for source, trusted in (("public", store), ("user", _USER_STORE)):
            if trusted is None:
                continue
            try:
                verifier = PolicyBuilder().store(trusted).time(at).build_server_verifier(subject)
                verifier.verify(leaf, certs[1:])
                out.update(chain_verified=True, verify_error=None, trusted_by=source)
                break
            except VerificationError as exc:
                if source == "public":
                    out.update(chain_verified=False, verify_error=str(exc)[:200])
            except Exception as exc:  # odd certificates the verifier refuses to consider
                if source == "public":
                    out.update(chain_verified=False, verify_error=f"{type(exc).__name__}: {exc}"[:200])
    return out


_VERIFIED: dict[tuple[bytes, int], dict[str, Any]] = {}


def verify_chain_cached(ders: list[bytes], sni: str | None, at: datetime) -> dict[str, Any]:
    """:func:`verify_chain`, remembered per chain, name and day (servers repeat their chain).

    Keyed by a SHA-256 of name and chain, not their bytes (a chain may be 256 KB); at most
    ``VERIFY_CACHE_SIZE`` results, emptied when full."""
    digest = hashlib.sha256(b"-" if sni is None else b"+" + sni.encode("utf-8", "surrogatepass"))
    for der in ders:
        digest.update(len(der).to_bytes(4, "big"))
        digest.update(der)
    key = (digest.digest(), int(at.timestamp()) // 86400)
    hit = _VERIFIED.get(key)
    if hit is None:
        hit = verify_chain(ders, sni, at)
        if len(_VERIFIED) >= VERIFY_CACHE_SIZE:
            _VERIFIED.clear()
        _VERIFIED[key] = hit
    return dict(hit)
