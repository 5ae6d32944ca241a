"""Read a SAM template the way `sam deploy` sees it, and evaluate CloudFormation intrinsics.

The SAM transform is AWS's own (aws-sam-translator), so the local cloud deploys exactly
the CloudFormation that AWS would: there is no second, hand-kept list of resources.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from samtranslator.yaml_helper import intrinsics_multi_constructor

ACCOUNT_ID = "123456789012"
PARTITION = "aws"
NO_VALUE = object()
_PLACEHOLDER_BUCKET = "shepherd-local-artifacts"
_SUB_PATTERN = re.compile(r"\$\{([^}!][^}]*)\}")
_SUB_OR_LITERAL = re.compile(r"\$\{(!?)([^}]*)\}")


def scalar_text(value: Any) -> str:
    """A scalar as CloudFormation reads it: YAML true/false are the strings "true"/"false"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class TemplateError(Exception):
    """A template that cannot be deployed; the message names the file and the logical id."""


@dataclass
class LocalArtifacts:
    """Maps the placeholder S3 URIs handed to the SAM translator back to local paths."""

    by_key: dict[str, Path] = field(default_factory=dict)

    def placeholder(self, path: Path) -> str:
        key = f"artifact-{len(self.by_key)}"
        self.by_key[key] = path
        return f"s3://{_PLACEHOLDER_BUCKET}/{key}"

    def local_path(self, location: Mapping[str, Any]) -> Path | None:
        bucket = location.get("S3Bucket") or location.get("Bucket")
        key = location.get("S3Key") or location.get("Key")
        if bucket != _PLACEHOLDER_BUCKET or not isinstance(key, str):
            return None
        return self.by_key.get(key)


@dataclass
class CloudFormationTemplate:
    path: Path
    body: dict[str, Any]
    parameters: dict[str, str]
    artifacts: LocalArtifacts

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        return dict(self.body.get("Resources", {}))


# SAM properties that name local files, per resource type.
_LOCAL_URI_PROPERTIES = {
    "AWS::Serverless::Function": "CodeUri",
    "AWS::Serverless::LayerVersion": "ContentUri",
    "AWS::Serverless::StateMachine": "DefinitionUri",
}


class _TemplateLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form tags (!Ref, !Sub, …); duplicate keys are errors, as in CloudFormation."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_TemplateLoader.add_multi_constructor("!", intrinsics_multi_constructor)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise TemplateError(f"{path}: template file not found")
    try:
        body = yaml.load(path.read_text(), Loader=_TemplateLoader)  # noqa: S506 # nosec B506 # a SafeLoader subclass
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise TemplateError(f"{path}: template does not parse: {detail}") from exc
    except UnicodeDecodeError as exc:
        raise TemplateError(f"{path}: template is not UTF-8 text: {exc}") from exc
    if not isinstance(body, dict):
        raise TemplateError(f"{path}: a template is a mapping with a Resources section, got {type(body).__name__}")
    return json.loads(json.dumps(body, default=str))


def _swap_local_uris(body: dict[str, Any], path: Path, artifacts: LocalArtifacts) -> None:
    resources = body.get("Resources")
    if not isinstance(resources, dict) or not resources:
        raise TemplateError(f"{path}: template has no Resources section")
    globals_section = body.get("Globals") or {}
    for logical_id, resource in resources.items():
        if not isinstance(resource, dict):
            raise TemplateError(f"{path}: {logical_id} is not a resource mapping")
        prop = _LOCAL_URI_PROPERTIES.get(resource.get("Type", ""))
        if prop is None:
            continue
        properties = resource.setdefault("Properties", {}) or {}
        resource["Properties"] = properties
        section = resource["Type"].split("::")[-1]
        uri = properties.get(prop, (globals_section.get(section) or {}).get(prop))
        if prop == "DefinitionUri" and uri is None and "Definition" in properties:
            continue
        if prop == "CodeUri" and uri is None and "InlineCode" in properties:
            continue
        if isinstance(uri, str) and uri.startswith("s3://"):
            continue
        if not isinstance(uri, str):
            raise TemplateError(f"{logical_id} ({resource['Type']}): {prop} is missing or not a local path")
        local = (path.parent / uri).resolve()
        if not local.exists():
            raise TemplateError(f"{logical_id} ({resource['Type']}): {prop} {uri!r} does not exist ({local})")
        properties[prop] = artifacts.placeholder(local)


class _NoManagedPolicies:
    """The translator asks IAM for AWS managed policies by name; locally, names map to their ARNs."""

    def load(self) -> dict[str, str]:
        return _ManagedPolicyNames()


class _ManagedPolicyNames(dict[str, str]):
    def __missing__(self, name: str) -> str:
        return f"arn:{PARTITION}:iam::aws:policy/{name}"

    def get(self, name: str, default: Any = None) -> Any:
        return self[name]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str)


def load_template(path: Path, overrides: Mapping[str, str], region: str, stack_name: str) -> CloudFormationTemplate:
    """Parse, check parameters and apply the SAM transform. Raises TemplateError."""
    body = _read_yaml(path)
    declared = body.get("Parameters") or {}
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise TemplateError(f"{path}: unknown parameter(s) {', '.join(unknown)}; declared: {', '.join(declared)}")
    parameters: dict[str, str] = {}
    for name, spec in declared.items():
        if name in overrides:
            parameters[name] = overrides[name]
        elif "Default" in spec:
            default = spec["Default"]
            parameters[name] = (
                ",".join(map(scalar_text, default)) if isinstance(default, list) else scalar_text(default)
            )
        else:
            raise TemplateError(f"{path}: parameter {name} has no Default and no value was given (--param {name}=…)")
        allowed = spec.get("AllowedValues")
        if allowed and parameters[name] not in [scalar_text(v) for v in allowed]:
            raise TemplateError(f"{path}: parameter {name}={parameters[name]!r} is not one of {allowed}")
        pattern = spec.get("AllowedPattern")
        if pattern and not re.fullmatch(pattern, parameters[name]):
            raise TemplateError(f"{path}: parameter {name}={parameters[name]!r} does not match {pattern}")

    artifacts = LocalArtifacts()
    _swap_local_uris(body, path, artifacts)
    transforms = body.get("Transform")
    transforms = [transforms] if isinstance(transforms, str) else (transforms or [])
    if any(str(t).startswith("AWS::Serverless") for t in transforms):
        body = _sam_transform(path, body, parameters, region, stack_name)
    return CloudFormationTemplate(path=path, body=body, parameters=parameters, artifacts=artifacts)


def _sam_transform(
    path: Path, body: dict[str, Any], parameters: dict[str, str], region: str, stack_name: str
) -> dict[str, Any]:
    from samtranslator.model.exceptions import InvalidDocumentException
    from samtranslator.translator.transform import transform

    previous = os.environ.get("AWS_DEFAULT_REGION")
    os.environ["AWS_DEFAULT_REGION"] = region
    try:
        values = {**parameters, "AWS::Region": region, "AWS::AccountId": ACCOUNT_ID, "AWS::StackName": stack_name}
        return transform(body, values, _NoManagedPolicies())
    except InvalidDocumentException as exc:
        causes = "; ".join(str(c) for c in exc.causes)
        raise TemplateError(f"{path}: SAM transform failed: {causes}") from exc
    finally:
        if previous is None:
            os.environ.pop("AWS_DEFAULT_REGION", None)
        else:
            os.environ["AWS_DEFAULT_REGION"] = previous


def references(value: Any) -> set[str]:
    """Logical ids a property value refers to through Ref, GetAtt and Sub."""
    found: set[str] = set()
    if isinstance(value, dict):
        if "Ref" in value and isinstance(value["Ref"], str):
            found.add(value["Ref"])
        if "Fn::GetAtt" in value:
            target = value["Fn::GetAtt"]
            found.add(target[0] if isinstance(target, list) else str(target).split(".", 1)[0])
        if "Fn::Sub" in value:
            sub = value["Fn::Sub"]
            text = sub[0] if isinstance(sub, list) else sub
            if isinstance(text, str):
                local_vars = sub[1] if isinstance(sub, list) and len(sub) > 1 else {}
                found.update(
                    m.split(".", 1)[0] for m in _SUB_PATTERN.findall(text) if m.split(".", 1)[0] not in local_vars
                )
        for item in value.values():
            found |= references(item)
    elif isinstance(value, list):
        for item in value:
            found |= references(item)
    return found


@dataclass
class Evaluator:
    """Evaluates intrinsic functions against parameters, conditions and deployed resources."""

    template: CloudFormationTemplate
    region: str
    stack_name: str
    physical_ids: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, dict[str, str]] = field(default_factory=dict)
    _conditions: dict[str, bool] = field(default_factory=dict)

    @property
    def stack_id(self) -> str:
        return f"arn:{PARTITION}:cloudformation:{self.region}:{ACCOUNT_ID}:stack/{self.stack_name}/local"

    def pseudo(self, name: str) -> Any:
        table: dict[str, Any] = {
            "AWS::Region": self.region,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::Partition": PARTITION,
            "AWS::StackName": self.stack_name,
            "AWS::StackId": self.stack_id,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NotificationARNs": [],
            "AWS::NoValue": NO_VALUE,
        }
        if name not in table:
            raise TemplateError(f"unknown pseudo parameter {name}")
        return table[name]

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            conditions = self.template.body.get("Conditions") or {}
            if name not in conditions:
                raise TemplateError(f"{self.template.path}: condition {name} is not defined")
            self._conditions[name] = bool(self.resolve(conditions[name]))
        return self._conditions[name]

    def ref(self, name: str) -> Any:
        if name.startswith("AWS::"):
            return self.pseudo(name)
        if name in self.template.parameters:
            spec = (self.template.body.get("Parameters") or {}).get(name, {})
            value = self.template.parameters[name]
            if str(spec.get("Type", "")).startswith("List<") or spec.get("Type") == "CommaDelimitedList":
                return [v.strip() for v in value.split(",")]
            return value
        if name in self.physical_ids:
            return self.physical_ids[name]
        raise TemplateError(
            f"{self.template.path}: Ref to {name}, which is neither a parameter nor a deployed resource"
        )

    def get_att(self, logical_id: str, attribute: str) -> Any:
        attrs = self.attributes.get(logical_id)
        if attrs is None:
            raise TemplateError(f"{self.template.path}: GetAtt {logical_id}.{attribute}: no such resource deployed")
        if attribute not in attrs:
            raise TemplateError(
                f"{self.template.path}: GetAtt {logical_id}.{attribute}: attribute not available "
                f"locally (have: {', '.join(sorted(attrs))})"
            )
        return attrs[attribute]

    def _sub(self, text: str, local_vars: Mapping[str, Any]) -> str:
        def replace(match: re.Match[str]) -> str:
            literal, name = match.groups()
            if literal:
                return "${" + name + "}"
            if name in local_vars:
                return str(local_vars[name])
            if "." in name and not name.startswith("AWS::"):
                logical_id, attribute = name.split(".", 1)
                return str(self.get_att(logical_id, attribute))
            value = self.ref(name)
            return ",".join(value) if isinstance(value, list) else str(value)

        return _SUB_OR_LITERAL.sub(replace, text)

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [v for v in (self.resolve(item) for item in value) if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::GetAtt":
                logical_id, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.get_att(logical_id, self.resolve(attribute))
            if key == "Fn::Sub":
                if isinstance(arg, list):
                    return self._sub(arg[0], {k: self.resolve(v) for k, v in arg[1].items()})
                return self._sub(arg, {})
            if key == "Fn::Join":
                return str(arg[0]).join(str(v) for v in self.resolve(arg[1]))
            if key == "Fn::If":
                branch = arg[1] if self.condition(arg[0]) else arg[2]
                return self.resolve(branch)
            if key == "Fn::Select":
                return self.resolve(arg[1])[int(self.resolve(arg[0]))]
            if key == "Fn::Split":
                return str(self.resolve(arg[1])).split(arg[0])
            if key == "Fn::FindInMap":
                mappings = self.template.body.get("Mappings") or {}
                top, second, third = (self.resolve(a) for a in arg[:3])
                try:
                    return mappings[top][second][third]
                except KeyError as exc:
                    raise TemplateError(f"{self.template.path}: FindInMap {top}/{second}/{third} not found") from exc
            if key == "Fn::GetAZs":
                return [f"{self.region}{zone}" for zone in "abc"]
            if key == "Fn::Base64":
                return base64.b64encode(str(self.resolve(arg)).encode()).decode()
            if key == "Fn::Equals":
                left, right = (self.resolve(a) for a in arg)
                return scalar_text(left) == scalar_text(right)
            if key == "Fn::And":
                return all(self.resolve(a) for a in arg)
            if key == "Fn::Or":
                return any(self.resolve(a) for a in arg)
            if key == "Fn::Not":
                return not self.resolve(arg[0])
            if key == "Condition":
                return self.condition(arg)
            if key == "Fn::ToJsonString":
                return json.dumps(self.resolve(arg), separators=(",", ":"))
            if key == "Fn::ImportValue":
                raise TemplateError(f"{self.template.path}: Fn::ImportValue is not supported locally")
        resolved = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not NO_VALUE}

    def included(self, resource: Mapping[str, Any]) -> bool:
        name = resource.get("Condition")
        return True if name is None else self.condition(name)


def deployment_order(resources: Mapping[str, Mapping[str, Any]], path: Path) -> list[str]:
    """Resources ordered so that each comes after everything it refers to."""
    graph: dict[str, set[str]] = {}
    for logical_id, resource in resources.items():
        depends = resource.get("DependsOn") or []
        depends = [depends] if isinstance(depends, str) else list(depends)
        graph[logical_id] = (references(copy.deepcopy(resource.get("Properties", {}))) | set(depends)) & set(resources)
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        if state.get(node) == 2:
            return
        if state.get(node) == 1:
            raise TemplateError(f"{path}: circular dependency {' -> '.join([*trail, node])}")
        state[node] = 1
        for dep in sorted(graph[node]):
            visit(dep, [*trail, node])
        state[node] = 2
        order.append(node)

    for node in resources:
        visit(node, [])
    return order
