"""moto's Application Auto Scaling: it stores scalable targets and policies, which the local cloud acts on."""

from __future__ import annotations

from typing import Any


def backend(region: str = "us-east-1") -> Any:
    """The default account's backend in ``region``."""
    from moto.applicationautoscaling.models import applicationautoscaling_backends
    from moto.core import DEFAULT_ACCOUNT_ID

    return applicationautoscaling_backends[DEFAULT_ACCOUNT_ID][region]
