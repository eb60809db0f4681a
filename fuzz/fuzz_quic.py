"""QUIC Initial: datagrams through QuicTracker, raw or a fuzzed plaintext sealed into a valid Initial.

The tracker never raises; decode_transport_parameters raises only WireError.
"""

from __future__ import annotations

import contextlib

from _common import chunks, client_initial, fuzz, instrumented  # first: puts the checkout first on sys.path

with instrumented():
    from tlsprobe.errors import WireError
    from tlsprobe.flow.quic import QuicTracker
    from tlsprobe.limits import DEFAULT_LIMITS
    from tlsprobe.wire import quic


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    mode = data[0] % 3
    body = data[1:]
    if mode == 2:
        with contextlib.suppress(WireError):
            quic.decode_transport_parameters(body)
        return
    tracker = QuicTracker(DEFAULT_LIMITS, 1.0)
    for flags, part in chunks(body, 16):
        d = flags & 1
        if mode == 1 and d == 0:
            part = client_initial(part)  # a fuzzed plaintext payload in a packet that decrypts
        tracker.datagram(d, part, 2.0)
        if tracker.done:
            break
    tracker.quic_fields()


if __name__ == "__main__":
    fuzz(TestOneInput)
