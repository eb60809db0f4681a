"""X.509: DER -> CertificateInfo (error set for bad DER) and chain verification; never an exception."""

from __future__ import annotations

from _common import fuzz, instrumented  # first: puts the checkout first on sys.path

with instrumented():
    from datetime import datetime, timezone

    from tlsprobe.model import CertificateInfo
    from tlsprobe.wire.x509 import describe_certificate, name_matches, verify_chain

_AT = datetime(2024, 6, 1, tzinfo=timezone.utc)


def TestOneInput(data: bytes) -> None:
    info = describe_certificate(data)
    assert isinstance(info, CertificateInfo)
    if info.error is None:
        res = verify_chain([data], "example.com", _AT)
        assert set(res) == {"chain_verified", "verify_error", "leaf_matches_sni", "trusted_by"}
        for name in info.san_dns[:4]:
            name_matches(name, "www.example.com")


if __name__ == "__main__":
    fuzz(TestOneInput)
