"""The generic rule: an action on every resource of its types the request names, with its condition keys, and the
roles it passes (iam:PassRole). The resources are the action's ARN formats filled in from the request's parameters."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from localcloud.iam import Check, ContextValue
from localcloud.iam.actions import BUILTINS, Action, ArnFormat, action_named, arn_variables
from localcloud.iam.context_keys import as_strings, request_context, request_tags
from localcloud.iam.wire import Call


class Lookups(Protocol):
    """What describe() needs of the cloud's state; localcloud.iam.lookups.MotoLookups reads moto's backends."""

    def kms_key_arn(self, key_id: str) -> str | None: ...  # key id, key ARN, alias/name or alias ARN -> key ARN

    def bucket_kms_key(self, bucket: str) -> str | None: ...  # the bucket's default SSE-KMS key ARN, if any

    def object_kms_key(self, bucket: str, key: str) -> str | None: ...  # the object's SSE-KMS key ARN, if any

    def task_token_owner(self, token: str) -> str | None: ...  # the state machine whose execution issued the token


# ------------------------------------------------------------------ request parameters -> ARN format variables

# Per IAM prefix: a format variable and the request parameters that name it, besides the parameter of the variable's
# own name (TableName, EndpointName, TrainingJobName, ModelPackageGroupName, logGroupName, ...). A parameter holding
# an ARN gives the variables the ARN's service formats read from it (stateMachineArn: StateMachineName, TopicArn:
# TopicName), and the ARN itself when it is of the resource type.
_PARAMS: dict[str, dict[str, tuple[str, ...]]] = {
    "s3": {"BucketName": ("Bucket",), "ObjectName": ("Key",)},
    "sns": {"TopicName": ("TopicArn", "TargetArn", "Name")},
    "sqs": {"QueueName": ("QueueUrl", "QueueName")},
    "states": {
        "StateMachineName": ("stateMachineArn",),
        "ExecutionId": ("executionArn",),
        "ActivityName": ("activityArn",),
        "MapRunLabel": ("mapRunArn",),
    },
    "lambda": {"LayerVersion": ("VersionNumber",)},  # FunctionName's qualifier: _lambda_function
    "logs": {"LogGroupName": ("logGroupName", "logGroupIdentifier"), "DestinationName": ("destinationName",)},
    "kms": {"KeyId": ("KeyId", "TargetKeyId", "DestinationKeyId", "SourceKeyId"), "Alias": ("AliasName",)},
    "events": {"RuleName": ("Rule", "Name")},
    "scheduler": {"ScheduleName": ("Name",)},
    "cloudwatch": {"AlarmName": ("AlarmName", "AlarmNames"), "DashboardName": ("DashboardName", "DashboardNames")},
    "ssm": {"ParameterNameWithoutLeadingSlash": ("Name", "Names", "Path")},
    "iam": {
        "RoleNameWithPath": ("RoleName",),
        "UserNameWithPath": ("UserName",),
        "PolicyNameWithPath": ("PolicyArn",),
        "GroupNameWithPath": ("GroupName",),
        "InstanceProfileNameWithPath": ("InstanceProfileName",),
    },
    "sts": {"RoleNameWithPath": ("RoleArn",)},
    "sagemaker": {
        "AutoMLJobJobName": ("AutoMLJobName",),
        "ModelPackageName": ("ModelPackageName", "ModelPackageArn"),
        "DataQualityJobDefinitionName": ("JobDefinitionName",),
        "ModelQualityJobDefinitionName": ("JobDefinitionName",),
    },
    "dynamodb": {"StreamLabel": ("StreamArn",)},
}
# Per operation, where a generic parameter ("name", "Name") names another variable.
_OPERATION_PARAMS: dict[tuple[str, str], dict[str, tuple[str, ...]]] = {
    ("states", "CreateStateMachine"): {"StateMachineName": ("name",)},
    ("states", "CreateActivity"): {"ActivityName": ("name",)},
    ("events", "CreateEventBus"): {"EventBusName": ("Name",)},
    ("scheduler", "CreateScheduleGroup"): {"GroupName": ("Name",)},
    ("scheduler", "DeleteScheduleGroup"): {"GroupName": ("Name",)},
    ("scheduler", "GetScheduleGroup"): {"GroupName": ("Name",)},
    ("lambda", "GetLayerVersionByArn"): {"LayerName": ("Arn",), "LayerVersion": ("Arn",)},
}
# A request parameter of the variable's name that does not name it: Application Auto Scaling's ResourceId
# (endpoint/x/variant/y) is not the scalable target's ARN id, which the service assigns.
_NOT_NAMED_BY_ITSELF = frozenset({("application-autoscaling", "ResourceId")})
_DEFAULTS = {("events", "EventBusName"): "default", ("scheduler", "GroupName"): "default"}


def _lambda_function(value: str, qualifier: str | None) -> dict[str, str]:
    """FunctionName as Lambda accepts it (name, name:qualifier, 123456789012:function:name, or an ARN), with the
    Qualifier parameter: a qualified invocation is authorized on the qualified ARN ("Function resource names",
    lambda/latest/dg/lambda-api-permissions-ref.html: "Lambda makes authorization decisions by comparing the resource
    element in the IAM policy with both the FunctionName and Qualifier passed in API calls")."""
    found: dict[str, str] = {}
    parts = value.split(":")
    if value.startswith("arn:") and len(parts) >= 7:
        found["Region"], found["Account"] = parts[3], parts[4]
        parts = parts[6:]
    elif len(parts) >= 3 and parts[1] == "function":
        found["Account"] = parts[0]
        parts = parts[2:]
    name = ":".join(parts)
    if qualifier and len(parts) == 1:
        name = f"{name}:{qualifier}"
    found["FunctionName"] = name
    return found


def _sqs_queue(value: str) -> dict[str, str]:
    """A queue URL (http://host/123456789012/name) or name."""
    if "://" in value:
        parts = urlsplit(value).path.strip("/").split("/")
        return {"Account": parts[0], "QueueName": parts[-1]} if len(parts) == 2 else {}
    return {"QueueName": value}


@dataclass
class _Values:
    """Format variables with their values and the parameters that told them, and the parameters that are ARNs."""

    values: dict[str, list[str]]
    sources: dict[str, set[str]] = field(default_factory=dict)
    arns: dict[str, str] = field(default_factory=dict)  # ARN -> its parameter

    def add(self, name: str, value: str, source: str) -> None:
        if value and value not in self.values.setdefault(name, []):
            self.values[name].append(value)
        if value:
            self.sources.setdefault(name, set()).add(source)

    def place(self, found: Mapping[str, str], source: str) -> None:
        """Variables read from an ARN or a URL; its region and account replace the request's."""
        for name, value in found.items():
            if name in BUILTINS:
                if value:
                    self.values[name] = [value]
            else:
                self.add(name, value, source)

    def told(self, variables: Iterable[str]) -> set[str]:
        """The parameters that told any of the variables."""
        return {s for v in variables for s in self.sources.get(v, ())}


_ROLE_KEY = re.compile(r"(?:Role|RoleArn|RoleARN|roleArn|role)$")
_ROLE_ARN = re.compile(r"arn:[^:]+:iam::\d{12}:role/.+")
_NO_PASS_ROLE = frozenset({"iam", "sts"})  # their role parameters name a role to act on, not one to pass


def _passed_roles(value: Any, key: str = "") -> Iterator[str]:
    """Role ARNs a request hands to the service (RoleArn, ExecutionRoleArn, roleArn, Role, Targets[].RoleArn, ...)."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _passed_roles(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from _passed_roles(v, key)
    elif isinstance(value, str) and _ROLE_KEY.search(key) and _ROLE_ARN.fullmatch(value):
        yield value


@dataclass
class Request:
    """One request being described: what handlers read, and the checks they add."""

    call: Call
    headers: Mapping[str, str]
    query: str
    region: str
    account: str
    lookups: Lookups
    checks: list[Check] = field(default_factory=list)
    modelled: bool = True

    @property
    def prefix(self) -> str:
        return self.call.service.prefix

    @property
    def params(self) -> dict[str, Any]:
        return self.call.params

    def add(self, action: str, resource: str, context: Mapping[str, ContextValue] | None = None) -> None:
        check = Check(action, resource, dict(context or {}))
        if check not in self.checks:
            self.checks.append(check)

    def approximate(self, action: str) -> None:
        """The action on "*": a resource AWS authorizes that the request does not tell."""
        self.add(action, "*")
        self.modelled = False

    # -- the generic rule: the action on every resource of its types the request names

    def variables(self, action: Action, params: Mapping[str, Any] | None = None) -> _Values:
        params = self.params if params is None else params
        found = _Values({"Partition": ["aws"], "Region": [self.region], "Account": [self.account]})
        operation = self.call.operation
        wanted = {v for _, fmt, _ in action.resources for v in fmt.variables}
        for variable in sorted(wanted):
            names = _OPERATION_PARAMS.get((self.prefix, operation), {}).get(variable) or _PARAMS.get(
                self.prefix, {}
            ).get(variable, ())
            if (self.prefix, variable) not in _NOT_NAMED_BY_ITSELF:
                names = (*names, variable, variable[:1].lower() + variable[1:])
            for name in dict.fromkeys(names):
                for value in as_strings(params.get(name)):
                    self._place(found, variable, name, value, params)
            if not found.values.get(variable) and (self.prefix, variable) in _DEFAULTS:
                found.add(variable, _DEFAULTS[(self.prefix, variable)], "")
        return found

    def _place(self, found: _Values, variable: str, name: str, value: str, params: Mapping[str, Any]) -> None:
        if self.prefix == "lambda" and variable == "FunctionName":
            found.place(_lambda_function(value, params.get("Qualifier")), name)
        elif self.prefix == "sqs" and variable == "QueueName":
            found.place(_sqs_queue(value), name)
        elif self.prefix == "kms" and variable == "KeyId":
            arn = self.key_arn(value)
            if arn:
                found.arns.setdefault(arn, name)
                found.place(dict(arn_variables("kms", arn)), name)
        elif value.startswith("arn:"):
            found.arns.setdefault(value, name)
            read = dict(arn_variables(self.prefix, value))
            if variable in read:
                found.place(read, name)
        elif self.prefix == "ssm" and variable == "ParameterNameWithoutLeadingSlash":
            found.add(variable, value.lstrip("/"), name)
        elif self.prefix == "kms" and variable == "Alias":
            found.add(variable, value.removeprefix("alias/"), name)
        else:
            found.add(variable, value, name)

    def resources(self, action: Action, params: Mapping[str, Any] | None = None) -> tuple[list[tuple[str, str]], bool]:
        """(type, ARN) of the action's resources the request names ("" for "*"); whether it told every required one."""
        if not action.resources:
            return [("", "*")], True
        found = self.variables(action, params)
        built: list[tuple[frozenset[str], list[tuple[str, str]]]] = []
        told: set[str] = set()  # the parameters that named a resource
        missing: list[ArnFormat] = []  # required types the request does not tell
        for rtype, fmt, required in action.resources:
            if not self._applies(rtype, found):
                continue
            direct = [a for a in found.arns if fmt.pattern.fullmatch(a)]
            arns = direct or fmt.render(found.values)
            if arns:
                suffix = _EVALUATED_SUFFIX.get((self.prefix, rtype), "")
                built.append((fmt.variables, [(rtype, a + suffix) for a in arns]))
                told |= {found.arns[a] for a in direct} if direct else found.told(fmt.variables)
            elif required:
                missing.append(fmt)
        # Required types are alternatives when a parameter that named one would name the other (executionArn: a
        # standard execution or an express one); a required type no parameter tells is a resource not known.
        complete = all(found.told(fmt.variables) & told for fmt in missing)
        # A resource named more closely (an index of a table, a rule of a custom bus) stands for the coarser one.
        kept = [arns for vs, arns in built if not any(vs < other for other, _ in built)]
        resources = list(dict.fromkeys(a for arns in kept for a in arns))
        if not complete:
            # A required type the request does not name (ListModelPackages: model-package*) is authorized on the
            # type's ARN with the untold parts wildcarded, so a policy scoped to that type grants it and one scoped
            # elsewhere does not; it stays an approximation (modelled False).
            resources.extend((rtype_of, fmt.wildcard(found.values)) for rtype_of, fmt in [("", m) for m in missing])
        if not resources and not missing:
            # Only optional types, none named (ListModelPackages: model-package): whether AWS then authorizes "*" or
            # the type's ARN is not documented; the type's wildcarded ARN, as an approximation, refuses neither a
            # policy on "*" nor one scoped to the type.
            formats = [fmt for rtype, fmt, _ in action.resources if self._applies(rtype, found)]
            if formats:
                return [("", fmt.wildcard(found.values)) for fmt in formats], False
        return resources or [("", "*")], complete

    def _applies(self, rtype: str, found: _Values) -> bool:
        if self.prefix == "events" and rtype.startswith("rule-on-"):  # a rule of the default bus, or of another
            default = found.values.get("EventBusName", ["default"]) == ["default"]
            return (rtype == "rule-on-default-event-bus") == default
        return True

    def context(self, action: Action, params: Mapping[str, Any] | None = None) -> dict[str, ContextValue]:
        """The request's own condition keys the action supports."""
        params = self.params if params is None else params
        return request_context(
            action, self.prefix, params, headers=self.headers, query=self.query, account=self.account
        )

    def generic(self, name: str, params: Mapping[str, Any] | None = None, *, extras: bool = True) -> None:
        """The action on the resources the request names, with its condition keys; and what it passes along."""
        action = action_named(name)
        if action is None:  # an operation the Service Authorization Reference does not know
            self.approximate(name)
            return
        resources, complete = self.resources(action, params)
        self.modelled &= complete
        context = self.context(action, params)
        for _, resource in resources:
            self.add(name, resource, context)
        if not extras:
            return
        if request_tags(self.params):  # tag on create: the tagging action the created resource's type depends on
            for rtype, resource in resources:
                for dependent in action.dependents(rtype):
                    if "Tag" in dependent.partition(":")[2]:
                        self.add(dependent, resource)
        if self.prefix not in _NO_PASS_ROLE:
            # "To pass a role ... to an AWS service, a user must have permissions to pass the role to the service"
            # (IAM/latest/UserGuide/id_roles_use_passrole.html); iam:PassedToService names the service principal.
            for role in dict.fromkeys(_passed_roles(self.params)):
                self.add("iam:PassRole", role, {"iam:PassedToService": f"{self.prefix}.amazonaws.com"})

    def key_arn(self, key_id: str) -> str | None:
        """A KMS key's ARN from any of its names (None for an alias the cloud does not hold)."""
        arn = self.lookups.kms_key_arn(key_id)
        if arn:
            return arn
        if key_id.startswith("arn:") and ":key/" in key_id:
            return key_id
        if not key_id.startswith(("arn:", "alias/")):
            return f"arn:aws:kms:{self.region}:{self.account}:key/{key_id}"
        return None


# The resource a log-group action is evaluated on: AccessDenied names "arn:aws:logs:<region>:<account>:log-group:
# <name>:log-stream:" for logs:CreateLogGroup and logs:DescribeLogStreams (e.g. "... is not authorized to perform:
# logs:DescribeLogStreams on resource: arn:aws:logs:us-east-1:663944276957:log-group:stonesoupp01ue1.argocd:log-stream:
# with an explicit deny"), which is why policies grant "log-group:<name>:*".
_EVALUATED_SUFFIX = {("logs", "log-group"): ":log-stream:"}
