"""Lint the Step Functions state machines declared in SAM templates, after DefinitionSubstitutions.

Why: ``sam validate`` and cfn-lint check the template, not its ASL; a ``Next`` to nowhere or an unfilled
``${Placeholder}`` otherwise shows up only when CloudFormation rolls back, or at run time. docs/TOOLS.md.
Usage: python tools/lint_statemachines.py [TEMPLATE ...]   (default: template.yaml; exit 1 on any problem)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cfnlint.decode import decode_str
from moto.stepfunctions.parser.asl.parse.asl_parser import ASLParserException
from moto.stepfunctions.parser.asl.static_analyser.express_static_analyser import ExpressStaticAnalyser
from moto.stepfunctions.parser.asl.static_analyser.static_analyser import StaticAnalyser
from statelint.linter import Linter

STATE_MACHINE_TYPES = frozenset({"AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine"})
LOCAL_DEFINITION_PROPERTIES = ("DefinitionUri", "DefinitionS3Location")

PSEUDO_PARAMETERS = {
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "AWS::Region": "us-east-1",
    "AWS::StackName": "shepherd",
    "AWS::URLSuffix": "amazonaws.com",
}
_ARN_FIELDS = {
    "account": PSEUDO_PARAMETERS["AWS::AccountId"],
    "partition": PSEUDO_PARAMETERS["AWS::Partition"],
    "region": PSEUDO_PARAMETERS["AWS::Region"],
}

# What `Ref` ("Ref" key) and `Fn::GetAtt` (attribute keys) return per resource type;
# {id} is the logical id, which stands in for the generated physical name.
_LAMBDA_FUNCTION = {"Ref": "{id}", "Arn": "arn:{partition}:lambda:{region}:{account}:function:{id}"}
_STATE_MACHINE_ARN = "arn:{partition}:states:{region}:{account}:stateMachine:{id}"
_STATE_MACHINE = {"Ref": _STATE_MACHINE_ARN, "Arn": _STATE_MACHINE_ARN, "Name": "{id}"}
_TABLE_ARN = "arn:{partition}:dynamodb:{region}:{account}:table/{id}"
_TABLE = {"Ref": "{id}", "Arn": _TABLE_ARN, "StreamArn": _TABLE_ARN + "/stream/2024-01-01T00:00:00.000"}
_TOPIC_ARN = "arn:{partition}:sns:{region}:{account}:{id}"
_QUEUE_URL = "https://sqs.{region}.amazonaws.com/{account}/{id}"
_GENERIC_ARN = "arn:{partition}:{service}:{region}:{account}:{id}"
_REFERENCES: dict[str, dict[str, str]] = {
    "AWS::Lambda::Function": _LAMBDA_FUNCTION,
    "AWS::Serverless::Function": _LAMBDA_FUNCTION,
    "AWS::StepFunctions::StateMachine": _STATE_MACHINE,
    "AWS::Serverless::StateMachine": _STATE_MACHINE,
    "AWS::DynamoDB::Table": _TABLE,
    "AWS::Serverless::SimpleTable": _TABLE,
    "AWS::SNS::Topic": {"Ref": _TOPIC_ARN, "TopicArn": _TOPIC_ARN, "TopicName": "{id}"},
    "AWS::S3::Bucket": {"Ref": "{id}", "Arn": "arn:{partition}:s3:::{id}"},
    "AWS::SQS::Queue": {
        "Ref": _QUEUE_URL,
        "QueueUrl": _QUEUE_URL,
        "Arn": "arn:{partition}:sqs:{region}:{account}:{id}",
        "QueueName": "{id}",
    },
    "AWS::Events::EventBus": {
        "Ref": "{id}",
        "Name": "{id}",
        "Arn": "arn:{partition}:events:{region}:{account}:event-bus/{id}",
    },
}

_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
_EXPECTED_TOKENS = re.compile(r"expecting \{([^}]*)\}")
_MAX_EXPECTED_TOKENS_SHOWN = 20


class LintError(Exception):
    """An ordinary failure (bad input): reported one line per message, without a traceback."""

    def __init__(self, *messages: str) -> None:
        super().__init__(*messages)
        self.messages = messages


@dataclass(frozen=True)
class Result:
    """The outcome of linting one state machine."""

    location: str  # "<template>:<LogicalId> (<definition>)"
    problems: list[str] = field(default_factory=list)
    state_count: int = 0


class Resolver:
    """Evaluates the intrinsic functions found in DefinitionSubstitutions to stand-in values."""

    def __init__(self, template: Mapping[str, Any]) -> None:
        self._resources = _mapping(template.get("Resources"))
        self._parameters = _mapping(template.get("Parameters"))

    def resolve(self, value: Any) -> str:
        """Evaluate a scalar or an intrinsic function to the string CloudFormation would produce."""
        if isinstance(value, str):
            return value
        if isinstance(value, bool | int | float):
            return json.dumps(value)
        if isinstance(value, Mapping) and len(value) == 1:
            [(function, argument)] = value.items()
            match function, argument:
                case "Ref", str(name):
                    return self.ref(name)
                case "Fn::GetAtt", [str(name), str(attribute)]:
                    return self.get_att(name, attribute)
                case "Fn::GetAtt", str(dotted) if "." in dotted:
                    name, attribute = dotted.split(".", 1)
                    return self.get_att(name, attribute)
                case "Fn::Sub", str(text):
                    return self.sub(text, {})
                case "Fn::Sub", [str(text), Mapping() as variables]:
                    return self.sub(text, variables)
                case "Fn::Join", [str(delimiter), list(items)]:
                    return delimiter.join(self.resolve(item) for item in items)
        raise LintError(f"cannot evaluate {json.dumps(value, default=str)}")

    def resolve_tree(self, value: Any) -> Any:
        """Evaluate every intrinsic function nested in a JSON-like value (an inline Definition)."""
        if isinstance(value, Mapping):
            if len(value) == 1 and _is_intrinsic_function(next(iter(value))):
                return self.resolve(value)
            return {key: self.resolve_tree(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.resolve_tree(item) for item in value]
        return value

    def ref(self, name: str) -> str:
        if name in PSEUDO_PARAMETERS:
            return PSEUDO_PARAMETERS[name]
        if name in self._parameters:
            default = _mapping(self._parameters[name]).get("Default")
            return name if default is None else self.resolve(default)
        if name in self._resources:
            return self._attribute(name, "Ref")
        raise LintError(f"Ref to unknown parameter or resource {name!r}")

    def get_att(self, name: str, attribute: str) -> str:
        if name not in self._resources:
            raise LintError(f"Fn::GetAtt of unknown resource {name!r}")
        return self._attribute(name, attribute)

    def sub(self, text: str, variables: Mapping[str, Any]) -> str:
        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):  # "${!Literal}" is Fn::Sub's escape for a literal "${Literal}"
                return "${" + name[1:] + "}"
            if name in variables:
                return self.resolve(variables[name])
            if "." in name:
                return self.get_att(*name.split(".", 1))
            return self.ref(name)

        return _PLACEHOLDER.sub(replace, text)

    def _attribute(self, logical_id: str, attribute: str) -> str:
        """The stand-in for `Ref` (attribute "Ref") or `Fn::GetAtt` of a resource."""
        resource_type = str(_mapping(self._resources[logical_id]).get("Type", ""))
        known = _REFERENCES.get(resource_type, {})
        if attribute in known:
            return known[attribute].format(id=logical_id, **_ARN_FIELDS)
        if attribute == "Ref":
            return logical_id
        if attribute.endswith("Arn"):
            service = resource_type.split("::")[1].lower() if resource_type.count("::") == 2 else "unknown"
            return _GENERIC_ARN.format(service=service, id=logical_id, **_ARN_FIELDS)
        return f"{logical_id}-{attribute}"


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _is_intrinsic_function(key: str) -> bool:
    return key == "Ref" or key.startswith("Fn::")


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LintError(f"{what} file not found") from None
    except (OSError, UnicodeError) as err:
        raise LintError(f"cannot read {what} file: {err}") from None


def lint_template(template_path: Path) -> list[Result]:
    """Lint every state machine of one template; raises LintError if the template itself is unusable."""
    template, matches = decode_str(_read_text(template_path, "template"))
    if template is None:
        raise LintError(*(f"cannot parse template: line {match.linenumber}: {match.message}" for match in matches))
    if not isinstance(template, Mapping):
        raise LintError("template is not a mapping")
    resolver = Resolver(template)
    return [
        _lint_state_machine(template_path, logical_id, _mapping(resource.get("Properties")), resolver)
        for logical_id, resource in _mapping(template.get("Resources")).items()
        if isinstance(resource, Mapping) and resource.get("Type") in STATE_MACHINE_TYPES
    ]


def _lint_state_machine(
    template_path: Path, logical_id: str, properties: Mapping[str, Any], resolver: Resolver
) -> Result:
    location = f"{template_path}:{logical_id}"
    try:
        source = _definition_source(properties, template_path.parent)
        location += f" ({source})"
        text = _substitute(_definition_text(source, properties, resolver), properties, resolver)
        definition = _parse_json(text)
    except LintError as err:
        return Result(location, list(err.messages))
    express = "EXPRESS" in (properties.get("Type"), properties.get("StateMachineType"))
    problems = [f"statelint: {problem}" for problem in Linter.validate(definition)]
    problems += [f"moto: {problem}" for problem in _moto_problems(text, express=express)]
    return Result(location, problems, len(definition.get("States") or {}))


def _definition_source(properties: Mapping[str, Any], template_dir: Path) -> Path | str:
    """The local file holding the definition, or "inline Definition"."""
    for key in LOCAL_DEFINITION_PROPERTIES:
        if key in properties:
            location = properties[key]
            if isinstance(location, str) and not location.startswith("s3://"):
                return template_dir / location
            raise LintError(f"{key} is not a local file path, so there is nothing to lint")
    if "Definition" in properties:
        return "inline Definition"
    raise LintError(f"no {', '.join(LOCAL_DEFINITION_PROPERTIES)} or Definition property")


def _definition_text(source: Path | str, properties: Mapping[str, Any], resolver: Resolver) -> str:
    if isinstance(source, Path):
        return _read_text(source, "definition")
    return json.dumps(resolver.resolve_tree(properties["Definition"]), indent=2)


def _substitute(text: str, properties: Mapping[str, Any], resolver: Resolver) -> str:
    """Replace each ${Name} in the definition text with its evaluated DefinitionSubstitutions value."""
    substitutions = properties.get("DefinitionSubstitutions") or {}
    if not isinstance(substitutions, Mapping):
        raise LintError("DefinitionSubstitutions is not a mapping")
    values: dict[str, str] = {}
    errors: list[str] = []
    for key, value in substitutions.items():
        try:
            values[key] = resolver.resolve(value)
        except LintError as err:
            errors += [f"DefinitionSubstitutions.{key}: {message}" for message in err.messages]
    unsubstituted = dict.fromkeys(name for name in _PLACEHOLDER.findall(text) if name not in substitutions)
    errors += [f"placeholder ${{{name}}} is not in DefinitionSubstitutions" for name in unsubstituted]
    if errors:
        raise LintError(*errors)
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], text)


def _parse_json(text: str) -> dict[str, Any]:
    try:
        definition = json.loads(text)
    except json.JSONDecodeError as err:
        raise LintError(f"invalid JSON: {err}") from None
    if not isinstance(definition, dict):
        raise LintError("definition is not a JSON object")
    return definition


def _moto_problems(text: str, *, express: bool) -> list[str]:
    """Run the checks moto's CreateStateMachine runs: parse the ASL, then the static analysis."""
    analyser = ExpressStaticAnalyser() if express else StaticAnalyser()
    antlr_console = io.StringIO()  # moto's intrinsic-function parser prints its syntax errors to stderr
    try:
        with contextlib.redirect_stderr(antlr_console):
            analyser.analyse(text)
    except ASLParserException as err:
        errors = list(err.errors)
    except Exception as err:  # moto reports semantic errors with assorted built-in exception types
        errors = [f"{type(err).__name__}: {err}"]
    else:
        errors = []
    console = [f"intrinsic function: {line}" for line in antlr_console.getvalue().splitlines()]
    return [_shorten_expected_tokens(problem) for problem in console + errors]


def _shorten_expected_tokens(message: str) -> str:
    """ANTLR lists every acceptable token after "expecting"; past a handful, that is noise."""

    def replace(match: re.Match[str]) -> str:
        count = len(match.group(1).split(", "))
        return match.group(0) if count <= _MAX_EXPECTED_TOKENS_SHOWN else f"expecting one of {count} tokens"

    return _EXPECTED_TOKENS.sub(replace, message)


def _report(template_path: Path) -> Iterable[tuple[str, bool]]:
    """Yield (line to print, whether it is a problem) for one template."""
    try:
        results = lint_template(template_path)
    except LintError as err:
        yield from ((f"{template_path}: {message}", True) for message in err.messages)
        return
    if not results:
        yield f"{template_path}: no state machines found", False
    for result in results:
        yield from ((f"{result.location}: {problem}", True) for problem in result.problems)
        if not result.problems:
            plural = "" if result.state_count == 1 else "s"
            yield f"{result.location}: OK ({result.state_count} state{plural})", False


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "templates",
        nargs="*",
        type=Path,
        default=[Path("template.yaml")],
        metavar="TEMPLATE",
        help="SAM/CloudFormation template (default: template.yaml)",
    )
    args = parser.parse_args(argv)
    failed = False
    for template_path in args.templates:
        for line, is_problem in _report(template_path):
            print(line)
            failed |= is_problem
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
