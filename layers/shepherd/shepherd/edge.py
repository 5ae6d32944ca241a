"""Validating a small event at the edge without pydantic (whose import costs ~85 ms of a cold start).

The per-job functions (StartJob, StopJob, JobCallback) run once per SageMaker job event and read
three or four fields, and JudgeStage runs once per judge interval of every rollout stage; the rest
of Shepherd validates its inputs with pydantic models.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from shepherd.errors import InvalidInput

_TYPES: dict[type, str] = {str: "a string", int: "an integer", float: "a number", dict: "an object"}
_MISSING = object()


def field(
    event: Any,
    name: str,
    kind: type,
    *,
    choices: Collection[Any] | None = None,
    minimum: float = 1,
    default: Any = _MISSING,
    where: str = "",
) -> Any:
    """event[name], of type kind (non-empty strings, numbers >= minimum), one of choices if given.

    ``float`` accepts integers too (JSON does not tell 60 from 60.0); ``where`` names the object
    that holds the field in messages (``stage.`` for ``event["stage"]["kind"]``).
    """
    if not isinstance(event, Mapping):
        raise InvalidInput(f"{where.rstrip('.') or 'the event'} must be an object, got {type(event).__name__}")
    if name not in event:
        if default is not _MISSING:
            return default
        raise InvalidInput(f"{where.rstrip('.') or 'the event'} has no {name!r}")
    value: Any = event[name]
    accepted = (int, float) if kind is float else kind
    if not isinstance(value, accepted) or (isinstance(value, bool) and kind in (int, float)):
        raise InvalidInput(f"{where}{name} must be {_TYPES.get(kind, kind.__name__)}, got {value!r}"[:300])
    if kind is str and not value:
        raise InvalidInput(f"{where}{name} must not be empty")
    if isinstance(value, (int, float)) and kind in (int, float) and value < minimum:
        raise InvalidInput(f"{where}{name} must be >= {minimum}, got {value}")
    if choices is not None and value not in choices:
        raise InvalidInput(f"{where}{name} must be one of {', '.join(map(str, choices))}, got {value!r}"[:300])
    return value
