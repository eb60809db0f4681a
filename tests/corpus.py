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
}


def flow_key(src: str, sport: int, dst: str, dport: int) -> tuple[str, int, str, int]:
    return (src, sport, dst, dport)
