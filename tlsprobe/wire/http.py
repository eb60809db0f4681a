"""HTTP/1.x message heads (sans-IO): what a block page or a plaintext reply says.

Bytes in, a small dict out; never raises on garbage (returns None when the bytes are
not an HTTP message).  Every string is wire data: callers escape it where shown.
"""

from __future__ import annotations

import re
from typing import Any

MAX_HEADERS = 64
EXCERPT = 200
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title", re.IGNORECASE | re.DOTALL)
_METHODS = (b"GET", b"POST", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"TRACE", b"CONNECT")


def _text(raw: bytes, limit: int = 512) -> str:
    return raw[:limit].decode("utf-8", "replace")


def _headers(lines: list[bytes]) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in lines[:MAX_HEADERS]:
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        key = _text(name.strip(), 64).lower()
        out.setdefault(key, _text(value.strip()))
    return out


def _split(data: bytes) -> tuple[list[bytes], bytes] | None:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = data.partition(b"\n\n")
    lines = head.replace(b"\r\n", b"\n").split(b"\n")
    return (lines, body) if lines and lines[0] else None


def parse_response(data: bytes) -> dict[str, Any] | None:
    """Status line, selected headers, <title> and a body excerpt of an HTTP response."""
    if not data.startswith(b"HTTP/"):
        return None
    parts = _split(data)
    if parts is None:
        return None
    lines, body = parts
    status_line = lines[0].split(None, 2)
    try:
        status = int(status_line[1]) if len(status_line) > 1 else None
    except ValueError:
        status = None
    headers = _headers(lines[1:])
    title = _TITLE.search(body[:65536])
    return {
        "version": _text(status_line[0], 16),
        "status": status,
        "reason": _text(status_line[2], 128) if len(status_line) > 2 else "",
        "server": headers.get("server"),
        "location": headers.get("location"),
        "content_type": headers.get("content-type"),
        "headers": headers,
        "title": _text(title.group(1).strip(), 256) if title else None,
        "body_excerpt": _text(body, EXCERPT),
        "body_length": len(body),
    }


def parse_request(data: bytes) -> dict[str, Any] | None:
    """Method, target, Host and User-Agent of an HTTP request head."""
    if not data.startswith(_METHODS):
        return None
    parts = _split(data)
    if parts is None:
        return None
    lines, _body = parts
    req = lines[0].split(None, 2)
    if len(req) < 2:
        return None
    headers = _headers(lines[1:])
    return {
        "method": _text(req[0], 16),
        "target": _text(req[1], 512),
        "version": _text(req[2], 16) if len(req) > 2 else "",
        "host": headers.get("host"),
        "user_agent": headers.get("user-agent"),
    }
