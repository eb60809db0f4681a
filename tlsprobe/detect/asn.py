"""Network owner of a server address from a MaxMind-format ASN database (``--asn-db``).

GeoLite2-ASN and DB-IP's free ASN database both carry ``autonomous_system_number`` and
``autonomous_system_organization`` per network; the ``maxminddb`` package reads them.
The owner goes into the evidence ("a server in AS37963, Alibaba"); it never decides a
verdict or a provider on its own.
"""

from __future__ import annotations

from typing import Any

from tlsprobe.errors import TlsprobeError
from tlsprobe.limits import CONTEXT_MAX_SERVERS

_ORG_CHARS = 100  # an organisation name is text from a file the user chose; still cut


class AsnDbError(TlsprobeError):
    """The ASN database cannot be used: the package is missing or the file is unreadable."""


class AsnDb:
    """Lookups in one database file, remembered per address (bounded)."""

    __slots__ = ("_cache", "_reader", "path")

    def __init__(self, path: str) -> None:
        try:
            import maxminddb
        except ImportError:
            raise AsnDbError("--asn-db needs the maxminddb package: pip install 'tlsprobe[asn]'") from None
        self.path = path
        try:
            self._reader = maxminddb.open_database(path)
        except (OSError, ValueError, RuntimeError) as exc:  # maxminddb.InvalidDatabaseError is a RuntimeError
            raise AsnDbError(f"cannot read ASN database {path}: {getattr(exc, 'strerror', None) or exc}") from None
        self._cache: dict[str, dict[str, Any] | None] = {}

    def lookup(self, ip: str) -> dict[str, Any] | None:
        """``{"number": int, "organization": str | None}``, or None when not covered."""
        if ip in self._cache:
            return self._cache[ip]
        try:
            rec = self._reader.get(ip)
        except (ValueError, TypeError):
            rec = None
        out: dict[str, Any] | None = None
        if isinstance(rec, dict) and isinstance(rec.get("autonomous_system_number"), int):
            org = rec.get("autonomous_system_organization")
            out = {"number": rec["autonomous_system_number"],
                   "organization": str(org)[:_ORG_CHARS] if org is not None else None}
        if len(self._cache) >= CONTEXT_MAX_SERVERS:
            self._cache.clear()
        self._cache[ip] = out
        return out
