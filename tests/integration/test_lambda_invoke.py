"""The Lambda Invoke API of the local cloud, as boto3 sees it."""

from __future__ import annotations

import base64
import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytestmark = pytest.mark.integration


def test_request_response_returns_the_handlers_result(cloud):
    response = cloud.client("lambda").invoke(FunctionName="fixture-EchoFunction", Payload=b"{}")
    assert response["StatusCode"] == 200
    assert "FunctionError" not in response
    assert json.loads(response["Payload"].read())["greeting"] == "HELLO FROM THE TEMPLATE"


def test_invoke_by_arn_and_qualifier(cloud):
    arn = "arn:aws:lambda:us-east-1:123456789012:function:fixture-EchoFunction"
    response = cloud.client("lambda").invoke(FunctionName=arn, Qualifier="$LATEST", Payload=b"{}")
    assert json.loads(response["Payload"].read())["function"] == "fixture-EchoFunction"


def test_unhandled_error_comes_back_in_lambdas_shape(cloud):
    response = cloud.client("lambda").invoke(FunctionName="fixture-FailFunction", Payload=b"{}")
    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    body = json.loads(response["Payload"].read())
    assert body["errorType"] == "ModelConfigError"
    assert "instance_count" in body["errorMessage"]
    assert isinstance(body["stackTrace"], list)


def test_timeout_kills_the_worker_and_reports_sandbox_timedout(cloud):
    started = time.monotonic()
    response = cloud.client("lambda").invoke(FunctionName="fixture-SlowFunction", Payload=b"{}")
    elapsed = time.monotonic() - started
    body = json.loads(response["Payload"].read())
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Sandbox.Timedout"
    assert elapsed < 10, "the 1 s Timeout must stop a handler that sleeps 30 s"


def test_log_tail_holds_the_invocations_output(cloud):
    response = cloud.client("lambda").invoke(FunctionName="fixture-EchoFunction", Payload=b"{}", LogType="Tail")
    tail = base64.b64decode(response["LogResult"]).decode()
    assert "echo invoked by fixture-EchoFunction" in tail
    assert "REPORT RequestId" in tail


def test_logs_reach_cloudwatch_logs(cloud):
    cloud.client("lambda").invoke(FunctionName="fixture-EchoFunction", Payload=b"{}")
    logs = cloud.client("logs")
    deadline = time.monotonic() + 10
    messages: list[str] = []
    while time.monotonic() < deadline and not any("echo invoked by" in m for m in messages):
        found = logs.filter_log_events(logGroupName="/aws/lambda/fixture-EchoFunction").get("events", [])
        messages = [e["message"] for e in found]
        time.sleep(0.1)
    assert any("echo invoked by fixture-EchoFunction" in m for m in messages)


def test_dry_run_and_event_invocation_types(cloud):
    client = cloud.client("lambda")
    assert client.invoke(FunctionName="fixture-EchoFunction", InvocationType="DryRun")["StatusCode"] == 204
    assert (
        client.invoke(FunctionName="fixture-EchoFunction", InvocationType="Event", Payload=b"{}")["StatusCode"] == 202
    )


def test_invalid_json_payload_is_refused(cloud):
    with pytest.raises(cloud.client("lambda").exceptions.InvalidRequestContentException):
        cloud.client("lambda").invoke(FunctionName="fixture-EchoFunction", Payload=b"{not json")


def test_unknown_function_is_not_found(cloud):
    client = cloud.client("lambda")
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.invoke(FunctionName="no-such-function", Payload=b"{}")


def test_concurrent_invocations_run_in_more_than_one_warm_worker(cloud, tmp_path):
    client = cloud.client("lambda")
    client.invoke(FunctionName="fixture-EchoFunction", Payload=b"{}")
    pool = cloud.lambdas.resolve("fixture-EchoFunction")
    # Two calls that each wait until both have started: they can only finish met if they ran side by side,
    # however fast or loaded the machine is.
    payload = json.dumps({"mode": "meet", "folder": str(tmp_path), "expected": 2}).encode()
    with ThreadPoolExecutor(max_workers=2) as executor:
        answers = list(
            executor.map(
                lambda _: json.loads(
                    cloud.client("lambda")
                    .invoke(FunctionName="fixture-EchoFunction", Payload=payload)["Payload"]
                    .read()
                ),
                range(2),
            )
        )
    assert [answer["met"] for answer in answers] == [True, True]
    assert answers[0]["pid"] != answers[1]["pid"]
    assert len(pool.worker_pids) >= 2


def test_function_is_listed_by_the_lambda_api(cloud):
    names = [f["FunctionName"] for f in cloud.client("lambda").list_functions()["Functions"]]
    assert "fixture-EchoFunction" in names
