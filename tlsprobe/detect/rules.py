"""Rule packs: YAML files of interception rules, read safely and validated completely.

A pack is plain YAML data (see docs/rules.md)::

    pack: my-pack
    version: 1
    rules:
      - id: aliyun-icp-sni-rst
        title: ...
        pattern: rst_injection
        confidence: 0.8
        match: {field: outcome, eq: rst}

Only the YAML safe schema is accepted (strings, numbers, booleans, null, dates, lists,
mappings); any other tag such as ``!!python/object`` is a problem, never constructed.
Every problem found in a file is reported as ``FILE:LINE: message`` (the line of the
offending node); :class:`RuleError` carries them all.  Built-in packs are every
``tlsprobe/rules/*.yaml`` except ``examples.yaml``.
"""

from __future__ import annotations

import datetime as dt
import difflib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

import yaml

from tlsprobe.detect.conditions import (
    Condition,
    LocatedDict,
    LocatedList,
    build_condition,
    key_line,
    kind_of,
    line_of,
    show,
    value_line,
)
from tlsprobe.errors import TlsprobeError

#: Version of the rule language a pack may declare (``version:``); this release reads 1.
FORMAT_VERSION = 1
#: Largest rule file read (a pack is text a person wrote; anything bigger is a mistake).
MAX_FILE_BYTES = 4 * 1024 * 1024
#: Most YAML nodes visited in one file, aliases included (stops "billion laughs").
MAX_NODES = 200_000
#: Patterns tlsprobe knows; a rule may name any other ``[a-z_]+`` pattern of its own.
KNOWN_PATTERNS = ("rst_injection", "block_page", "tls_alert_injection", "blackhole", "certificate_substitution")
#: What a rule may apply to: a record's ``kind`` (absent means ``tls``), or ``any``.
APPLIES_TO = ("tls", "http", "any")
#: Package-data files that are not built-in packs.
NOT_BUILTIN = frozenset({"examples.yaml"})

_ID_RE = re.compile(r"[a-z0-9-]{1,100}\Z")
_PATTERN_RE = re.compile(r"[a-z_]{1,64}\Z")
_PROVIDER_RE = re.compile(r"[a-z0-9_]{1,64}\Z")
_PACK_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}\Z")
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")
_URL_RE = re.compile(r"https?://\S+\Z")

_PACK_KEYS = ("pack", "version", "description", "rules")
_RULE_REQUIRED = ("id", "title", "pattern", "confidence", "match")
_RULE_KEYS = (*_RULE_REQUIRED, "provider", "valid_from", "valid_until", "references", "description", "applies_to")

_MAX_NESTING = 100  # YAML collections inside each other (a deep condition is half that)
_TAG = "tag:yaml.org,2002:"
_SEQ, _MAP = _TAG + "seq", _TAG + "map"
_SCALAR_TAGS = frozenset(_TAG + t for t in ("str", "int", "float", "bool", "null", "timestamp"))


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a rule file, shown as ``FILE:LINE: message``."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class RuleError(TlsprobeError):
    """Rule packs could not be loaded; ``problems`` lists every reason, in file order."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems) or "rule error")


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule: when ``condition`` holds for a record, it shows ``pattern``."""

    id: str
    title: str
    pattern: str
    confidence: float
    condition: Condition
    provider: str | None = None
    applies_to: str = "tls"
    valid_from: dt.date | None = None
    valid_until: dt.date | None = None
    references: tuple[str, ...] = ()
    description: str = ""
    pack: str = ""
    source: str = ""  # FILE:LINE where the rule starts


@dataclass(frozen=True, slots=True)
class RulePack:
    """The rules of one file, in file order."""

    name: str
    source: str
    rules: tuple[Rule, ...] = ()
    version: int = FORMAT_VERSION
    description: str = ""
    builtin: bool = False


# --- YAML nodes to located data ------------------------------------------------------


class _TooBig(Exception):
    """The document is too big or too deep to walk (the message says which)."""


@dataclass(slots=True)
class _File:
    """Problems of one file, and the node walk that turns YAML into located data."""

    name: str
    problems: list[Problem] = field(default_factory=list)
    nodes: int = 0
    # Lines whose YAML was rejected (bad tag, duplicate key): checking the data read
    # there would only repeat the problem.
    rejected: set[int] = field(default_factory=set)

    def report(self, line: int, message: str) -> None:
        if line not in self.rejected:
            self.problems.append(Problem(self.name, line, message))

    def reject(self, line: int, message: str) -> None:
        self.report(line, message)
        self.rejected.add(line)

    def data(self, node: Any, depth: int = 0) -> Any:
        """Plain data (:class:`LocatedDict`/:class:`LocatedList` for collections) from a node."""
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _TooBig(f"more than {MAX_NODES} YAML nodes (aliases count each time they are used)")
        line = int(node.start_mark.line) + 1
        if depth > _MAX_NESTING:
            raise _TooBig(f"nested more than {_MAX_NESTING} levels deep")
        tag = str(node.tag)
        if isinstance(node, yaml.ScalarNode):
            if tag not in _SCALAR_TAGS:
                self.reject(line, f"YAML tag {show(_short_tag(tag))} is not allowed (plain data only)")
                return None
            try:
                return _CONSTRUCTOR.yaml_constructors[tag](_CONSTRUCTOR, node)
            except Exception:  # e.g. a date-like 2024-13-01: the string, for the checks to judge
                return str(node.value)
        if isinstance(node, yaml.SequenceNode):
            if tag != _SEQ:
                self.reject(line, f"YAML tag {show(_short_tag(tag))} is not allowed (plain data only)")
            seq = LocatedList(line)
            for item in node.value:
                seq.append(self.data(item, depth + 1))
                seq.item_lines.append(int(item.start_mark.line) + 1)
            return seq
        if tag != _MAP:
            self.reject(line, f"YAML tag {show(_short_tag(tag))} is not allowed (plain data only)")
        mapping = LocatedDict(line)
        for key_node, value_node in node.value:
            kline = int(key_node.start_mark.line) + 1
            key = self.data(key_node, depth + 1)
            if not isinstance(key, str):
                if key is not None or str(key_node.tag) in _SCALAR_TAGS:
                    self.reject(kline, f"keys must be strings, got {kind_of(key)}")
                continue
            if key in mapping:
                self.reject(kline, f"duplicate key {show(key)} (first on line {mapping.key_lines[key]})")
                continue
            mapping[key] = self.data(value_node, depth + 1)
            mapping.key_lines[key] = kline
            mapping.value_lines[key] = int(value_node.start_mark.line) + 1
        return mapping


_CONSTRUCTOR: Any = yaml.constructor.SafeConstructor()


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_TAG):] if tag.startswith(_TAG) else tag


def _parse_yaml(raw: bytes, f: _File) -> Any:
    """The located data of a YAML document, or ``None`` after reporting why not."""
    if len(raw) > MAX_FILE_BYTES:
        f.report(1, f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
        return None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        f.report(line, f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})")
        return None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = int(mark.line) + 1 if mark is not None else 1
        what = str(exc.problem or "syntax error")
        if exc.context:
            what = f"{exc.context}: {what}"
        f.report(line, f"YAML syntax error: {what}")
        return None
    except yaml.reader.ReaderError as exc:
        position = exc.position if isinstance(exc.position, int) else 0
        f.report(text.count("\n", 0, position) + 1, f"YAML: {exc.reason}: character #x{int(exc.character):04x}")
        return None
    except (yaml.YAMLError, RecursionError) as exc:
        f.report(1, "YAML: nested too deeply" if isinstance(exc, RecursionError) else f"YAML: {exc}")
        return None
    if node is None:
        f.report(1, "empty file (expected a mapping with pack: and rules:)")
        return None
    try:
        return f.data(node)
    except _TooBig as exc:
        f.report(1, f"too large: {exc}")
    except RecursionError:
        f.report(1, "too large: nested too deeply")
    return None


# --- validation ----------------------------------------------------------------------


def _unknown_keys(spec: LocatedDict, allowed: tuple[str, ...], what: str, f: _File, where: str = "") -> None:
    for key in spec:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            f.report(key_line(spec, key, spec.line), f"{where}unknown key {show(key)} in {what}{hint}")


def _text(spec: LocatedDict, key: str, f: _File, *, required: bool = False, where: str = "") -> str | None:
    value = spec.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        f.report(value_line(spec, key, spec.line), f"{where}{key} must be a non-empty string, got {kind_of(value)}")
        return None
    return value


def _date(spec: LocatedDict, key: str, f: _File, where: str) -> dt.date | None:
    value = spec.get(key)
    if value is None:
        return None
    if isinstance(value, str) and _DATE_RE.match(value):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    elif isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    f.report(value_line(spec, key, spec.line), f"{where}{key} must be a date YYYY-MM-DD, got {show(value)}")
    return None


def _rule(spec: Any, line: int, pack: str, f: _File) -> Rule | None:
    if not isinstance(spec, LocatedDict):
        f.report(line, f"a rule must be a mapping, got {kind_of(spec)}")
        return None
    before = len(f.problems)
    rule_id = spec.get("id")
    name = f"rule {rule_id!r}: " if isinstance(rule_id, str) and _ID_RE.match(rule_id) else ""
    _unknown_keys(spec, _RULE_KEYS, "a rule", f, name)

    def bad(key: str, message: str) -> None:
        f.report(value_line(spec, key, spec.line), f"{name}{message}")

    for key in _RULE_REQUIRED:
        if key not in spec:
            f.report(spec.line, f"{name}missing required key {key!r}")
    if "id" in spec and not name:
        bad("id", f"id must match [a-z0-9-]+ (at most 100 characters), got {show(rule_id)}")
    title = _text(spec, "title", f, required="title" in spec, where=name)
    pattern = spec.get("pattern")
    if not isinstance(pattern, str) or not _PATTERN_RE.match(pattern):
        if "pattern" in spec:
            bad("pattern", f"pattern must be one of {', '.join(KNOWN_PATTERNS)} or another [a-z_]+ name, "
                f"got {show(pattern)}")
        pattern = ""
    provider = spec.get("provider")
    if provider is not None and (not isinstance(provider, str) or not _PROVIDER_RE.match(provider)):
        bad("provider", f"provider must be a [a-z0-9_]+ name or null, got {show(provider)}")
    raw_confidence: Any = spec.get("confidence")
    confidence = float(raw_confidence) if _is_fraction(raw_confidence) else 0.0
    if "confidence" in spec and not _is_fraction(raw_confidence):
        bad("confidence", f"confidence must be a number from 0 to 1, got {show(raw_confidence)}")
    valid_from = _date(spec, "valid_from", f, name)
    valid_until = _date(spec, "valid_until", f, name)
    if valid_from and valid_until and valid_until < valid_from:
        bad("valid_until", f"valid_until {valid_until} is before valid_from {valid_from}")
    references = _references(spec, f, name)
    description = _text(spec, "description", f, where=name) or ""
    applies_to = spec.get("applies_to", "tls")
    if applies_to not in APPLIES_TO:
        bad("applies_to", f"applies_to must be tls, http or any, got {show(applies_to)}")
    condition = build_condition(spec["match"], f.report, value_line(spec, "match", spec.line)) \
        if "match" in spec else None
    if len(f.problems) > before or condition is None or not name:
        return None
    return Rule(id=str(rule_id), title=title or "", pattern=pattern, confidence=confidence,
                condition=condition, provider=provider, applies_to=applies_to, valid_from=valid_from,
                valid_until=valid_until, references=references, description=description.strip(), pack=pack,
                source=f"{f.name}:{spec.line}")


def _is_fraction(value: Any) -> bool:
    return (type(value) is int or type(value) is float) and 0 <= value <= 1


def _references(spec: LocatedDict, f: _File, where: str) -> tuple[str, ...]:
    refs = spec.get("references")
    if refs is None:
        return ()
    if not isinstance(refs, LocatedList):
        f.report(value_line(spec, "references", spec.line),
                 f"{where}references must be a list of URLs, got {kind_of(refs)}")
        return ()
    out: list[str] = []
    for i, ref in enumerate(refs):
        if isinstance(ref, str) and _URL_RE.match(ref):
            out.append(ref)
        else:
            f.report(refs.item_lines[i], f"{where}references: expected an http(s) URL, got {show(ref)}")
    return tuple(out)


def _pack(data: Any, f: _File, builtin: bool) -> RulePack | None:
    if not isinstance(data, LocatedDict):
        f.report(line_of(data, 1), f"a rule pack must be a mapping with pack: and rules:, got {kind_of(data)}")
        return None
    _unknown_keys(data, _PACK_KEYS, "the pack", f)
    for key in ("pack", "rules"):
        if key not in data:
            f.report(data.line, f"missing required key {key!r}")
    name = data.get("pack")
    if "pack" in data and (not isinstance(name, str) or not _PACK_RE.match(name)):
        f.report(value_line(data, "pack", 1),
                 f"pack must be a name of letters, digits, '.', '_' and '-', got {show(name)}")
        name = None
    version = data.get("version", FORMAT_VERSION)
    if version != FORMAT_VERSION or type(version) is not int:
        f.report(value_line(data, "version", 1),
                 f"version must be {FORMAT_VERSION} (the rule language this tlsprobe reads), got {show(version)}")
    description = _text(data, "description", f) or ""
    items = data.get("rules")
    rules: list[Rule] = []
    if "rules" in data:
        if not isinstance(items, LocatedList):
            f.report(value_line(data, "rules", 1), f"rules must be a list of rules, got {kind_of(items)}")
        else:
            seen: dict[str, int] = {}
            for i, item in enumerate(items):
                rule = _rule(item, items.item_lines[i], name or "", f)
                rid = item.get("id") if isinstance(item, LocatedDict) else None
                if isinstance(rid, str):
                    if rid in seen:
                        f.report(value_line(item, "id", items.item_lines[i]),
                                 f"duplicate rule id {show(rid)} (first on line {seen[rid]})")
                        continue
                    seen[rid] = value_line(item, "id", items.item_lines[i])
                if rule is not None:
                    rules.append(rule)
    if f.problems or not isinstance(name, str):
        return None
    return RulePack(name=name, source=f.name, rules=tuple(rules), version=version, description=description.strip(),
                    builtin=builtin)


def _sorted(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: p.line)


def parse_pack(raw: bytes | str, source: str = "<rules>", *, builtin: bool = False) -> RulePack:
    """The pack in ``raw`` (YAML text), named ``source`` in messages.  Raises :class:`RuleError`."""
    f = _File(source)
    data = _parse_yaml(raw.encode("utf-8") if isinstance(raw, str) else raw, f)
    pack = _pack(data, f, builtin) if data is not None else None
    if pack is None:
        raise RuleError(_sorted(f.problems))
    return pack


def load_pack(path: str | os.PathLike[str]) -> RulePack:
    """The pack in the file at ``path``.  Raises :class:`RuleError` (also if unreadable)."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise RuleError([Problem(name, 1, f"cannot read: {exc.strerror or exc}")]) from None
    return parse_pack(raw, name)


def builtin_root() -> Traversable:
    """The package-data folder holding the built-in packs."""
    return resources.files("tlsprobe") / "rules"


def builtin_pack_files(root: Traversable | None = None) -> list[Traversable]:
    """Built-in pack files in name order: ``*.yaml`` under ``root`` except ``examples.yaml``."""
    root = builtin_root() if root is None else root
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if p.name.endswith(".yaml") and p.name not in NOT_BUILTIN and p.is_file()),
                  key=lambda p: p.name)


def collect_packs(paths: Iterable[str | os.PathLike[str]] = (), *, builtin: bool = True
                  ) -> tuple[list[RulePack], list[Problem]]:
    """Load the built-in packs (if ``builtin``) then ``paths``; never raises.

    Gives the packs that loaded and every problem, including rule ids used twice across
    packs (the later pack has the problem and is left out).  A file named twice, or a
    built-in pack also named in ``paths``, is loaded once (from ``paths``).
    """
    packs: list[RulePack] = []
    problems: list[Problem] = []
    sources: list[tuple[str, bytes | None, bool]] = []
    names: list[str] = []
    given: set[str] = set()
    for p in paths:
        path = os.fspath(p)
        real = os.path.realpath(path)
        if real not in given:  # the same file named twice is read once
            given.add(real)
            names.append(path)
    if builtin:
        for res in builtin_pack_files():
            if isinstance(res, os.PathLike) and os.path.realpath(os.fspath(res)) in given:
                continue  # named among paths (checking a built-in pack): loaded from there
            name = f"tlsprobe/rules/{res.name}"
            try:
                sources.append((name, res.read_bytes(), True))
            except OSError as exc:
                problems.append(Problem(name, 1, f"cannot read: {exc.strerror or exc}"))
    sources += [(name, None, False) for name in names]
    seen: dict[str, str] = {}
    for name, raw, is_builtin in sources:
        try:
            pack = parse_pack(raw, name, builtin=True) if is_builtin and raw is not None else load_pack(name)
        except RuleError as exc:
            problems.extend(exc.problems)
            continue
        dups = [r for r in pack.rules if r.id in seen]
        for rule in dups:
            problems.append(Problem(name, int(rule.source.rsplit(":", 1)[1]),
                                    f"duplicate rule id {show(rule.id)} (already defined at {seen[rule.id]})"))
        if dups:
            continue
        seen.update((r.id, r.source) for r in pack.rules)
        packs.append(pack)
    return packs, problems


def load_packs(paths: Iterable[str | os.PathLike[str]] = (), *, builtin: bool = True) -> list[RulePack]:
    """The built-in packs (if ``builtin``) and the packs at ``paths``, in that order.

    Raises :class:`RuleError` with every problem of every file if any file has one.
    """
    packs, problems = collect_packs(paths, builtin=builtin)
    if problems:
        raise RuleError(problems)
    return packs


def compile_condition(spec: Mapping[str, Any], source: str = "<condition>") -> Condition:
    """A condition from Python data (as a ``match:`` would hold).  Raises :class:`RuleError`."""
    f = _File(source)
    cond = build_condition(spec, f.report)
    if cond is None:
        raise RuleError(f.problems)
    return cond
