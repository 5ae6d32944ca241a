"""moto's IAM: its backends, where the local cloud's roles and their policies live."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    """iam_backends, imported on first use."""
    if name == "iam_backends":
        from moto.iam.models import iam_backends

        return iam_backends
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
