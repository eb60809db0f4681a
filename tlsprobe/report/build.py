"""Turn the aggregated counters into the report's document: sections, tables, figures."""

from __future__ import annotations

import os
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

from tlsprobe import __version__
from tlsprobe.anomalies import ANOMALIES
from tlsprobe.detect import Rule
from tlsprobe.report.aggregate import Aggregator, FingerprintRow, FlowExample, PatternStats
from tlsprobe.report.bounded import TopCounter
from tlsprobe.report.charts import Chart, busiest_ports
from tlsprobe.report.clients import clients_for, known_clients
from tlsprobe.report.document import MAX_VALUE, Code, Document, Figure, Inline, Link, Parts, Raw
from tlsprobe.text import clip


@dataclass(frozen=True, slots=True)
class Options:
    """What the reader asked for."""

    title: str = "TLS handshakes and interception: tlsprobe report"
    top: int = 20  # rows of the port and fingerprint tables
    redacted: bool = False
    redacted_names: bool = False


def _n(v: int) -> str:
    return f"{v:,}"


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "-"


def _utc(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _span(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _top(counter: TopCounter[str], n: int = 3) -> str:
    """``a (3), b (1), +2 more`` - text made from (possibly wire) strings: escaped later."""
    items = counter.top(n)
    text = ", ".join(f"{_w(str(k), 80)} ({c})" if len(counter) > 1 else _w(str(k), 80) for k, c in items)
    distinct, lower_bound = counter.distinct()
    more = distinct - len(items)
    if more > 0 or lower_bound:
        text += f", +{more}{'+' if lower_bound else ''} more"
    return text


def _w(value: str, cap: int = MAX_VALUE) -> str:
    """One wire value cut for display."""
    return clip(value, cap)


def build_document(agg: Aggregator, charts: list[Chart], rules: Iterable[Rule], options: Options) -> Document:
    """The report: summary, ports, timeline, fingerprints, interception, anomalies, method."""
    rules = list(rules)
    doc = Document(options.title)
    doc.p(Raw("Contents: "), *_contents())
    figures = {c.name: Figure(c.name, c.title, c.svg, c.alt) for c in charts}
    _summary(doc, agg)
    _ports(doc, agg, options, figures)
    _fingerprints(doc, agg, options)
    _interception(doc, agg, {r.id: r for r in rules}, figures)
    _anomalies(doc, agg)
    _method(doc, agg, options, sorted({r.pack for r in rules}))
    return doc


SECTIONS = (("Summary", "summary"), ("Ports", "ports"), ("Fingerprints", "fingerprints"),
            ("Interception", "interception"), ("Anomalies and what was skipped", "anomalies-and-what-was-skipped"),
            ("How this report was made", "how-this-report-was-made"))


def _contents() -> list[Inline]:
    """Links to the sections (anchors are GitHub's heading slugs, and the HTML ids)."""
    out: list[Inline] = []
    for i, (title, anchor) in enumerate(SECTIONS):
        if i:
            out.append(Raw(" · "))
        out.append(Link(title, f"#{anchor}"))
    return out


def _summary(doc: Document, agg: Aggregator) -> None:
    t = agg.totals
    doc.h(2, "Summary", "summary")
    span = "-"
    if agg.first_ts is not None and agg.last_ts is not None:
        span = f"{_utc(agg.first_ts)} to {_utc(agg.last_ts)} UTC ({_span(agg.last_ts - agg.first_ts)})"
    inputs = []
    if t.files:
        inputs.append(f"{_n(t.files)} capture file{'s' if t.files != 1 else ''} analysed")
    if t.jsonl_files:
        inputs.append(f"{_n(t.jsonl_files)} JSON Lines file{'s' if t.jsonl_files != 1 else ''}")
    if t.summary_files:
        inputs.append(f"{_n(t.summary_files)} run summar{'ies' if t.summary_files != 1 else 'y'}")
    unknown = " (not known for the JSON Lines inputs: give their --summary-json files too)" \
        if t.jsonl_without_summary else ""
    packets, flows = _n(t.packets) + unknown, _n(t.flows) + unknown
    if t.jsonl_without_summary and not t.files:
        packets = flows = "not known (JSON Lines input: give the --summary-json files written with it too)"
    distinct, more = agg.captures.distinct()
    total = agg.handshakes + agg.http_requests
    rows: list[list[Parts]] = [
        [(Raw("Inputs"),), (Raw(", ".join(inputs) or "none"),)],
        [(Raw("Captures with handshakes"),), (Raw(f"{_n(distinct)}{'+' if more else ''}"),)],
        [(Raw("Time span"),), (Raw(span),)],
        [(Raw("Packets"),), (Raw(packets),)],
        [(Raw("Flows"),), (Raw(flows),)],
        [(Raw("TLS handshakes"),), (Raw(_n(agg.handshakes)),)],
        [(Raw("on non-standard ports (not 443)"),),
         (Raw(f"{_n(agg.non_standard)} ({_share(agg.non_standard, agg.handshakes)})"),)],
        [(Raw("Plain HTTP requests (checked for block pages)"),), (Raw(_n(agg.http_requests)),)],
        [(Raw("Intercepted (handshakes and HTTP requests)"),),
         (Raw(f"{_n(agg.intercepted)} of {_n(total)} ({_share(agg.intercepted, total)})"),)],
        [(Raw("Vantage point of the TLS handshakes (from their timing)"),),
         (Raw(", ".join(f"{k} {_n(agg.vantage[k])}" for k in ("client", "server", "unknown") if agg.vantage[k])
              or "-"),)],
    ]
    doc.table(["", "value"], rows)
    if agg.by_pattern_provider.counts:
        doc.p(Raw("Intercepted handshakes and HTTP requests by pattern and provider:"))
        doc.table(["pattern", "provider", "count", "share of intercepted"], [
            [(pattern,), (provider,), (Raw(_n(n)),), (Raw(_share(n, agg.intercepted)),)]
            for (pattern, provider), n in agg.by_pattern_provider.top(50)
        ], numeric={2, 3})
    else:
        doc.p(Raw("No handshake or HTTP request was found intercepted."))


def _outcomes(counts: dict[str, int]) -> str:
    return ", ".join(f"{o} {n}" for o, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _ports(doc: Document, agg: Aggregator, options: Options, figures: dict[str, Figure]) -> None:
    doc.h(2, "Ports", "ports")
    rows = busiest_ports(agg, options.top)
    if not rows:
        doc.p(Raw("No TLS handshake was found."))
        return
    doc.p(Raw("TLS handshakes per destination port (QUIC ports marked /quic). An outcome is the server "
              "side's first reaction to the ClientHello; \"failed\" outcomes are not interception by "
              "themselves (see the interception section)."))
    table: list[list[Parts]] = []
    for r in rows:
        distinct, more = r.snis.distinct()
        table.append([
            (Raw(r.label),), (Raw(_n(r.handshakes)),), (Raw(f"{_n(distinct)}{'+' if more else ''}"),),
            (Raw(_outcomes(dict(r.outcomes))),), (Raw(_n(r.intercepted)),), (Raw(_share(r.intercepted, r.handshakes)),),
        ])
    doc.table(["port", "handshakes", "distinct SNIs", "outcomes", "intercepted", "intercepted share"], table,
              numeric={1, 2, 4, 5})
    if len(agg.ports) > len(rows):
        doc.p(Raw(f"{len(agg.ports) - len(rows)} more ports not shown (use --top)."))
    for name in ("outcomes-per-port.svg", "timeline.svg"):
        if name in figures:
            doc.blocks.append(figures[name])


def _fingerprints(doc: Document, agg: Aggregator, options: Options) -> None:
    doc.h(2, "Fingerprints", "fingerprints")
    known = known_clients()
    doc.p(Raw(f"The commonest JA4 and JA3 fingerprints. \"Client\" comes from tlsprobe's bundled list of "
              f"{len(known)} JA4 values of common clients (tlsprobe/data/known_clients.csv; every entry names "
              "its source and date); \"unknown\" means the value is not in that list, not that the client "
              "cannot be identified. A JA4 is shared by every client built on the same TLS library and settings."))
    doc.h(3, "JA4", "ja4")
    ja4 = sorted(agg.ja4.values(), key=lambda r: (-r.count, r.value))[:options.top]
    doc.table(["JA4", "handshakes", "SNIs", "ports", "TLS", "ALPN", "client"],
              [[*_fp_row(r), _client_cell(r.value)] for r in ja4], numeric={1})
    if len(agg.ja4) > len(ja4):
        doc.p(Raw(f"{len(agg.ja4) - len(ja4)} more JA4 values not shown."))
    doc.h(3, "JA3", "ja3")
    ja3 = sorted(agg.ja3.values(), key=lambda r: (-r.count, r.value))[:options.top]
    doc.table(["JA3", "handshakes", "SNIs", "ports", "TLS", "ALPN", "JA4 seen with"],
              [[*_fp_row(r), (_top(r.ja4, 2),)] for r in ja3], numeric={1})
    if len(agg.ja3) > len(ja3):
        doc.p(Raw(f"{len(agg.ja3) - len(ja3)} more JA3 values not shown."))


def _fp_row(r: FingerprintRow) -> list[Parts]:
    return [(Code(r.value),), (Raw(_n(r.count)),), (_top(r.snis),), (_top(r.ports, 4),),
            (_top(r.versions),), (_top(r.alpn),)]


def _client_cell(ja4: str) -> Parts:
    entries = clients_for(ja4)
    if not entries:
        return (Raw("unknown"),)
    return ("; ".join(f"{e.label()} ({e.short_source()} {e.date})" for e in entries[:3]),)


def _interception(doc: Document, agg: Aggregator, rules: dict[str, Rule], figures: dict[str, Figure]) -> None:
    doc.h(2, "Interception", "interception")
    doc.p(Raw("A verdict needs forensic evidence, not just a failed handshake: the packet that ended the "
              "handshake is compared with the server's own SYN-ACK and the handshake RTT (tells: TTL off by 2 "
              "or more, faster than 0.8 RTT, DF or TCP timestamps unlike the server's, a race with the real "
              "answer), or carries a known block page or interception CA. Method: docs/detection.md."))
    if not agg.patterns:
        doc.p(Raw("No interception pattern was found in these inputs."))
    for ps in sorted(agg.patterns.values(), key=lambda p: (-p.count, p.pattern)):
        _pattern(doc, ps, rules)
    for name in ("delay-vs-rtt.svg", "ttl.svg"):
        if name in figures:
            doc.blocks.append(figures[name])
    _comparison(doc, agg)


def _pattern(doc: Document, ps: PatternStats, rules: dict[str, Rule]) -> None:
    doc.h(3, ps.pattern, f"pattern-{ps.pattern}")
    doc.p(Raw(f"{_n(ps.count)} intercepted. Providers: "), _top(ps.providers, 5),
          Raw(". Ports: "), _top(ps.ports, 8), Raw(". Names (SNI or Host): "), _top(ps.snis, 5),
          Raw(". Outcomes: "), _top(ps.outcomes, 5), Raw("."))
    rows: list[list[Parts]] = []
    for rid, n in ps.rules.top(20):
        rule = rules.get(rid)
        if rule is None:
            rows.append([(Code(rid),), (Raw(_n(n)),), (Raw("(not among the rules loaded for this report)"),), ("",)])
            continue
        rows.append([(Code(rid),), (Raw(_n(n)),), (rule.title,), ("; ".join((_where(rule), *rule.references[:3])),)])
    doc.p(Raw("Rules that matched (a verdict lists every matching rule):"))
    doc.table(["rule", "matches", "what it looks for", "defined in, references"], rows, numeric={1})
    measured: list[Parts] = []
    if ps.tells.counts:
        measured.append((Raw("Tells: "), _top(ps.tells, 10)))
    if ps.ttl_deltas.counts:
        values = sorted(ps.ttl_deltas.counts.elements())
        measured.append((Raw(f"TTL delta against the SYN-ACK: min {values[0]}, median {statistics.median(values):g}, "
                             f"max {values[-1]} ({len(values)} packets)"),))
    delays = sorted(ps.delay_rtt.items)
    if delays:
        fast = sum(1 for d in delays if d < 0.8)
        measured.append((Raw(f"Reaction time in RTTs: min {delays[0]:.3f}, median {statistics.median(delays):.3f}, "
                             f"max {delays[-1]:.3f}; {fast} of {len(delays)} faster than 0.8 RTT"),))
    if ps.markers.counts:
        measured.append((Raw("Markers (block page, alert, certificate, RST payload): "), _top(ps.markers, 6)))
    if measured:
        doc.p(Raw("Measured evidence:"))
        doc.bullets(measured)
    doc.p(Raw(f"Flows ({len(ps.flows)} of {_n(ps.count)} shown):"))
    doc.table(["capture", "time (UTC)", "client", "server", "name", "outcome", "rules", "tells", "RTT ms",
               "delay ms", "TTL (delta)", "markers"],
              [_flow_row(f) for f in ps.flows], numeric={8, 9})


def _where(rule: Rule) -> str:
    """Where a rule is defined: ``tlsprobe/rules/x.yaml:9``, or a user pack's file name and line
    (never a local directory: the report may be published)."""
    if rule.source.startswith("tlsprobe/"):
        return rule.source
    return f"{os.path.basename(rule.source)} (pack {rule.pack})"


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}" if v >= 1 else f"{v:.3f}"


def _flow_row(f: FlowExample) -> list[Parts]:
    ttl = "-" if f.ttl is None else f"{f.ttl} ({f.ttl_delta:+d})" if f.ttl_delta is not None else str(f.ttl)
    return [
        (_w(f.capture),), (Raw(_utc(f.ts)),), (_w(f.client, 64),),
        (f"{_w(f.server, 64)}:{f.port}" + (" (HTTP)" if f.kind == "http" else ""),),
        (_w(f.name) if f.name is not None else "(none)",), (f.outcome,), (", ".join(_w(r, 64) for r in f.rule_ids),),
        (", ".join(_w(t, 32) for t in f.tells) or "-",), (Raw(_ms(f.rtt_ms)),), (Raw(_ms(f.delay_ms)),), (Raw(ttl),),
        ("; ".join(_w(m) for m in f.markers) or "-",),
    ]


def _comparison(doc: Document, agg: Aggregator) -> None:
    doc.h(3, "Port and SNI comparison", "port-and-sni-comparison")
    findings = agg.comparison.findings()
    doc.p(Raw("The same client, server and SNI on different ports, and the same server and port with different "
              "SNIs: every combination where one always fails (a verdict, or a reset, FIN, alert, plaintext "
              "reply or silence) and another always succeeds."))
    port = [f for f in findings if f["kind"] == "port"]
    groups = (
        ("Fails on a non-standard port, succeeds on 443",
         [f for f in port if any(s["port"] == 443 for s in f["succeeds"])]),
        ("Fails on 443, succeeds on another port", [f for f in port if any(x["port"] == 443 for x in f["fails"])]),
        ("Between non-standard ports",
         [f for f in port if not any(x["port"] == 443 for x in f["fails"] + f["succeeds"])]),
    )
    for title, items in groups:
        doc.p(Raw(f"{title}: {len(items)}."))
        if items:
            doc.table(["SNI", "client -> server", "fails on", "succeeds on"], [[
                (f["sni"] if f["sni"] is not None else "(none)",),
                (f"{f['client_ip']} -> {f['server_ip']}",),
                (", ".join(f"{x['port']} ({x['how']} x{x['count']})" for x in f["fails"]),),
                (", ".join(f"{x['port']} (x{x['count']})" for x in f["succeeds"]),),
            ] for f in items[:50]])
    sni = [f for f in findings if f["kind"] == "sni"]
    doc.p(Raw(f"Fails only for some names on the same server and port: {len(sni)}."))
    if sni:
        doc.table(["server", "fails when SNI =", "succeeds with"], [[
            (f"{f['server_ip']}:{f['port']}",),
            (", ".join(f"{x['sni'] if x['sni'] is not None else '(none)'} ({x['how']} x{x['count']})"
                       for x in f["fails"]),),
            (", ".join(f"{x['sni'] if x['sni'] is not None else '(none)'} (x{x['count']})" for x in f["succeeds"]),),
        ] for f in sni[:50]])
    if agg.comparison.truncated:
        doc.p(Raw("The comparison reached its group limit; some combinations were not compared."))


def _anomalies(doc: Document, agg: Aggregator) -> None:
    doc.h(2, "Anomalies and what was skipped", "anomalies-and-what-was-skipped")
    t = agg.totals
    counts = dict(t.anomalies)
    for code, n in agg.record_anomalies.counts.items():
        counts[code] = counts.get(code, 0) + n
    if counts:
        doc.p(Raw("Damaged, hostile or limit-cut input, by anomaly code (docs/anomalies.md):"))
        doc.table(["code", "count", "meaning"], [
            [(Code(code),), (Raw(_n(n)),), (ANOMALIES.get(code, "not known to this tlsprobe version"),)]
            for code, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:100]
        ], numeric={1})
    else:
        doc.p(Raw("No anomaly was recorded."))
    skipped: list[Parts] = []
    for message in t.errors[:20]:
        skipped.append((Raw("unreadable input: "), message))
    if t.live_runs:
        share = t.kernel_dropped / t.kernel_received if t.kernel_received else 0.0
        skipped.append((Raw(f"{_n(t.kernel_dropped)} of {_n(t.kernel_received)} packets ({share:.2%}) dropped by "
                            f"the kernel in {t.live_runs} live capture{'s' if t.live_runs != 1 else ''}: "
                            "their handshakes are missing"),))
    if len(t.errors) > 20:
        skipped.append((Raw(f"... and {len(t.errors) - 20} more unreadable inputs"),))
    if t.malformed_lines:
        skipped.append((Raw(f"{_n(t.malformed_lines)} malformed JSON Lines skipped"),))
        skipped += [(Raw("  at "), where) for where in t.malformed_examples]
    if agg.malformed_records:
        skipped.append((Raw(f"{_n(agg.malformed_records)} records without their essential fields skipped"),))
    incomplete = agg.outcomes.get("incomplete", 0)
    if incomplete:
        skipped.append((Raw(f"{_n(incomplete)} handshakes whose outcome is unknown (the capture ended first); "
                            "counted, but neither failed nor completed"),))
    if agg.no_ja3:
        skipped.append((Raw(f"{_n(agg.no_ja3)} handshakes without a JA3 "
                            "(SSLv2-format hellos, or no ClientHello captured)"),))
    for name, n in sorted(agg.fingerprints_other.items()):
        skipped.append((Raw(f"{_n(n)} handshakes whose {name.upper()} was beyond the {name.upper()} table limit"),))
    if agg.comparison.truncated:
        skipped.append((Raw("port comparison groups beyond its limit"),))
    doc.p(Raw("Skipped or left out:" if skipped else "Nothing was skipped."))
    doc.bullets(skipped)
    doc.p(Raw("Caveats: inputs are merged, not deduplicated (the same flow captured at two vantage points, or a "
              "capture given together with its JSON Lines, counts twice); one vantage point sees only its half "
              "(docs/detection.md); timing tells need an RTT of 2 ms or more."))


def _method(doc: Document, agg: Aggregator, options: Options, packs: list[str]) -> None:
    doc.h(2, "How this report was made", "how-this-report-was-made")
    redaction = "none"
    if options.redacted:
        redaction = "client IPs replaced by keyed pseudonyms (HMAC-SHA256)"
        if options.redacted_names:
            redaction += "; SNIs and HTTP Host names too"
    captures = agg.captures.top(30)
    more = len(agg.captures) - len(captures)
    doc.bullets([
        (Raw(f"tlsprobe {__version__} (tlsprobe report); records as documented in docs/output.md."),),
        (Raw("Captures (handshakes and HTTP requests in each): "),
         ", ".join(f"{_w(name, 80)} ({n})" for name, n in sorted(captures)) + (f", +{more} more" if more > 0 else "")),
        (Raw("Rule packs: "), ", ".join(packs) or "none"),
        (Raw(f"Redaction: {redaction}."),),
        (Raw("Wire strings (SNI, ALPN, HTTP headers, certificate names) are shown escaped, cut to 120 characters."),),
    ])
