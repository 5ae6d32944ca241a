"""moto's EventBridge Scheduler: its backends, whose schedules the local cloud's Scheduler fires."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

_listeners: list[Callable[[], None]] = []  # told after a schedule (or its group) is created, updated or deleted
SCHEDULE_CHANGES = ("create_schedule", "update_schedule", "delete_schedule", "delete_schedule_group")


def __getattr__(name: str) -> Any:
    """scheduler_backends, imported on first use."""
    if name == "scheduler_backends":
        from moto.scheduler.models import scheduler_backends

        return scheduler_backends
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def on_schedules_changed(listener: Callable[[], None]) -> Callable[[], None]:
    """Call ``listener`` after each change of SCHEDULE_CHANGES (one may be due sooner); returns its removal."""
    _listeners.append(listener)
    return lambda: _listeners.remove(listener) if listener in _listeners else None


def _telling_listeners(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def changing(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        finally:
            for listener in list(_listeners):
                listener()

    return changing


def patch() -> None:
    """The backend's schedule changes tell the listeners."""
    from moto.scheduler.models import EventBridgeSchedulerBackend

    for name in SCHEDULE_CHANGES:
        setattr(EventBridgeSchedulerBackend, name, _telling_listeners(getattr(EventBridgeSchedulerBackend, name)))
