"""ConfigError, and pydantic's validation errors said the way a person fixes a config file:
one line per problem, naming the key path, the value found and what is allowed."""

from __future__ import annotations

import json
import types
from collections.abc import Callable, Sequence
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from shepherd.config.models import INSTANCE_TYPE_PATTERN, NAME_PATTERN, S3_URI_PATTERN, SCRIPT_PATTERN

PATTERN_MEANINGS = {
    NAME_PATTERN: "must be 1..63 letters, digits and hyphens, starting and ending with a letter or digit",
    INSTANCE_TYPE_PATTERN: "must be a SageMaker instance type such as ml.m5.large",
    S3_URI_PATTERN: "must be an S3 URI such as s3://bucket/prefix/",
    SCRIPT_PATTERN: "must be a .py file such as train.py, relative to models/<model>/code/",
}
BOUNDS = {
    "greater_than_equal": ("ge", ">="),
    "greater_than": ("gt", ">"),
    "less_than_equal": ("le", "<="),
    "less_than": ("lt", "<"),
}
TYPES = {
    "int_type": "must be a whole number",
    "float_type": "must be a number",
    "bool_type": "must be true or false",
    "list_type": "must be a list",
    "dict_type": "must be a mapping of keys to values",
    "model_type": "must be a mapping of keys to values",
}
MAX_SHOWN = 60


class ConfigError(ValueError):
    """A configuration that cannot be used; str() has one `<source>: <key>: <problem>` line per problem."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = tuple(problems)
        super().__init__("\n".join(f"{source}: {problem}" for problem in self.problems))


def show(value: Any) -> str:
    """A value as the YAML author wrote it: true, null, "text", 3, [10, 25]."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return repr(value)
    try:
        shown = json.dumps(value, separators=(", ", ": "), ensure_ascii=False)
    except (TypeError, ValueError):
        shown = str(value)
    return shown if len(shown) <= MAX_SHOWN else f"{shown[: MAX_SHOWN - 1]}…"


def key_path(loc: Sequence[str | int]) -> str:
    """("endpoint", "realtime", "instance_count") -> endpoint.realtime.instance_count; list items as [i]."""
    path = ""
    for part in loc:
        if part == "[key]":
            continue
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(top level)"


def problems_from(
    error: ValidationError, root: type[BaseModel], keep: Callable[[Any], bool] | None = None
) -> list[str]:
    """One line per problem, in document order as pydantic found them (only those ``keep`` accepts, if given)."""
    problems: list[str] = []
    for detail in error.errors(include_url=False):
        if keep is not None and not keep(detail):
            continue
        loc = tuple(detail["loc"])
        kind = detail["type"]
        ctx = detail.get("ctx") or {}
        if kind == "config_rules":
            problems.extend(
                f"{key_path(loc + tuple(key.split('.')))}: {show(value)} is not allowed ({allowed})"
                for key, value, allowed in ctx["problems"]
            )
        elif kind == "extra_forbidden":
            problems.append(f"{key_path(loc)}: unknown key ({_known_keys(root, loc)})")
        elif kind == "missing":
            problems.append(f"{key_path(loc)}: missing (required{_choices(root, loc)})")
        else:
            problems.append(f"{key_path(loc)}: {show(detail['input'])} is not allowed ({_allowed(detail)})")
    return problems


def _allowed(detail: Any) -> str:
    kind, ctx, value = detail["type"], detail.get("ctx") or {}, detail["input"]
    if kind in BOUNDS:
        name, symbol = BOUNDS[kind]
        bound = ctx[name]
        return f"must be {symbol} {int(bound) if isinstance(bound, float) and bound.is_integer() else bound}"
    if kind in TYPES:
        return TYPES[kind]
    if kind == "string_type":
        return 'must be a string; quote it, e.g. "1.2-1"' if isinstance(value, int | float) else "must be a string"
    if kind == "config_value":
        return str(ctx["allowed"])
    if kind == "literal_error":
        return f"must be {ctx['expected']}"
    if kind == "multiple_of":
        return f"must be a multiple of {ctx['multiple_of']}"
    if kind == "string_pattern_mismatch":
        return PATTERN_MEANINGS.get(ctx["pattern"], f"must match {ctx['pattern']}")
    if kind == "string_too_short":
        return "must not be empty" if ctx["min_length"] == 1 else f"must have at least {ctx['min_length']} characters"
    if kind == "string_too_long":
        return f"must have at most {ctx['max_length']} characters"
    if kind == "too_short":
        return f"must have at least {ctx['min_length']} item(s)"
    if kind == "too_long":
        return f"must have at most {ctx['max_length']} items"
    message = str(detail["msg"])
    return message[:1].lower() + message[1:]


def _annotation_at(root: type[BaseModel], loc: Sequence[str | int]) -> Any:
    """The type declared at a key path (unwrapped from `| None` and list items), or None."""
    current: Any = root
    for part in loc:
        current = _unwrap(current)
        if isinstance(part, int) and get_origin(current) is list:
            current = get_args(current)[0]
        elif isinstance(current, type) and issubclass(current, BaseModel) and part in current.model_fields:
            current = current.model_fields[str(part)].annotation
        else:
            return None
    return _unwrap(current)


def _unwrap(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        members = [member for member in get_args(annotation) if member is not type(None)]
        return members[0] if len(members) == 1 else annotation
    return annotation


def _known_keys(root: type[BaseModel], loc: Sequence[str | int]) -> str:
    section = _annotation_at(root, loc[:-1])
    if not (isinstance(section, type) and issubclass(section, BaseModel)):
        return "not allowed here"
    keys = list(section.model_fields)
    import difflib  # only on this error path

    close = difflib.get_close_matches(str(loc[-1]), keys, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    return f"{hint}allowed here: {', '.join(keys)}"


def _choices(root: type[BaseModel], loc: Sequence[str | int]) -> str:
    annotation = _annotation_at(root, loc)
    if get_origin(annotation) is Literal:
        return f"; one of {' | '.join(str(choice) for choice in get_args(annotation))}"
    return ""
