"""Rule conditions: a small predicate language, data in and closures out (no eval).

A condition is a mapping read from a rule pack::

    {all: [COND, ...]}          every one holds
    {any: [COND, ...]}          at least one holds
    {not: COND}                 COND does not hold
    {field: PATH, OP: ARG}      a leaf: exactly one operator from :data:`OPERATORS`

``PATH`` is dotted (``evidence.first_rst.ttl_delta``); an integer segment indexes a list
(``-1`` is the last item) and ``.`` is the value itself (useful inside a quantifier over
a list of strings).  A missing field makes a leaf false, except ``exists: false`` and
``is_null: true``.  The list quantifiers ``any``/``all``/``none`` take a condition that is
evaluated against each item, with paths relative to the item.

:func:`build_condition` validates a condition and compiles it to a :class:`Condition`
whose ``test(record)`` is a chain of closures: nothing is parsed per record, and ``test``
never raises on a record made of JSON values (types that do not fit make a leaf false).

Adding a predicate is one entry in :data:`OPERATORS`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import enum
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

try:
    import re2 as _re2
except ImportError:  # pragma: no cover - google-re2 has no wheel for this platform
    _re2 = None

#: The engine of ``regex`` conditions: ``re2`` (google-re2: linear time on any input), or
#: ``re`` where google-re2 cannot be imported (then nested repetitions are refused).
REGEX_ENGINE = "re" if _re2 is None else "re2"
_RE2_OPTIONS: Any = None
if _re2 is not None:
    _RE2_OPTIONS = _re2.Options()
    _RE2_OPTIONS.log_errors = False  # a bad pattern is one FILE:LINE problem, not a log line too
    _RE2_OPTIONS.never_capture = True  # only "does it match" is asked

#: Deepest nesting of conditions (all/any/not/quantifiers) a rule may use.
MAX_DEPTH = 32
#: Longest rendering of one value inside an evidence string (values come off the wire).
MAX_SHOWN = 80
_ELLIPSIS = "…"

Test = Callable[[Any], bool]
Report = Callable[[int, str], None]


class _Missing(enum.Enum):
    MISSING = "missing"

    def __repr__(self) -> str:
        return "<missing>"


#: What a path resolves to when the field is absent.
MISSING = _Missing.MISSING


class Invalid(ValueError):
    """An operator's argument is not acceptable (the message says why)."""


class _Reported(Exception):
    """The problem was already reported (inside a nested condition)."""


# --- located containers ------------------------------------------------------------


class LocatedDict(dict[str, Any]):
    """A mapping read from a rule file, with the 1-based line of itself, its keys and values."""

    __slots__ = ("key_lines", "line", "value_lines")

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.key_lines: dict[str, int] = {}
        self.value_lines: dict[str, int] = {}


class LocatedList(list[Any]):
    """A list read from a rule file, with the 1-based line of itself and of each item."""

    __slots__ = ("item_lines", "line")

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.item_lines: list[int] = []


def line_of(obj: Any, default: int) -> int:
    """Line where ``obj`` starts in its file, or ``default`` for plain Python data."""
    line = getattr(obj, "line", None)
    return line if isinstance(line, int) else default


def key_line(obj: Any, key: str, default: int) -> int:
    """Line of ``key`` in a :class:`LocatedDict` (``default`` otherwise)."""
    return obj.key_lines.get(key, default) if isinstance(obj, LocatedDict) else default


def value_line(obj: Any, key: str, default: int) -> int:
    """Line of the value of ``key`` in a :class:`LocatedDict` (``default`` otherwise)."""
    return obj.value_lines.get(key, default) if isinstance(obj, LocatedDict) else default


def item_line(obj: Any, index: int, default: int) -> int:
    """Line of item ``index`` of a :class:`LocatedList` (``default`` otherwise)."""
    if isinstance(obj, LocatedList) and index < len(obj.item_lines):
        return obj.item_lines[index]
    return default


# --- showing values ----------------------------------------------------------------


def show(value: Any, _depth: int = 0) -> str:
    """``value`` for an evidence string or a message: repr-escaped, at most ~80 chars.

    Strings are quoted with ``repr`` escaping (no control or bidi character survives);
    ``None``/``True``/``False`` read as in YAML and JSON (``null``, ``true``, ``false``).
    """
    if value is None:
        s = "null"
    elif value is True:
        s = "true"
    elif value is False:
        s = "false"
    elif value is MISSING:
        s = "<absent>"
    elif isinstance(value, str):
        s = repr(value[: MAX_SHOWN + 1])
    elif isinstance(value, (int, float)):
        s = repr(value)
    elif isinstance(value, (list, tuple)):
        if _depth > 2:
            s = "[…]"
        else:
            items = [show(v, _depth + 1) for v in value[:8]]
            s = "[" + ", ".join(items) + (", …" if len(value) > 8 else "") + "]"
    elif isinstance(value, Mapping):
        if _depth > 2:
            s = "{…}"
        else:
            pairs = [f"{show(k, _depth + 1)}: {show(v, _depth + 1)}" for k, v in list(value.items())[:8]]
            s = "{" + ", ".join(pairs) + (", …" if len(value) > 8 else "") + "}"
    elif isinstance(value, (bytes, bytearray)):
        s = repr(bytes(value[: MAX_SHOWN + 1]))
    elif isinstance(value, (dt.date, dt.time)):
        s = value.isoformat()
    else:
        s = f"<{type(value).__name__}>"
    return s if len(s) <= MAX_SHOWN else s[:MAX_SHOWN] + _ELLIPSIS


def kind_of(value: Any) -> str:
    """The YAML word for the type of ``value`` (for messages)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return f"a {type(value).__name__}"


# --- paths -------------------------------------------------------------------------

_PATH_RE = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\Z")
_INDEX_RE = re.compile(r"-?[0-9]+\Z")
Step = tuple[str, "int | None"]
Getter = Callable[[Any], Any]


def parse_path(path: str) -> tuple[Step, ...]:
    """``a.b.0`` -> ``(("a", None), ("b", None), ("0", 0))``; ``.`` -> ``()``.

    Raises :class:`Invalid` for anything else.
    """
    if path == ".":
        return ()
    if not _PATH_RE.match(path):
        raise Invalid(f"bad field path {show(path)}: dotted names of letters, digits, _ and - "
                      "(or '.' for the value itself)")
    return tuple((seg, int(seg) if _INDEX_RE.match(seg) else None) for seg in path.split("."))


def resolve(value: Any, steps: Sequence[Step]) -> Any:
    """The value at ``steps`` inside ``value``, or :data:`MISSING`."""
    for key, index in steps:
        if type(value) is dict or isinstance(value, Mapping):
            value = value.get(key, MISSING)
            if value is MISSING:
                return MISSING
        elif index is not None and isinstance(value, (list, tuple)):
            if not -len(value) <= index < len(value):
                return MISSING
            value = value[index]
        else:
            return MISSING
    return value


def make_getter(steps: tuple[Step, ...]) -> Getter:
    """A closure resolving ``steps``; the one-name case (most leaves) skips the loop."""
    if not steps:
        return lambda value: value
    if len(steps) == 1 and steps[0][1] is None:
        key = steps[0][0]

        def get1(value: Any) -> Any:
            if type(value) is dict:
                return value.get(key, MISSING)
            return resolve(value, steps)

        return get1
    return lambda value: resolve(value, steps)


def join_path(prefix: str, path: str) -> str:
    """How a leaf's path reads inside a quantifier (``prefix`` ends with ``.`` or is empty)."""
    if path == ".":
        return prefix[:-1] if prefix else "."
    return prefix + path


# --- compiled conditions -----------------------------------------------------------


class Condition:
    """A compiled condition: ``test(value)`` says whether it holds (never raises)."""

    __slots__ = ("test",)

    def __init__(self, test: Test) -> None:
        self.test = test

    def describe(self, prefix: str = "") -> str:
        """The condition as a line of text."""
        raise NotImplementedError

    def explain(self, value: Any, prefix: str, out: list[str]) -> None:
        """Append to ``out`` the evidence for this condition, which holds for ``value``."""
        raise NotImplementedError

    def evidence(self, value: Any) -> list[str]:
        """The leaves that hold for ``value`` in the branches that made it true, as text."""
        out: list[str] = []
        if self.test(value):
            self.explain(value, "", out)
        return out


class Leaf(Condition):
    """``{field: PATH, OP: ARG}``."""

    __slots__ = ("arg", "get", "op", "operator", "path")

    def __init__(self, path: str, op: str, arg: Any, operator: Operator, value: Any) -> None:
        self.path = path
        self.op = op
        self.arg = arg  # as written, for the text
        self.operator = operator
        get = self.get = make_getter(parse_path(path))
        pred = operator.build(value)
        if operator.sees_missing:
            def test(v: Any) -> bool:
                return pred(get(v))
        else:
            def test(v: Any) -> bool:
                x = get(v)
                return x is not MISSING and pred(x)
        super().__init__(test)

    def describe(self, prefix: str = "") -> str:
        return self.operator.describe(join_path(prefix, self.path), self.arg)

    def explain(self, value: Any, prefix: str, out: list[str]) -> None:
        out.append(self.operator.explain(join_path(prefix, self.path), self.get(value), self.arg))


class AllOf(Condition):
    """``{all: [...]}``."""

    __slots__ = ("children",)

    def __init__(self, children: Sequence[Condition]) -> None:
        self.children = tuple(children)
        tests = tuple(c.test for c in self.children)
        if len(tests) == 1:
            test = tests[0]
        elif len(tests) == 2:
            a, b = tests

            def test(v: Any) -> bool:
                return a(v) and b(v)
        else:
            def test(v: Any) -> bool:
                return all(t(v) for t in tests)
        super().__init__(test)

    def describe(self, prefix: str = "") -> str:
        return "(" + " and ".join(c.describe(prefix) for c in self.children) + ")"

    def explain(self, value: Any, prefix: str, out: list[str]) -> None:
        for c in self.children:
            c.explain(value, prefix, out)


class AnyOf(Condition):
    """``{any: [...]}``."""

    __slots__ = ("children",)

    def __init__(self, children: Sequence[Condition]) -> None:
        self.children = tuple(children)
        tests = tuple(c.test for c in self.children)
        if len(tests) == 1:
            test = tests[0]
        elif len(tests) == 2:
            a, b = tests

            def test(v: Any) -> bool:
                return a(v) or b(v)
        else:
            def test(v: Any) -> bool:
                return any(t(v) for t in tests)
        super().__init__(test)

    def describe(self, prefix: str = "") -> str:
        return "(" + " or ".join(c.describe(prefix) for c in self.children) + ")"

    def explain(self, value: Any, prefix: str, out: list[str]) -> None:
        for c in self.children:
            if c.test(value):
                c.explain(value, prefix, out)


class Not(Condition):
    """``{not: COND}``."""

    __slots__ = ("child",)

    def __init__(self, child: Condition) -> None:
        self.child = child
        t = child.test

        def test(v: Any) -> bool:
            return not t(v)

        super().__init__(test)

    def describe(self, prefix: str = "") -> str:
        return f"not {self.child.describe(prefix)}" if isinstance(self.child, AllOf | AnyOf) \
            else f"not ({self.child.describe(prefix)})"

    def explain(self, value: Any, prefix: str, out: list[str]) -> None:
        text = self.describe(prefix)
        if isinstance(self.child, Leaf):
            x = self.child.get(value)
            where = join_path(prefix, self.child.path)
            text += f": {where} is absent" if x is MISSING else f": {where} = {show(x)}"
        out.append(text)


# --- operators ---------------------------------------------------------------------

Check = Callable[[Any, "Compiler"], Any]
Build = Callable[[Any], Test]
Describe = Callable[[str, Any], str]
Explain = Callable[[str, Any, Any], str]


@dataclass(frozen=True, slots=True)
class Operator:
    """One named predicate: ``check`` validates the YAML argument and returns what
    ``build`` turns into a predicate over the field's value.

    ``describe(path, arg)`` and ``explain(path, value, arg)`` give the text of the leaf
    (``explain`` for a leaf that holds, with the value found).  ``sees_missing``
    predicates receive :data:`MISSING` for an absent field; the others are false then.
    """

    check: Check
    build: Build
    describe: Describe
    explain: Explain
    sees_missing: bool = False


def _is_num(v: Any) -> bool:
    return type(v) is int or type(v) is float


def _same(a: Any, b: Any) -> bool:
    """Equality as in JSON: ``true`` is not ``1``, ``1`` is ``1.0``."""
    if type(a) is bool or type(b) is bool:
        return a is b
    return bool(a == b) if type(a) is type(b) or (_is_num(a) and _is_num(b)) else False


def _eq_pred(arg: Any) -> Test:
    if arg is None or type(arg) is bool:
        return lambda v: v is arg
    if type(arg) is str:
        return lambda v: type(v) is str and v == arg
    return lambda v: _same(v, arg)


_SCALARS = (str, int, float, bool, type(None))


def _scalar(arg: Any, _c: Compiler) -> Any:
    if type(arg) not in _SCALARS:
        raise Invalid(f"expected a string, number, boolean or null, got {kind_of(arg)}"
                      + (" (quote dates)" if kind_of(arg) in ("a date", "a datetime") else ""))
    return arg


def _string(arg: Any, _c: Compiler) -> str:
    if not isinstance(arg, str):
        raise Invalid(f"expected a string, got {kind_of(arg)}")
    return arg


def _folded(arg: Any, c: Compiler) -> str:
    return _string(arg, c).casefold()


def _number(arg: Any, _c: Compiler) -> float | int:
    if not _is_num(arg) or math.isnan(arg):
        raise Invalid(f"expected a number, got {kind_of(arg)}")
    n: float | int = arg
    return n


def _non_negative(arg: Any, c: Compiler) -> float | int:
    n = _number(arg, c)
    if n < 0:
        raise Invalid(f"expected a number >= 0, got {show(n)}")
    return n


def _count(arg: Any, _c: Compiler) -> int:
    if type(arg) is not int or arg < 0:
        raise Invalid(f"expected a whole number >= 0, got {show(arg) if _is_num(arg) else kind_of(arg)}")
    return arg


def _flag(arg: Any, _c: Compiler) -> bool:
    if type(arg) is not bool:
        raise Invalid(f"expected true or false, got {kind_of(arg)}")
    return arg


def _scalar_list(arg: Any, c: Compiler) -> tuple[Any, ...]:
    if not isinstance(arg, list) or not arg:
        raise Invalid(f"expected a non-empty list of values, got {'an empty list' if arg == [] else kind_of(arg)}")
    for i, item in enumerate(arg):
        try:
            _scalar(item, c)
        except Invalid as exc:
            raise Invalid(f"item {i + 1}: {exc}") from None
    return tuple(arg)


def _range(arg: Any, c: Compiler) -> tuple[float | int, float | int]:
    if not isinstance(arg, list) or len(arg) != 2:
        raise Invalid(f"expected a list of two numbers [low, high], got {kind_of(arg)}")
    low, high = _number(arg[0], c), _number(arg[1], c)
    if low > high:
        raise Invalid(f"low end {show(low)} is above high end {show(high)}")
    return low, high


Search = Callable[[str], bool]
_SURROGATES = re.compile("[\ud800-\udfff]")


def _regex(arg: Any, c: Compiler) -> Search:
    """A rule regex compiled for searching: RE2 (linear time in the input, whatever the
    pattern), or Python ``re`` minus nested repetitions where google-re2 is missing."""
    text = _string(arg, c)
    if _re2 is None:
        return _python_regex(text, arg)
    try:
        compiled = _re2.compile(text, _RE2_OPTIONS)
    except _re2.error as exc:
        why = exc.args[0] if exc.args else exc
        why = why.decode("utf-8", "replace") if isinstance(why, bytes) else str(why)
        hint = ""
        with contextlib.suppress(re.error, RecursionError, OverflowError):
            re.compile(text)
            hint = (" (rule regexes use RE2 syntax, which runs in linear time: no backreferences or lookaround, "
                    "\\z for \\Z, repetition counts up to 1000)")
        raise Invalid(f"bad regex {show(arg)}: {why}{hint}") from None
    search = compiled.search

    def found(v: str) -> bool:
        try:
            return search(v) is not None
        except UnicodeEncodeError:  # lone surrogates (undecodable wire bytes): RE2 reads UTF-8
            return search(_SURROGATES.sub("\ufffd", v)) is not None

    return found


def _python_regex(text: str, arg: Any) -> Search:
    try:
        compiled = re.compile(text)
    except re.error as exc:
        raise Invalid(f"bad regex {show(arg)}: {exc}") from None
    if _nested_repeat(_sre_parse(text)):
        # (a+)+, (x*y?)*, ... backtrack exponentially on a crafted SNI or header: a rule
        # must not let the wire stall the sensor
        raise Invalid(f"regex {show(arg)} repeats a repetition (like (a+)+): it can take exponential time on "
                      "crafted input; rewrite it without the nested quantifier")
    search = compiled.search
    return lambda v: search(v) is not None


def _sre_parse(text: str) -> Any:
    try:
        from re import _parser as sre  # type: ignore[attr-defined]  # Python >= 3.11
    except ImportError:  # pragma: no cover - Python 3.10
        import sre_parse as sre
    return sre.parse(text)


_REPEATS = frozenset(("MAX_REPEAT", "MIN_REPEAT"))


def _nested_repeat(pattern: Any, inside: bool = False) -> bool:
    """A repetition (of more than one) inside another: the shape of catastrophic backtracking."""
    for op, av in pattern:
        if str(op) in _REPEATS:
            _low, high, body = av
            repeats = high is None or high > 1
            if repeats and inside:
                return True
            if _nested_repeat(body, inside or repeats):
                return True
            continue
        for part in av if isinstance(av, (tuple, list)) else (av,):
            subs = part if isinstance(part, list) else [part]
            for sub in subs:
                if hasattr(sub, "data") and _nested_repeat(sub, inside):
                    return True
    return False


def _sub_condition(arg: Any, c: Compiler) -> Condition:
    return c.nested(arg)


def _in_pred(values: tuple[Any, ...]) -> Test:
    if all(type(v) is str for v in values):
        strings = frozenset(values)
        return lambda v: type(v) is str and v in strings
    return lambda v: any(_same(v, x) for x in values)


def _contains_pred(arg: Any) -> Test:
    def pred(v: Any) -> bool:
        if isinstance(v, str):
            return isinstance(arg, str) and arg in v
        if isinstance(v, (list, tuple)):
            return any(_same(x, arg) for x in v)
        return False
    return pred


def _icontains_pred(folded: str) -> Test:
    def pred(v: Any) -> bool:
        if isinstance(v, str):
            return folded in v.casefold()
        if isinstance(v, (list, tuple)):
            return any(isinstance(x, str) and x.casefold() == folded for x in v)
        return False
    return pred


def _quantifier(kind: str) -> Build:
    def build(cond: Condition) -> Test:
        t = cond.test
        if kind == "any":
            return lambda v: isinstance(v, (list, tuple)) and any(t(x) for x in v)
        if kind == "all":
            return lambda v: isinstance(v, (list, tuple)) and len(v) > 0 and all(t(x) for x in v)
        return lambda v: isinstance(v, (list, tuple)) and not any(t(x) for x in v)
    return build


def _explain_any(path: str, value: Any, cond: Condition) -> str:
    for i, item in enumerate(value):
        if cond.test(item):
            sub: list[str] = []
            cond.explain(item, f"{path}[{i}].", sub)
            return "; ".join(sub)
    return f"{path}: an item matches {cond.describe()}"  # not reached for a true leaf


def _op(symbol: str) -> tuple[Describe, Explain]:
    """Texts of a comparison: ``path <symbol> arg`` and ``path = value (<symbol> arg)``."""
    return (lambda p, a: f"{p} {symbol} {show(a)}",
            lambda p, v, a: f"{p} = {show(v)} ({symbol} {show(a)})")


def _implied(symbol: str) -> tuple[Describe, Explain]:
    """Texts of a predicate whose argument says enough: ``path <symbol> arg`` both times."""
    return (lambda p, a: f"{p} {symbol} {show(a)}",
            lambda p, v, a: f"{p} {symbol} {show(a)}")


def _entry(check: Check, build: Build, texts: tuple[Describe, Explain], sees_missing: bool = False) -> Operator:
    return Operator(check, build, texts[0], texts[1], sees_missing)


def _count_texts(symbol: str) -> tuple[Describe, Explain]:
    return (lambda p, a: f"count({p}) {symbol} {a}",
            lambda p, v, a: f"{p} has {len(v)} item{'s' if len(v) != 1 else ''} ({symbol} {a})")


def _abs_texts(symbol: str) -> tuple[Describe, Explain]:
    return (lambda p, a: f"|{p}| {symbol} {show(a)}",
            lambda p, v, a: f"{p} = {show(v)} (|x| {symbol} {show(a)})")


_EXISTS_TEXTS: tuple[Describe, Explain] = (
    lambda p, a: f"{p} exists" if a else f"{p} is absent",
    lambda p, v, a: f"{p} exists" if a else f"{p} is absent",
)
_NULL_TEXTS: tuple[Describe, Explain] = (
    lambda p, a: f"{p} is null" if a else f"{p} is not null",
    lambda p, v, a: (f"{p} is absent" if v is MISSING else f"{p} is null") if a else f"{p} = {show(v)} (not null)",
)
_ANY_CASE_TEXTS: tuple[Describe, Explain] = (
    lambda p, a: f"{p} == {show(a)} (any case)",
    lambda p, v, a: f"{p} = {show(v)} (== {show(a)}, any case)",
)
_BETWEEN_TEXTS: tuple[Describe, Explain] = (
    lambda p, a: f"{p} between {show(a[0])} and {show(a[1])}",
    lambda p, v, a: f"{p} = {show(v)} (between {show(a[0])} and {show(a[1])})",
)
_QUANTIFIER_TEXTS: dict[str, tuple[Describe, Explain]] = {
    "any": (lambda p, c: f"any item of {p} matches {c.describe()}", _explain_any),
    "all": (lambda p, c: f"every item of {p} matches {c.describe()}",
            lambda p, v, c: f"all {len(v)} items of {p} match {c.describe()}"),
    "none": (lambda p, c: f"no item of {p} matches {c.describe()}",
             lambda p, v, c: f"none of the {len(v)} items of {p} match {c.describe()}"),
}


def _compare(fn: Callable[[Any, Any], bool]) -> Build:
    return lambda n: lambda v: _is_num(v) and fn(v, n)


#: The predicates a leaf may use: name -> :class:`Operator`.
OPERATORS: dict[str, Operator] = {
    "eq": _entry(_scalar, _eq_pred, _implied("==")),
    "ne": _entry(_scalar, lambda a: (lambda p: lambda v: not p(v))(_eq_pred(a)), _op("!=")),
    "ieq": _entry(_folded, lambda f: lambda v: isinstance(v, str) and v.casefold() == f, _ANY_CASE_TEXTS),
    "in": _entry(_scalar_list, _in_pred, _op("in")),
    "not_in": _entry(_scalar_list, lambda a: (lambda p: lambda v: not p(v))(_in_pred(a)), _op("not in")),
    "gt": _entry(_number, _compare(lambda v, n: v > n), _op(">")),
    "ge": _entry(_number, _compare(lambda v, n: v >= n), _op(">=")),
    "lt": _entry(_number, _compare(lambda v, n: v < n), _op("<")),
    "le": _entry(_number, _compare(lambda v, n: v <= n), _op("<=")),
    "between": _entry(_range, lambda r: lambda v: _is_num(v) and r[0] <= v <= r[1], _BETWEEN_TEXTS),
    "abs_ge": _entry(_non_negative, _compare(lambda v, n: abs(v) >= n), _abs_texts(">=")),
    "abs_gt": _entry(_non_negative, _compare(lambda v, n: abs(v) > n), _abs_texts(">")),
    "contains": _entry(_scalar, _contains_pred, _implied("contains")),
    "icontains": _entry(_folded, _icontains_pred, (
        lambda p, a: f"{p} contains {show(a)} (any case)", lambda p, v, a: f"{p} contains {show(a)} (any case)")),
    "startswith": _entry(_string, lambda s: lambda v: isinstance(v, str) and v.startswith(s), _implied("starts with")),
    "endswith": _entry(_string, lambda s: lambda v: isinstance(v, str) and v.endswith(s), _implied("ends with")),
    "regex": _entry(_regex, lambda found: lambda v: isinstance(v, str) and found(v), _op("matches regex")),
    "exists": _entry(_flag, lambda f: lambda v: (v is not MISSING) is f, _EXISTS_TEXTS, sees_missing=True),
    "is_null": _entry(_flag, lambda f: lambda v: (v is MISSING or v is None) is f, _NULL_TEXTS, sees_missing=True),
    "count_ge": _entry(_count, lambda n: lambda v: isinstance(v, (list, tuple)) and len(v) >= n, _count_texts(">=")),
    "count_le": _entry(_count, lambda n: lambda v: isinstance(v, (list, tuple)) and len(v) <= n, _count_texts("<=")),
    "count_eq": _entry(_count, lambda n: lambda v: isinstance(v, (list, tuple)) and len(v) == n, _count_texts("==")),
    "any": _entry(_sub_condition, _quantifier("any"), _QUANTIFIER_TEXTS["any"]),
    "all": _entry(_sub_condition, _quantifier("all"), _QUANTIFIER_TEXTS["all"]),
    "none": _entry(_sub_condition, _quantifier("none"), _QUANTIFIER_TEXTS["none"]),
}

_COMBINATORS = ("all", "any", "not")


def _suggest(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# --- compiling ---------------------------------------------------------------------


class Compiler:
    """Turns condition data into :class:`Condition` objects, reporting every problem.

    ``report(line, message)`` receives each problem with the 1-based line of the
    offending node (``line`` of the caller for plain Python data).
    """

    __slots__ = ("_depth", "_line", "report")

    def __init__(self, report: Report) -> None:
        self.report = report
        self._depth = 0
        self._line = 1

    def condition(self, spec: Any, line: int) -> Condition | None:
        """The compiled ``spec`` (read at ``line``), or ``None`` after reporting problems."""
        line = line_of(spec, line)
        if self._depth >= MAX_DEPTH:
            self.report(line, f"conditions nested deeper than {MAX_DEPTH} levels")
            return None
        saved = self._line
        self._depth += 1
        self._line = line
        try:
            if not isinstance(spec, Mapping):
                self.report(line, f"a condition must be a mapping, got {kind_of(spec)}")
                return None
            if "field" in spec:
                return self._leaf(spec, line)
            return self._combinator(spec, line)
        finally:
            self._depth -= 1
            self._line = saved

    def nested(self, spec: Any) -> Condition:
        """A quantifier's condition; raises :class:`_Reported` if it had problems."""
        cond = self.condition(spec, self._line)
        if cond is None:
            raise _Reported
        return cond

    def _leaf(self, spec: Mapping[str, Any], line: int) -> Condition | None:
        path = spec["field"]
        ok = True
        if not isinstance(path, str):
            self.report(value_line(spec, "field", line), f"field must be a dotted path string, got {kind_of(path)}")
            ok = False
        else:
            try:
                parse_path(path)
            except Invalid as exc:
                self.report(value_line(spec, "field", line), str(exc))
                ok = False
        ops = [k for k in spec if k != "field"]
        for key in ops:
            if key not in OPERATORS:
                hint = _suggest(str(key), list(OPERATORS)) or f" (operators: {', '.join(OPERATORS)})"
                self.report(key_line(spec, key, line), f"unknown operator {show(key)}{hint}")
                ok = False
        known = [k for k in ops if k in OPERATORS]
        if not ops:
            self.report(line, "a leaf needs one operator next to 'field' (eq, in, gt, contains, regex, ...)")
            return None
        if len(known) > 1:
            self.report(key_line(spec, known[1], line),
                        f"one operator per leaf, found {', '.join(known)} (combine leaves with 'all')")
            return None
        if not known:
            return None
        op = known[0]
        operator = OPERATORS[op]
        arg = spec[op]
        self._line = value_line(spec, op, line)
        try:
            value = operator.check(arg, self)
        except Invalid as exc:
            self.report(value_line(spec, op, line), f"{op}: {exc}")
            return None
        except _Reported:
            return None
        if not ok:
            return None
        return Leaf(path, op, value if isinstance(value, Condition) else arg, operator, value)

    def _combinator(self, spec: Mapping[str, Any], line: int) -> Condition | None:
        keys = list(spec)
        if not keys:
            self.report(line, "empty condition (expected all, any, not or field)")
            return None
        unknown = [k for k in keys if k not in _COMBINATORS]
        for key in unknown:
            hint = _suggest(str(key), [*_COMBINATORS, "field"])
            if key in OPERATORS:
                hint = " (an operator needs a 'field' beside it)"
            self.report(key_line(spec, key, line),
                        f"unknown key {show(key)} in a condition{hint}; expected all, any, not or field")
        known = [k for k in keys if k in _COMBINATORS]
        if len(known) > 1:
            self.report(key_line(spec, known[1], line),
                        f"one of all/any/not per condition, found {', '.join(known)} (nest them)")
            return None
        if unknown or not known:
            return None
        key = known[0]
        arg = spec[key]
        at = value_line(spec, key, line)
        if key == "not":
            if isinstance(arg, list):
                self.report(at, "not takes one condition, not a list (write not: {any: [...]})")
                return None
            child = self.condition(arg, at)
            return None if child is None else Not(child)
        if not isinstance(arg, list) or not arg:
            self.report(at, f"{key} takes a non-empty list of conditions, got "
                        + ("an empty list" if isinstance(arg, list) else kind_of(arg)))
            return None
        children = [self.condition(item, item_line(arg, i, at)) for i, item in enumerate(arg)]
        if any(c is None for c in children):
            return None
        conds = [c for c in children if c is not None]
        return AllOf(conds) if key == "all" else AnyOf(conds)


def build_condition(spec: Any, report: Report, line: int = 1) -> Condition | None:
    """Validate and compile ``spec``; problems go to ``report`` and give ``None``."""
    return Compiler(report).condition(spec, line)
