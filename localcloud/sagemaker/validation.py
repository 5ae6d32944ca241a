"""Request validation against botocore's SageMaker service model, worded as AWS words it.

AWS answers "1 validation error detected: Value null at 'trainingJobName' failed to
satisfy constraint: Member must not be null" — member paths in lower camel case, one
clause per problem, joined with "; ".
"""

from __future__ import annotations

from functools import cache
from typing import Any

import botocore.session
import regex
from botocore.model import OperationModel, ServiceModel, Shape


class RequestInvalid(Exception):
    """A request that fails the service model; str() is AWS's message."""


@cache
def service_model() -> ServiceModel:
    return botocore.session.get_session().get_service_model("sagemaker")


def operation_model(operation: str) -> OperationModel | None:
    try:
        return service_model().operation_model(operation)
    except Exception:  # botocore raises OperationNotFoundError
        return None


@cache
def _compiled(pattern: str) -> regex.Pattern[str]:
    """The model's patterns are Java regexes (\\p{L} and the like): the regex module reads them."""
    return regex.compile(pattern, flags=regex.DOTALL)


def _camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def _value_text(value: Any) -> str:
    return "null" if value is None else str(value)


class _Checker:
    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, value: Any, path: str, constraint: str) -> None:
        self.problems.append(
            f"Value {_value_text(value)!r} at '{path}' failed to satisfy constraint: {constraint}".replace(
                "Value 'null'", "Value null"
            )
        )

    def check(self, value: Any, shape: Shape, path: str) -> None:
        kind = shape.type_name
        meta = shape.metadata
        if kind == "structure":
            if not isinstance(value, dict):
                self.fail(value, path, "Member must be a structure")
                return
            for name in shape.required_members:
                if value.get(name) is None:
                    self.fail(None, f"{path}.{_camel(name)}" if path else _camel(name), "Member must not be null")
            for name, item in value.items():
                member = shape.members.get(name)
                child = f"{path}.{_camel(name)}" if path else _camel(name)
                if member is None:
                    self.problems.append(f"Unknown parameter '{child}'")
                elif item is not None:
                    self.check(item, member, child)
        elif kind == "list":
            if not isinstance(value, list):
                self.fail(value, path, "Member must be a list")
                return
            self._length(value, meta, path, "Member must have length")
            for index, item in enumerate(value):
                self.check(item, shape.member, f"{path}.{index + 1}.member")
        elif kind == "map":
            if not isinstance(value, dict):
                self.fail(value, path, "Member must be a map")
                return
            self._length(value, meta, path, "Member must have length")
            for key, item in value.items():
                self.check(key, shape.key, f"{path}.key")
                self.check(item, shape.value, f"{path}.value")
        elif kind == "string":
            if not isinstance(value, str):
                self.fail(value, path, "Member must be a string")
                return
            self._length(value, meta, path, "Member must have length")
            if shape.enum and value not in shape.enum:
                self.fail(value, path, f"Member must satisfy enum value set: [{', '.join(shape.enum)}]")
            pattern = meta.get("pattern")
            if pattern and not _compiled(pattern).fullmatch(value):
                self.fail(value, path, f"Member must satisfy regular expression pattern: {pattern}")
        elif kind in ("integer", "long"):
            if isinstance(value, bool) or not isinstance(value, int):
                self.fail(value, path, "Member must be an integer")
                return
            self._range(value, meta, path)
        elif kind in ("float", "double"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                self.fail(value, path, "Member must be a number")
                return
            self._range(value, meta, path)
        elif kind == "boolean" and not isinstance(value, bool):
            self.fail(value, path, "Member must be a boolean")
        elif kind == "timestamp" and not isinstance(value, int | float | str):
            self.fail(value, path, "Member must be a timestamp")

    def _length(self, value: Any, meta: dict[str, Any], path: str, text: str) -> None:
        if "min" in meta and len(value) < meta["min"]:
            self.fail(value, path, f"{text} greater than or equal to {meta['min']}")
        if "max" in meta and len(value) > meta["max"]:
            self.fail(value, path, f"{text} less than or equal to {meta['max']}")

    def _range(self, value: float, meta: dict[str, Any], path: str) -> None:
        if "min" in meta and value < meta["min"]:
            self.fail(value, path, f"Member must have value greater than or equal to {meta['min']}")
        if "max" in meta and value > meta["max"]:
            self.fail(value, path, f"Member must have value less than or equal to {meta['max']}")


def validate(operation: str, params: Any) -> None:
    """Raise RequestInvalid with AWS's wording if params do not fit the operation's input shape."""
    model = operation_model(operation)
    if model is None or model.input_shape is None:
        return
    checker = _Checker()
    checker.check(params if params is not None else {}, model.input_shape, "")
    if checker.problems:
        count = len(checker.problems)
        plural = "error" if count == 1 else "errors"
        raise RequestInvalid(f"{count} validation {plural} detected: {'; '.join(checker.problems)}")
