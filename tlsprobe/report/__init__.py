"""``tlsprobe report``: a fingerprint and interception report in Markdown and HTML.

Inputs (captures, JSON Lines, run summaries) -> :mod:`.inputs` -> :class:`.aggregate.Aggregator`
(streaming counters, redaction on the way in) -> :mod:`.charts` (SVG) and :mod:`.build`
(a :class:`.document.Document`) -> :mod:`.markdown` and :mod:`.html`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tlsprobe.detect import load_rules
from tlsprobe.detect.context import NO_OPTIONS, ContextOptions
from tlsprobe.pipeline import builtin_rules
from tlsprobe.report.aggregate import Aggregator
from tlsprobe.report.build import Options, build_document
from tlsprobe.report.charts import charts
from tlsprobe.report.inputs import read_inputs
from tlsprobe.report.redact import Redactor

__all__ = ["Options", "ReportResult", "make_report"]


@dataclass(slots=True)
class ReportResult:
    """What :func:`make_report` did."""

    readable: bool  # at least one input was read (else nothing was written)
    errors: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # written, in order
    aggregator: Aggregator | None = None


def make_report(inputs: Sequence[str], out_dir: str, *, options: Options | None = None,
                redactor: Redactor | None = None, jobs: int = 1, rules_paths: Sequence[str] = (),
                http: bool = True, on_error: Callable[[str], None] = lambda _m: None,
                on_warning: Callable[[str], None] | None = None,
                context: ContextOptions = NO_OPTIONS) -> ReportResult:
    """Read ``inputs``, write ``out_dir``/report.md (+ SVG charts beside it) and report.html."""
    options = options or Options()
    rules = load_rules(rules_paths) if rules_paths else builtin_rules()  # RuleError before any work
    agg = Aggregator(redactor=redactor)
    read_inputs(inputs, agg, on_error=on_error, on_warning=on_warning, jobs=jobs, rules_paths=rules_paths,
                http=http, context=context)
    t = agg.totals
    result = ReportResult(bool(t.files or t.jsonl_files or t.summary_files), list(t.errors), aggregator=agg)
    if not result.readable:
        return result
    from tlsprobe.report.html import render_html
    from tlsprobe.report.markdown import render_markdown

    drawn = charts(agg)
    doc = build_document(agg, drawn, rules, options)
    os.makedirs(out_dir, exist_ok=True)
    for chart in drawn:
        result.files.append(_write(out_dir, chart.name, chart.svg))
    result.files.append(_write(out_dir, "report.md", render_markdown(doc)))
    result.files.append(_write(out_dir, "report.html", render_html(doc)))
    return result


def _write(out_dir: str, name: str, content: str) -> str:
    path = os.path.join(out_dir, name)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(content)
    return path
