"""Interception detection: rules as data, evaluated as pure functions of records.

    rs = load_rules(["my-rules.yaml"])        # built-in packs + yours; RuleError if any is bad
    verdict = rs.evaluate(record.to_dict())   # None, or {"pattern", "confidence", ...}

:mod:`.conditions` holds the condition language (the operator registry),
:mod:`.rules` reads and validates rule packs, :mod:`.engine` evaluates them.
docs/rules.md is the reference of the rule language.
"""

from __future__ import annotations

from tlsprobe.detect.conditions import OPERATORS, Condition, Operator
from tlsprobe.detect.engine import RuleSet, load_rules
from tlsprobe.detect.rules import (
    KNOWN_PATTERNS,
    Problem,
    Rule,
    RuleError,
    RulePack,
    builtin_pack_files,
    collect_packs,
    compile_condition,
    load_pack,
    load_packs,
    parse_pack,
)

__all__ = [
    "KNOWN_PATTERNS",
    "OPERATORS",
    "Condition",
    "Operator",
    "Problem",
    "Rule",
    "RuleError",
    "RulePack",
    "RuleSet",
    "builtin_pack_files",
    "collect_packs",
    "compile_condition",
    "load_pack",
    "load_packs",
    "load_rules",
    "parse_pack",
]
