"""Every crash the fuzzers found, replayed: the saved inputs under ``fuzz/regressions/<target>/``
go through the target's own ``TestOneInput`` (atheris is not needed for that), and each
bug also has a unit test naming the parser and the input that broke it."""

from __future__ import annotations

import importlib
import struct
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests import factory as f
from tlsprobe.anomalies import AnomalyLog
from tlsprobe.capture.files import CaptureFile
from tlsprobe.wire.tls import parse_client_hello

ROOT = Path(__file__).resolve().parents[1]
FUZZ = ROOT / "fuzz"
INPUTS = sorted(p for p in (FUZZ / "regressions").glob("*/*") if p.is_file())


def _target(name: str) -> ModuleType:
    if str(FUZZ) not in sys.path:
        sys.path.insert(0, str(FUZZ))
    return importlib.import_module(f"fuzz_{name}")


@pytest.mark.parametrize("path", INPUTS, ids=lambda p: f"{p.parent.name}/{p.name[:40]}")
def test_saved_crash_input_passes_its_target(path: Path) -> None:
    _target(path.parent.name).TestOneInput(path.read_bytes())


@pytest.mark.parametrize("etype", [10, 13, 43])
def test_empty_u16_list_extension_is_malformed_not_index_error(etype: int) -> None:
    # fuzz_tls, first seconds: supported_groups / signature_algorithms / supported_versions
    # with an empty body raised IndexError out of wire.tls._u16s.
    ch = parse_client_hello(f.client_hello_body(extensions=[f.ext(etype, b"")]))
    assert "tls.ext.malformed" in ch.anomalies


@pytest.mark.parametrize(("btype", "body"), [(6, b""), (6, b"\x00" * 16), (2, b"\x00" * 4), (3, b""), (1, b"")])
def test_pcapng_block_shorter_than_its_fields_is_bad_record(tmp_path: Path, btype: int, body: bytes) -> None:
    # fuzz_capture: an enhanced packet block of total length 12 made the reader unpack its
    # 20 fixed bytes past the buffer (struct.error), or silently out of the next block.
    shb = struct.pack("<IIIHHq", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1) + struct.pack("<I", 28)
    idb = struct.pack("<IIHHI", 1, 20, 1, 0, 65535) + struct.pack("<I", 20)
    short = struct.pack("<II", btype, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))
    frame = f.tcp_frame(b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02", 1, 2, 0, 0, 0x02)
    pad = (-len(frame)) % 4
    epb_len = 32 + len(frame) + pad
    epb = struct.pack("<IIIIIII", 6, epb_len, 0, 0, 0, len(frame), len(frame)) + frame + b"\x00" * pad
    epb += struct.pack("<I", epb_len)
    p = tmp_path / "short.pcapng"
    p.write_bytes(shb + idb + short + epb)
    log = AnomalyLog()
    packets = list(CaptureFile(str(p), log))
    assert log.counts["capture.bad_record"] == 1
    assert [frame] == [pkt[2] for pkt in packets]  # the next block is read as itself
