"""The whole Analyzer on a small capture (seeded with real pcaps cut to their first packets).

CaptureError only for an unreadable file; the records serialise in every sink.
"""

from __future__ import annotations

from _common import as_file, fuzz, instrumented  # first: puts the checkout first on sys.path

with instrumented():
    import io

    from tlsprobe.errors import CaptureError
    from tlsprobe.pipeline import Analyzer, iter_records
    from tlsprobe.sinks import make_sink

_ANALYZER_RULES = Analyzer().rules  # load the built-in rules once


def TestOneInput(data: bytes) -> None:
    an = Analyzer(rules=_ANALYZER_RULES, http=bool(data[-1:] and data[-1] & 1))
    out = io.StringIO()
    sinks = [make_sink(fmt, out) for fmt in ("jsonl", "csv", "table")]
    with as_file(data) as path:
        try:
            for rec in iter_records([path], analyzer=an):
                d = rec.to_dict()
                for sink in sinks:
                    sink.write(d)
        except CaptureError as exc:
            assert "\n" not in str(exc)
    for sink in sinks:
        sink.close()


if __name__ == "__main__":
    fuzz(TestOneInput)
