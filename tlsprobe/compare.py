"""Port and SNI comparison across a capture: what fails on one port or name but not another.

Groups handshakes by client, server and SNI across destination ports ("reset on 8443,
fine on 443"), and by server and port across SNIs ("reset on 8443 only when SNI =
x; the IP or no SNI passes").  Fed record dicts one at a time; memory is bounded by
``COMPARE_MAX_ENTRIES`` (group, member) counters in all and ``COMPARE_MAX_MEMBERS``
ports or SNIs per group (tlsprobe.limits); what does not fit is not compared and
``truncated`` says so - or, with ``age_out`` (live capture), the groups least recently
seen make room and ``aged_out`` counts them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from tlsprobe.limits import COMPARE_MAX_ENTRIES as MAX_ENTRIES
from tlsprobe.limits import COMPARE_MAX_MEMBERS as MAX_MEMBERS

FAILURES = frozenset(("rst", "fin", "tls_alert", "plaintext", "silence"))


def verdict_of(rec: Mapping[str, Any]) -> str | None:
    """``"ok"``, ``"failed:<how>"`` or None (undecided: incomplete)."""
    outcome = rec.get("outcome")
    inter = rec.get("interception")
    if inter:
        return f"failed:{inter.get('pattern')}"
    if outcome == "server_hello":
        return "ok"
    if outcome in FAILURES:
        return f"failed:{outcome}"
    return None


def _count(owner: PortComparison, table: dict[Any, dict[Any, Counter[str]]], key: Any, member: Any,
           verdict: str) -> None:
    group = table.get(key)
    if group is not None and owner.age_out:
        table[key] = table.pop(key)  # most recently used last
    counts = group.get(member) if group is not None else None
    if counts is None:
        if owner.age_out:
            while owner.entries >= MAX_ENTRIES and table:
                oldest = next(iter(table))
                if oldest == key:
                    break
                owner.entries -= len(table.pop(oldest))
                owner.aged_out += 1
        if owner.entries >= MAX_ENTRIES or (group is not None and len(group) >= MAX_MEMBERS):
            owner.truncated = True
            return
        if group is None:
            group = table[key] = {}
        counts = group[member] = Counter()
        owner.entries += 1
    counts[verdict] += 1


class PortComparison:
    """Collects outcomes per (client, server, SNI) x port and per (server, port) x SNI."""

    def __init__(self, age_out: bool = False) -> None:
        """``age_out``: when the counters are all taken, forget the groups least recently
        seen instead of ignoring new ones (a live capture that runs for days)."""
        self.age_out = age_out
        self.aged_out = 0  # groups forgotten
        self.by_name: dict[Any, dict[Any, Counter[str]]] = {}  # (client, server, sni) -> port -> verdicts
        self.by_port: dict[Any, dict[Any, Counter[str]]] = {}  # (server, port) -> sni -> verdicts
        self.truncated = False
        self.entries = 0  # (group, member) counters held in both tables

    def add(self, rec: Mapping[str, Any]) -> None:
        v = verdict_of(rec)
        if v is None:
            return
        sni = rec.get("sni")
        if rec.get("kind") == "http":  # a plain HTTP request is compared by its Host name
            sni = _host_name(rec.get("http_request"))
        _count(self, self.by_name, (rec["src_ip"], rec["dst_ip"], sni), rec["dst_port"], v)
        _count(self, self.by_port, (rec["dst_ip"], rec["dst_port"]), sni, v)

    def findings(self) -> list[dict[str, Any]]:
        """Every group where one port (or SNI) succeeds and another fails."""
        out: list[dict[str, Any]] = []
        for (client, server, sni), ports in self.by_name.items():
            ok, bad = _split(ports)
            if ok and bad:
                out.append({
                    "kind": "port",
                    "client_ip": client, "server_ip": server, "sni": sni,
                    "fails": [{"port": p, "how": how, "count": n} for p, how, n in bad],
                    "succeeds": [{"port": p, "count": n} for p, n in ok],
                    "summary": f"{_how(bad)} on port {_ports(bad)} but not on {_ports(ok)} "
                               f"(SNI {_sni(sni)}, {client} -> {server})",
                })
        for (server, port), names in self.by_port.items():
            ok, bad = _split(names)
            if ok and bad:
                out.append({
                    "kind": "sni",
                    "server_ip": server, "port": port,
                    "fails": [{"sni": s, "how": how, "count": n} for s, how, n in bad],
                    "succeeds": [{"sni": s, "count": n} for s, n in ok],
                    "summary": f"{_how(bad)} on {server}:{port} only when SNI = "
                               f"{', '.join(_sni(s) for s, _, _ in bad)}; "
                               f"{', '.join(_sni(s) for s, _ in ok)} succeed",
                })
        return sorted(out, key=lambda f: (f["kind"], f["summary"]))  # the same whatever the record order


def _split(groups: dict[Any, Counter[str]]) -> tuple[list[tuple[Any, int]], list[tuple[Any, str, int]]]:
    """Members that always succeeded, and those that failed (with their commonest failure)."""
    ok, bad = [], []
    for member, counts in sorted(groups.items(), key=lambda kv: str(kv[0])):
        fails = {k: n for k, n in counts.items() if k != "ok"}
        if not fails:
            ok.append((member, counts["ok"]))
        elif not counts.get("ok"):
            how = max(fails, key=lambda k: fails[k]).split(":", 1)[1]
            bad.append((member, how, sum(fails.values())))
    return ok, bad


def _host_name(request: Any) -> str | None:
    """The Host of an HTTP request without its port (``[v6]:port`` too)."""
    host = request.get("host") if isinstance(request, Mapping) else None
    if not isinstance(host, str) or not host:
        return None
    if host.startswith("["):
        return host[1:].partition("]")[0] or None
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def _sni(sni: str | None) -> str:
    return "(none)" if sni is None else repr(sni)


def _ports(items: list[Any]) -> str:
    return ", ".join(str(i[0]) for i in items)


def _how(bad: list[tuple[Any, str, int]]) -> str:
    return "/".join(sorted({how for _, how, _ in bad}))
