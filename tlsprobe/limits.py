"""Named limits.  Every bound in tlsprobe is here, each with the reason for its value.

Hitting a limit never fails a run: the work it bounds stops and an anomaly says so.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(slots=True, frozen=True)
class Limits:
    # Flows tracked at once (the table).  A live flow costs ~1.2 KB here (two keys,
    # reassembly state of both directions, the facts of its SYN, dictionary and queue
    # slots; ~1.45 KB of RSS), a finished one ~0.4 KB (kept only so its later packets are
    # skipped); 40k live flows are ~58 MB of RSS: what a SYN flood can make the table
    # hold.  Beyond it the least recently seen flow (approximately: FlowTable.victim) is
    # evicted (flow.evicted when its analysis was not done).
    max_flows: int = 40_000
    # Flows whose handshake is being parsed at once (they have record parsers and evidence:
    # ~3 KB each besides their buffered bytes, so 8k are ~24 MB).  Real handshakes take
    # a few RTTs; 8k in progress at once is a ~50k-handshakes/s link.  Beyond it the flow
    # that started parsing first loses its analysis (flow.handshakes.cap_exceeded).
    max_handshake_flows: int = 8_000
    # Bytes buffered by all flows together: out-of-order segments, partial records and
    # handshake messages, plaintext kept (each flow's own caps are below).  Per-flow caps
    # alone would allow max_flows x 1 MB; 16 MB holds 8k partial post-quantum hellos
    # or 250 full certificate chains.  Beyond it the flow that has held bytes longest loses
    # its buffers and its analysis (flow.buffers.cap_exceeded).
    max_buffered_bytes: int = 16 * 1024 * 1024
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
    # Fragments held per datagram: a 64 KB datagram over a 576-byte MTU is 120; more means
    # tiny or overlapping fragments (an attack), and the datagram is dropped.
    max_ip_fragment_parts: int = 128
    # Fragment bytes held for all datagrams together (Linux's ipfrag_high_thresh is 4 MB);
    # beyond it the oldest datagrams are dropped (ip.fragment.cap_exceeded).
    max_ip_fragment_bytes: int = 4 * 1024 * 1024
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
    # Longest any evidence window may last whatever the RTT (a forged handshake can claim
    # an RTT of days, which would keep its flow and timer entry alive as long).
    max_evidence_wait: float = 30.0
    # QUIC Initial packets decrypted per direction of a connection: a post-quantum
    # ClientHello spans two or three; retransmissions and ACK-only Initials add a few.
    max_quic_initials: int = 8
    # After the hellos a QUIC connection is watched (first byte of each long-header datagram,
    # no decryption) for JA4L's Handshake packets: the server's take 1-5 datagrams, the
    # client's Handshake follows; 16 leaves room for retransmissions and stops early enough
    # that a client which coalesces its Handshake behind an Initial does not hold the record.
    max_quic_latency_datagrams: int = 16
    # CRYPTO bytes reassembled per direction (a ClientHello is < 4 KB; the server's Initial
    # carries only its ServerHello).
    max_quic_crypto_bytes: int = 64 * 1024
    # QUIC connections tracked at once (a UDP 4-tuple each, ~3.5 KB while waiting for the
    # server's Initial with a ClientHello parsed, ~0.6 KB once done; 6k are ~26 MB of RSS).
    # Beyond it the oldest is evicted: its ClientHello, if complete, is reported without
    # the server's answer (quic.evicted).
    max_quic_connections: int = 6_000
    # CRYPTO bytes buffered by all QUIC connections together (a CRYPTO frame at a high
    # offset makes its connection buffer up to max_quic_crypto_bytes).  Beyond it the
    # oldest connections are evicted (quic.evicted).
    max_quic_buffered_bytes: int = 8 * 1024 * 1024
    # Tunnels unwrapped inside one packet (GRE in VXLAN in ...).
    max_tunnel_depth: int = 4
    # A capture record larger than this is impossible (jumbo frames are 9 KB, pcapng
    # snaplen allows 256 KB); larger means a corrupt header and reading stops.
    max_capture_record: int = 256 * 1024
    # Interfaces described per pcapng section (real captures have a handful, a router's
    # a few hundred); each costs ~0.1 KB, so a file of empty interface blocks cannot grow
    # the list.  Packets on the interfaces past it are counted as capture.bad_record.
    max_capture_interfaces: int = 4096


    def per_worker(self, workers: int) -> Limits:
        """The share of each of ``workers`` processes analysing one run (tlsprobe.parallel):
        the tables and budgets are divided so that the run as a whole keeps these bounds."""
        if workers <= 1:
            return self
        return replace(
            self,
            max_flows=max(1, self.max_flows // workers),
            max_handshake_flows=max(1, self.max_handshake_flows // workers),
            max_buffered_bytes=self.max_buffered_bytes // workers,
            max_quic_connections=max(1, self.max_quic_connections // workers),
            max_quic_buffered_bytes=self.max_quic_buffered_bytes // workers,
        )


DEFAULT_LIMITS = Limits()

# Process-wide caches (module level: shared by every analyser of a process).  Each is
# bounded in entries, and each entry in bytes, so a capture of distinct hostile inputs
# cannot grow them.

# Distinct fingerprint inputs remembered (tlsprobe.fingerprint.compute): ~1 KB each, for
# ClientHellos and ServerHellos each.  Real captures hold a few hundred distinct ones.
FINGERPRINT_CACHE_SIZE = 2048
# Hellos with more ciphers + extensions + groups + signature algorithms than this are
# fingerprinted without being cached (real ones have < 100; hostile ones up to 32k).
FINGERPRINT_CACHE_MAX_ITEMS = 256
# Distinct (chain, name, day) verification results remembered (tlsprobe.wire.x509), keyed
# by the chain's SHA-256, not its bytes: ~0.5 KB each.
VERIFY_CACHE_SIZE = 1024
# Port comparison (tlsprobe.compare): (group, member) counters in both tables - groups
# (client, server, SNI) with ports, (server, port) with SNIs - ~0.4 KB each, so ~8 MB;
# and members per group, so that one server cannot take them all.  Handshakes beyond
# these are not compared (the summary says port_comparison_truncated).
COMPARE_MAX_ENTRIES = 20_000
COMPARE_MAX_MEMBERS = 64

# Cross-flow context (tlsprobe.detect.context).  Servers profiled at once (least recently
# seen dropped first): ~1 KB each with full sets, so ~8 MB; a scan of a /16 keeps the
# most recent 8k servers, which is where a comparison is still useful.
CONTEXT_MAX_SERVERS = 8_192
# Names (per server: leaves and trusted names; per issuer: names, domains, servers) and
# QUIC ports remembered: enough to show an issuer minting for many names, bounded
# against a capture of a million distinct SNIs.
CONTEXT_MAX_NAMES = 64
# Injector fingerprints anchored per server by a provider-specific verdict.
CONTEXT_MAX_ANCHORS = 8
# Unverified certificate issuers profiled at once (~5 KB each with full sets: ~5 MB).
CONTEXT_MAX_ISSUERS = 1_024
# How long after a blackholed QUIC connection a silent one to the same server and port
# counts as residual blocking (published residual blocking lasts ~180 s).
CONTEXT_QUIC_RESIDUAL_S = 180.0
# A record whose verdict more context could still decide (a reset, alert, silence, an
# unverified chain, an injection without a provider: Context.holds) waits this long
# (capture seconds after its hello) for the flows around it - the block page that names
# the injector's provider, the control connection that shows the server answers, the
# server's other flows that show its TTLs - before it is judged and emitted.  Reading a
# file, waiting costs nothing but order: a minute holds a measurement's control flows.
CONTEXT_SETTLE_S = 60.0
# Live (sniff), the wait is the extra latency of those records: 10 s.
LIVE_SETTLE_S = 10.0
# Records held at once (~5 KB each: ~10 MB); beyond it the oldest is judged and emitted early.
CONTEXT_MAX_HELD = 2_048
