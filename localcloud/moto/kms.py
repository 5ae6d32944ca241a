"""moto's KMS: its backends, for key policies and key lookups."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    """kms_backends, imported on first use."""
    if name == "kms_backends":
        from moto.kms.models import kms_backends

        return kms_backends
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
