"""Fingerprints: pure functions of hello records.

``ja3`` (JA3/JA3S, BSD-3, salesforce) and ``ja4`` (JA4, BSD-3, FoxIO) are under the
project licence; ``ja4plus`` (JA4S, JA4T, JA4TS, JA4L, JA4X) is under the FoxIO License 1.1, see its header.
"""
