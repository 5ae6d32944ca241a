"""moto's EventBridge Scheduler: its backends, whose schedules the local cloud's Scheduler fires."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    """scheduler_backends, imported on first use."""
    if name == "scheduler_backends":
        from moto.scheduler.models import scheduler_backends

        return scheduler_backends
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
