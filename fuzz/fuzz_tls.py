"""TLS record layer and hello/certificate parsers: a record, None, or WireError."""

from __future__ import annotations

import contextlib

from _common import chunks, fuzz, instrumented  # first: puts the checkout first on sys.path

with instrumented():
    from tlsprobe.errors import WireError
    from tlsprobe.fingerprint.compute import client_fingerprints, server_fingerprints
    from tlsprobe.wire import tls
    from tlsprobe.wire.records import HandshakeMessage, RecordStream


def _hellos(body: bytes, version: int) -> None:
    try:
        ch = tls.parse_client_hello(body, version)
        client_fingerprints(ch)
        client_fingerprints(ch, "q")
    except WireError:
        pass
    try:
        ch = tls.parse_sslv2_client_hello(body)
        client_fingerprints(ch)
    except WireError:
        pass
    try:
        sh = tls.parse_server_hello(body, version)
        server_fingerprints(sh)
    except WireError:
        pass
    with contextlib.suppress(WireError):
        tls.parse_certificate_list(body)


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    mode = data[0]
    if mode & 1 == 0:  # one handshake body through every hello parser
        _hellos(data[1:], (0x0300 | (mode >> 1) % 5) if mode & 2 else 0x0303)
        return
    # a stream through the record layer, fed in the chunks the input says
    stream = RecordStream(want=(mode >> 1) % 3)
    for flags, part in chunks(data[1:]):
        if flags & 2:
            stream.expect_tls()
        for ev in stream.feed(part):
            if isinstance(ev, HandshakeMessage) and ev.msg_type in (1, 2, 11):
                _hellos(ev.body, ev.record_version)


if __name__ == "__main__":
    fuzz(TestOneInput)
