"""Rule packs: the condition language, loading and validation, the engine, the CLI."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from tlsprobe.cli import cli, main
from tlsprobe.detect import (
    OPERATORS,
    RuleError,
    RuleSet,
    builtin_pack_files,
    compile_condition,
    conditions,
    load_pack,
    load_packs,
    load_rules,
    parse_pack,
)
from tlsprobe.detect import rules as rules_module
from tlsprobe.detect.conditions import MAX_SHOWN, show

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "tlsprobe" / "rules" / "examples.yaml"
TS_2025 = 1_750_000_000.0  # 2025-06-15
TTL_DELTA = "evidence.outcome_packet.ttl_delta"

RECORD: dict[str, Any] = {
    "ts": TS_2025,
    "outcome": "rst",
    "dst_port": 8443,
    "sni": "Example.COM",
    "server_hello": None,
    "client_hello_segments": 1,
    "anomalies": ["tcp.retransmission", "tls.hello.trailing_bytes"],
    "evidence": {
        "race": False,
        "tells": ["ttl_mismatch", "ip_id_fixed"],
        "rtt_ms": 12.5,
        "outcome_packet": {"ttl_delta": -12, "ip_id": 1},
        "server_packets": [
            {"flags": "SA", "ttl": 52, "ip_id": 0, "payload_len": 0, "payload_hex": None},
            {"flags": "RA", "ttl": 64, "ip_id": 1, "payload_len": 10, "payload_hex": "01020304050607080900"},
        ],
        "http": None,
    },
}


def holds(spec: dict[str, Any], record: Any = RECORD) -> bool:
    return compile_condition(spec).test(record)


def pack_text(body: str, name: str = "test") -> str:
    return f"pack: {name}\nversion: 1\nrules:\n" + textwrap.indent(textwrap.dedent(body), "  ")


def rule_yaml(rule_id: str, match: str, confidence: float | str = 0.5, pattern: str = "rst_injection",
              extra: str = "") -> str:
    return (f"- id: {rule_id}\n  title: {rule_id}\n  pattern: {pattern}\n  confidence: {confidence}\n"
            f"{extra}  match: {match}\n")


def problems_of(text: str | bytes, tmp_path: Path, name: str = "bad.yaml") -> list[str]:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    with pytest.raises(RuleError) as info:
        load_pack(path)
    return [str(p) for p in info.value.problems]


# --- operators -----------------------------------------------------------------------

# (operator, argument, field, expected) - the field may be missing from RECORD.
OPERATOR_CASES = [
    ("eq", "rst", "outcome", True), ("eq", "fin", "outcome", False), ("eq", "rst", "nope", False),
    ("eq", 8443, "dst_port", True), ("eq", 8443.0, "dst_port", True), ("eq", "8443", "dst_port", False),
    ("eq", False, "evidence.race", True), ("eq", 0, "evidence.race", False), ("eq", None, "server_hello", True),
    ("ne", "fin", "outcome", True), ("ne", "rst", "outcome", False), ("ne", "x", "nope", False),
    ("ieq", "example.com", "sni", True), ("ieq", "example.org", "sni", False), ("ieq", "x", "nope", False),
    ("ieq", "8443", "dst_port", False),
    ("in", ["rst", "fin"], "outcome", True), ("in", ["fin"], "outcome", False), ("in", [1], "nope", False),
    ("in", [443, 8443], "dst_port", True), ("in", [True], "evidence.race", False),
    ("not_in", ["fin"], "outcome", True), ("not_in", ["rst"], "outcome", False), ("not_in", ["x"], "nope", False),
    ("gt", 8000, "dst_port", True), ("gt", 8443, "dst_port", False), ("gt", 1, "nope", False),
    ("gt", 1, "outcome", False), ("gt", -1, "evidence.race", False),
    ("ge", 8443, "dst_port", True), ("ge", 8444, "dst_port", False), ("ge", 1, "nope", False),
    ("lt", 12.6, "evidence.rtt_ms", True), ("lt", 12.5, "evidence.rtt_ms", False), ("lt", 1, "nope", False),
    ("le", 12.5, "evidence.rtt_ms", True), ("le", 12, "evidence.rtt_ms", False), ("le", 1, "nope", False),
    ("between", [8000, 9000], "dst_port", True), ("between", [1, 443], "dst_port", False),
    ("between", [0, 1], "nope", False),
    ("abs_ge", 2, TTL_DELTA, True), ("abs_ge", 13, TTL_DELTA, False), ("abs_ge", 0, "nope", False),
    ("abs_gt", 11, TTL_DELTA, True), ("abs_gt", 12, TTL_DELTA, False), ("abs_gt", 0, "sni", False),
    ("contains", "xample", "sni", True), ("contains", "XAMPLE", "sni", False), ("contains", "x", "nope", False),
    ("contains", "race", "evidence.tells", False), ("contains", "ip_id_fixed", "evidence.tells", True),
    ("contains", 1, "sni", False),
    ("icontains", "XAMPLE", "sni", True), ("icontains", "zzz", "sni", False), ("icontains", "x", "nope", False),
    ("icontains", "IP_ID_FIXED", "evidence.tells", True),
    ("startswith", "Example", "sni", True), ("startswith", "example", "sni", False),
    ("startswith", "E", "nope", False),
    ("endswith", ".COM", "sni", True), ("endswith", ".com", "sni", False), ("endswith", "M", "nope", False),
    ("regex", r"^[A-Z]\w+\.[A-Z]+$", "sni", True), ("regex", r"^example", "sni", False),
    ("regex", ".", "nope", False), ("regex", ".", "dst_port", False),
    ("exists", True, "sni", True), ("exists", True, "nope", False),
    ("exists", False, "nope", True), ("exists", False, "sni", False), ("exists", True, "server_hello", True),
    ("is_null", True, "server_hello", True), ("is_null", True, "nope", True), ("is_null", True, "sni", False),
    ("is_null", False, "sni", True), ("is_null", False, "server_hello", False), ("is_null", False, "nope", False),
    ("count_ge", 2, "evidence.tells", True), ("count_ge", 3, "evidence.tells", False),
    ("count_ge", 0, "nope", False), ("count_ge", 1, "sni", False),
    ("count_le", 2, "evidence.tells", True), ("count_le", 1, "evidence.tells", False), ("count_le", 9, "nope", False),
    ("count_eq", 2, "evidence.tells", True), ("count_eq", 1, "evidence.tells", False), ("count_eq", 0, "nope", False),
]


@pytest.mark.parametrize(("op", "arg", "path", "expected"), OPERATOR_CASES)
def test_operator(op: str, arg: Any, path: str, expected: bool) -> None:
    assert holds({"field": path, op: arg}) is expected


def test_every_operator_is_tested() -> None:
    tested = {case[0] for case in OPERATOR_CASES} | {"any", "all", "none"}
    assert tested == set(OPERATORS)


def test_paths_index_lists_and_tolerate_odd_records() -> None:
    assert holds({"field": "evidence.server_packets.1.flags", "eq": "RA"})
    assert holds({"field": "evidence.server_packets.-1.ip_id", "eq": 1})
    assert not holds({"field": "evidence.server_packets.5.flags", "exists": True})
    assert not holds({"field": "sni.length", "exists": True})  # through a string: missing
    assert not holds({"field": "evidence.http.status", "exists": True})  # through null: missing
    odds: list[dict[str, Any]] = [{}, {"evidence": []}, {"evidence": "x"}, {"outcome": ["rst"]}, {"outcome": {"a": 1}}]
    for odd in odds:
        for spec in ({"field": "outcome", "eq": "rst"}, {"field": "evidence.tells", "count_ge": 1},
                     {"field": "outcome", "regex": "r"}, {"field": "outcome", "gt": 1}):
            assert holds(spec, odd) is False


# --- quantifiers and nesting -------------------------------------------------------


def test_quantifiers() -> None:
    reset = {"all": [{"field": "flags", "contains": "R"}, {"field": "payload_len", "gt": 0}]}
    assert holds({"field": "evidence.server_packets", "any": reset})
    assert not holds({"field": "evidence.server_packets", "all": reset})
    assert holds({"field": "evidence.server_packets", "all": {"field": "ttl", "ge": 52}})
    assert holds({"field": "evidence.server_packets", "none": {"field": "flags", "eq": "F"}})
    assert not holds({"field": "evidence.server_packets", "none": reset})
    # Relative paths: "sni" inside refers to the item, not the record.
    assert not holds({"field": "evidence.server_packets", "any": {"field": "sni", "exists": True}})
    # "." is the item itself: lists of strings.
    assert holds({"field": "anomalies", "any": {"field": ".", "startswith": "tls."}})
    assert not holds({"field": "anomalies", "all": {"field": ".", "startswith": "tls."}})


@pytest.mark.parametrize(("quantifier", "empty", "missing", "not_a_list"), [
    ("any", False, False, False), ("all", False, False, False), ("none", True, False, False),
])
def test_quantifiers_on_empty_missing_and_non_lists(quantifier: str, empty: bool, missing: bool,
                                                      not_a_list: bool) -> None:
    spec = {"field": "xs", quantifier: {"field": ".", "eq": 1}}
    assert holds(spec, {"xs": []}) is empty
    assert holds(spec, {}) is missing
    assert holds(spec, {"xs": "1"}) is not_a_list


def test_nested_all_any_not() -> None:
    spec = {"all": [
        {"field": "outcome", "eq": "rst"},
        {"any": [{"field": "evidence.race", "eq": True}, {"field": "evidence.tells", "count_ge": 2}]},
        {"not": {"field": "evidence.outcome_packet.ttl_delta", "eq": 0}},
    ]}
    assert holds(spec)
    assert not holds(spec, {**RECORD, "outcome": "fin"})
    assert not holds(spec, {**RECORD, "evidence": {**RECORD["evidence"], "tells": []}})
    assert holds({"not": {"not": {"field": "outcome", "eq": "rst"}}})
    assert holds({"any": [{"field": "nope", "eq": 1}, {"not": {"field": "nope", "eq": 1}}]})
    three = {"all": [{"field": "outcome", "eq": "rst"}] * 3}
    assert holds(three) and holds({"any": [{"field": "nope", "eq": 1}] * 2 + [{"field": "sni", "exists": True}]})


# --- evidence ------------------------------------------------------------------------


def evidence(spec: dict[str, Any], record: Any = RECORD) -> list[str]:
    return compile_condition(spec).evidence(record)


def test_evidence_strings() -> None:
    spec = {"all": [
        {"field": "outcome", "eq": "rst"},
        {"field": "evidence.outcome_packet.ttl_delta", "abs_ge": 2},
        {"any": [{"field": "evidence.race", "eq": True}, {"field": "evidence.tells", "count_ge": 2}]},
        {"not": {"field": "evidence.outcome_packet.ttl_delta", "eq": 0}},
        {"field": "sni", "icontains": "example"},
        {"field": "evidence.server_packets", "any": {"all": [{"field": "flags", "contains": "R"},
                                                             {"field": "payload_len", "gt": 0}]}},
    ]}
    assert evidence(spec) == [
        "outcome == 'rst'",
        "evidence.outcome_packet.ttl_delta = -12 (|x| >= 2)",
        "evidence.tells has 2 items (>= 2)",  # only the branch of any that held
        "not (evidence.outcome_packet.ttl_delta == 0): evidence.outcome_packet.ttl_delta = -12",
        "sni contains 'example' (any case)",
        "evidence.server_packets[1].flags contains 'R'; evidence.server_packets[1].payload_len = 10 (> 0)",
    ]
    assert evidence({"field": "outcome", "eq": "fin"}) == []
    assert evidence({"field": "server_hello", "is_null": True}) == ["server_hello is null"]
    assert evidence({"field": "nope", "exists": False}) == ["nope is absent"]
    assert evidence({"field": "sni", "ieq": "example.com"}) == ["sni = 'Example.COM' (== 'example.com', any case)"]
    assert evidence({"field": "evidence.server_packets", "none": {"field": "flags", "eq": "F"}}) == [
        "none of the 2 items of evidence.server_packets match flags == 'F'"]
    assert evidence({"field": "anomalies", "any": {"field": ".", "startswith": "tls."}}) == [
        "anomalies[1] starts with 'tls.'"]


def test_evidence_quotes_and_truncates_wire_values() -> None:
    hostile = "\x1b[31mred\u202e" + "A" * 500
    ev = evidence({"field": "title", "regex": "red"}, {"title": hostile})
    assert len(ev) == 1
    text = ev[0]
    assert "\x1b" not in text and "\u202e" not in text
    assert "\\x1b[31mred\\u202e" in text
    assert "A" * (MAX_SHOWN + 1) not in text and "…" in text
    assert len(show(hostile)) <= MAX_SHOWN + 1
    assert show(None) == "null" and show(True) == "true" and show([1, "a"]) == "[1, 'a']"


# --- engine ---------------------------------------------------------------------------


def ruleset(*rules: str) -> RuleSet:
    return RuleSet.from_packs([parse_pack(pack_text("".join(rules)), "t.yaml")])


def test_verdict_is_the_most_confident_match() -> None:
    before = copy.deepcopy(RECORD)
    rs = ruleset(
        rule_yaml("low", "{field: outcome, eq: rst}", 0.3, "blackhole"),
        rule_yaml("high", "{field: evidence.tells, count_ge: 1}", 0.9,
                  extra="  provider: alibaba_cloud\n"),
        rule_yaml("tie", "{field: sni, exists: true}", 0.9, "block_page"),
        rule_yaml("miss", "{field: outcome, eq: fin}", 1.0),
    )
    verdict = rs.evaluate(RECORD)
    assert verdict == {
        "pattern": "rst_injection",
        "confidence": 0.9,
        "provider": "alibaba_cloud",
        "provider_confidence": 0.9,
        "rule_ids": ["high", "tie", "low"],
        "evidence": ["evidence.tells has 2 items (>= 1)"],
    }
    assert [r.id for r in rs.matches(RECORD)] == ["high", "tie", "low"]
    assert rs.evaluate({"outcome": "nothing"}) is None
    assert before == RECORD  # evaluation never changes the record


def test_valid_from_and_until() -> None:
    rs = ruleset(
        rule_yaml("from-2026", "{field: outcome, eq: rst}", extra="  valid_from: 2026-01-01\n"),
        rule_yaml("until-2025", "{field: outcome, eq: rst}", extra="  valid_until: '2025-06-15'\n"),
    )
    day = 86400.0
    start_2026 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
    assert [r.id for r in rs.matches({**RECORD, "ts": start_2026})] == ["from-2026"]
    assert [r.id for r in rs.matches({**RECORD, "ts": start_2026 - 1})] == []
    end_of_june_15 = 1_750_032_000.0 - 1  # 2025-06-15T23:59:59Z: valid_until is inclusive
    assert [r.id for r in rs.matches({**RECORD, "ts": end_of_june_15})] == ["until-2025"]
    assert [r.id for r in rs.matches({**RECORD, "ts": end_of_june_15 + 1})] == []
    assert [r.id for r in rs.matches({**RECORD, "ts": end_of_june_15 - 30 * day})] == ["until-2025"]
    # Without a usable timestamp a dated rule does not apply.
    for ts in (None, "2026-01-02", True):
        assert rs.matches({**RECORD, "ts": ts}) == []
    no_ts = {k: v for k, v in RECORD.items() if k != "ts"}
    assert rs.matches(no_ts) == []


def test_applies_to() -> None:
    rs = ruleset(
        rule_yaml("tls-rule", "{field: outcome, eq: rst}"),
        rule_yaml("http-rule", "{field: outcome, eq: rst}", extra="  applies_to: http\n"),
        rule_yaml("any-rule", "{field: outcome, eq: rst}", extra="  applies_to: any\n"),
    )

    def ids(rec: dict[str, Any]) -> list[str]:
        return [r.id for r in rs.matches(rec)]

    assert ids(RECORD) == ["tls-rule", "any-rule"]
    assert ids({**RECORD, "kind": "tls"}) == ["tls-rule", "any-rule"]
    assert ids({**RECORD, "kind": "http"}) == ["http-rule", "any-rule"]
    assert ids({**RECORD, "kind": "quic-someday"}) == ["any-rule"]


def test_examples_pack() -> None:
    rs = load_rules([EXAMPLES], builtin=False)
    assert len(rs) >= 5 and all(r.id.startswith("example-") for r in rs)
    verdict = rs.evaluate(RECORD)
    assert verdict is not None
    # the best rule decides the pattern; the best matching rule that names a provider for
    # that pattern attributes it
    assert verdict["pattern"] == "rst_injection" and verdict["provider"] == "alibaba_cloud"
    assert verdict["rule_ids"][0] == "example-henan-rst"
    assert "example-sni-rst" in verdict["rule_ids"]
    page = {"kind": "http", "ts": TS_2025, "evidence": {"http": {
        "status": 403, "server": "Beaver", "title": "Non-compliance ICP Filing", "body_excerpt": ""}}}
    verdict = rs.evaluate(page)
    assert verdict is not None and verdict["rule_ids"] == ["example-beaver-page"]
    assert verdict["evidence"] == [
        "evidence.http.status == 403",
        "evidence.http.server = 'Beaver' (== 'beaver', any case)",
        "evidence.http.title contains 'non-compliance icp filing' (any case)",
    ]


def test_duplicate_ids_in_a_ruleset() -> None:
    pack = parse_pack(pack_text(rule_yaml("same", "{field: a, eq: 1}")), "a.yaml")
    with pytest.raises(RuleError, match="duplicate rule id 'same'"):
        RuleSet([*pack.rules, *pack.rules])


# --- loading and validation ----------------------------------------------------------


def test_rule_fields_are_read(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(pack_text("""\
        - id: full-rule
          title: Full rule
          pattern: my_own_pattern
          provider: null
          confidence: 1
          valid_from: 2024-01-01
          valid_until: 2024-12-31
          references: [https://example.com/a]
          description: >
            Folded
            text.
          applies_to: any
          match: {field: a, eq: 1}
        """, name="my-pack"))
    (pack,) = load_packs([path], builtin=False)
    rule = pack.rules[0]
    assert (pack.name, pack.source, pack.builtin) == ("my-pack", str(path), False)
    assert (rule.id, rule.pattern, rule.provider, rule.confidence) == ("full-rule", "my_own_pattern", None, 1.0)
    assert str(rule.valid_from) == "2024-01-01" and str(rule.valid_until) == "2024-12-31"
    assert rule.references == ("https://example.com/a",) and rule.description == "Folded text."
    assert rule.applies_to == "any" and rule.pack == "my-pack" and rule.source == f"{path}:4"


def test_unknown_operator_with_line(tmp_path: Path) -> None:
    text = pack_text(rule_yaml("r", "\n    all:\n      - {field: a, eq: 1}\n      - {field: b, eqq: 2}"))
    assert problems_of(text, tmp_path) == [
        f"{tmp_path}/bad.yaml:11: unknown operator 'eqq' (did you mean 'eq'?)"]
    (problem,) = problems_of(pack_text(rule_yaml("r", "{field: b, equals: 2}")), tmp_path)
    assert problem.endswith("unknown operator 'equals' (operators: " + ", ".join(OPERATORS) + ")")


def test_bad_regex_with_line(tmp_path: Path) -> None:
    problems = problems_of(pack_text(rule_yaml("r", "{field: sni, regex: '(unclosed'}")), tmp_path)
    assert len(problems) == 1
    assert problems[0].startswith(f"{tmp_path}/bad.yaml:8: regex: bad regex '(unclosed': missing )")


HOSTILE_REGEX_CHILD = """
import json, sys, time
from tlsprobe.detect import load_rules
rules = load_rules([sys.argv[1]], builtin=False)
record = {"ts": 1.0, "outcome": "rst", "sni": "a" * 60_000 + sys.argv[2]}
started = time.perf_counter()
verdict = rules.evaluate(record)
print(json.dumps([time.perf_counter() - started, verdict is not None]))
"""


@pytest.mark.parametrize(("regex", "tail", "matches"), [
    ("(a|a)+$", "!", False), ("(a|aa)*b", "", False), ("(a+)+$", "!", False), ("^(x*y?)*z", "", False),
    ("(?:[a-z]{1,9}\\.)*com$", "", False), ("(a|aa)*b", "b", True),
])
def test_hostile_sni_against_a_backtracking_regex_takes_linear_time(tmp_path: Path, regex: str, tail: str,
                                                                     matches: bool) -> None:
    """A rule's regex runs on attacker strings (SNI, headers): with RE2 no pattern lets a
    crafted 60 KB SNI stall the sensor.  (In a child process: a backtracking engine would
    not return at all, and must fail the test rather than hang it.)"""
    path = tmp_path / "hostile.yaml"
    path.write_text(pack_text(rule_yaml("r", f"{{field: sni, regex: '{regex}'}}")))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        child = subprocess.run([sys.executable, "-c", HOSTILE_REGEX_CHILD, str(path), tail], capture_output=True,
                               text=True, env=env, timeout=60, check=True)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{regex!r} on a 60 KB SNI did not finish within 60 s")
    seconds, matched = json.loads(child.stdout)
    assert seconds < 2.0
    assert matched is matches


@pytest.mark.parametrize(("regex", "why"), [
    ("(a+)\\1", "invalid escape sequence"), ("(?P<x>a)(?P=x)", "invalid"), ("foo(?=bar)", "invalid perl operator"),
    ("(?<!x)y", "invalid perl operator"),
])
def test_regex_re2_cannot_run_is_refused_with_line(tmp_path: Path, regex: str, why: str) -> None:
    """Backreferences and lookaround cannot run in linear time: refused at load."""
    problems = problems_of(pack_text(rule_yaml("r", f"{{field: sni, regex: '{regex}'}}")), tmp_path)
    assert len(problems) == 1
    assert problems[0].startswith(f"{tmp_path}/bad.yaml:8: regex: bad regex ")
    assert why in problems[0] and "RE2 syntax" in problems[0]


def test_rules_check_refuses_a_backreference_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(pack_text(rule_yaml("r", "{field: sni, regex: '(a)\\1'}")))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "tlsprobe", "rules", "check", str(path)], capture_output=True,
                       text=True, env=env, timeout=60, check=False)
    assert p.returncode == 2
    assert p.stderr.splitlines() == [f"{path}:8: regex: bad regex '(a)\\\\1': invalid escape sequence: \\1 (rule "
                                     "regexes use RE2 syntax, which runs in linear time: no backreferences or "
                                     "lookaround, \\z for \\Z, repetition counts up to 1000)"]


def test_regex_engine_is_re2() -> None:
    assert conditions.REGEX_ENGINE == "re2"


def test_regex_on_undecodable_wire_bytes() -> None:
    assert holds({"field": "sni", "regex": "^x.y$"}, {"sni": "x\udcffy"})
    assert holds({"field": "sni", "regex": "\\.com$"}, {"sni": "\ud800.com"})
    assert not holds({"field": "sni", "regex": "^x$"}, {"sni": "x\udcff"})


@pytest.mark.parametrize("regex", ["(a+)+$", "^(x*y?)*z", "(?:[a-z]{1,9}\\.)*com$"])
def test_without_re2_nested_repetition_is_refused_with_line(tmp_path: Path, regex: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Where google-re2 cannot be imported, Python re runs rule regexes, and the shape of
    exponential backtracking is refused at load."""
    monkeypatch.setattr(conditions, "_re2", None)
    problems = problems_of(pack_text(rule_yaml("r", f"{{field: sni, regex: '{regex}'}}")), tmp_path)
    assert len(problems) == 1
    assert problems[0].startswith(f"{tmp_path}/bad.yaml:8: regex: regex ")
    assert "exponential time" in problems[0]


@pytest.mark.parametrize("use_re2", [True, False])
@pytest.mark.parametrize("regex", ["^(a|b)+c$", "\\.aliyun\\.com$", "(ab){2,5}x", "[a-z0-9-]+\\.(com|net)$"])
def test_linear_regexes_load(tmp_path: Path, regex: str, use_re2: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not use_re2:
        monkeypatch.setattr(conditions, "_re2", None)
    path = tmp_path / "ok.yaml"
    path.write_text(pack_text(rule_yaml("r", f"{{field: sni, regex: '{regex}'}}")))
    (pack,) = load_packs([path], builtin=False)
    assert len(pack.rules) == 1


def test_missing_pattern_with_line(tmp_path: Path) -> None:
    text = pack_text("- id: r\n  title: t\n  confidence: 0.5\n  match: {field: a, eq: 1}\n")
    assert problems_of(text, tmp_path) == [f"{tmp_path}/bad.yaml:4: rule 'r': missing required key 'pattern'"]


def test_duplicate_id_in_one_pack_and_across_packs(tmp_path: Path) -> None:
    one = pack_text(rule_yaml("r", "{field: a, eq: 1}") + rule_yaml("r", "{field: a, eq: 2}"))
    assert problems_of(one, tmp_path) == [f"{tmp_path}/bad.yaml:9: duplicate rule id 'r' (first on line 4)"]
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(pack_text(rule_yaml("x", "{field: a, eq: 1}"), "a"))
    b.write_text(pack_text(rule_yaml("y", "{field: a, eq: 1}") + rule_yaml("x", "{field: a, eq: 1}"), "b"))
    with pytest.raises(RuleError) as info:
        load_packs([a, b], builtin=False)
    assert [str(p) for p in info.value.problems] == [
        f"{b}:9: duplicate rule id 'x' (already defined at {a}:4)"]
    assert len(load_packs([a, a], builtin=False)) == 1  # the same file twice is read once


def test_tabs_are_a_syntax_error(tmp_path: Path) -> None:
    (problem,) = problems_of("pack: p\nrules:\n  - id: a\n\ttitle: x\n", tmp_path)
    assert problem.startswith(f"{tmp_path}/bad.yaml:4: YAML syntax error:") and "'\\t'" in problem


def test_python_tags_are_rejected(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    text = pack_text(rule_yaml("r", "{field: a, eq: 1}", extra=(
        f"  description: !!python/object/apply:os.system ['touch {marker}']\n")))
    problems = problems_of(text, tmp_path)
    assert problems == [f"{tmp_path}/bad.yaml:8: YAML tag '!!python/object/apply:os.system' is not allowed "
                        "(plain data only)"]
    assert not marker.exists()
    (problem,) = problems_of("pack: !!python/name:os.system ''\nrules: []\n", tmp_path)
    assert ":1: YAML tag '!!python/name:os.system'" in problem


@pytest.mark.parametrize(("text", "line", "message"), [
    (b"", 1, "empty file"),
    (b"pack: p\nrules: []\n# caf\xe9\n", 3, "not UTF-8 text (byte 0xe9 at offset 23)"),
    (b"pack: p\nrules: [\n", 3, "YAML syntax error"),
    (b"pack: p\nrules: []\nrules: []\n", 3, "duplicate key 'rules' (first on line 2)"),
    (b"pack: p\nrules: []\nextra: 1\n", 3, "unknown key 'extra' in the pack"),
    (b"pack: p\nversion: 2\nrules: []\n", 2, "version must be 1"),
    (b"rules: []\n", 1, "missing required key 'pack'"),
    (b"pack: p\nrules: {}\n", 2, "rules must be a list of rules, got a mapping"),
    (b"- a\n", 1, "a rule pack must be a mapping"),
    (b"pack: p\nrules: []\n---\npack: q\n", 3, "YAML syntax error"),
    (b"a: &a [*a]\n", 1, "too large"),
    (b"pack: p\nrules: [\x01]\n", 2, "YAML: special characters are not allowed"),
])
def test_file_problems(tmp_path: Path, text: bytes, line: int, message: str) -> None:
    (problem,) = problems_of(text, tmp_path)
    assert problem.startswith(f"{tmp_path}/bad.yaml:{line}: {message}")


@pytest.mark.parametrize(("extra", "line", "message"), [
    ("  confidence: 1.5\n", 7, "confidence must be a number from 0 to 1, got 1.5"),
    ("  confidence: .nan\n", 7, "confidence must be a number from 0 to 1"),
    ("  valid_from: 2024-13-01\n", 8, "valid_from must be a date YYYY-MM-DD, got '2024-13-01'"),
    ("  valid_from: 2024-01-01 10:00:00\n", 8, "valid_from must be a date YYYY-MM-DD"),
    ("  valid_from: 2024-02-01\n  valid_until: 2024-01-01\n", 9, "valid_until 2024-01-01 is before valid_from"),
    ("  applies_to: quic\n", 8, "applies_to must be tls, http or any"),
    ("  provider: Alibaba Cloud\n", 8, "provider must be a [a-z0-9_]+ name or null"),
    ("  references: [ftp://x]\n", 8, "references: expected an http(s) URL"),
    ("  colour: red\n", 8, "unknown key 'colour' in a rule"),
    ("  tittle: x\n", 8, "unknown key 'tittle' in a rule (did you mean 'title'?)"),
])
def test_rule_problems(tmp_path: Path, extra: str, line: int, message: str) -> None:
    if extra.startswith("  confidence: "):
        text = pack_text(rule_yaml("r", "{field: a, eq: 1}", confidence=extra.split()[1]))
    else:
        text = pack_text(rule_yaml("r", "{field: a, eq: 1}", extra=extra))
    problems = problems_of(text, tmp_path)
    assert problems[0].startswith(f"{tmp_path}/bad.yaml:{line}: rule 'r': {message}"), problems


@pytest.mark.parametrize(("match", "message"), [
    ("{field: a}", "a leaf needs one operator"),
    ("{field: a, eq: 1, ne: 2}", "one operator per leaf, found eq, ne"),
    ("{field: 'a..b', eq: 1}", "bad field path 'a..b'"),
    ("{field: 3, eq: 1}", "field must be a dotted path string"),
    ("{field: a, in: []}", "in: expected a non-empty list of values, got an empty list"),
    ("{field: a, in: [[1]]}", "in: item 1: expected a string, number, boolean or null"),
    ("{field: a, between: [5, 1]}", "between: low end 5 is above high end 1"),
    ("{field: a, gt: '3'}", "gt: expected a number, got a string"),
    ("{field: a, count_ge: -1}", "count_ge: expected a whole number >= 0, got -1"),
    ("{field: a, exists: 1}", "exists: expected true or false, got a number"),
    ("{field: a, eq: 2024-01-01}", "eq: expected a string, number, boolean or null, got a date"),
    ("{field: a, eq: [1]}", "eq: expected a string, number, boolean or null, got a list"),
    ("{field: a, any: [{field: b, eq: 1}]}", "a condition must be a mapping, got a list"),
    ("{field: a, any: {field: b, bogus: 1}}", "unknown operator 'bogus'"),
    ("{eq: 1}", "unknown key 'eq' in a condition (an operator needs a 'field' beside it)"),
    ("{all: [], any: []}", "one of all/any/not per condition"),
    ("{any: []}", "any takes a non-empty list of conditions, got an empty list"),
    ("{not: [{field: a, eq: 1}]}", "not takes one condition, not a list"),
    ("{}", "empty condition"),
    ("rst", "a condition must be a mapping, got a string"),
])
def test_condition_problems(tmp_path: Path, match: str, message: str) -> None:
    problems = problems_of(pack_text(rule_yaml("r", match)), tmp_path)
    assert problems[0].startswith(f"{tmp_path}/bad.yaml:8: {message}"), problems


def test_all_problems_of_a_file_are_reported_in_line_order(tmp_path: Path) -> None:
    text = pack_text(
        rule_yaml("a", "{field: x, nope: 1}")
        + "- id: B\n  title: t\n  pattern: p\n  confidence: 2\n  match: {field: x, eq: 1}\n"
        + "- just a string\n")
    problems = problems_of(text, tmp_path)
    lines = [int(p.split(":")[1]) for p in problems]
    assert lines == sorted(lines) and len(problems) == 4, problems


def test_deep_nesting_is_bounded(tmp_path: Path) -> None:
    deep = "{not: " * 40 + "{field: a, eq: 1}" + "}" * 40
    (problem,) = problems_of(pack_text(rule_yaml("r", deep)), tmp_path)
    assert "nested deeper than 32 levels" in problem
    (problem,) = problems_of("pack: p\nrules: " + "[" * 3000 + "]" * 3000 + "\n", tmp_path)
    assert problem.startswith(f"{tmp_path}/bad.yaml:1: ")
    laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{k}: &{k} [{', '.join([f'*{p}'] * 10)}]\n" for p, k in zip("abcdefg", "bcdefgh", strict=True))
    (problem,) = problems_of(laughs, tmp_path)
    assert "too large: more than" in problem


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(RuleError) as info:
        load_pack(tmp_path / "absent.yaml")
    assert str(info.value) == f"{tmp_path}/absent.yaml:1: cannot read: No such file or directory"


def test_compile_condition_reports_plain_data() -> None:
    with pytest.raises(RuleError, match=r"<condition>:1: unknown operator 'eqq'"):
        compile_condition({"field": "a", "eqq": 1})


# --- built-in packs ------------------------------------------------------------------


def test_builtin_packs_when_there_are_none_or_some(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert builtin_pack_files(tmp_path / "missing") == []
    assert builtin_pack_files(tmp_path) == []
    (tmp_path / "examples.yaml").write_text(EXAMPLES.read_text())
    (tmp_path / "notes.txt").write_text("not a pack")
    assert builtin_pack_files(tmp_path) == []
    monkeypatch.setattr(rules_module, "builtin_root", lambda: tmp_path)
    assert len(load_rules()) == 0
    (tmp_path / "b.yaml").write_text(pack_text(rule_yaml("b-rule", "{field: a, eq: 1}"), "b"))
    (tmp_path / "a.yaml").write_text(pack_text(rule_yaml("a-rule", "{field: a, eq: 1}"), "a"))
    assert [p.name for p in builtin_pack_files(tmp_path)] == ["a.yaml", "b.yaml"]
    packs = load_packs([EXAMPLES])
    assert [p.name for p in packs] == ["a", "b", "tlsprobe-examples"]
    assert [p.builtin for p in packs] == [True, True, False]
    assert packs[0].source == "tlsprobe/rules/a.yaml"
    assert [r.id for r in load_rules(builtin=False)] == []
    # A user pack may not reuse a built-in id.
    user = tmp_path / "user" / "u.yaml"
    user.parent.mkdir()
    user.write_text(pack_text(rule_yaml("a-rule", "{field: a, eq: 1}"), "u"))
    with pytest.raises(RuleError, match=r"duplicate rule id 'a-rule' \(already defined at tlsprobe/rules/a\.yaml:4\)"):
        load_rules([user])


def test_shipped_builtin_packs_load() -> None:
    rs = load_rules()
    assert not any(r.id.startswith("example-") for r in rs)
    assert all(pack.builtin for pack in load_packs())
    assert len(load_rules([EXAMPLES])) == len(rs) + len(load_pack(EXAMPLES).rules)


# --- command line --------------------------------------------------------------------


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_rules_check_ok() -> None:
    result = invoke("rules", "check", str(EXAMPLES))
    assert result.exit_code == 0
    n = len(load_pack(EXAMPLES).rules)
    assert result.stdout == f"{EXAMPLES}: ok: {n} rules\n"
    assert result.stderr == ""


def test_rules_check_problems(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(pack_text(rule_yaml("r", "{field: sni, regex: '('}")
                             + rule_yaml("s", "{field: sni, bogus: 1}")))
    broken = tmp_path / "broken.yaml"
    broken.write_bytes(b"pack: p\nrules:\n\t- x\n")
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"pack: \xff\n")
    result = invoke("rules", "check", str(EXAMPLES), str(bad), str(broken), str(latin), str(tmp_path / "no.yaml"))
    assert result.exit_code == 2
    assert result.stdout == f"{EXAMPLES}: ok: {len(load_pack(EXAMPLES).rules)} rules\n"
    lines = result.stderr.splitlines()
    assert [line.split(":")[0:2] for line in lines] == [
        [str(bad), "8"], [str(bad), "13"], [str(broken), "3"], [str(latin), "1"], [str(tmp_path / "no.yaml"), "1"]]
    assert "Traceback" not in result.output


def test_rules_check_as_a_process_never_shows_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"pack: p\nrules: [\x00]\n")
    assert main(["rules", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{bad}:2: ") and "Traceback" not in err and "\x00" not in err


def test_rules_list(tmp_path: Path) -> None:
    result = invoke("rules", "list", "--rules", str(EXAMPLES))
    assert result.exit_code == 0
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["ID", "PATTERN", "PROVIDER", "CONF", "PACK", "TITLE"]
    example = next(row for row in rows if row.startswith("example-sni-rst "))
    assert example.split()[:5] == ["example-sni-rst", "rst_injection", "alibaba_cloud", "0.80", "tlsprobe-examples"]
    listed = json.loads(invoke("rules", "list", "--rules", str(EXAMPLES), "--format", "json").stdout)
    entry = next(e for e in listed if e["id"] == "example-sni-rst")
    assert entry["pack"] == "tlsprobe-examples" and entry["confidence"] == 0.8 and entry["valid_from"] == "2024-01-01"
    assert len(listed) == len(rows)
    without = json.loads(invoke("rules", "list", "--format", "json").stdout)
    assert not any(e["id"].startswith("example-") for e in without)
    bad = tmp_path / "bad.yaml"
    bad.write_text("pack: p\n")
    result = invoke("rules", "list", "--rules", str(bad))
    assert result.exit_code == 2 and result.stderr == f"{bad}:1: missing required key 'rules'\n"


def test_analyze_passes_rules_paths_to_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tlsprobe import cli as cli_module
    from tlsprobe.anomalies import AnomalyLog
    from tlsprobe.pipeline import Stats
    from tlsprobe.sinks.run import RunResult

    seen: dict[str, Any] = {}

    def fake_run(paths: Any, sink: Any, **kwargs: Any) -> RunResult:
        seen.update(kwargs)
        return RunResult(Stats(), AnomalyLog())

    monkeypatch.setattr(cli_module, "run", fake_run)
    result = invoke("analyze", "-q", "-f", "jsonl", "--rules", "a.yaml", "--rules", "b.yaml", str(tmp_path / "x.pcap"))
    assert result.exit_code == 0
    assert tuple(seen["rules_paths"]) == ("a.yaml", "b.yaml")

    def failing_run(paths: Any, sink: Any, **kwargs: Any) -> RunResult:
        load_rules(kwargs["rules_paths"])
        raise AssertionError("not reached")

    monkeypatch.setattr(cli_module, "run", failing_run)
    assert main(["analyze", "-q", "--rules", str(tmp_path / "none.yaml"), str(tmp_path / "x.pcap")]) == 2


# --- rules are data, whatever the file holds ------------------------------------------------


@pytest.mark.parametrize("tag", [
    "!!python/object/apply:os.system ['touch {marker}']",
    "!!python/object/new:os.system ['touch {marker}']",
    "!!python/object:__main__.X {{a: 1}}",
    "!!python/module:os ''",
    "!!python/name:builtins.eval ''",
    "!!python/tuple [1, 2]",
    "!!binary aGVsbG8=",
    "!!set {{a, b}}",
    "!!omap [{{a: 1}}]",
    "!local/tag x",
    "!<tag:example.com,2024:evil> x",
])
def test_any_non_plain_tag_is_rejected_with_its_line(tmp_path: Path, tag: str) -> None:
    marker = tmp_path / "pwned"
    text = pack_text(rule_yaml("r", "{field: a, eq: 1}", extra=f"  description: {tag.format(marker=marker)}\n"))
    problems = problems_of(text, tmp_path)
    assert problems and problems[0].startswith(f"{tmp_path}/bad.yaml:8: YAML tag "), problems
    assert "is not allowed (plain data only)" in problems[0]
    assert not marker.exists()


_SHIPPED = (Path(rules_module.__file__).resolve().parents[1] / "rules" / "interception.yaml").read_bytes()


@given(st.data())
@settings(deadline=None)
def test_mutated_rule_pack_is_a_pack_or_file_line_problems(tmp_path_factory: pytest.TempPathFactory,
                                                          data: st.DataObject) -> None:
    """A shipped pack truncated, with lines dropped, duplicated or swapped, bytes flipped or
    junk (tags, anchors, tabs, control bytes) inserted: a RulePack, or RuleError whose every
    problem is ``FILE:LINE: message`` with a line inside the file - never another exception."""
    lines = _SHIPPED.splitlines(keepends=True)
    op = data.draw(st.sampled_from(["cut", "drop", "dup", "swap", "flip", "insert"]))
    if op == "cut":
        raw = _SHIPPED[: data.draw(st.integers(0, len(_SHIPPED)))]
    elif op in ("drop", "dup", "swap"):
        i = data.draw(st.integers(0, len(lines) - 1))
        j = data.draw(st.integers(0, len(lines) - 1))
        if op == "drop":
            del lines[i]
        elif op == "dup":
            lines.insert(j, lines[i])
        else:
            lines[i], lines[j] = lines[j], lines[i]
        raw = b"".join(lines)
    elif op == "flip":
        buf = bytearray(_SHIPPED)
        for pos in data.draw(st.lists(st.integers(0, len(buf) - 1), min_size=1, max_size=6)):
            buf[pos] ^= data.draw(st.integers(1, 255))
        raw = bytes(buf)
    else:
        junk = data.draw(st.sampled_from([b"!!python/object/apply:os.system ['id']", b"&a [*a]", b"\t", b"\x00",
                                          b"*undefined", b"{", b"- ", b": :", b"\xff\xfe", b"? [a]", b"!!binary x"]))
        i = data.draw(st.integers(0, len(lines)))
        lines.insert(i, junk + b"\n") if data.draw(st.booleans()) else lines.insert(i, b"  key: " + junk + b"\n")
        raw = b"".join(lines)
    path = tmp_path_factory.mktemp("rules") / "pack.yaml"
    path.write_bytes(raw)
    try:
        load_pack(path)
    except RuleError as exc:
        assert exc.problems
        n_lines = raw.count(b"\n") + 1
        for p in exc.problems:
            text = str(p)
            assert text.startswith(f"{path}:{p.line}: ") and 1 <= p.line <= n_lines, text
            assert "\n" not in text and "Traceback" not in text


def test_analyze_with_a_malformed_pack_as_a_process(tmp_path: Path) -> None:
    from tests.test_cli import tlsprobe

    bad = tmp_path / "bad.yaml"
    bad.write_text(pack_text(rule_yaml("r", "{field: a, eq: 1}", extra="  description: !!python/name:os.system ''\n")))
    p = tlsprobe("analyze", "--rules", str(bad), str(Path(__file__).resolve().parents[1] / "pcaps" / "demo.pcap"))
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.startswith(f"{bad}:8: YAML tag '!!python/name:os.system' is not allowed")
    assert "Traceback" not in p.stderr
