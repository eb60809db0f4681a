"""Certificate chain details with ``cryptography`` (DER in, :class:`CertificateInfo` out)."""

from __future__ import annotations

import hashlib
import warnings

from cryptography import x509

from tlsprobe.model import CertificateInfo


def describe_certificate(der: bytes) -> CertificateInfo:
    """Subject, issuer, SANs, validity and SHA-256 of one DER certificate.

    A certificate that does not parse still gets its hash and length, with ``error`` set.
    """
    info = CertificateInfo(sha256=hashlib.sha256(der).hexdigest(), der_length=len(der))
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
