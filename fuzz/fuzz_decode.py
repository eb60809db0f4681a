"""Link/IP/TCP/UDP decode (with IP fragment reassembly): frames -> Segment or None, never an exception."""

from __future__ import annotations

from _common import chunks, fuzz, instrumented  # first: puts the checkout first on sys.path

with instrumented():
    from tlsprobe.anomalies import AnomalyLog
    from tlsprobe.decode.packet import LINKTYPES, Decoder, Segment

_LINKTYPES = [*sorted(LINKTYPES), 1, 1, 1, 1, 147]  # Ethernet weighted up; 147 is unknown


def TestOneInput(data: bytes) -> None:
    dec = Decoder(AnomalyLog())
    ts = 1.0
    for flags, frame in chunks(data):
        seg = dec.decode(_LINKTYPES[flags % len(_LINKTYPES)], frame, ts)
        if seg is not None:
            assert isinstance(seg, Segment) and isinstance(seg.payload, bytes)
            assert 0 <= seg.sport <= 0xFFFF and 0 <= seg.dport <= 0xFFFF
            assert len(seg.src) in (4, 16) and len(seg.src) == len(seg.dst)
        ts += 0.001 if flags & 0x80 == 0 else 40.0  # sometimes jump past the fragment timeout
    dec.fragments.flush()


if __name__ == "__main__":
    fuzz(TestOneInput)
