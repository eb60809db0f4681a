"""Named limits.  Every bound in tlsprobe is here, each with the reason for its value.

Hitting a limit never fails a run: the work it bounds stops and an anomaly says so.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True, frozen=True)
class Limits:
    # Flows tracked at once.  A flow costs ~0.7 KB in the table (two keys, reassembly
    # state), ~3 KB while its handshake is being parsed and ~0.6 KB once done; 100k flows
    # keep the table under ~100 MB in normal traffic.  Beyond it the least recently seen
    # flows (finished ones first) are evicted.
    max_flows: int = 100_000
    # A flow with no packet for this long (capture time, seconds) is evicted.  TCP
    # handshakes complete in seconds; 120 s is twice the longest SYN retry ladder.
    flow_idle_timeout: float = 120.0
    # How often (capture seconds) the idle sweep runs.  Sweeping is O(flows).
    sweep_interval: float = 10.0
    # Out-of-order bytes buffered per direction waiting for a gap to fill.  A ClientHello
    # plus certificate chain fits in 64 KB; 256 KB absorbs a window of reordering.
    max_ooo_bytes: int = 256 * 1024
    # Out-of-order segments per direction (bounds dict size when segments are tiny).
    max_ooo_segments: int = 512
    # Plaintext scanned per direction looking for a TLS hello after STARTTLS, HTTP
    # CONNECT, SOCKS or a protocol preamble.  Real preambles are a few hundred bytes
    # (an SMTP EHLO reply, an LDAP extended response); 16 KB leaves ample room while
    # non-TLS bulk flows stop being scanned quickly.
    max_preamble_bytes: int = 16 * 1024
    # Largest handshake message parsed.  RFC 8446 allows 2^24-1; real ClientHellos are
    # < 4 KB (post-quantum ~1.8 KB) and certificate chains < 64 KB.  A hostile length
    # above this is refused instead of buffered.
    max_handshake_bytes: int = 256 * 1024
    # TLS records may carry at most 2^14 bytes plus 2048 of expansion (RFC 5246 6.2.3).
    max_record_bytes: int = 16384 + 2048
    # Extensions parsed per hello; real hellos carry < 30, GREASE and all.
    max_extensions: int = 512
    # Certificates parsed per chain; real chains carry 2-4.
    max_certificates: int = 16
    # TCP segments remembered per direction while a hello is assembled (for the
    # ts and segment count of the hello); a hello in more than this is still parsed.
    max_tracked_segments: int = 256
    # IP datagrams under reassembly at once, and how long (capture seconds) a
    # fragment waits for its siblings (RFC 791 suggests 15 s; Linux uses 30 s).
    max_ip_fragment_datagrams: int = 4096
    ip_fragment_timeout: float = 30.0
    # Server packets after the ClientHello kept as evidence per flow (a reset burst, a
    # block page and a racing ServerHello fit; bulk data after that adds nothing).
    max_evidence_packets: int = 16
    # How long (capture seconds) to wait for any reaction to a ClientHello before calling
    # it silence: several client retransmissions (RTO 0.2-1 s) fit in 3 s; or this many RTTs.
    silence_window: float = 3.0
    silence_window_rtts: float = 6.0
    # After a reset, alert or plaintext reply, how long to keep watching for a racing
    # genuine answer or a reset burst (GFW RSTs arrive within ~0.5 s); or this many RTTs.
    evidence_window: float = 1.0
    evidence_window_rtts: float = 3.0
    # QUIC Initial packets decrypted per direction of a connection: a post-quantum
    # ClientHello spans two or three; retransmissions and ACK-only Initials add a few.
    max_quic_initials: int = 8
    # CRYPTO bytes reassembled per direction (a ClientHello is < 4 KB; the server's Initial
    # carries only its ServerHello).
    max_quic_crypto_bytes: int = 64 * 1024
    # Tunnels unwrapped inside one packet (GRE in VXLAN in ...).
    max_tunnel_depth: int = 4
    # A capture record larger than this is impossible (jumbo frames are 9 KB, pcapng
    # snaplen allows 256 KB); larger means a corrupt header and reading stops.
    max_capture_record: int = 256 * 1024


DEFAULT_LIMITS = Limits()
