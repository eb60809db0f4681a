"""Stable pseudonyms for client IPs (and optionally SNIs) in a published report.

A pseudonym is a keyed hash (HMAC-SHA256) of the original: the same address gets the
same name throughout one report, and without the key nobody can test a guess.  With
no key given, a random one is drawn, so two reports cannot be linked either.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field


@dataclass(slots=True)
class Redactor:
    """Replaces client IPs, and SNIs / host names when ``names`` is set."""

    key: bytes = field(default_factory=lambda: os.urandom(32))
    names: bool = False
    _cache: dict[tuple[str, str], str] = field(default_factory=dict)

    @classmethod
    def from_key(cls, key: str | None, names: bool = False) -> Redactor:
        """A redactor keyed by the text ``key``, or by a random key when it is None."""
        return cls(key.encode("utf-8"), names) if key is not None else cls(names=names)

    def _pseudonym(self, kind: str, value: str, prefix: str, suffix: str = "") -> str:
        got = self._cache.get((kind, value))
        if got is None:
            digest = hmac.new(self.key, f"{kind}\0{value}".encode("utf-8", "surrogatepass"),
                              hashlib.sha256).hexdigest()
            got = f"{prefix}{digest[:10]}{suffix}"
            if len(self._cache) < 100_000:  # a cache, not a table: bounded
                self._cache[(kind, value)] = got
        return got

    def client(self, ip: str | None) -> str | None:
        """The pseudonym of a client address (``client-<hash>``)."""
        return None if ip is None else self._pseudonym("ip", ip, "client-")

    def capture(self, name: str) -> str:
        """The pseudonym of a capture file name (names often carry a host or an address);
        a short extension is kept."""
        stem, dot, ext = name.rpartition(".")
        suffix = f".{ext}" if dot and stem and len(ext) <= 8 and ext.isalnum() else ""
        return self._pseudonym("capture", name, "capture-", suffix)

    def name(self, sni: str | None) -> str | None:
        """The pseudonym of a server name when names are redacted, else the name."""
        if sni is None or not self.names:
            return sni
        return self._pseudonym("name", sni.lower(), "host-", ".redacted")

    def text(self, text: str, *originals: str | None) -> str:
        """``text`` with every occurrence of the original names replaced (a block page's
        Location or title may repeat the blocked name)."""
        if not self.names:
            return text
        for original in originals:
            if original:
                pseudonym = self.name(original) or ""
                text = text.replace(original, pseudonym)
        return text
