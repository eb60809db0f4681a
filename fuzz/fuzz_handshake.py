"""HandshakeTracker over a two-direction segmented stream: never an exception."""

from __future__ import annotations

from _common import chunks, fuzz, instrumented  # first: puts the checkout first on sys.path

with instrumented():
    from tlsprobe.handshake import HandshakeTracker
    from tlsprobe.limits import DEFAULT_LIMITS


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    mode = data[0]
    client = None if mode & 1 else 0
    hs = HandshakeTracker(DEFAULT_LIMITS, client, http=bool(mode & 2))
    for d, part in chunks(data[1:], 128):
        if hs.finished:
            hs.more_plaintext(d & 1, part)
            continue
        hs.feed(d & 1, part)
        hs.triggered  # noqa: B018
        hs.server_side  # noqa: B018


if __name__ == "__main__":
    fuzz(TestOneInput)
