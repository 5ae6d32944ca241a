"""An upload reaches a state machine through an EventBridge rule, and its Lambda tasks run our handlers."""

from __future__ import annotations

import json
import uuid

import pytest

from localcloud.server import LocalCloud

from .conftest import finished_execution, wait_for

pytestmark = pytest.mark.integration


def _upload_and_wait(cloud: LocalCloud, outputs: dict[str, str], key: str) -> dict:
    sfn = cloud.client("stepfunctions")
    before = {e["executionArn"] for e in sfn.list_executions(stateMachineArn=outputs["PipelineArn"])["executions"]}
    cloud.client("s3").put_object(Bucket=outputs["BucketName"], Key=key, Body=b"a,b\n1,2\n")

    def started() -> list[str]:
        listed = sfn.list_executions(stateMachineArn=outputs["PipelineArn"])["executions"]
        return [e["executionArn"] for e in listed if e["executionArn"] not in before]

    (arn,) = wait_for(started)
    return finished_execution(cloud, arn)


def test_upload_starts_execution_whose_lambda_task_sees_its_function_environment(cloud, outputs):
    # Given the fixture app deployed with Greeting overridden
    key = f"incoming/{uuid.uuid4().hex}.csv"
    # When a file lands under the rule's prefix
    execution = _upload_and_wait(cloud, outputs, key)
    # Then the execution succeeds with the handler's answer, built from its own environment and layer
    assert execution["status"] == "SUCCEEDED", execution
    echo = json.loads(execution["output"])["result"]["echo"]
    assert echo == {
        "greeting": "HELLO FROM THE TEMPLATE",
        "mode": "testing",
        "function": "fixture-EchoFunction",
        "key": key,
    }


def test_execution_input_is_the_s3_event_in_awss_shape(cloud, outputs):
    key = f"incoming/{uuid.uuid4().hex}.csv"
    execution = _upload_and_wait(cloud, outputs, key)
    event = json.loads(execution["input"])
    assert event["source"] == "aws.s3"
    assert event["detail-type"] == "Object Created"
    assert event["resources"] == [f"arn:aws:s3:::{outputs['BucketName']}"]
    assert event["detail"]["bucket"] == {"name": outputs["BucketName"]}
    assert event["detail"]["object"]["key"] == key
    assert event["detail"]["object"]["size"] == 8
    assert event["detail"]["reason"] == "PutObject"
    assert set(event) >= {"version", "id", "account", "time", "region"}


def test_upload_outside_the_rules_prefix_starts_nothing(cloud, outputs):
    sfn = cloud.client("stepfunctions")
    count = len(sfn.list_executions(stateMachineArn=outputs["PipelineArn"])["executions"])
    cloud.client("s3").put_object(Bucket=outputs["BucketName"], Key="elsewhere/file.csv", Body=b"x")
    # The rule's prefix filter must hold; give delivery a moment to (not) happen.
    key = f"incoming/{uuid.uuid4().hex}.csv"
    _upload_and_wait(cloud, outputs, key)
    assert len(sfn.list_executions(stateMachineArn=outputs["PipelineArn"])["executions"]) == count + 1


def test_handler_exception_is_caught_by_asl_catch_on_its_error_type(cloud, outputs):
    execution = _upload_and_wait(cloud, outputs, f"incoming/fail-{uuid.uuid4().hex}.csv")
    assert execution["status"] == "SUCCEEDED", execution
    output = json.loads(execution["output"])
    assert output["outcome"] == "caught"
    assert output["error"]["Error"] == "ModelConfigError"
    cause = json.loads(output["error"]["Cause"])
    assert cause["errorMessage"] == "shepherd.yaml: key 'instance_count' must be >= 1, got 0"
    assert cause["stackTrace"], "Lambda's error shape carries the stack trace"


def test_lambda_timeout_surfaces_as_sandbox_timedout_to_the_state_machine(cloud, outputs):
    execution = _upload_and_wait(cloud, outputs, f"incoming/slow-{uuid.uuid4().hex}.csv")
    assert execution["status"] == "SUCCEEDED", execution
    output = json.loads(execution["output"])
    assert output["error"]["Error"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in output["error"]["Cause"]


def test_two_unnamed_executions_of_one_machine_in_a_row_both_succeed(cloud, outputs):
    sfn = cloud.client("stepfunctions")
    payload = json.dumps({"detail": {"object": {"key": "manual/one.csv"}}})
    first = sfn.start_execution(stateMachineArn=outputs["PipelineArn"], input=payload)["executionArn"]
    second = sfn.start_execution(stateMachineArn=outputs["PipelineArn"], input=payload)["executionArn"]
    assert first != second
    assert not first.endswith(":None")
    assert finished_execution(cloud, first)["status"] == "SUCCEEDED"
    assert finished_execution(cloud, second)["status"] == "SUCCEEDED"
