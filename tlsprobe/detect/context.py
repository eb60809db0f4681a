"""Cross-flow context: each record judged against what the run has shown so far.

Per-record rules are pure functions of one record.  Some evidence only exists across
flows: the TTLs a server's genuine packets carry (so that a reset one hop off is
foreign when every genuine packet of that server had the same TTL), the host that
answered the other handshakes to the same server (a transparent proxy answers from
nearer), the issuer the same name presented elsewhere, the injector whose block page
named its provider.  :class:`Context` keeps bounded, streaming profiles of these and,
when a record's evidence window closes:

1. :meth:`Context.judge` writes what the profiles say into ``evidence.context`` and
   corrects ``evidence.tells`` (``ttl_mismatch`` from the server's own variation instead
   of a fixed threshold) - before the rules run, so rules read it like any other field;
2. :meth:`Context.refine` scales a context-based verdict's confidence by how much was
   compared, says what, and (:meth:`Context.attribute`) names the provider of a verdict
   whose injector matches one that a content-based provider verdict anchored
   (:meth:`Context.anchor`) on the same server or name;
3. :meth:`Context.observe` adds a closed record's facts to the profiles, whatever its
   verdict; :meth:`Context.holds` says whether the flows around a record could still
   change its verdict (the analyser then judges it again after a settle window), and
   :meth:`Context.learn` takes what a final verdict teaches (a QUIC block's residual);
4. :meth:`Context.findings` gives what only the whole run shows (an issuer minting
   leaves for many unrelated names; injectors and their flows) for the summary.

Live capture and files go through the same calls.  Every bound is in
:mod:`tlsprobe.limits`; docs/detection.md says what each signal is worth.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tlsprobe.detect.asn import AsnDb
from tlsprobe.limits import (
    CONTEXT_MAX_ANCHORS,
    CONTEXT_MAX_ISSUERS,
    CONTEXT_MAX_NAMES,
    CONTEXT_MAX_SERVERS,
    CONTEXT_QUIC_RESIDUAL_S,
)

# A profile needs this many flows before its TTL range replaces the fixed tolerance: with
# fewer, a route change between two flows cannot be told from a foreign packet.
MIN_PROFILE_FLOWS = 3
# ... and this many TTLs read from the server's packets on the same port (this flow's
# included): a path whose TTL wanders by a hop per packet shows one value on 8 packets
# with a chance of 1 in 128.
MIN_PROFILE_SAMPLES = 8
# Fixed tolerance when there is no profile (the flow's own SYN-ACK only): a route change
# moves a TTL by a hop or so.
TTL_TOLERANCE = 2
# A handshake answered in less than this share of another flow's RTT, from another TTL,
# came from something nearer than the server (RTTs below MIN_RTT_MS are not compared).
NEARER_RTT_RATIO = 0.5
MIN_RTT_MS = 2.0
# A provider verdict this sure (content markers, not a packet shape) anchors its injector.
ANCHOR_CONFIDENCE = 0.9
# An issuer is "minting" when its unverified leaves name this many registrable domains.
MINTING_DOMAINS = 3
_INJECTION_PATTERNS = ("rst_injection", "block_page", "tls_alert_injection")
# Common second-level labels under two-letter country codes (co.uk, com.cn, ...)
_SECOND_LEVEL = frozenset(("co", "com", "net", "org", "gov", "edu", "ac", "or", "ne", "go"))


def registrable(name: str) -> str:
    """The registrable domain of a host name, approximately: the last two labels (three
    under ``co.uk``-style second levels).  IP literals are themselves."""
    name = name.lower().rstrip(".")
    try:
        ipaddress.ip_address(name)
        return name
    except ValueError:
        pass
    labels = name.split(".")
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in _SECOND_LEVEL:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


@dataclass(frozen=True, slots=True)
class ContextOptions:
    """What the user told the context stage (picklable: -j workers build their own)."""

    trust_names: frozenset[str] = frozenset()  # SANs of the leaves in --trust bundles
    asn_db: str | None = None  # --asn-db FILE

    def make(self) -> Context:
        """A fresh :class:`Context` (raises :class:`~tlsprobe.detect.asn.AsnDbError`)."""
        return Context(self.trust_names, AsnDb(self.asn_db) if self.asn_db else None)


@dataclass(slots=True)
class Anchor:
    """An injector whose verdict named a provider: what its packets look like."""

    provider: str
    ttl: int
    df: bool
    ip_id: str  # "zero", "one", "copied", "const:N" or "varies"
    flow: str  # the anchoring flow, as text
    pattern: str
    confidence: float
    ip_version: int = 4


Host = tuple[str, int, float | None, tuple[int, ...], int, int]


def genuine_hosts(hosts: list[Host]) -> list[Host]:
    """The hosts that were the server itself: not answered from nearer than another host
    with another TTL (a transparent proxy; the genuine server is the farthest responder)."""
    slowest: dict[int, float] = {}
    for _, ttl, rtt, *_ in hosts:
        if rtt is not None and rtt >= MIN_RTT_MS and rtt > slowest.get(ttl, 0.0):
            slowest[ttl] = rtt
    if not slowest:
        return hosts
    out = []
    for h in hosts:
        rtt = h[2]
        if rtt is not None and any(t != h[1] and rtt < NEARER_RTT_RATIO * r for t, r in slowest.items()):
            continue
        out.append(h)
    return out


@dataclass(slots=True)
class ServerProfile:
    """What the run has seen of one server address."""

    flows: int = 0
    answered: int = 0  # handshakes it answered with a ServerHello (TCP)
    quic_answered: set[str] = field(default_factory=set)  # SNIs it answered over QUIC
    quic_blocked: dict[int, float] = field(default_factory=dict)  # port -> last blackholed QUIC Initial
    # "port|name" and "*|name" -> leaves seen: (issuer, verified, flow text, flow key)
    leaves: dict[str, list[tuple[str, bool, str, str]]] = field(default_factory=dict)
    # the hosts that completed its TCP handshakes: (flow key, SYN-ACK TTL, RTT ms at the
    # client, the TTLs of the server's packets after a hello it answered, the port, how
    # many packets those TTLs were read from)
    hosts: list[Host] = field(default_factory=list)
    quic_silent: dict[int, list[tuple[float, str | None]]] = field(default_factory=dict)  # port -> (ts, SNI)
    trusted_names: set[str] = field(default_factory=set)  # names it presented a verified chain for
    anchors: list[Anchor] = field(default_factory=list)


@dataclass(slots=True)
class IssuerProfile:
    """Unverified leaves of one issuer."""

    names: set[str] = field(default_factory=set)
    domains: set[str] = field(default_factory=set)
    servers: set[str] = field(default_factory=set)
    flows: int = 0


def _flow_text(d: Mapping[str, Any]) -> str:
    sni = d.get("sni") or ((d.get("http_request") or {}).get("host"))
    return f"{d.get('src_ip')}:{d.get('src_port')} -> {d.get('dst_ip')}:{d.get('dst_port')}" + (
        f" ({str(sni)[:64]!r})" if sni else "")


def _key(d: Mapping[str, Any]) -> str:
    """A record's identity within a run (client end and hello time)."""
    return f"{d.get('src_ip')}|{d.get('src_port')}|{d.get('ts')}"


def _packets_before(ev: Mapping[str, Any]) -> int:
    """Server packets (not resets) that came before the one carrying the outcome."""
    pkt = ev.get("outcome_packet")
    delay = pkt.get("delay_ms") if isinstance(pkt, dict) else None
    if not isinstance(delay, (int, float)):
        return 0
    return sum(1 for p in ev.get("server_packets") or ()
               if isinstance(p, dict) and "R" not in str(p.get("flags"))
               and isinstance(p.get("delay_ms"), (int, float)) and p["delay_ms"] < delay)


def _name(d: Mapping[str, Any]) -> str | None:
    """The name a record asked for: its SNI, or its HTTP Host without a port."""
    sni = d.get("sni")
    if isinstance(sni, str) and sni:
        return sni.lower()
    req = d.get("http_request")
    host = req.get("host") if isinstance(req, dict) else None
    if not isinstance(host, str) or not host:
        return None
    if host.startswith("["):
        return host[1:].partition("]")[0].lower() or None
    return host.rpartition(":")[0].lower() if host.count(":") == 1 else host.lower()


def _ip_id_class(pkt: Mapping[str, Any], tells: Any) -> str:
    if isinstance(tells, list) and "ip_id_copied" in tells:
        return "copied"
    ip_id = pkt.get("ip_id")
    if ip_id == 0:
        return "zero"
    if ip_id == 1:
        return "one"
    return f"const:{ip_id}"


NO_OPTIONS = ContextOptions()


class Context:
    """Bounded per-server, per-issuer and per-injector profiles of one run."""

    __slots__ = ("asn", "issuers", "name_anchors", "name_leaves", "servers", "trust_names", "verified_names")

    def __init__(self, trust_names: frozenset[str] = frozenset(), asn: AsnDb | None = None) -> None:
        """``trust_names``: host names the user vouches for (SANs of leaf certificates in
        ``--trust`` bundles): any chain for them that does not verify is substituted.
        ``asn``: the network-owner database (``--asn-db``) for ``evidence.context.server_asn``."""
        self.servers: OrderedDict[str, ServerProfile] = OrderedDict()
        self.issuers: OrderedDict[str, IssuerProfile] = OrderedDict()
        # names some flow of the run got a verified chain for (for the findings)
        self.verified_names: OrderedDict[str, None] = OrderedDict()
        # leaves seen per name on any server (a name's genuine certificate is the same
        # wherever it is served; a -j worker sees the names of its own servers only)
        self.name_leaves: OrderedDict[str, list[tuple[str, bool, str, str]]] = OrderedDict()
        self.trust_names = frozenset(n.lower() for n in trust_names)
        self.asn = asn
        # injectors anchored per name too: the same box serves a name's IPv4 and IPv6
        # addresses (a -j worker sees the names of its own servers only)
        self.name_anchors: OrderedDict[str, list[Anchor]] = OrderedDict()

    def _server(self, ip: str, create: bool) -> ServerProfile | None:
        prof = self.servers.get(ip)
        if prof is not None:
            self.servers.move_to_end(ip)
        elif create:
            if len(self.servers) >= CONTEXT_MAX_SERVERS:
                self.servers.popitem(last=False)
            prof = self.servers[ip] = ServerProfile()
        return prof

    # -- judging -----------------------------------------------------------------

    def judge(self, d: dict[str, Any]) -> None:
        """Write ``evidence.context`` and correct ``evidence.tells`` from the profiles (what
        the record itself added to them, when judged again after its settle window, is
        left out)."""
        ev = d.get("evidence")
        if not isinstance(ev, dict):
            return
        prof = self._server(str(d.get("dst_ip")), create=False)
        key = _key(d)
        others = [h for h in prof.hosts if h[0] != key] if prof is not None else []
        ctx: dict[str, Any] = {
            "server_flows": prof.flows if prof else 0,
            "server_ttls": [],
            "server_rtt_min_ms": None,
            "server_answered": (prof.answered + len(prof.quic_answered)) if prof else 0,
            "ttl": None,
            "host": None,
            "certificate": None,
            "quic": None,
            "injector": None,
            "server_asn": self.asn.lookup(str(d.get("dst_ip"))) if self.asn is not None else None,
        }
        ev["context"] = ctx
        if d.get("transport") == "quic":
            self._judge_quic(d, ev, ctx, prof)
            return
        ctx["server_flows"] = len(others)
        genuine = genuine_hosts(others)
        ctx["server_ttls"] = sorted({t for h in genuine for t in (h[1], *h[3])})
        ctx["server_rtt_min_ms"] = min((h[2] for h in genuine if h[2] is not None), default=None)
        # a port can be another host behind the address (a load balancer's or NAT's
        # backends) or another path (ECMP hashes ports): a profile speaks for a port only
        # when a flow to that port was answered
        port = d.get("dst_port")
        same_port = any(h[4] == port and h[3] for h in genuine)
        # readings on the same port count (ECMP and wandering act per port); the flow's own
        # SYN-ACK and packets before the outcome are among them
        samples = sum(h[5] for h in genuine if h[4] == port) + 1 + _packets_before(ev)
        self._judge_ttl(ev, ctx, ctx["server_ttls"], len(genuine) if same_port else 0, samples)
        self._judge_host(ev, ctx, others)
        self._judge_certificate(d, ev, ctx, prof, key)
        anchor = self._anchor_for(d)
        if anchor is not None:
            ctx["injector"] = {"provider": anchor.provider, "anchor_flow": anchor.flow, "ttl": anchor.ttl,
                               "df": anchor.df, "ip_id": anchor.ip_id}

    @staticmethod
    def _judge_ttl(ev: dict[str, Any], ctx: dict[str, Any], server_ttls: list[int], flows: int,
                   samples: int) -> None:
        """Is the packet that carried the outcome foreign to the server's genuine TTLs?

        Genuine: this flow's SYN-ACK and, with a profile of MIN_PROFILE_FLOWS flows or
        more, every TTL the server's own packets carried (SYN-ACKs and ServerHellos of its
        other flows, leaving out those a nearer host answered).  The range they span is the
        server's variation; a TTL outside the range widened by that variation is foreign
        (a server that always sent 63 makes 64 foreign; one wandering over 62-64 needs 61
        or 66).  Without a profile the fixed tolerance of TTL_TOLERANCE hops applies.
        """
        pkt = ev.get("outcome_packet")
        base = ev.get("baseline")
        if not isinstance(pkt, dict) or not isinstance(base, dict):
            return
        ttl, own = pkt.get("ttl"), base.get("ttl")
        if not isinstance(ttl, int) or not isinstance(own, int):
            return
        # this flow's own: its SYN-ACK, and what the server sent before the outcome (an ACK
        # of the hello comes from the server: an in-path injector does not acknowledge)
        delay = pkt.get("delay_ms")
        genuine = {own} | {
            p["ttl"] for p in ev.get("server_packets") or ()
            if isinstance(p, dict) and isinstance(p.get("ttl"), int) and "R" not in str(p.get("flags"))
            and isinstance(delay, (int, float)) and isinstance(p.get("delay_ms"), (int, float))
            and p["delay_ms"] < delay
        }
        profiled = flows >= MIN_PROFILE_FLOWS and samples >= MIN_PROFILE_SAMPLES and bool(server_ttls)
        if profiled:
            genuine |= set(server_ttls)
        lo, hi = min(genuine), max(genuine)
        spread = hi - lo
        # with a profile: outside the genuine range widened by its spread; without: 2 hops
        foreign = (ttl < lo - spread or ttl > hi + spread) if profiled else all(
            abs(ttl - g) >= TTL_TOLERANCE for g in genuine)
        ctx["ttl"] = {"event": ttl, "genuine": sorted(genuine), "spread": spread, "profiled": profiled,
                      "foreign": foreign}
        tells = ev.get("tells")
        if isinstance(tells, list):
            if foreign and "ttl_mismatch" not in tells:
                tells.append("ttl_mismatch")
            elif not foreign and "ttl_mismatch" in tells:
                tells.remove("ttl_mismatch")

    @staticmethod
    def _judge_host(ev: dict[str, Any], ctx: dict[str, Any], others: list[Host]) -> None:
        """Did the host that completed this TCP handshake differ from the server's own?

        A transparent proxy answers the SYN itself: its SYN-ACK carries its TTL and comes
        back after its own round trip, never a longer one than the server's.  So: another
        TTL than a flow of the same server that took over twice as long.  The genuine
        server is the farthest responder on the path: its flows are never the ones flagged.
        """
        base = ev.get("baseline")
        if ev.get("vantage") != "client" or not others or not isinstance(base, dict):
            return
        ttl, rtt = base.get("ttl"), ev.get("rtt_ms")
        if not isinstance(ttl, int):
            return
        rtt_f = float(rtt) if isinstance(rtt, (int, float)) else None
        slower = [r for t, r in ((h[1], h[2]) for h in others)
                  if r is not None and t != ttl and r >= MIN_RTT_MS and rtt_f is not None
                  and rtt_f < NEARER_RTT_RATIO * r]
        ttls = {h[1] for h in others}
        rtts = sorted(h[2] for h in others if h[2] is not None)
        median = rtts[len(rtts) // 2] if rtts else None
        # (another TTL alone, at the same distance, is not enough: a path that wanders, or
        # ECMP hashing ports onto paths of other lengths, gives a genuine flow another TTL)
        if slower:
            ctx["host"] = {"differs": True, "synack_ttl": ttl, "server_ttls": sorted(ttls), "rtt_ms": rtt,
                           "server_rtt_median_ms": median, "nearer": bool(slower), "ttl_differs": ttl not in ttls,
                           "compared_flows": len(others)}

    def _judge_certificate(self, d: dict[str, Any], ev: dict[str, Any], ctx: dict[str, Any],
                           prof: ServerProfile | None, key: str) -> None:
        certs = d.get("certificates")
        cert = ev.get("certificate")
        name = d.get("sni")
        out: dict[str, Any] = {}
        verified = isinstance(cert, dict) and cert.get("chain_verified") is True
        if isinstance(name, str) and name.lower() in self.trust_names:
            out["vouched"] = True  # the user's --trust bundle holds a leaf for this name
        if prof is not None and isinstance(name, str) and name.lower() in prof.trusted_names:
            out["vouched"] = True  # this server presented a verified chain for the name before
        if certs and isinstance(certs, list) and isinstance(certs[0], dict):
            issuer = str(certs[0].get("issuer") or "")
            out["issuer"] = issuer
            if prof is not None and isinstance(name, str):
                seen = [*prof.leaves.get(f"{d.get('dst_port')}|{name.lower()}", ()),
                        *prof.leaves.get(f"*|{name.lower()}", ())]
                other = [e for e in seen if e[3] != key and e[0] != issuer]
                if not other:  # the same name on another server
                    other = [e for e in self.name_leaves.get(name.lower(), ()) if e[3] != key and e[0] != issuer]
                if other:
                    best = max(other, key=lambda e: e[1])  # a verified one first
                    out["conflict"] = {"issuer": best[0][:200], "verified": best[1], "flow": best[2]}
            # the issuer's leaves on every server of the run (a -j worker sees its own
            # servers' only: docs/detection.md)
            iss = self.issuers.get(issuer)
            domains = iss.domains if iss is not None else None
            if domains is not None and not verified and not certs[0].get("self_signed"):
                spread = domains | ({registrable(name)} if isinstance(name, str) else set())
                out["issuer_domains"] = len(spread)
                out["minting"] = len(spread) >= MINTING_DOMAINS
        if out:
            ctx["certificate"] = out

    def _judge_quic(self, d: dict[str, Any], ev: dict[str, Any], ctx: dict[str, Any],
                    prof: ServerProfile | None) -> None:
        if prof is None:
            return
        port, ts, sni = d.get("dst_port"), d.get("ts"), d.get("sni")
        blocked_at = prof.quic_blocked.get(port) if isinstance(port, int) else None
        residual = (blocked_at is not None and isinstance(ts, (int, float))
                    and 0 < ts - blocked_at <= CONTEXT_QUIC_RESIDUAL_S)
        other = sorted(n for n in prof.quic_answered if n != sni)[:8]
        # another name to the same server and port went unanswered within the residual
        # window too (before or after): the pair a residual block leaves
        pair = isinstance(ts, (int, float)) and any(
            n != sni and abs(t - ts) <= CONTEXT_QUIC_RESIDUAL_S for t, n in prof.quic_silent.get(port, ())
        ) if isinstance(port, int) else False
        ctx["quic"] = {"answered_other_snis": other, "tcp_answered": prof.answered,
                       "residual": residual, "other_sni_silent": pair,
                       "since_blocked_s": round(ts - blocked_at, 3) if residual and isinstance(ts, float)
                       and blocked_at is not None else None}

    # -- attribution -------------------------------------------------------------

    def refine(self, d: dict[str, Any], verdict: dict[str, Any] | None) -> dict[str, Any] | None:
        """The rules' verdict, with what the context adds: a confidence that reflects how
        many flows a context-based verdict compared, evidence saying which, and the
        provider of a matching injector (:meth:`attribute`)."""
        if verdict is None:
            return None
        ev = d.get("evidence")
        ctx = ev.get("context") if isinstance(ev, dict) else None
        if isinstance(ctx, dict) and any("evidence.context" in e for e in verdict.get("evidence", ())):
            verdict = dict(verdict)
            flows = int(ctx.get("server_flows") or 0)
            # one comparison is less sure than a consistent profile: 0.88 of the rule's
            # confidence with the minimum profile, the full value from 7 flows on
            scale = min(1.0, 0.82 + 0.02 * flows)
            verdict["confidence"] = round(float(verdict["confidence"]) * scale, 3)
            verdict["evidence"] = [*verdict.get("evidence", []), *self._compared(ctx)]
        asn = ctx.get("server_asn") if isinstance(ctx, dict) else None
        if isinstance(asn, dict):
            verdict = dict(verdict)
            verdict["evidence"] = [*verdict.get("evidence", []),
                                   f"server {d.get('dst_ip')} in AS{asn.get('number')} ({asn.get('organization')})"]
        return self.attribute(d, verdict)

    @staticmethod
    def _compared(ctx: Mapping[str, Any]) -> list[str]:
        out = []
        ttl = ctx.get("ttl")
        if isinstance(ttl, dict) and ttl.get("foreign"):
            out.append(f"TTL {ttl.get('event')} outside the server's genuine TTLs {ttl.get('genuine')} "
                       f"(spread {ttl.get('spread')}) over {ctx.get('server_flows')} earlier flows")
        host = ctx.get("host")
        if isinstance(host, dict):
            out.append(f"SYN-ACK TTL {host.get('synack_ttl')}, RTT {host.get('rtt_ms')} ms; the server's other "
                       f"{host.get('compared_flows')} flows: TTLs {host.get('server_ttls')}, "
                       f"median RTT {host.get('server_rtt_median_ms')} ms")
        cert = ctx.get("certificate")
        if isinstance(cert, dict) and isinstance(cert.get("conflict"), dict):
            c = cert["conflict"]
            out.append(f"the same name got a leaf from {str(c.get('issuer'))[:80]!r} "
                       f"({'verified' if c.get('verified') else 'not verified'}) on flow {c.get('flow')}")
        quic = ctx.get("quic")
        if isinstance(quic, dict):
            if quic.get("answered_other_snis"):
                out.append(f"the server answered QUIC for {quic['answered_other_snis'][:3]} in this run")
            if quic.get("residual"):
                out.append(f"a QUIC connection to the same server and port was blackholed "
                           f"{quic.get('since_blocked_s')} s before (residual blocking)")
        if not out and ctx.get("server_answered"):
            out.append(f"the server answered {ctx.get('server_answered')} other handshakes in this run")
        return out

    def _anchor_for(self, d: Mapping[str, Any]) -> Anchor | None:
        """The anchored injector (same server or same name) that the outcome packet matches:
        its TTL (which this flow's own SYN-ACK does not have), and on IPv4 both ways its DF
        and IP-ID behaviour; on IPv6 and across the versions the TTL alone (IPv6 has
        neither DF nor IP ID)."""
        ev = d.get("evidence")
        pkt = ev.get("outcome_packet") if isinstance(ev, dict) else None
        base = ev.get("baseline") if isinstance(ev, dict) else None
        if not isinstance(pkt, dict) or not isinstance(pkt.get("ttl"), int):
            return None
        if isinstance(base, dict) and base.get("ttl") == pkt["ttl"]:
            return None  # the server's own TTL: nothing sets this packet apart
        prof = self._server(str(d.get("dst_ip")), create=False)
        name = _name(d)
        anchors: list[Anchor] = [*(prof.anchors if prof is not None else ()),
                                 *(self.name_anchors.get(name, ()) if name is not None else ())]
        if not anchors:
            return None
        cls = _ip_id_class(pkt, ev.get("tells") if isinstance(ev, dict) else None)
        v4 = d.get("ip_version") == 4
        for a in anchors:
            if a.ttl != pkt["ttl"]:
                continue
            if v4 and a.ip_version == 4 and (a.df != pkt.get("df") or not (
                    a.ip_id == cls or (a.ip_id.startswith("const:") and cls.startswith("const:")))):
                continue
            return a
        return None

    def attribute(self, d: dict[str, Any], verdict: dict[str, Any] | None) -> dict[str, Any] | None:
        """A verdict without a provider gets the provider of the anchored injector its
        outcome packet matches (:meth:`_anchor_for`), with evidence naming the anchoring
        flow.  Never by network owner alone."""
        if verdict is None or verdict.get("provider") or verdict.get("pattern") not in _INJECTION_PATTERNS:
            return verdict
        a = self._anchor_for(d)
        if a is None:
            return verdict
        verdict = dict(verdict)
        verdict["provider"] = a.provider
        verdict["confidence"] = round(min(float(verdict["confidence"]), a.confidence) * 0.95, 3)
        verdict["provider_confidence"] = round(a.confidence * 0.9, 3)  # below ANCHOR_CONFIDENCE: no chains
        verdict["evidence"] = [*verdict.get("evidence", []),
                               f"same injector as the {a.pattern} of {a.provider} on flow {a.flow}: "
                               f"TTL {a.ttl}, DF {int(a.df)}, IP ID {a.ip_id}"]
        return verdict

    # -- learning ----------------------------------------------------------------

    def observe(self, d: Mapping[str, Any]) -> None:
        """Add a closed record's facts to the profiles - what the packets showed, whatever
        its verdict will be, so that records held for their settle window inform each other
        whatever order they are released in."""
        ev = d.get("evidence")
        ip = d.get("dst_ip")
        if not isinstance(ev, dict) or not isinstance(ip, str):
            return
        prof = self._server(ip, create=True)
        assert prof is not None
        prof.flows += 1
        sni = d.get("sni")
        if d.get("transport") == "quic":
            port, ts = d.get("dst_port"), d.get("ts")
            if d.get("outcome") == "server_hello" and isinstance(sni, str) and (
                    len(prof.quic_answered) < CONTEXT_MAX_NAMES):
                prof.quic_answered.add(sni)
            elif d.get("outcome") == "silence" and isinstance(port, int) and isinstance(ts, (int, float)):
                silent = prof.quic_silent.get(port)
                if silent is None and len(prof.quic_silent) < CONTEXT_MAX_NAMES:
                    silent = prof.quic_silent[port] = []
                if silent is not None:
                    if len(silent) >= CONTEXT_MAX_ANCHORS:
                        del silent[0]
                    silent.append((float(ts), sni if isinstance(sni, str) else None))
            return
        seen: tuple[int, ...] = ()
        samples = 1  # the SYN-ACK
        if d.get("outcome") == "server_hello":
            prof.answered += 1
            # every packet the server sent after the hello: a path that wanders shows it
            ttls = [p["ttl"] for p in ev.get("server_packets") or ()
                    if isinstance(p, dict) and isinstance(p.get("ttl"), int)
                    and "R" not in str(p.get("flags"))]  # (a late forged reset is not its own)
            seen = tuple(sorted(set(ttls)))
            samples += len(ttls)
        base = ev.get("baseline")
        if isinstance(base, dict) and isinstance(base.get("ttl"), int):
            rtt = ev.get("rtt_ms")
            if len(prof.hosts) >= CONTEXT_MAX_NAMES:
                del prof.hosts[0]
            prof.hosts.append((_key(d), base["ttl"],
                               float(rtt) if isinstance(rtt, (int, float)) and ev.get("vantage") == "client" else None,
                               seen, int(d.get("dst_port") or 0), samples))
        self._learn_certificate(d, ev, prof)

    def learn(self, d: Mapping[str, Any], verdict: Mapping[str, Any] | None) -> None:
        """What a final verdict teaches: a blackholed QUIC connection starts the residual
        window of its server and port."""
        ip, port, ts = d.get("dst_ip"), d.get("dst_port"), d.get("ts")
        if (d.get("transport") != "quic" or not verdict or verdict.get("pattern") != "blackhole"
                or not isinstance(ip, str) or not isinstance(port, int) or not isinstance(ts, (int, float))):
            return
        prof = self._server(ip, create=True)
        assert prof is not None
        if port in prof.quic_blocked or len(prof.quic_blocked) < CONTEXT_MAX_NAMES:
            prof.quic_blocked[port] = float(ts)

    def anchor(self, d: Mapping[str, Any], verdict: Mapping[str, Any] | None) -> None:
        """A verdict whose provider comes from content (a block page's markers, a
        provider's payload: confidence ANCHOR_CONFIDENCE or more) anchors its injector on
        the server at once, so the flows around it can be attributed (:meth:`attribute`)."""
        if not verdict or not verdict.get("provider") or verdict.get("pattern") not in _INJECTION_PATTERNS:
            return
        if float(verdict.get("provider_confidence") or 0.0) < ANCHOR_CONFIDENCE:
            return
        ev = d.get("evidence")
        pkt = ev.get("outcome_packet") if isinstance(ev, dict) else None
        ip = d.get("dst_ip")
        if not isinstance(pkt, dict) or not isinstance(pkt.get("ttl"), int) or not isinstance(ip, str):
            return
        prof = self._server(ip, create=True)
        assert prof is not None and isinstance(ev, dict)
        anchor = Anchor(str(verdict["provider"]), pkt["ttl"], bool(pkt.get("df")),
                        _ip_id_class(pkt, ev.get("tells")), _flow_text(d), str(verdict.get("pattern")),
                        float(verdict.get("provider_confidence") or 0.0), int(d.get("ip_version") or 4))
        key = (anchor.provider, anchor.ttl, anchor.df, anchor.ip_id)
        if len(prof.anchors) < CONTEXT_MAX_ANCHORS and not any(
                (a.provider, a.ttl, a.df, a.ip_id) == key for a in prof.anchors):
            prof.anchors.append(anchor)
        name = _name(d)
        if name is not None:
            listed = self.name_anchors.get(name)
            if listed is None:
                if len(self.name_anchors) >= CONTEXT_MAX_SERVERS:
                    self.name_anchors.popitem(last=False)
                listed = self.name_anchors[name] = []
            if len(listed) < CONTEXT_MAX_ANCHORS and not any(
                    (a.provider, a.ttl, a.df, a.ip_id) == key for a in listed):
                listed.append(anchor)

    @staticmethod
    def holds(d: Mapping[str, Any]) -> bool:
        """Could flows around this record still change its verdict?  An injection without a
        provider (a block page nearby may name it), a reset, FIN, alert, plaintext reply or
        silence without a verdict (the server's profile may still show the packet foreign,
        a control connection that it answers), an unverified chain (another flow may show
        the genuine one), the first handshake to a server with an invisible chain.  Any other
        completed handshake is final."""
        verdict = d.get("interception")
        outcome = d.get("outcome")
        if verdict:
            return not verdict.get("provider") and verdict.get("pattern") in (*_INJECTION_PATTERNS, "blackhole")
        if d.get("transport") == "quic":
            return outcome == "silence"
        if outcome in ("rst", "fin", "tls_alert", "plaintext", "silence"):
            return True
        ev = d.get("evidence")
        cert = ev.get("certificate") if isinstance(ev, dict) else None
        if d.get("certificates"):
            return not (isinstance(cert, dict) and cert.get("chain_verified") is True)
        # an invisible chain (TLS 1.3) on the first handshake seen to its server: only the
        # server's other flows can show whether the server itself answered it
        ctx = ev.get("context") if isinstance(ev, dict) else None
        return outcome == "server_hello" and isinstance(ctx, dict) and ctx.get("server_flows") == 0

    def _learn_certificate(self, d: Mapping[str, Any], ev: Mapping[str, Any], prof: ServerProfile) -> None:
        certs = d.get("certificates")
        name = d.get("sni")
        if not certs or not isinstance(certs, list) or not isinstance(certs[0], dict) or not isinstance(name, str):
            return
        issuer = str(certs[0].get("issuer") or "")
        cert = ev.get("certificate")
        verified = isinstance(cert, dict) and cert.get("chain_verified") is True
        lname = name.lower()
        if verified:
            if len(prof.trusted_names) < CONTEXT_MAX_NAMES:
                prof.trusted_names.add(lname)
            self.verified_names[lname] = None
            self.verified_names.move_to_end(lname)
            if len(self.verified_names) > CONTEXT_MAX_SERVERS:
                self.verified_names.popitem(last=False)
        entry = (issuer, verified, _flow_text(d), _key(d))
        listed_name = self.name_leaves.get(lname)
        if listed_name is None:
            if len(self.name_leaves) >= CONTEXT_MAX_SERVERS:
                self.name_leaves.popitem(last=False)
            listed_name = self.name_leaves[lname] = []
        if len(listed_name) < 4 and all(e[0] != issuer or e[1] != verified for e in listed_name):
            listed_name.append(entry)
        for slot in (f"{d.get('dst_port')}|{lname}", f"*|{lname}"):
            listed = prof.leaves.get(slot)
            if listed is None and len(prof.leaves) < CONTEXT_MAX_NAMES:
                listed = prof.leaves[slot] = []
            # a few distinct issuers per name are enough to show a conflict
            if listed is not None and len(listed) < 4 and all(e[0] != issuer or e[1] != verified for e in listed):
                listed.append(entry)
        if verified or certs[0].get("self_signed"):
            return
        iss = self.issuers.get(issuer)
        if iss is None:
            if len(self.issuers) >= CONTEXT_MAX_ISSUERS:
                self.issuers.popitem(last=False)
            iss = self.issuers[issuer] = IssuerProfile()
        else:
            self.issuers.move_to_end(issuer)
        iss.flows += 1
        for bucket, value in ((iss.names, lname), (iss.domains, registrable(lname)),
                              (iss.servers, str(d.get("dst_ip")))):
            if len(bucket) < CONTEXT_MAX_NAMES:
                bucket.add(value)

    # -- the whole run -------------------------------------------------------------

    def findings(self) -> list[dict[str, Any]]:
        """What only the run as a whole shows, for the summary (bounded: one entry per
        minting issuer and per anchored injector)."""
        out: list[dict[str, Any]] = []
        for issuer, iss in self.issuers.items():
            if len(iss.domains) >= MINTING_DOMAINS:
                elsewhere = sum(1 for n in iss.names if n in self.verified_names)
                out.append({
                    "kind": "minting_issuer", "issuer": issuer[:200], "names": len(iss.names),
                    "domains": len(iss.domains), "servers": len(iss.servers), "flows": iss.flows,
                    "verified_elsewhere": elsewhere,
                    "text": f"issuer {issuer[:80]!r} (not publicly trusted) presented leaves for {len(iss.names)} "
                            f"names in {len(iss.domains)} domains on {len(iss.servers)} servers; {elsewhere} of "
                            f"those names got a verified chain on other flows",
                })
        for ip, prof in self.servers.items():
            for a in prof.anchors:
                out.append({"kind": "injector", "server": ip, "provider": a.provider, "ttl": a.ttl, "df": a.df,
                            "ip_id": a.ip_id, "anchor_flow": a.flow,
                            "text": f"{a.provider} injector in front of {ip}: TTL {a.ttl}, DF {int(a.df)}, "
                                    f"IP ID {a.ip_id} (anchored by {a.flow})"})
        return out
