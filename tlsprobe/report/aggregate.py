"""Streaming aggregation of handshake records into what the report shows.

:class:`Aggregator` is a sink (``write(record)`` / ``close()``): it keeps counters and
bounded samples, never the records, so memory does not grow with the input.  Records
may come from JSON Lines a stranger wrote: every field is type-checked as it is read,
strings are capped, and a record without its essentials is counted as malformed.
Redaction happens here, on the way in, so nothing downstream ever sees an original.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tlsprobe.compare import FAILURES, PortComparison
from tlsprobe.report.bounded import Budget, Reservoir, TimeHistogram, TopCounter
from tlsprobe.report.redact import Redactor

#: Longest wire string kept (longer ones are cut; a DNS name is at most 253).
MAX_STRING = 300
#: Destination ports with their own row; further ports are counted in one "other" row.
MAX_PORTS = 2_000
#: Distinct SNIs remembered per port / per fingerprint / per pattern (the count beyond is a lower bound),
#: and by all the port and fingerprint rows together (~100 bytes each).
MAX_NAMES = 1_000
NAMES_BUDGET = 300_000
#: Distinct JA4 and JA3 values with their own entry (the rest are counted together).
MAX_FINGERPRINTS = 5_000
#: Distinct ports, versions, ALPN lists remembered per fingerprint.
MAX_FACETS = 32
#: Distinct patterns (user rules may add their own) and values of their evidence.
MAX_PATTERNS = 64
MAX_VALUES = 256
#: Example flows listed per pattern.
MAX_FLOWS = 20
#: Points kept per series of the delay-against-RTT chart.
MAX_POINTS = 1_000
#: Distinct capture names and anomaly codes kept.
MAX_CAPTURES = 10_000
MAX_CODES = 2_000

#: Outcomes the report knows; anything else a record claims is counted as "other".
OUTCOMES = ("server_hello", "tls_alert", "rst", "fin", "plaintext", "silence", "incomplete",
            "http_response", "other")
#: Series of the timeline chart.
TIMELINE = ("completed", "failed", "intercepted")
#: Series of the delay-against-RTT chart.
DELAY_SERIES = ("ServerHello (genuine)", "failure, no verdict", "intercepted")


def text(v: Any, cap: int = MAX_STRING) -> str | None:
    """``v`` if it is a string (cut to ``cap``), else None."""
    return v[:cap] if isinstance(v, str) else None


def integer(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def number(v: Any) -> float | None:
    if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) < 1e18:
        return float(v)
    return None


def mapping(v: Any) -> Mapping[str, Any]:
    return v if isinstance(v, Mapping) else {}


def strings(v: Any, cap: int = 16) -> list[str]:
    return [s[:MAX_STRING] for s in v[:cap] if isinstance(s, str)] if isinstance(v, list) else []


def host_name(host: str | None) -> str | None:
    """An HTTP Host without its port (``[v6]:port`` too), to compare with SNIs."""
    if not host:
        return host
    if host.startswith("[") and "]" in host:
        return host[:host.index("]") + 1]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def outcome_of(v: Any) -> str:
    """A record's outcome as one of :data:`OUTCOMES`."""
    if v is None:
        return "incomplete"
    return v if isinstance(v, str) and v in OUTCOMES else "other"


@dataclass(slots=True)
class PortRow:
    """One destination port (per transport)."""

    transport: str
    port: int | None  # None: the "other ports" row
    budget: Budget | None = None
    handshakes: int = 0
    intercepted: int = 0
    snis: TopCounter[str] = field(init=False)
    outcomes: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.snis = TopCounter(MAX_NAMES, self.budget)

    @property
    def label(self) -> str:
        if self.port is None:
            return "other ports"
        return str(self.port) if self.transport == "tcp" else f"{self.port}/{self.transport}"


@dataclass(slots=True)
class FingerprintRow:
    """One JA4 or JA3 value."""

    value: str
    budget: Budget | None = None
    count: int = 0
    intercepted: int = 0
    snis: TopCounter[str] = field(init=False)
    ports: TopCounter[str] = field(default_factory=lambda: TopCounter(MAX_FACETS))
    versions: TopCounter[str] = field(default_factory=lambda: TopCounter(MAX_FACETS))
    alpn: TopCounter[str] = field(default_factory=lambda: TopCounter(MAX_FACETS))
    ja4: TopCounter[str] = field(default_factory=lambda: TopCounter(MAX_FACETS))  # for JA3 rows

    def __post_init__(self) -> None:
        self.snis = TopCounter(MAX_NAMES, self.budget)


@dataclass(frozen=True, slots=True)
class FlowExample:
    """One intercepted flow as the report lists it (already redacted)."""

    capture: str
    ts: float | None
    kind: str
    client: str
    server: str
    port: int
    name: str | None  # SNI, or the Host of an HTTP request
    outcome: str
    confidence: float | None
    provider: str | None
    rule_ids: tuple[str, ...]
    tells: tuple[str, ...]
    rtt_ms: float | None
    delay_ms: float | None
    delay_rtt: float | None
    ttl: int | None
    ttl_delta: int | None
    markers: tuple[str, ...]


@dataclass(slots=True)
class PatternStats:
    """Everything measured about one interception pattern."""

    pattern: str
    count: int = 0
    providers: TopCounter[str] = field(default_factory=lambda: TopCounter(MAX_VALUES))
    rules: TopCounter[str] = field(default_factory=lambda: TopCounter(MAX_VALUES))
    ports: TopCounter[str] = field(default_factory=lambda: TopCounter(MAX_VALUES))
    snis: TopCounter[str] = field(default_factory=lambda: TopCounter(MAX_NAMES))
    tells: TopCounter[str] = field(default_factory=lambda: TopCounter(MAX_VALUES))
    outcomes: TopCounter[str] = field(default_factory=lambda: TopCounter(MAX_VALUES))
    ttl_deltas: TopCounter[int] = field(default_factory=lambda: TopCounter(MAX_VALUES))
    delay_rtt: Reservoir[float] = field(default_factory=lambda: Reservoir(MAX_POINTS))
    markers: TopCounter[str] = field(default_factory=lambda: TopCounter(MAX_VALUES))
    flows: list[FlowExample] = field(default_factory=list)


@dataclass(slots=True)
class SourceTotals:
    """Counters that come from whole runs rather than records: packets, flows, run anomalies."""

    files: int = 0  # captures read
    jsonl_files: int = 0
    summary_files: int = 0
    packets: int = 0
    flows: int = 0
    evicted: int = 0
    anomalies: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)  # unreadable inputs
    malformed_lines: int = 0
    malformed_examples: list[str] = field(default_factory=list)  # "file:line: why"
    jsonl_without_summary: bool = False
    live_runs: int = 0  # summaries of `tlsprobe sniff`
    kernel_received: int = 0
    kernel_dropped: int = 0
    seconds: float = 0.0


@dataclass(slots=True)
class Aggregator:
    """A sink that folds records into the report's counters."""

    redactor: Redactor | None = None
    count_record_anomalies: bool = False  # JSONL input: run-level counts are not available
    handshakes: int = 0
    http_requests: int = 0
    non_standard: int = 0
    intercepted: int = 0
    malformed_records: int = 0
    first_ts: float | None = None
    last_ts: float | None = None
    captures: TopCounter[str] = field(default_factory=lambda: TopCounter(MAX_CAPTURES))
    outcomes: Counter[str] = field(default_factory=Counter)
    vantage: Counter[str] = field(default_factory=Counter)  # where each TLS flow was captured
    by_pattern_provider: TopCounter[tuple[str, str]] = field(default_factory=lambda: TopCounter(MAX_VALUES))
    ports: dict[tuple[str, int | None], PortRow] = field(default_factory=dict)
    http_ports: TopCounter[int] = field(default_factory=lambda: TopCounter(MAX_PORTS))
    ja4: dict[str, FingerprintRow] = field(default_factory=dict)
    ja3: dict[str, FingerprintRow] = field(default_factory=dict)
    fingerprints_other: Counter[str] = field(default_factory=Counter)  # "ja4"/"ja3" -> records beyond the cap
    no_ja3: int = 0
    patterns: dict[str, PatternStats] = field(default_factory=dict)
    comparison: PortComparison = field(default_factory=PortComparison)
    timeline: TimeHistogram = field(default_factory=lambda: TimeHistogram(TIMELINE))
    delays: dict[str, Reservoir[tuple[float, float]]] = field(
        default_factory=lambda: {s: Reservoir(MAX_POINTS) for s in DELAY_SERIES})
    ttl_genuine: Counter[int] = field(default_factory=Counter)  # SYN-ACK TTLs
    ttl_injected: Counter[int] = field(default_factory=Counter)  # outcome packets of intercepted handshakes
    record_anomalies: TopCounter[str] = field(default_factory=lambda: TopCounter(MAX_CODES))
    totals: SourceTotals = field(default_factory=SourceTotals)
    names_budget: Budget = field(default_factory=lambda: Budget(NAMES_BUDGET))

    # -- the sink protocol -------------------------------------------------------------

    def write(self, record: Mapping[str, Any]) -> None:
        """Fold one record in (a malformed one is counted, never raised on)."""
        if not isinstance(record, Mapping):
            self.malformed_records += 1
            return
        kind = record.get("kind", "tls")
        ts = number(record.get("ts"))
        port = integer(record.get("dst_port"))
        src = text(record.get("src_ip"))
        dst = text(record.get("dst_ip"))
        if kind not in ("tls", "http") or ts is None or port is None or src is None or dst is None:
            self.malformed_records += 1
            return
        red = self.redactor
        client = src if red is None else red.client(src) or src
        capture = self.shown(text(record.get("capture")) or "-")
        self.captures.add(capture)
        self.first_ts = ts if self.first_ts is None else min(self.first_ts, ts)
        self.last_ts = ts if self.last_ts is None else max(self.last_ts, ts)
        evidence = mapping(record.get("evidence"))
        inter = mapping(record.get("interception"))
        pattern = text(inter.get("pattern"), 64) if inter else None
        outcome = outcome_of(record.get("outcome"))
        if self.count_record_anomalies:
            for code in strings(record.get("anomalies"), 64):
                self.record_anomalies.add(code)
        if kind == "http":
            request = mapping(record.get("http_request"))
            raw_name = host_name(text(request.get("host")))
            name = red.name(raw_name) if red is not None else raw_name
            self.http_requests += 1
            self.http_ports.add(port)
        else:
            raw_name = text(record.get("sni"))
            name = red.name(raw_name) if red is not None else raw_name
            self._tls(record, port, name, outcome, pattern)
            where = evidence.get("vantage")
            self.vantage[where if where in ("client", "server") else "unknown"] += 1
        failed = outcome in FAILURES or bool(pattern)
        self.timeline.add(ts, "intercepted" if pattern else "failed" if failed else "completed")
        self._evidence(evidence, outcome, pattern)
        if pattern:
            self.intercepted += 1
            self._interception(record, inter, pattern, evidence, kind, capture, ts, client, dst, port,
                               name, raw_name, outcome)
        # the comparison sees the redacted values only
        self.comparison.add({"src_ip": client, "dst_ip": dst, "dst_port": port, "sni": name,
                             "outcome": record.get("outcome") if isinstance(record.get("outcome"), str) else None,
                             "interception": {"pattern": pattern} if pattern else None})

    def close(self) -> None:
        """Nothing to flush."""

    def shown(self, path: str) -> str:
        """How the report names an input file: its base name (never a local directory), or a
        pseudonym when redacting."""
        name = path.replace("\\", "/").rsplit("/", 1)[-1] or path
        return self.redactor.capture(name) if self.redactor is not None else name

    # -- parts -------------------------------------------------------------------------

    def _tls(self, record: Mapping[str, Any], port: int, sni: str | None, outcome: str,
             pattern: str | None) -> None:
        self.handshakes += 1
        self.outcomes[outcome] += 1
        transport = record.get("transport")
        transport = transport if transport in ("tcp", "quic") else "tcp"
        if record.get("non_standard_port") is True or (record.get("non_standard_port") is None and port != 443):
            self.non_standard += 1
        key: tuple[str, int | None] = (transport, port)
        row = self.ports.get(key)
        if row is None:
            if len(self.ports) >= MAX_PORTS:
                key = ("tcp", None)
                row = self.ports.get(key)
            if row is None:
                row = self.ports[key] = PortRow(key[0], key[1], self.names_budget)
        row.handshakes += 1
        row.outcomes[outcome] += 1
        row.intercepted += bool(pattern)
        row.snis.add(sni if sni is not None else "(none)")
        version = text(record.get("tls_version"), 32) or "?"
        alpn = ",".join(strings(record.get("alpn"), 8)) or "(none)"
        ja4 = text(record.get("ja4"), 64)
        ja3 = text(record.get("ja3"), 64)
        for table, value, name in ((self.ja4, ja4, "ja4"), (self.ja3, ja3, "ja3")):
            if value is None:
                if name == "ja3":
                    self.no_ja3 += 1
                continue
            fp = table.get(value)
            if fp is None:
                if len(table) >= MAX_FINGERPRINTS:
                    self.fingerprints_other[name] += 1
                    continue
                fp = table[value] = FingerprintRow(value, self.names_budget)
            fp.count += 1
            fp.intercepted += bool(pattern)
            fp.snis.add(sni if sni is not None else "(none)")
            fp.ports.add(row.label)
            fp.versions.add(version)
            fp.alpn.add(alpn)
            if name == "ja3" and ja4 is not None:
                fp.ja4.add(ja4)

    def _evidence(self, ev: Mapping[str, Any], outcome: str, pattern: str | None) -> None:
        baseline_ttl = integer(mapping(ev.get("baseline")).get("ttl"))
        if baseline_ttl is not None and 0 <= baseline_ttl <= 255:
            self.ttl_genuine[baseline_ttl] += 1
        packet = mapping(ev.get("outcome_packet"))
        ttl = integer(packet.get("ttl"))
        if pattern and ttl is not None and 0 <= ttl <= 255:
            self.ttl_injected[ttl] += 1
        rtt = number(ev.get("rtt_ms"))
        delay = number(ev.get("outcome_delay_ms"))
        if rtt is None or delay is None or rtt <= 0 or delay < 0:
            return
        if pattern:
            self.delays[DELAY_SERIES[2]].add((rtt, delay))
        elif outcome == "server_hello":
            self.delays[DELAY_SERIES[0]].add((rtt, delay))
        elif outcome in FAILURES:
            self.delays[DELAY_SERIES[1]].add((rtt, delay))

    def _interception(self, record: Mapping[str, Any], inter: Mapping[str, Any], pattern: str,
                      ev: Mapping[str, Any], kind: str, capture: str, ts: float, client: str, server: str,
                      port: int, name: str | None, raw_name: str | None, outcome: str) -> None:
        provider = text(inter.get("provider"), 64)
        self.by_pattern_provider.add((pattern, provider or "(not named)"))
        ps = self.patterns.get(pattern)
        if ps is None:
            if len(self.patterns) >= MAX_PATTERNS:
                pattern = "(other patterns)"
                ps = self.patterns.get(pattern)
            if ps is None:
                ps = self.patterns[pattern] = PatternStats(pattern)
        ps.count += 1
        ps.providers.add(provider or "(not named)")
        rule_ids = tuple(strings(inter.get("rule_ids"), 8))
        for rid in rule_ids:
            ps.rules.add(rid)
        ps.ports.add(str(port) if kind == "tls" else f"{port} (HTTP)")
        ps.snis.add(name if name is not None else "(none)")
        ps.outcomes.add(outcome)
        tells = tuple(strings(ev.get("tells"), 16))
        for tell in tells:
            ps.tells.add(tell)
        packet = mapping(ev.get("outcome_packet"))
        ttl_delta = integer(packet.get("ttl_delta"))
        if ttl_delta is not None:
            ps.ttl_deltas.add(ttl_delta)
        delay_rtt = number(packet.get("delay_rtt"))
        if delay_rtt is not None:
            ps.delay_rtt.add(delay_rtt)
        markers = tuple(self._markers(record, ev, raw_name))
        for marker in markers:
            ps.markers.add(marker)
        if len(ps.flows) < MAX_FLOWS:
            confidence = number(inter.get("confidence"))
            ps.flows.append(FlowExample(
                capture=capture, ts=ts, kind=kind, client=client, server=server, port=port,
                name=name, outcome=outcome, confidence=confidence, provider=provider, rule_ids=rule_ids,
                tells=tells, rtt_ms=number(ev.get("rtt_ms")), delay_ms=number(ev.get("outcome_delay_ms")),
                delay_rtt=delay_rtt, ttl=integer(packet.get("ttl")), ttl_delta=ttl_delta, markers=markers))

    def _markers(self, record: Mapping[str, Any], ev: Mapping[str, Any], raw_name: str | None) -> list[str]:
        """The measured evidence beyond packet tells: block-page markers, alert, certificate."""
        out: list[str] = []
        http = mapping(ev.get("http"))
        if http:
            status = integer(http.get("status"))
            if status is not None:
                out.append(f"HTTP {status}")
            for key, label in (("server", "Server"), ("title", "title"), ("location", "Location")):
                value = text(http.get(key), 120)
                if value:
                    out.append(f"{label}: {value}")
        alert = mapping(ev.get("alert"))
        if alert:
            name = text(alert.get("name"), 64) or str(integer(alert.get("description")))
            out.append(f"alert: {name}")
        cert = mapping(ev.get("certificate"))
        if cert and cert.get("chain_verified") is False:
            out.append("chain not verified" + (f" ({text(cert.get('verify_error'), 120)})"
                                               if text(cert.get("verify_error")) else ""))
        certs = record.get("certificates")
        if isinstance(certs, list) and certs:
            issuer = text(mapping(certs[0]).get("issuer"), 160)
            if issuer and (cert.get("chain_verified") is False or not cert):
                out.append(f"issuer: {issuer}")
        payload = text(mapping(ev.get("outcome_packet")).get("payload_hex"), 64)
        if payload:
            out.append(f"RST payload: {payload}")
        if self.redactor is not None and self.redactor.names:
            # a Location's query often repeats the blocked name or others: dropped
            out = [self.redactor.text(m.split("?", 1)[0].split("#", 1)[0] if m.startswith("Location: ") else m,
                                      raw_name) for m in out]
        return out
