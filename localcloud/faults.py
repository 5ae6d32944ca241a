"""Fault injection, in the spirit of AWS FIS: rules that make named operations fail, slow down, or lose events.

A rule matches signed API calls by service and operation (answered with the service's own error, in its own wire
protocol, so botocore retries it exactly as it would AWS's), or SageMaker's state-change events (dropped or delayed);
a few named faults are handed to the subsystem that owns them (a Lambda worker's crash, a failed endpoint update).
docs/FAULTS.md says how to use them; ``/_shepherd/faults`` is the HTTP control the CLI uses.
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import json
import logging
import os
import random
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, get_args

from localcloud.iam import Check, Decision
from localcloud.iam.authorizer import Refusal
from localcloud.iam.middleware import cbor_map, refusal_response
from localcloud.iam.requests import Described
from localcloud.iam.wire import Wire, parse_call, signer_of, unwsgi
from localcloud.sagemaker.endpoints import Fleet, FleetFactory, InvocationFailed, InvocationRequest, ModelLoadFailed
from localcloud.sagemaker.model_worker import DISK_FULL_KEY
from localcloud.wsgi import WSGIApp, json_response

log = logging.getLogger("shepherd.local.faults")

FaultKind = Literal[
    "api-error",
    "event-drop",
    "event-delay",
    "lambda-crash",
    "endpoint-update-fails",
    "container-crash-on-load",
    "container-crash-after",
    "container-slow",
    "container-disk-full",
]
KINDS: tuple[FaultKind, ...] = get_args(FaultKind)
# Handed to the subsystem that owns them when added; the registry does not keep them.
HANDED_OFF: frozenset[str] = frozenset({"lambda-crash", "endpoint-update-fails"})
CONTROL_PATH = "/_shepherd/faults"


class FaultRuleInvalid(ValueError):
    """A rule the registry refuses: unknown kind or error, a count below 1, a probability outside [0, 1]."""


@dataclass
class FaultRule:
    """One fault. ``count`` N fires N times, then the rule expires; ``probability`` fires with that chance (seeded);
    ``delay_seconds`` are virtual seconds, on the local cloud's clock (``--time-scale`` shortens them), but for
    container-slow, wall seconds added to each answer (latencies are measured on the wall clock, as ModelLatency)."""

    kind: FaultKind = "api-error"
    service: str = "*"  # botocore's service name: "sagemaker", "s3", "lambda", "stepfunctions", ...
    operation: str = "*"  # the API operation, as botocore's model names it: "DescribeEndpoint", "PutObject"
    error: str | None = "throttle"  # throttle|internal|unavailable|access-denied, or an exact code; None: delay
    status: int | None = None  # the HTTP status of an exact error code (a kind knows its own)
    message: str | None = None
    count: int | None = None
    probability: float | None = None
    seed: int = 0
    delay_seconds: float = 0.0
    principal: str | None = None  # a role ARN or name (glob): only calls signed with that role's sessions
    detail_type: str = "*"  # event faults: "SageMaker Training Job State Change", ...
    resource: str = "*"  # events: the resource's ARN; lambda-crash: the function; endpoint; container: model (globs)
    detail: dict[str, str] = field(default_factory=dict)  # event faults: detail fields that must equal these
    at: str = "before-handler"  # lambda-crash: where the runtime dies
    after_requests: int = 0  # container-crash-after: requests a container answers before it crashes
    id: str = ""
    fired: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise FaultRuleInvalid(f"kind must be one of {KINDS}, not {self.kind!r}")
        if self.count is not None and self.count < 1:
            raise FaultRuleInvalid(f"count must be at least 1, not {self.count}")
        if self.probability is not None and not 0.0 <= self.probability <= 1.0:
            raise FaultRuleInvalid(f"probability must lie in [0, 1], not {self.probability}")
        if self.delay_seconds < 0:
            raise FaultRuleInvalid(f"delay_seconds must be >= 0, not {self.delay_seconds}")
        if self.kind == "api-error" and self.error is None and not self.delay_seconds:
            raise FaultRuleInvalid("an api-error rule needs an error, a delay_seconds, or both")
        if self.kind in ("event-delay", "container-slow") and not self.delay_seconds:
            raise FaultRuleInvalid(f"a {self.kind} rule needs delay_seconds")
        if self.after_requests < 0:
            raise FaultRuleInvalid(f"after_requests must be >= 0, not {self.after_requests}")
        if self.kind in HANDED_OFF and self.resource == "*":
            raise FaultRuleInvalid(f"a {self.kind} rule names its target in resource")
        self.id = self.id or f"fault-{uuid.uuid4().hex[:12]}"
        self._random = random.Random(self.seed)  # noqa: S311 # nosec B311 # reproducible faults, not secrets

    @classmethod
    def of(cls, value: FaultRule | Mapping[str, Any]) -> FaultRule:
        if isinstance(value, FaultRule):
            return value
        known = {f.name for f in fields(cls)} - {"id", "fired"}
        unknown = set(value) - known
        if unknown:
            raise FaultRuleInvalid(f"unknown rule fields {sorted(unknown)}; a rule has {sorted(known)}")
        return cls(**value)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}

    def _draw(self) -> bool:
        """Whether this match fires (called with the registry's lock held)."""
        return self.probability is None or self._random.random() < self.probability


class FaultRegistry:
    """The cloud's fault rules: the API tests use (``cloud.faults``), and what the request path and events ask."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._owners: dict[str, Callable[[FaultRule], None]] = {}

    def hand_off(self, kind: str, arm: Callable[[FaultRule], None]) -> None:
        """The subsystem that arms a named fault (lambda-crash, endpoint-update-fails) of its own."""
        self._owners[kind] = arm

    def add(self, rule: FaultRule | Mapping[str, Any]) -> str:
        added = FaultRule.of(rule)
        if added.kind in HANDED_OFF:
            arm = self._owners.get(added.kind)
            if arm is None:
                raise FaultRuleInvalid(f"no subsystem arms {added.kind} faults here")
            arm(added)
            log.info("armed %s on %s", added.kind, added.resource)
            return added.id
        with self._lock:
            self._rules.append(added)
        return added.id

    def remove(self, rule_id: str) -> bool:
        with self._lock:
            kept = [r for r in self._rules if r.id != rule_id]
            removed = len(kept) < len(self._rules)
            self._rules = kept
        return removed

    def clear(self) -> None:
        with self._lock:
            self._rules = []

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.to_json() for r in self._rules]

    def has(self, *kinds: str) -> bool:
        return any(r.kind in kinds for r in self._rules)  # a racy read is fine: a fast path only

    def for_call(self, service: str, operation: str, role_arn: str | None) -> FaultRule | None:
        """The first api-error rule that fires for this call, its count spent (None: the call goes through)."""
        return self._fire(
            lambda r: (
                r.kind == "api-error"
                and _glob(r.service, service)
                and _glob(r.operation, operation)
                and _principal_matches(r.principal, role_arn)
            )
        )

    def for_event(self, detail_type: str, resource_arn: str, detail: Mapping[str, Any]) -> FaultRule | None:
        """The first event-drop or event-delay rule that fires for this SageMaker event."""
        return self._fire(
            lambda r: (
                r.kind in ("event-drop", "event-delay")
                and _glob(r.detail_type, detail_type)
                and _glob(r.resource, resource_arn)
                and all(str(detail.get(k)) == v for k, v in r.detail.items())
            )
        )

    def for_container(self, kind: str, model_name: str, served: int = 0) -> FaultRule | None:
        """The first container rule of ``kind`` that fires for a container of this model that has answered
        ``served`` requests."""
        return self._fire(
            lambda r: (
                r.kind == kind
                and _glob(r.resource, model_name)
                and (kind != "container-crash-after" or served >= r.after_requests)
            )
        )

    def _fire(self, matches: Callable[[FaultRule], bool]) -> FaultRule | None:
        with self._lock:
            for rule in self._rules:
                if not matches(rule) or not rule._draw():
                    continue
                rule.fired += 1
                if rule.count is not None and rule.fired >= rule.count:
                    self._rules.remove(rule)  # expired
                return rule
        return None


def _glob(pattern: str, value: str) -> bool:
    return pattern == "*" or fnmatch.fnmatchcase(value, pattern)


def _principal_matches(pattern: str | None, role_arn: str | None) -> bool:
    if pattern is None:
        return True
    if role_arn is None:
        return False
    return _glob(pattern, role_arn) or _glob(pattern, role_arn.rsplit("/", 1)[-1])


# ------------------------------------------------------------------ errors in the service's own protocol

# The code and status each service answers for a kind: the services' "Common Errors" pages
# (e.g. sagemaker/latest/APIReference/CommonErrors.html, STS's and IAM's alike), S3's error code list
# (AmazonS3/latest/API/ErrorResponses.html: SlowDown 503, InternalError 500), DynamoDB's "Error handling"
# (ThrottlingException, InternalServerError), Lambda's Invoke errors (TooManyRequestsException 429,
# ServiceException 500), and the error shapes in botocore's service models (SNS Throttled 429, SQS RequestThrottled).
_DEFAULT_CODES = {
    "throttle": ("ThrottlingException", 400),
    "internal": ("InternalFailure", 500),
    "unavailable": ("ServiceUnavailable", 503),
}
_QUERY_CODES = {"throttle": ("Throttling", 400)}
_SERVICE_CODES: dict[str, dict[str, tuple[str, int]]] = {
    "s3": {"throttle": ("SlowDown", 503), "internal": ("InternalError", 500)},
    "dynamodb": {"internal": ("InternalServerError", 500)},
    "lambda": {"throttle": ("TooManyRequestsException", 429), "internal": ("ServiceException", 500)},
    "sns": {"throttle": ("Throttled", 429), "internal": ("InternalError", 500)},
    "sqs": {"throttle": ("RequestThrottled", 400)},
    "cloudwatch": {"throttle": ("Throttling", 400)},
}
_QUERY_COMPATIBLE = frozenset({"cloudwatch", "sqs"})


def error_code(service: str, protocol: str, error: str, status: int | None = None) -> tuple[str, int]:
    """(code, HTTP status) of an error kind on this service, or of an exact code (status 400 unless given)."""
    if error in _DEFAULT_CODES:
        own = _SERVICE_CODES.get(service, {}).get(error)
        if own is None and protocol == "query":
            own = _QUERY_CODES.get(error)
        return own or _DEFAULT_CODES[error]
    return error, status or 400


def error_response(
    service: str, operation: str, protocol: str, rule: FaultRule
) -> tuple[str, list[tuple[str, str]], bytes]:
    """Status line, headers and body of the rule's error, as the service's protocol carries errors."""
    assert rule.error is not None
    if rule.error == "access-denied":
        message = rule.message or f"Injected fault {rule.id}: access to {operation} denied"
        refusal = Refusal(Check(f"{service}:{operation}", "*"), Decision(False, "explicit-deny"), message)
        return refusal_response(Described(service, operation, protocol, ()), refusal)
    code, status = error_code(service, protocol, rule.error, rule.status)
    message = rule.message or f"Injected fault {rule.id}: {code}"
    request_id = str(uuid.uuid4())
    line = f"{status} {_REASONS.get(status, 'Error')}"
    sender = "Sender" if status < 500 else "Receiver"
    if protocol == "json":
        headers = [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-ErrorType", code)]
        if service in _QUERY_COMPATIBLE:
            headers.append(("x-amzn-query-error", f"{code};{sender}"))
        body = json.dumps({"__type": code, "message": message}).encode()
        return line, [*headers, ("x-amzn-RequestId", request_id)], body
    if protocol == "rest-json":
        body = json.dumps({"Type": "User" if status < 500 else "Service", "message": message}).encode()
        return (
            line,
            [("Content-Type", "application/json"), ("x-amzn-ErrorType", code), ("x-amzn-RequestId", request_id)],
            body,
        )
    if protocol == "smithy-rpc-v2-cbor":
        headers = [("Content-Type", "application/cbor"), ("smithy-protocol", "rpc-v2-cbor")]
        if service in _QUERY_COMPATIBLE:
            headers.append(("x-amzn-query-error", f"{code};{sender}"))
        return line, [*headers, ("x-amzn-RequestId", request_id)], cbor_map({"__type": code, "message": message})
    escaped = message.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if protocol == "rest-xml":
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{escaped}</Message><RequestId>{request_id}</RequestId>"
            "<HostId>local</HostId></Error>"
        ).encode()
        return line, [("Content-Type", "application/xml"), ("x-amz-request-id", request_id)], body
    body = (
        f"<ErrorResponse><Error><Type>{sender}</Type><Code>{code}</Code><Message>{escaped}</Message></Error>"
        f"<RequestId>{request_id}</RequestId></ErrorResponse>"
    ).encode()
    return line, [("Content-Type", "text/xml"), ("x-amzn-RequestId", request_id)], body


_REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


# ------------------------------------------------------------------ the request path


def _headers(environ: Mapping[str, Any]) -> dict[str, str]:
    headers = {k[5:].replace("_", "-").lower(): str(v) for k, v in environ.items() if k.startswith("HTTP_")}
    if environ.get("CONTENT_TYPE"):
        headers["content-type"] = str(environ["CONTENT_TYPE"])
    return headers


def _form_body(environ: dict[str, Any], headers: Mapping[str, str]) -> bytes:
    """A query-protocol form (its Action names the operation), put back for the service; other bodies stay unread."""
    if environ.get("REQUEST_METHOD") != "POST" or not headers.get("content-type", "").startswith(
        "application/x-www-form-urlencoded"
    ):
        return b""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


class FaultMiddleware:
    """Applies api-error rules to every signed AWS call, whoever signs it (users, functions, state machines, jobs).

    ``role_of`` tells the role a key's session belongs to (None for the cloud's own keys); ``sleep`` waits virtual
    seconds (the cloud's clock).
    """

    def __init__(
        self,
        app: WSGIApp,
        faults: FaultRegistry,
        role_of: Callable[[str], str | None],
        sleep: Callable[[float], object],
    ) -> None:
        self.app = app
        self.faults = faults
        self.role_of = role_of
        self.sleep = sleep

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not self.faults.has("api-error"):
            return self.app(environ, start_response)
        headers = _headers(environ)
        query = environ.get("QUERY_STRING", "")
        signer = signer_of(headers, query)
        if signer is None:  # not an AWS API call (Shepherd's own routes, unsigned S3 form posts)
            return self.app(environ, start_response)
        key, signing = signer
        method = environ.get("REQUEST_METHOD", "GET")
        wire = Wire(method, unwsgi(environ.get("PATH_INFO", "")), query, headers, _form_body(environ, headers))
        try:
            call = parse_call(signing, wire)
        except Exception:  # a request the service will refuse as malformed: no fault to add
            call = None
        if call is None:
            return self.app(environ, start_response)
        rule = self.faults.for_call(call.service.name, call.operation, self.role_of(key))
        if rule is None:
            return self.app(environ, start_response)
        log.info("fault %s on %s:%s", rule.id, call.service.name, call.operation)
        if rule.delay_seconds:
            self.sleep(rule.delay_seconds)
        if rule.error is None:
            return self.app(environ, start_response)
        status, response_headers, body = error_response(call.service.name, call.operation, call.protocol, rule)
        if method == "HEAD":
            body = b""
        start_response(status, [*response_headers, ("Content-Length", str(len(body)))])
        return [body]


# ------------------------------------------------------------------ model containers


class FaultyFleets:
    """The local SageMaker's fleet factory, its fleets wrapped so container rules apply to them (server wiring); a
    fleet made while a container-disk-full rule matches its model runs workers whose disk is full."""

    def __init__(self, factory: FleetFactory, faults: FaultRegistry) -> None:
        self.factory = factory
        self.faults = faults

    def __call__(
        self, model: dict[str, Any], variant: dict[str, Any], count: int, endpoint: str, *, shadow: bool = False
    ) -> Fleet:
        name = str(model.get("ModelName", ""))
        if self.faults.for_container("container-disk-full", name) is not None:
            model = model | {DISK_FULL_KEY: True}  # its workers find their disk full (model_worker._fill_disk)
        inner = self.factory(model, variant, count, endpoint, shadow=shadow)
        return _FaultyFleet(inner, self.faults, name)


class _FaultyFleet:
    """A variant's fleet that crashes on load, crashes after N answers, or answers late, as container rules say."""

    def __init__(self, inner: Fleet, faults: FaultRegistry, model_name: str) -> None:
        self.inner = inner
        self.faults = faults
        self.model_name = model_name
        self._served = 0
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:  # pids, warm_instances, ... of the fleet it wraps
        return getattr(self.inner, name)

    def start(self) -> None:
        rule = self.faults.for_container("container-crash-on-load", self.model_name)
        if rule is not None:
            raise ModelLoadFailed(f"Injected fault {rule.id}: the model container exited while loading the model.")
        self.inner.start()

    def invoke(self, request: InvocationRequest) -> tuple[bytes, str]:
        with self._lock:
            served, self._served = self._served, self._served + 1
        crash = self.faults.for_container("container-crash-after", self.model_name, served)
        if crash is not None:
            with self._lock:
                self._served = 0  # the restarted container serves afresh
            self._crash()
            raise InvocationFailed(500, f"Injected fault {crash.id}: the model container exited while serving.")
        slow = self.faults.for_container("container-slow", self.model_name)
        if slow is not None:
            time.sleep(slow.delay_seconds)
        return self.inner.invoke(request)

    def _crash(self) -> None:
        crash = getattr(self.inner, "crash", None)
        if crash is not None:  # a real-time fleet restarts the instance before it serves again
            with contextlib.suppress(ModelLoadFailed):
                crash()
            return
        for pid in getattr(self.inner, "pids", []):  # others restart a dead worker on a later request
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def resize(self, count: int) -> None:
        self.inner.resize(count)

    def stop(self) -> None:
        self.inner.stop()


# ------------------------------------------------------------------ the HTTP control (/_shepherd/faults)


def control(
    faults: FaultRegistry, environ: dict[str, Any], start_response: Callable[..., Any], from_principal: bool
) -> Iterable[bytes]:
    """GET lists the rules, POST adds one (a JSON rule), DELETE clears them all or, at /<id>, one.

    ``from_principal``: the request is signed with a role session's keys (a function, a state machine, a job);
    those are refused, so code running as a role cannot change the faults through its SDK by accident."""
    if from_principal:
        return json_response(
            start_response, "403 Forbidden", {"message": "the fault control does not answer the cloud's role sessions"}
        )
    path = environ.get("PATH_INFO", "")
    method = environ.get("REQUEST_METHOD")
    rule_id = path[len(CONTROL_PATH) + 1 :] if path.startswith(CONTROL_PATH + "/") else ""
    if method == "GET" and not rule_id:
        return json_response(start_response, "200 OK", {"rules": faults.list()})
    if method == "POST" and not rule_id:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        try:
            value = json.loads(environ["wsgi.input"].read(length) if length else b"{}")
            if not isinstance(value, dict):
                raise FaultRuleInvalid("a rule is a JSON object")
            added = faults.add(value)
        except (ValueError, TypeError) as exc:
            return json_response(start_response, "400 Bad Request", {"message": str(exc)})
        return json_response(start_response, "201 Created", {"id": added})
    if method == "DELETE" and not rule_id:
        faults.clear()
        return json_response(start_response, "200 OK", {"cleared": True})
    if method == "DELETE":
        if faults.remove(rule_id):
            return json_response(start_response, "200 OK", {"removed": rule_id})
        return json_response(start_response, "404 Not Found", {"message": f"no fault rule {rule_id!r}"})
    return json_response(start_response, "405 Method Not Allowed", {"message": f"{method} {path} is not a route"})
