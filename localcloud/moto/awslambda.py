"""moto's Lambda without Docker (the "simple" backend): it holds the local cloud's functions and their policies."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    """lambda_simple_backends, imported on first use."""
    if name == "lambda_simple_backends":
        from moto.awslambda_simple.models import lambda_simple_backends

        return lambda_simple_backends
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
