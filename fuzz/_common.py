"""Shared helpers of the atheris targets: input framing and the parser contract.

Every target checks one contract: the code under test returns (a record, ``None``)
or raises its one documented error.  Anything else propagates, and atheris reports
it as a crash with the input that caused it.
"""

from __future__ import annotations

import contextlib
import os
import struct
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

try:
    import atheris
except ImportError:  # the targets are replayed by tests/test_fuzz_regressions.py without atheris
    atheris = None

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def instrumented() -> AbstractContextManager[Any]:
    """Coverage instrumentation of the tlsprobe modules imported inside the block."""
    return atheris.instrument_imports(include=["tlsprobe"]) if atheris else contextlib.nullcontext()


def fuzz(test_one_input: Callable[[bytes], None]) -> None:
    """Run libFuzzer with the command line's options (corpus dirs, -max_total_time, ...)."""
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


_SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()


@contextlib.contextmanager
def as_file(data: bytes) -> Iterator[str]:
    """``data`` in a scratch file (the capture reader opens paths), removed afterwards."""
    path = os.path.join(_SCRATCH, f"tlsprobe-fuzz-{os.getpid()}.pcap")
    with open(path, "wb") as f:
        f.write(data)
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


def chunks(data: bytes, max_chunks: int = 64) -> Iterator[tuple[int, bytes]]:
    """Split a fuzz input into ``(flags, bytes)`` chunks.

    Framing: one flag byte (bit 0 = direction; targets use the other bits for their own
    choices), a 16-bit big-endian length, then that
    many bytes; a last chunk whose length overruns takes what is left.  The seed
    builder writes real streams in this framing (see ``fuzz/seeds.py``).
    """
    pos = 0
    n = len(data)
    for _ in range(max_chunks):
        if pos + 3 > n:
            return
        flags = data[pos]
        length = (data[pos + 1] << 8) | data[pos + 2]
        pos += 3
        yield flags & 1, data[pos : pos + length]
        pos += length


def frame_chunks(parts: list[tuple[int, bytes]]) -> bytes:
    """The inverse of :func:`chunks` (for building seeds)."""
    out = bytearray()
    for d, data in parts:
        for i in range(0, max(len(data), 1), 0xFFFF):
            piece = data[i : i + 0xFFFF]
            out += struct.pack("!BH", d, len(piece)) + piece
    return bytes(out)


QUIC_DCID = bytes.fromhex("8394c8f03e515708")


def client_initial(payload: bytes, version: int = 1) -> bytes:
    """A client Initial (DCID ``QUIC_DCID``, 4-byte packet number) carrying ``payload``."""
    from tests.factory import seal_initial
    from tlsprobe.wire.quic import derive_initial_keys

    client, _ = derive_initial_keys(version, QUIC_DCID)
    payload = payload + bytes(max(0, 20 - len(payload)))  # room for the header-protection sample
    length = len(payload) + 16 + 4
    header = bytes([0xC3]) + version.to_bytes(4, "big") + bytes([len(QUIC_DCID)]) + QUIC_DCID + b"\x00" + b"\x00"
    header += (0x4000 | length).to_bytes(2, "big") + b"\x00\x00\x00\x02"
    return seal_initial(header, len(header) - 4, 4, payload, client)
