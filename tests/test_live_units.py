"""The parts of live capture that need no root: the pcap/pcapng writers and the clock
that a quiet network advances (``Analyzer.tick``)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.factory import client_hello_body, handshake, handshake_frames, record, sni_ext, tcp_frame
from tlsprobe import Analyzer, iter_records
from tlsprobe.capture.files import CaptureFile
from tlsprobe.capture.writer import PcapNgWriter, PcapWriter, open_writer
from tlsprobe.limits import CONTEXT_SETTLE_S

T0 = 1_700_000_000.0


def _hello(name: bytes = b"tick.example") -> bytes:
    return record(0x16, handshake(1, client_hello_body(extensions=[sni_ext(name)])))


def test_pcap_writer_round_trip(tmp_path: Path) -> None:
    frames = handshake_frames(_hello())
    path = tmp_path / "w.pcap"
    w = open_writer(str(path), {1})
    assert isinstance(w, PcapWriter)
    for i, f in enumerate(frames):
        w.write(T0 + i * 0.001234, 1, f, "eth0")
    w.close()
    back = list(CaptureFile(str(path)))
    assert [b for _, _, b in back] == frames
    assert all(abs(ts - (T0 + i * 0.001234)) < 1e-6 for i, (ts, _, _) in enumerate(back))
    assert [r.to_dict()["sni"] for r in iter_records([str(path)])] == ["tick.example"]


def test_pcapng_writer_keeps_interfaces_and_link_types(tmp_path: Path) -> None:
    frames = handshake_frames(_hello())
    raw_ip = frames[0][14:]
    path = tmp_path / "w.pcapng"
    w = open_writer(str(path), {1, 101})
    assert isinstance(w, PcapNgWriter)
    for i, f in enumerate(frames):
        w.write(T0 + i / 1000, 1, f, "eth0")
    w.write(T0 + 1.000000001, 101, raw_ip, "wg0")
    w.close()
    back = list(CaptureFile(str(path)))
    assert [(lt, b) for _, lt, b in back] == [(1, f) for f in frames] + [(101, raw_ip)]
    assert abs(back[-1][0] - (T0 + 1.000000001)) < 1e-6
    if shutil.which("tshark"):
        out = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e", "frame.interface_name"],
                             capture_output=True, text=True, check=True).stdout.split()
        assert out == ["eth0"] * len(frames) + ["wg0"]


def test_tick_emits_a_verdict_once_its_window_closed_without_more_packets() -> None:
    """A reset right after the hello: nothing more arrives, the clock alone finishes it."""
    frames = handshake_frames(_hello())
    c, s = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    hello_len = len(_hello())
    frames.append(tcp_frame(s, c, 8443, 40000, 5001, 1001 + hello_len, 0x14))
    an = Analyzer()
    packets = [(T0 + i * 0.001, 1, f) for i, f in enumerate(frames)]
    assert list(an.packets(packets)) == []  # the evidence window is still open
    last = packets[-1][0]
    assert list(an.tick(last + 0.1)) == []  # still open
    # a reset without a verdict is held for the settle window (the flows around it may
    # still show the packet foreign), then the clock alone releases it
    assert list(an.tick(last + 5.0)) == []
    out = list(an.tick(last + CONTEXT_SETTLE_S + 0.5))
    assert len(out) == 1
    rec = out[0].to_dict()
    assert rec["sni"] == "tick.example" and rec["outcome"] == "rst"
    assert list(an.finish()) == []  # emitted once

