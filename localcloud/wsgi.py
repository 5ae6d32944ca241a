"""The one way the local cloud's own middleware answers a request with JSON."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
RECEIVED_AT = "shepherd.received_at"  # environ key: time.perf_counter() when the request line was read


def json_response(
    start_response: Callable[..., Any],
    status: str,
    body: Any,
    content_type: str = "application/json",
    headers: Iterable[tuple[str, str]] = (),
) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(data))), *headers])
    return [data]
