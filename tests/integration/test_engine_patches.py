"""The Step Functions engine behaviours moto lacks and the local cloud supplies."""

from __future__ import annotations

import json
import uuid

import pytest

from .conftest import finished_execution, role

pytestmark = pytest.mark.integration


def _run(cloud, definition: dict, payload: dict) -> dict:
    sfn = cloud.client("stepfunctions")
    # What the definitions below call: functions of the fixture app, and child executions.
    states_role = role(
        cloud,
        "engine-test",
        "states.amazonaws.com",
        ["lambda:InvokeFunction", "states:StartExecution", "states:DescribeExecution", "states:StopExecution"],
    )
    arn = sfn.create_state_machine(
        name=f"engine-{uuid.uuid4().hex[:8]}", definition=json.dumps(definition), roleArn=states_role
    )["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=arn, input=json.dumps(payload))["executionArn"]
    return finished_execution(cloud, execution)


def test_jsonata_states_evaluate(cloud):
    definition = {
        "QueryLanguage": "JSONata",
        "StartAt": "Compute",
        "States": {
            "Compute": {
                "Type": "Pass",
                "Assign": {"label": "{% 'model \"' & $states.input.name & '\"' %}"},
                "Output": {"total": "{% $sum($states.input.values) %}", "label": "{% $label %}"},
                "End": True,
            }
        },
    }
    execution = _run(cloud, definition, {"name": "churn", "values": [1, 2, 3.5]})
    assert execution["status"] == "SUCCEEDED", execution
    assert json.loads(execution["output"]) == {"total": 6.5, "label": 'model "churn"'}


def test_start_execution_service_integration_starts_a_child(cloud, outputs):
    definition = {
        "StartAt": "Child",
        "States": {
            "Child": {
                "Type": "Task",
                "Resource": "arn:aws:states:::states:startExecution",
                "Parameters": {"StateMachineArn": outputs["WaiterArn"], "Input": {"from": "parent"}},
                "End": True,
            }
        },
    }
    execution = _run(cloud, definition, {})
    assert execution["status"] == "SUCCEEDED", execution
    child = json.loads(execution["output"])
    assert child["ExecutionArn"].startswith("arn:aws:states:us-east-1:123456789012:execution:")
    assert isinstance(child["StartDate"], int)


def test_lambda_task_with_bare_arn_resource_returns_the_payload(cloud):
    definition = {
        "StartAt": "Echo",
        "States": {
            "Echo": {
                "Type": "Task",
                "Resource": "arn:aws:lambda:us-east-1:123456789012:function:fixture-EchoFunction",
                "End": True,
            }
        },
    }
    execution = _run(cloud, definition, {"detail": {"object": {"key": "bare/arn.csv"}}})
    assert json.loads(execution["output"])["key"] == "bare/arn.csv"


def test_a_lambda_task_times_out_in_real_seconds_while_waits_run_on_the_virtual_clock(cloud):
    # TimeoutSeconds 30 at time scale 60 would be half a wall second: less than SlowFunction's own 1-s timeout.
    # A Lambda's run is real compute, which the virtual clock does not compress: the Task's timeout is not scaled,
    # and the function's own timeout ends the call.
    definition = {
        "StartAt": "Slow",
        "States": {
            "Slow": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {
                    "FunctionName": "arn:aws:lambda:us-east-1:123456789012:function:fixture-SlowFunction",
                    "Payload": {},
                },
                "TimeoutSeconds": 30,
                "End": True,
            }
        },
    }
    execution = _run(cloud, definition, {})
    assert execution["status"] == "FAILED"
    assert execution["error"] != "States.Timeout", execution
    assert "timed out after 1.00 seconds" in execution["cause"]
