"""Capture reader: any bytes as a capture file -> packets, or CaptureError (nothing else)."""

from __future__ import annotations

from _common import as_file, fuzz, instrumented  # first: puts the checkout first on sys.path

with instrumented():
    from tlsprobe.anomalies import AnomalyLog
    from tlsprobe.capture.files import CaptureFile
    from tlsprobe.errors import CaptureError


def TestOneInput(data: bytes) -> None:
    with as_file(data) as path:
        try:
            for n, (ts, linktype, frame) in enumerate(CaptureFile(path, AnomalyLog())):
                assert isinstance(ts, float) and isinstance(linktype, int) and isinstance(frame, bytes)
                if n > 20_000:
                    break
        except CaptureError as exc:
            assert "\n" not in str(exc)


if __name__ == "__main__":
    fuzz(TestOneInput)
