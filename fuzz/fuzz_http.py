"""HTTP/1.x heads (block pages, requests): a dict or None, never an exception."""

from __future__ import annotations

from _common import fuzz, instrumented  # first: puts the checkout first on sys.path

with instrumented():
    from tlsprobe.wire.http import parse_request, parse_response

def TestOneInput(data: bytes) -> None:
    for parse in (parse_response, parse_request):
        res = parse(data)
        if res is not None:
            assert all(isinstance(k, str) for k in res)


if __name__ == "__main__":
    fuzz(TestOneInput)
