"""Records that cross stage boundaries.

Hello records are lossless and in wire order (GREASE kept); decoded views sit beside the
raw values, and fingerprint functions filter and sort inside themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Extension type numbers used across modules.
EXT_SERVER_NAME = 0x0000
EXT_SUPPORTED_GROUPS = 0x000A
EXT_EC_POINT_FORMATS = 0x000B
EXT_SIGNATURE_ALGORITHMS = 0x000D
EXT_ALPN = 0x0010
EXT_SUPPORTED_VERSIONS = 0x002B
EXT_KEY_SHARE = 0x0033
EXT_KEY_SHARE_DRAFT = 0x0028
EXT_ECH = 0xFE0D
EXT_QUIC_TRANSPORT_PARAMETERS = 0x0039


GREASE = frozenset(0x0A0A + 0x1010 * i for i in range(16))


def is_grease(value: int) -> bool:
    """GREASE values (RFC 8701): 0x0A0A, 0x1A1A, ..., 0xFAFA."""
    return value in GREASE


_VERSION_NAMES = {
    0x0002: "ssl2",
    0x0300: "ssl3",
    0x0301: "1.0",
    0x0302: "1.1",
    0x0303: "1.2",
    0x0304: "1.3",
}


def version_name(v: int | None) -> str | None:
    """A readable protocol version: ``"1.3"``, ``"1.3-draft18"``, ``"0x7e01"``."""
    if v is None:
        return None
    if v in _VERSION_NAMES:
        return _VERSION_NAMES[v]
    if v >> 8 == 0x7F:
        return f"1.3-draft{v & 0xFF}"
    if v >> 8 == 0x7E:  # Facebook's TLS 1.3 drafts
        return f"1.3-fb{v & 0xFF}"
    return f"0x{v:04x}"


@dataclass(slots=True)
class ClientHello:
    """A parsed ClientHello (TLS 1.0-1.3, drafts, or SSLv2-compatible)."""

    record_version: int
    legacy_version: int
    random: bytes
    session_id: bytes
    cipher_suites: tuple[int, ...]
    compression_methods: bytes
    extensions: tuple[tuple[int, bytes], ...]
    has_extensions_block: bool
    extension_types: tuple[int, ...] = ()  # wire order, GREASE kept
    sslv2: bool = False
    sslv2_cipher_specs: tuple[int, ...] = ()
    # decoded views
    sni_raw: bytes | None = None
    sni: str | None = None
    alpn_raw: tuple[bytes, ...] = ()
    supported_versions: tuple[int, ...] = ()
    supported_groups: tuple[int, ...] = ()
    ec_point_formats: bytes = b""
    signature_algorithms: tuple[int, ...] = ()
    key_share_groups: tuple[int, ...] = ()
    ech: bool = False
    anomalies: list[str] = field(default_factory=list)

    @property
    def alpn(self) -> list[str]:
        return [decode_text(p) for p in self.alpn_raw]

    @property
    def max_version(self) -> int:
        """Highest version offered: supported_versions (GREASE skipped), else legacy.

        0 when supported_versions is present but names no version (empty or malformed).
        """
        offered = [v for v in self.supported_versions if not is_grease(v)]
        if offered:
            return max(offered)
        if EXT_SUPPORTED_VERSIONS in self.extension_types:
            return 0
        return self.legacy_version


@dataclass(slots=True)
class ServerHello:
    """A parsed ServerHello or HelloRetryRequest."""

    record_version: int
    legacy_version: int
    random: bytes
    session_id: bytes
    cipher_suite: int
    compression_method: int
    extensions: tuple[tuple[int, bytes], ...]
    has_extensions_block: bool
    extension_types: tuple[int, ...] = ()  # wire order, GREASE kept
    is_hrr: bool = False
    selected_version: int | None = None
    alpn_raw: bytes | None = None
    anomalies: list[str] = field(default_factory=list)

    @property
    def version(self) -> int:
        """The negotiated version: supported_versions if present, else legacy."""
        return self.selected_version if self.selected_version is not None else self.legacy_version

    @property
    def alpn(self) -> str | None:
        return None if self.alpn_raw is None else decode_text(self.alpn_raw)


@dataclass(slots=True, frozen=True)
class CertificateOids:
    """The OIDs JA4X reads from a certificate: DER contents of each issuer and subject
    attribute type and of each extension id, in certificate order."""

    issuer: tuple[bytes, ...]
    subject: tuple[bytes, ...]
    extensions: tuple[bytes, ...]


@dataclass(slots=True)
class CertificateInfo:
    """One certificate of a chain as the server sent it."""

    sha256: str
    der_length: int
    subject: str | None = None
    issuer: str | None = None
    serial: str | None = None
    not_before: str | None = None
    not_after: str | None = None
    san_dns: list[str] = field(default_factory=list)
    san_ip: list[str] = field(default_factory=list)
    self_signed: bool | None = None
    error: str | None = None
    oids: CertificateOids | None = None  # for JA4X; None when the DER does not walk


def decode_text(raw: bytes) -> str:
    """Wire bytes as text: UTF-8, invalid bytes kept visible as ``\\xNN``."""
    return raw.decode("utf-8", "backslashreplace")
