"""The private pipe between the local cloud and a model worker: length-prefixed frames of JSON meta and raw body."""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from typing import IO, Any

_HEADER = struct.Struct("!II")  # meta length, body length


def write_frame(stream: IO[bytes], meta: Mapping[str, Any], body: bytes | memoryview = b"") -> None:
    """One message on the private pipe: header, JSON meta, raw body (no base64 for MB payloads)."""
    encoded = json.dumps(meta).encode()
    stream.write(_HEADER.pack(len(encoded), len(body)) + encoded)
    if body:
        stream.write(body)
    stream.flush()


def _read_exact(stream: IO[bytes], size: int) -> bytes | None:
    data = stream.read(size)
    if data is None or len(data) < size:
        return None
    return data


def read_frame(stream: IO[bytes]) -> tuple[dict[str, Any], bytes] | None:
    """The next message, or None at end of stream (the other side exited)."""
    header = _read_exact(stream, _HEADER.size)
    if header is None:
        return None
    meta_len, body_len = _HEADER.unpack(header)
    meta = _read_exact(stream, meta_len)
    body = _read_exact(stream, body_len) if body_len else b""
    if meta is None or body is None:
        return None
    return json.loads(meta), body
