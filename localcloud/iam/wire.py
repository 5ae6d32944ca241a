"""A signed request read off the wire: its signer, its service, and the operation and parameters it names.

The service is the SigV4 credential scope's; the operation and its parameters are read with botocore's service models
in the protocol the request speaks (X-Amz-Target and a JSON body, an Action form, Smithy RPC v2 CBOR, or the HTTP
bindings of rest-json and rest-xml).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl
from xml.etree import ElementTree  # nosec B405 # parses only DTD-free documents (_xml_value)

# ------------------------------------------------------------------ the signature


def signer_of(headers: Mapping[str, str], query: str) -> tuple[str, str] | None:
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
    signer = signer_of(headers, query)
    return signer[0] if signer else None


def signing_service_of(headers: Mapping[str, str], query: str) -> str | None:
    """The signing name of the credential scope: "s3", "states", "monitoring", ..."""
    signer = signer_of(headers, query)
    return signer[1] if signer else None


# ------------------------------------------------------------------ services


@dataclass(frozen=True)
class Service:
    name: str  # botocore's
    protocol: str  # the model's own
    prefix: str  # IAM's
    target: str = ""  # X-Amz-Target prefix (json), or the Smithy service name of an RPC v2 path


# By SigV4 signing name (a test holds these to botocore's metadata). "sagemaker" signs the API and the runtime;
# "dynamodb" the tables and their streams; CloudWatch signs "monitoring" and its IAM prefix is "cloudwatch".
_SERVICES: dict[str, tuple[Service, ...]] = {
    "application-autoscaling": (
        Service("application-autoscaling", "json", "application-autoscaling", "AnyScaleFrontendService"),
    ),
    "dynamodb": (
        Service("dynamodb", "json", "dynamodb", "DynamoDB_20120810"),
        Service("dynamodbstreams", "json", "dynamodb", "DynamoDBStreams_20120810"),
    ),
    "ecr": (Service("ecr", "json", "ecr", "AmazonEC2ContainerRegistry_V20150921"),),
    "events": (Service("events", "json", "events", "AWSEvents"),),
    "iam": (Service("iam", "query", "iam"),),
    "kms": (Service("kms", "json", "kms", "TrentService"),),
    "lambda": (Service("lambda", "rest-json", "lambda"),),
    "logs": (Service("logs", "json", "logs", "Logs_20140328"),),
    "monitoring": (Service("cloudwatch", "smithy-rpc-v2-cbor", "cloudwatch", "GraniteServiceVersion20100801"),),
    "s3": (Service("s3", "rest-xml", "s3"),),
    "sagemaker": (
        Service("sagemaker", "json", "sagemaker", "SageMaker"),
        Service("sagemaker-runtime", "rest-json", "sagemaker"),
    ),
    "scheduler": (Service("scheduler", "rest-json", "scheduler"),),
    "sns": (Service("sns", "query", "sns"),),
    "sqs": (Service("sqs", "json", "sqs", "AmazonSQS"),),
    "ssm": (Service("ssm", "json", "ssm", "AmazonSSM"),),
    "states": (Service("stepfunctions", "json", "states", "AWSStepFunctions"),),
    "sts": (Service("sts", "query", "sts"),),
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
def services_of(signing: str) -> tuple[Service, ...]:
    if signing in _SERVICES:
        return _SERVICES[signing]
    try:  # another botocore service signing with its own name
        metadata = _model(signing).metadata
    except Exception:
        return ()
    return (Service(signing, metadata["protocol"], signing, metadata.get("targetPrefix", "")),)


# ------------------------------------------------------------------ operation and parameters


@dataclass
class Call:
    service: Service
    operation: str
    protocol: str
    params: dict[str, Any]


def unwsgi(path: str) -> str:
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
class Wire:
    """The request as it came: method, decoded path, raw query string, lower-case headers, body."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes


def parse_call(signing: str, wire: Wire) -> Call | None:
    services = services_of(signing)
    method, path, query, headers, body = wire.method, wire.path, wire.query, wire.headers, wire.body
    target = headers.get("x-amz-target")
    if target:  # awsJson 1.0 / 1.1 (CloudWatch's too, with x-amzn-query-mode)
        prefix, _, operation = target.rpartition(".")
        service = next((s for s in services if s.target == prefix), None)
        return Call(service, operation, "json", _json_object(body)) if service else None
    rpc = _RPC_V2.fullmatch(path)
    if rpc and method == "POST":
        service = next((s for s in services if s.target == rpc.group(1)), None)
        return Call(service, rpc.group(2), "smithy-rpc-v2-cbor", _cbor_object(body)) if service else None
    rest = [s for s in services if s.protocol.startswith("rest-")]
    if len(rest) < len(services):  # a service of the query protocol: Action=... in the form or the query string
        pairs = parse_qsl(query, keep_blank_values=True)
        if method == "POST" and headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            pairs += parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        form = dict(pairs)
        if form.get("Action"):
            service = next((s for s in services if s.protocol == "query"), services[0])
            params = _tree((k, v) for k, v in pairs if k not in ("Action", "Version") and not k.startswith("X-Amz-"))
            return Call(service, form["Action"], "query", params)
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


def _match_rest(service: Service, wire: Wire) -> Call | None:
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
    return Call(service, route.operation, service.protocol, params)


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
        root = ElementTree.fromstring(body)  # noqa: S314 # nosec B314 # the document has no DTD (checked above)
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


def protocol_of(path: str, query: str, headers: Mapping[str, str], protocol: str) -> str:
    """The protocol a request speaks by its shape, for a refusal in kind when its operation is unknown."""
    if "x-amz-target" in headers:
        return "json"
    if _RPC_V2.fullmatch(path):
        return "smithy-rpc-v2-cbor"
    if "Action=" in query or headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return "query"
    return protocol
