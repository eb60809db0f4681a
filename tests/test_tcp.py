"""TCP reassembly: any order, duplicates and overlaps deliver the same bytes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tlsprobe.flow.tcp import TcpDirection
from tlsprobe.limits import DEFAULT_LIMITS

DATA = bytes(range(256)) * 12


def _deliver(isn: int, segments: list[tuple[int, int]]) -> bytes:
    d = TcpDirection()
    d.syn(isn)
    out = bytearray()
    for start, end in segments:
        chunks, _ = d.segment((isn + 1 + start) & 0xFFFFFFFF, DATA[start:end], 0.0, DEFAULT_LIMITS)
        for off, data, _ts in chunks:
            assert off == len(out)
            out += data
    return bytes(out)


@given(
    st.integers(min_value=0, max_value=0xFFFFFFFF),
    st.lists(st.integers(min_value=1, max_value=len(DATA) - 1), max_size=30, unique=True),
    st.randoms(use_true_random=False),
    st.integers(min_value=0, max_value=10),
)
@settings(max_examples=300, deadline=None)
def test_reorder_duplicate_overlap(isn: int, cuts: list[int], rnd: object, dups: int) -> None:
    bounds = [0, *sorted(cuts), len(DATA)]
    segs = [(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]
    # overlapping retransmissions spanning two segments
    segs += [(segs[i][0], segs[i + 1][1]) for i in range(min(dups, len(segs) - 1))]
    rnd.shuffle(segs)  # type: ignore[attr-defined]
    assert _deliver(isn, segs) == DATA


@given(
    st.integers(min_value=0, max_value=0xFFFFFFFF),
    st.data(),
)
@settings(max_examples=300, deadline=None)
def test_any_segmentation_order_duplicates_and_overlaps(isn: int, data: st.DataObject) -> None:
    """Segments are a random cover of the stream plus arbitrary extra slices (exact
    duplicates, copies that start where another starts but run longer or shorter,
    overlaps across several segments), delivered in any order: exactly the stream."""
    n = len(DATA)
    cuts = sorted(data.draw(st.sets(st.integers(1, n - 1), max_size=30)))
    bounds = [0, *cuts, n]
    segs = [(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]
    for _ in range(data.draw(st.integers(0, 20))):
        if data.draw(st.booleans()):
            start, _end = data.draw(st.sampled_from(segs))  # a copy of a segment, another length
            segs.append((start, data.draw(st.integers(start + 1, min(n, start + 600)))))
        else:
            start = data.draw(st.integers(0, n - 1))
            segs.append((start, data.draw(st.integers(start + 1, min(n, start + 600)))))
    order = data.draw(st.permutations(segs))
    assert _deliver(isn, order) == DATA


def test_longer_copy_at_a_buffered_sequence_number_is_kept() -> None:
    # Hypothesis: a short out-of-order segment, then a longer copy from the same sequence
    # number (a repacketised retransmission): the longer bytes were dropped and the
    # stream stalled at a gap for ever.
    assert _deliver(0, [(100, 110), (100, 150), (0, 100), (150, len(DATA))]) == DATA
    assert _deliver(7, [(100, 150), (100, 110), (0, 100), (150, len(DATA))]) == DATA


def test_sequence_wrap() -> None:
    segs = [(i, i + 100) for i in range(0, len(DATA), 100)]
    assert _deliver(0xFFFFFF00, segs) == DATA[: segs[-1][1]]


def test_missing_syn_late_first_segment_is_offered_back() -> None:
    d = TcpDirection()
    chunks, before = d.segment(1000, b"world", 0.0, DEFAULT_LIMITS)
    assert [c[1] for c in chunks] == [b"world"]
    chunks, before = d.segment(995, b"hello", 0.0, DEFAULT_LIMITS)
    assert before == b"hello" and not chunks


def test_out_of_order_cap() -> None:
    d = TcpDirection()
    d.syn(0)
    for i in range(DEFAULT_LIMITS.max_ooo_segments + 1):
        d.segment(10_000 + i * 10, b"x" * 10, 0.0, DEFAULT_LIMITS)
    assert d.stopped and d.overflow
