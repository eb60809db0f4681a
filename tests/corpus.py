"""Where ../shared/corpus is and which record keys compare with which corpus keys
(used by test_corpus.py)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"

# our record key -> corpus flow key
FIELDS = {
    "sni": "sni",
    "alpn": "alpn",
    "ja3": "ja3",
    "ja3_string": "ja3_full",
    "ja3s": "ja3s",
    "ja4": "ja4",
    "ja4_r": "ja4_r",
    "ja4_o": "ja4_o",
    "ja4_ro": "ja4_ro",
    "ja4s": "ja4s",
    "ja4s_r": "ja4s_r",
    # JA4+ beyond JA4S: FoxIO's values, in foxio-ja4/ only
    "ja4t": "ja4t",
    "ja4ts": "ja4ts",
    "ja4l_c": "ja4l_c",
    "ja4l_s": "ja4l_s",
    "ja4x": "ja4x",  # a list: one per certificate of the chain, leaf first
}


def ours(record: dict[str, object], key: str) -> object:
    """The record's value for a corpus key (JA4X is per certificate)."""
    if key == "ja4x":
        return [c["ja4x"] for c in record["certificates"]]  # type: ignore[attr-defined, index]
    return record.get(key)


def flow_key(src: str, sport: int, dst: str, dport: int) -> tuple[str, int, str, int]:
    return (src, sport, dst, dport)
