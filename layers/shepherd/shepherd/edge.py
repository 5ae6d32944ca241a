"""Validating a small event, and reading a function's environment, at the edge without pydantic.

pydantic's import costs ~85 ms of a cold start: the per-job functions (StartJob, StopJob, JobCallback)
run once per SageMaker job event and read three or four fields, and JudgeStage runs once per judge
interval of every rollout stage; the rest of Shepherd validates its inputs with pydantic models.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from typing import Any

from shepherd.errors import InvalidInput, ShepherdError

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


class MissingSetting(ShepherdError):
    """The function's environment lacks a variable template.yaml gives it: a deployment error, not the input's."""


def setting(name: str, environ: Mapping[str, str] | None = None) -> str:
    """The environment variable ``name``, which template.yaml gives the function; unset or empty, an error naming it."""
    value = (os.environ if environ is None else environ).get(name)
    if not value:
        raise MissingSetting(f"the function's environment has no {name}: template.yaml sets it (redeploy the stack?)")
    return value


def optional_setting(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The variable of an optional stack parameter: None when unset or empty."""
    return (os.environ if environ is None else environ).get(name) or None


def list_setting(name: str, environ: Mapping[str, str] | None = None) -> list[str]:
    """A comma-separated list (SAM joins a list parameter so): [] when unset or empty."""
    return [part for part in (os.environ if environ is None else environ).get(name, "").split(",") if part]
