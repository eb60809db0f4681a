"""The rule engine: which rules match a record, and the verdict they give.

A pure function of the record: :meth:`RuleSet.evaluate` reads the record (a
``HandshakeRecord.to_dict()`` mapping), never changes it, and keeps no state between
records, so capture files and live traffic give the same verdicts.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tlsprobe.detect.conditions import AllOf, Condition, Leaf, Test
from tlsprobe.detect.rules import Problem, Rule, RuleError, RulePack, load_packs

_DAY = 86400.0


def _epoch(day: dt.date) -> float:
    """Seconds since the epoch at 00:00 UTC of ``day``."""
    return (day - dt.date(1970, 1, 1)).days * _DAY


_OUTCOME_CACHE = 256  # (rule list, outcome) pairs remembered; outcomes are a handful of words


def required_outcomes(cond: Condition) -> frozenset[Any] | None:
    """The ``outcome`` values a condition can hold for, if it pins them down.

    A top-level ``{field: outcome, eq|in: ...}`` leaf, alone or inside an ``all``; None
    when the condition says nothing about the outcome.
    """
    if isinstance(cond, Leaf) and cond.path == "outcome":
        if cond.op == "eq" and isinstance(cond.arg, str):
            return frozenset((cond.arg,))
        if cond.op == "in" and isinstance(cond.arg, list) and all(isinstance(a, str) for a in cond.arg):
            return frozenset(cond.arg)
        return None
    if isinstance(cond, AllOf):
        for child in cond.children:
            found = required_outcomes(child)
            if found is not None:
                return found
    return None


@dataclass(frozen=True, slots=True)
class _Entry:
    rule: Rule
    test: Test
    start: float | None  # first second the rule applies (valid_from), UTC
    end: float | None  # first second it no longer applies (the day after valid_until)
    outcomes: frozenset[Any] | None  # the outcomes the rule can match, if it pins them


class RuleSet:
    """Rules in load order, ready to evaluate records."""

    __slots__ = ("_by_kind", "_by_outcome", "_entries", "_other")

    def __init__(self, rules: Iterable[Rule] = ()) -> None:
        """Raises :class:`RuleError` if two rules share an id."""
        entries: list[_Entry] = []
        seen: dict[str, str] = {}
        problems: list[Problem] = []
        for rule in rules:
            if rule.id in seen:
                file, _, line = rule.source.rpartition(":")
                problems.append(Problem(file or "<rules>", int(line) if line.isdigit() else 1,
                                        f"duplicate rule id {rule.id!r} (already defined at {seen[rule.id]})"))
                continue
            seen[rule.id] = rule.source
            entries.append(_Entry(
                rule, rule.condition.test,
                _epoch(rule.valid_from) if rule.valid_from else None,
                _epoch(rule.valid_until) + _DAY if rule.valid_until else None,
                required_outcomes(rule.condition),
            ))
        if problems:
            raise RuleError(problems)
        self._entries = tuple(entries)
        # Rules by record kind, load order kept; "any" rules are in every list.
        self._by_kind = {kind: tuple(e for e in entries if e.rule.applies_to in (kind, "any"))
                         for kind in ("tls", "http")}
        self._other = tuple(e for e in entries if e.rule.applies_to == "any")
        self._by_outcome: dict[tuple[int, str], tuple[_Entry, ...]] = {}

    @classmethod
    def from_packs(cls, packs: Iterable[RulePack]) -> RuleSet:
        """The rules of ``packs``, pack by pack."""
        return cls(rule for pack in packs for rule in pack.rules)

    @classmethod
    def load(cls, paths: Iterable[str | os.PathLike[str]] = (), *, builtin: bool = True) -> RuleSet:
        """The built-in packs (if ``builtin``) then the packs at ``paths``.

        Raises :class:`RuleError` listing every problem in every file.
        """
        return cls.from_packs(load_packs(paths, builtin=builtin))

    @property
    def rules(self) -> tuple[Rule, ...]:
        """Every rule, in load order."""
        return tuple(e.rule for e in self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Rule]:
        return (e.rule for e in self._entries)

    def _candidates(self, record: Mapping[str, Any]) -> tuple[_Entry, ...]:
        kind = record.get("kind")
        if kind is None:
            entries = self._by_kind["tls"]
        else:
            entries = self._by_kind.get(kind, self._other) if isinstance(kind, str) else self._other
        # Rules that require another outcome cannot match: skip them (load order kept).
        outcome = record.get("outcome")
        if not isinstance(outcome, str):
            return entries
        key = (id(entries), outcome)
        hit = self._by_outcome.get(key)
        if hit is None:
            hit = tuple(e for e in entries if e.outcomes is None or outcome in e.outcomes)
            if len(self._by_outcome) < _OUTCOME_CACHE:
                self._by_outcome[key] = hit
        return hit

    def matches(self, record: Mapping[str, Any]) -> list[Rule]:
        """Every rule that applies to ``record`` and whose condition holds, best first.

        Best is the highest confidence; among equals, the first loaded.  A rule with
        ``valid_from``/``valid_until`` applies only to records whose ``ts`` (seconds
        since the epoch, UTC) falls in those days; a record without a numeric ``ts``
        is outside every such window.
        """
        ts = record.get("ts")
        when = ts if type(ts) is float or type(ts) is int else None
        found: list[Rule] = []
        for e in self._candidates(record):
            if (e.start is not None or e.end is not None) and (
                    when is None or (e.start is not None and when < e.start) or (e.end is not None and when >= e.end)):
                continue
            if e.test(record):
                found.append(e.rule)
        if len(found) > 1:
            found.sort(key=lambda r: -r.confidence)  # stable: ties keep load order
        return found

    def evaluate(self, record: Mapping[str, Any]) -> dict[str, Any] | None:
        """The verdict for ``record``, or ``None`` when no rule matches.

        ``{"pattern", "confidence"}`` of the best rule; ``provider``: the best rule's, or
        else that of the most confident matching rule for the same pattern that names one
        (a generic forensics rule decides, a fingerprint rule attributes); ``rule_ids`` of
        every matching rule (best first) and ``evidence``: the conditions that held in the
        best rule (and in the attributing rule), as text, with values from the record
        quoted and cut to 80 characters.
        """
        found = self.matches(record)
        if not found:
            return None
        best = found[0]
        attributing = best if best.provider else next(
            (r for r in found if r.provider and r.pattern == best.pattern), None)
        evidence = best.condition.evidence(record)
        if attributing is not None and attributing is not best:
            evidence += [e for e in attributing.condition.evidence(record) if e not in evidence]
        return {
            "pattern": best.pattern,
            "confidence": best.confidence,
            "provider": attributing.provider if attributing else None,
            # how sure the provider is (the attributing rule's own confidence)
            "provider_confidence": attributing.confidence if attributing else None,
            "rule_ids": [r.id for r in found],
            "evidence": evidence,
        }


def load_rules(paths: Sequence[str | os.PathLike[str]] = (), *, builtin: bool = True) -> RuleSet:
    """:meth:`RuleSet.load`: the built-in packs (if ``builtin``) then the packs at ``paths``."""
    return RuleSet.load(paths, builtin=builtin)
