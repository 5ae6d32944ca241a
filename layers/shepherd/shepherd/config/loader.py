"""Read shepherd.yaml text into a validated ModelConfig, or a ConfigError listing every problem."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

import yaml
from pydantic import ValidationError

from shepherd.config.errors import ConfigError, problems_from
from shepherd.config.models import NAME_PATTERN, ModelConfig

# The C parser when PyYAML was built with libyaml; the same errors and marks either way.
_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MERGE_TAG = "tag:yaml.org,2002:merge"
YAML_TYPES = {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}


class _StrictLoader(_BaseLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[tuple[str, str], yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
                continue
            identity = (key_node.tag, key_node.value)
            if identity in seen:
                first = seen[identity].start_mark
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key_node.value!r} (first at line {first.line + 1})",
                    key_node.start_mark,
                )
            seen[identity] = key_node
        return super().construct_mapping(node, deep=deep)


def model_name_from_source(source: str) -> str | None:
    """The model a config belongs to: the directory holding it (models/<model>/shepherd.yaml)."""
    name = PurePosixPath(source.removeprefix("s3://")).parent.name
    return name if re.fullmatch(NAME_PATTERN, name) else None


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        current = merged.get(key)
        merged[key] = _merge(current, value) if isinstance(value, dict) and isinstance(current, dict) else value
    return merged


def load_config(
    text: str, source: str, *, model: str | None = None, overrides: dict[str, Any] | None = None
) -> ModelConfig:
    """Validate shepherd.yaml text; source names the file in messages and, unless model is given, the model.

    The model's name fills the defaults that depend on it (registry.model_package_group, endpoint.name).
    `overrides` (e.g. a manual rollout's {"rollout": {"shadow": {"enabled": false}}}) are merged into the
    document, section by section, before it is validated.
    """
    document = _parse(text, source)
    if overrides:
        check_overrides(overrides)
        document = _merge(document, overrides)
    model = model or model_name_from_source(source)
    if model is None or not re.fullmatch(NAME_PATTERN, model):
        raise ConfigError(
            source, [f"cannot tell the model's name: expected models/<model>/shepherd.yaml, got {model or source!r}"]
        )
    try:
        return ModelConfig.model_validate(document, context={"model": model})
    except ValidationError as exc:
        raise ConfigError(source, problems_from(exc, ModelConfig)) from None


def check_overrides(overrides: dict[str, Any], source: str = "overrides") -> None:
    """Refuse overrides that no shepherd.yaml can take (unknown keys, wrong values), naming them, not the file.

    Rules across keys need the whole file: they are checked once the overrides are merged into it."""
    paths = [tuple(path) for path in _leaf_paths(overrides)]

    def given(detail: Any) -> bool:
        loc = tuple(detail["loc"])
        if detail["type"] == "config_rules":
            return False
        if detail["type"] == "missing":  # a key the file gives, unless inside a value the override replaces
            return any(loc[: len(path)] == path for path in paths)
        return True

    try:
        ModelConfig.model_validate(overrides, context={"model": "override"})
    except ValidationError as exc:
        problems = problems_from(exc, ModelConfig, keep=given)
        if problems:
            raise ConfigError(source, problems) from None


def _leaf_paths(node: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths: list[tuple[str, ...]] = []
    for key, value in node.items():
        path = (*prefix, str(key))
        paths.extend(_leaf_paths(value, path) if isinstance(value, dict) and value else [path])
    return paths


def _parse(text: str, source: str) -> dict[str, Any]:
    try:
        document = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 # nosec B506 # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        raise ConfigError(source, [_describe_yaml_error(exc)]) from None
    except yaml.YAMLError as exc:
        raise ConfigError(source, [f"not valid YAML: {exc}"]) from None
    if document is None:
        raise ConfigError(source, ["the file is empty (it needs at least framework and entry_point)"])
    if not isinstance(document, dict):
        found = YAML_TYPES.get(type(document), type(document).__name__)
        raise ConfigError(source, [f"the document is {found}, not a mapping of keys such as framework: sklearn"])
    return document


def _describe_yaml_error(exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    problem = exc.problem or exc.context or "not valid YAML"
    context = f" ({exc.context})" if exc.context and exc.problem else ""
    return f"{where}{problem}{context}"
