"""The fault registry: which calls and events a rule matches, how count and probability spend it, its errors' shapes."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace
from typing import Any

import botocore.session
import pytest
from botocore.awsrequest import HeadersDict
from botocore.model import ServiceModel
from botocore.parsers import create_parser

from localcloud.clock import VirtualClock
from localcloud.faults import (
    FaultRegistry,
    FaultRule,
    FaultRuleInvalid,
    FaultyFleets,
    control,
    error_code,
    error_response,
)
from localcloud.sagemaker.control_plane import ControlPlane
from localcloud.sagemaker.endpoints import InvocationFailed, InvocationRequest, ModelLoadFailed

ROLE = "arn:aws:iam::123456789012:role/fixture-StepsRole"
TRAINING = "SageMaker Training Job State Change"
JOB_ARN = "arn:aws:sagemaker:us-east-1:123456789012:training-job/churn-1"


def test_a_rule_matches_its_service_and_operation_only() -> None:
    faults = FaultRegistry()
    faults.add({"service": "sagemaker", "operation": "DescribeEndpoint"})

    assert faults.for_call("sagemaker", "DescribeTrainingJob", None) is None
    assert faults.for_call("s3", "DescribeEndpoint", None) is None
    assert faults.for_call("sagemaker", "DescribeEndpoint", None) is not None


def test_operation_globs_match_a_family() -> None:
    faults = FaultRegistry()
    faults.add({"service": "sagemaker", "operation": "Describe*"})

    assert faults.for_call("sagemaker", "DescribeEndpoint", None) is not None
    assert faults.for_call("sagemaker", "CreateEndpoint", None) is None


def test_a_counted_rule_fires_count_times_then_expires() -> None:
    faults = FaultRegistry()
    faults.add({"service": "s3", "operation": "PutObject", "count": 2})

    fired = [faults.for_call("s3", "PutObject", None) is not None for _ in range(4)]

    assert fired == [True, True, False, False]
    assert faults.list() == []


def test_a_probability_rule_fires_by_its_seeded_draws() -> None:
    def draws(seed: int) -> list[bool]:
        faults = FaultRegistry()
        faults.add({"service": "s3", "probability": 0.3, "seed": seed})
        return [faults.for_call("s3", "GetObject", None) is not None for _ in range(400)]

    first = draws(7)

    assert first == draws(7)  # reproducible
    assert 80 <= sum(first) <= 160  # ~120 of 400 at p = 0.3 (binomial sd ~9)


def test_probability_and_count_together_stop_after_count_firings() -> None:
    faults = FaultRegistry()
    faults.add({"service": "s3", "probability": 0.5, "seed": 1, "count": 3})

    fired = sum(faults.for_call("s3", "GetObject", None) is not None for _ in range(100))

    assert fired == 3


def test_a_principal_filter_matches_that_roles_sessions_by_arn_or_name() -> None:
    faults = FaultRegistry()
    faults.add({"service": "*", "principal": "fixture-StepsRole"})

    assert faults.for_call("lambda", "Invoke", None) is None  # the cloud's own keys, a user's CLI
    assert faults.for_call("lambda", "Invoke", "arn:aws:iam::123456789012:role/other") is None
    assert faults.for_call("lambda", "Invoke", ROLE) is not None


def test_the_first_matching_rule_wins_and_only_it_is_spent() -> None:
    faults = FaultRegistry()
    first = faults.add({"service": "s3", "count": 1, "error": "internal"})
    faults.add({"service": "s3", "count": 1, "error": "throttle"})

    rule = faults.for_call("s3", "GetObject", None)

    assert rule is not None
    assert rule.id == first
    assert [r["error"] for r in faults.list()] == ["throttle"]


def test_remove_and_clear() -> None:
    faults = FaultRegistry()
    kept = faults.add({"service": "s3"})
    gone = faults.add({"service": "sns"})

    assert faults.remove(gone)
    assert not faults.remove(gone)
    assert [r["id"] for r in faults.list()] == [kept]
    faults.clear()
    assert faults.list() == []


def test_event_rules_match_detail_type_resource_and_detail_fields() -> None:
    faults = FaultRegistry()
    faults.add({"kind": "event-drop", "detail_type": TRAINING, "detail": {"TrainingJobStatus": "Completed"}})

    assert faults.for_event(TRAINING, JOB_ARN, {"TrainingJobStatus": "InProgress"}) is None
    assert faults.for_event("SageMaker Endpoint State Change", JOB_ARN, {"TrainingJobStatus": "Completed"}) is None
    assert faults.for_event(TRAINING, JOB_ARN, {"TrainingJobStatus": "Completed"}) is not None
    assert faults.for_call("sagemaker", "DescribeTrainingJob", None) is None  # event rules never fail calls


@pytest.mark.parametrize(
    "rule",
    [
        {"kind": "meteor"},
        {"count": 0},
        {"probability": 1.5},
        {"delay_seconds": -1},
        {"error": None},
        {"kind": "event-delay"},
        {"kind": "lambda-crash"},
        {"flavour": "spicy"},
    ],
)
def test_a_malformed_rule_is_refused(rule: dict[str, Any]) -> None:
    with pytest.raises(FaultRuleInvalid):
        FaultRegistry().add(rule)


def test_a_handed_off_fault_goes_to_its_owner_and_is_not_kept() -> None:
    armed: list[FaultRule] = []
    faults = FaultRegistry()
    faults.hand_off("lambda-crash", armed.append)

    faults.add({"kind": "lambda-crash", "resource": "fixture-EchoFunction", "count": 2})

    assert [(r.resource, r.count) for r in armed] == [("fixture-EchoFunction", 2)]
    assert faults.list() == []
    with pytest.raises(FaultRuleInvalid, match="no subsystem"):
        faults.add({"kind": "endpoint-update-fails", "resource": "churn"})


@pytest.mark.parametrize(
    ("service", "protocol", "kind", "expected"),
    [
        ("sagemaker", "json", "throttle", ("ThrottlingException", 400)),
        ("s3", "rest-xml", "throttle", ("SlowDown", 503)),
        ("lambda", "rest-json", "throttle", ("TooManyRequestsException", 429)),
        ("sts", "query", "throttle", ("Throttling", 400)),
        ("sns", "query", "throttle", ("Throttled", 429)),
        ("dynamodb", "json", "internal", ("InternalServerError", 500)),
        ("stepfunctions", "json", "unavailable", ("ServiceUnavailable", 503)),
        ("sagemaker", "json", "ValidationException", ("ValidationException", 400)),
    ],
)
def test_an_error_kind_becomes_the_services_own_code(
    service: str, protocol: str, kind: str, expected: tuple[str, int]
) -> None:
    assert error_code(service, protocol, kind) == expected


def _parsed(service: str, operation: str, rule: FaultRule) -> dict[str, Any]:
    """The error as botocore's own parser reads it off the wire (what a client's retry logic sees)."""
    model = ServiceModel(botocore.session.get_session().get_service_data(service), service)
    status, headers, body = error_response(service, operation, model.metadata["protocol"], rule)
    response = {"status_code": int(status.split()[0]), "headers": HeadersDict(headers), "body": body}
    return create_parser(model.metadata["protocol"]).parse(response, model.operation_model(operation).output_shape)


@pytest.mark.parametrize(
    ("service", "operation", "error", "code"),
    [
        ("sagemaker", "DescribeEndpoint", "throttle", "ThrottlingException"),
        ("s3", "PutObject", "access-denied", "AccessDenied"),
        ("s3", "GetObject", "throttle", "SlowDown"),
        ("lambda", "Invoke", "throttle", "TooManyRequestsException"),
        ("sns", "Publish", "throttle", "Throttled"),
        ("sts", "GetCallerIdentity", "internal", "InternalFailure"),
        ("cloudwatch", "PutMetricData", "throttle", "Throttling"),
        ("stepfunctions", "StartExecution", "access-denied", "AccessDeniedException"),
    ],
)
def test_botocore_reads_the_injected_error_in_each_protocol(
    service: str, operation: str, error: str, code: str
) -> None:
    parsed = _parsed(service, operation, FaultRule(service=service, error=error))

    assert parsed["Error"]["Code"] == code
    assert "Injected fault" in parsed["Error"]["Message"] or error == "access-denied"


def _control(faults: FaultRegistry, method: str, path: str = "/_shepherd/faults", body: Any = None, signed=False):
    import io

    data = json.dumps(body).encode() if body is not None else b""
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "CONTENT_LENGTH": str(len(data)),
        "wsgi.input": io.BytesIO(data),
    }
    answer: dict[str, Any] = {}
    chunks = control(faults, environ, lambda status, headers: answer.update(status=status), signed)
    return answer["status"], json.loads(b"".join(chunks))


def test_the_http_control_adds_lists_removes_and_refuses_role_sessions() -> None:
    faults = FaultRegistry()

    status, added = _control(faults, "POST", body={"service": "s3", "count": 1})
    assert status.startswith("201")
    assert [r["id"] for r in _control(faults, "GET")[1]["rules"]] == [added["id"]]
    assert _control(faults, "POST", body={"count": -1})[0].startswith("400")
    assert _control(faults, "GET", signed=True)[0].startswith("403")
    assert _control(faults, "DELETE", f"/_shepherd/faults/{added['id']}")[0].startswith("200")
    assert _control(faults, "DELETE", f"/_shepherd/faults/{added['id']}")[0].startswith("404")


class _Events:
    """An EventBridge client that records what it is given."""

    def __init__(self) -> None:
        self.put: list[str] = []

    def put_events(self, Entries: list[dict[str, Any]]) -> None:
        self.put += [json.loads(e["Detail"])["TrainingJobStatus"] for e in Entries]


def test_the_control_plane_drops_and_delays_events_as_its_rules_say() -> None:
    # Given a control plane whose clock runs 3600x, with the InProgress event dropped and Failed delayed an hour
    events = _Events()
    services = SimpleNamespace(clock=VirtualClock(3600.0), client=lambda service: events)
    plane = ControlPlane(services, metrics=None, scalable_variants=lambda endpoint: set())  # type: ignore[arg-type]
    plane.faults.add({"kind": "event-drop", "detail": {"TrainingJobStatus": "InProgress"}})
    plane.faults.add({"kind": "event-delay", "delay_seconds": 3600, "detail": {"TrainingJobStatus": "Failed"}})

    # When three state changes are emitted in order
    for status in ("InProgress", "Failed", "Stopped"):
        plane.emit(TRAINING, JOB_ARN, {"TrainingJobStatus": status})

    # Then the dropped one never goes out, and the delayed one goes out after the one emitted after it
    deadline = time.monotonic() + 10
    while len(events.put) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    plane._events.put(None)
    plane._event_thread.join(timeout=5)
    assert events.put == ["Stopped", "Failed"]


class _Fleet:
    """A variant's fleet that answers "ok" and counts what it was asked to do."""

    def __init__(self, *_args: Any, **_kwargs: Any) -> None:
        self.started = 0
        self.pids: list[int] = []

    def start(self) -> None:
        self.started += 1

    def invoke(self, request: InvocationRequest) -> tuple[bytes, str]:
        return b"ok", "text/plain"

    def resize(self, count: int) -> None: ...
    def stop(self) -> None: ...


def _fleet(faults: FaultRegistry, model: str = "churn-v2") -> Any:
    return FaultyFleets(_Fleet, faults)({"ModelName": model}, {"VariantName": "v"}, 1, "churn")


REQUEST = InvocationRequest(b"1,2", "text/csv", "application/json")


def test_a_container_crashes_on_load_only_for_its_model_and_count() -> None:
    faults = FaultRegistry()
    faults.add({"kind": "container-crash-on-load", "resource": "churn-v2", "count": 1})

    _fleet(faults, "churn-v1").start()
    with pytest.raises(ModelLoadFailed, match="exited while loading"):
        _fleet(faults).start()
    _fleet(faults).start()  # the rule expired


def test_a_container_crashes_after_n_answers_and_serves_again_once_restarted() -> None:
    faults = FaultRegistry()
    faults.add({"kind": "container-crash-after", "resource": "churn-*", "after_requests": 2, "count": 1})
    fleet = _fleet(faults)

    answers = []
    for _ in range(4):
        try:
            answers.append(fleet.invoke(REQUEST)[0])
        except InvocationFailed as exc:
            answers.append(exc.status)

    assert answers == [b"ok", b"ok", 500, b"ok"]


def test_a_slow_container_answers_late_by_its_delay() -> None:
    faults = FaultRegistry()
    faults.add({"kind": "container-slow", "resource": "churn-v2", "delay_seconds": 0.2, "count": 1})
    fleet = _fleet(faults)

    started = time.perf_counter()
    assert fleet.invoke(REQUEST)[0] == b"ok"

    assert time.perf_counter() - started >= 0.2  # a lower bound only: never flaky under load
    assert faults.list() == []
