"""tlsprobe: TLS handshakes on any port, fingerprinted, from packet captures.

Library entry points::

    from tlsprobe import iter_records
    for rec in iter_records(["capture.pcap"]):
        print(rec.to_dict()["ja4"])
"""

from tlsprobe.errors import CaptureError, TlsprobeError, WireError
from tlsprobe.pipeline import Analyzer, iter_records
from tlsprobe.record import HandshakeRecord, HttpRecord, Record

__all__ = [
    "Analyzer", "CaptureError", "HandshakeRecord", "HttpRecord", "Record", "TlsprobeError", "WireError", "iter_records",
]
__version__ = "0.1.0"
