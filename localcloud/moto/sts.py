"""moto's STS: its backends, which issue the sessions of the local cloud's assumed roles."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    """sts_backends, imported on first use."""
    if name == "sts_backends":
        from moto.sts.models import sts_backends

        return sts_backends
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
