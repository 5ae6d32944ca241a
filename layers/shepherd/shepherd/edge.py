"""Validating a small event at the edge without pydantic (whose import costs ~85 ms of a cold start).

The per-job functions (StartJob, StopJob, JobCallback) run once per SageMaker job event and read
three or four fields; the rest of Shepherd validates its inputs with pydantic models.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from shepherd.errors import InvalidInput

_TYPES: dict[type, str] = {str: "a string", int: "an integer", dict: "an object"}


def field(event: Any, name: str, kind: type, *, choices: Collection[Any] | None = None, minimum: int = 1) -> Any:
    """event[name], of type kind (non-empty strings, integers >= minimum), one of choices if given."""
    if not isinstance(event, Mapping):
        raise InvalidInput(f"the event must be an object, got {type(event).__name__}")
    if name not in event:
        raise InvalidInput(f"the event has no {name!r}")
    value: Any = event[name]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise InvalidInput(f"{name} must be {_TYPES.get(kind, kind.__name__)}, got {value!r}"[:300])
    if kind is str and not value:
        raise InvalidInput(f"{name} must not be empty")
    if isinstance(value, int) and kind is int and value < minimum:
        raise InvalidInput(f"{name} must be >= {minimum}, got {value}")
    if choices is not None and value not in choices:
        raise InvalidInput(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}"[:300])
    return value
