"""Schedules fire on the virtual clock; task tokens resume executions; rule targets get their input."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from .conftest import finished_execution, role, wait_for

pytestmark = pytest.mark.integration


def test_rate_schedule_fires_on_the_virtual_clock(cloud, outputs):
    # Given rate(5 minutes) and a time scale of 60, a tick is due about every five wall seconds
    s3 = cloud.client("s3")

    def ticks() -> list[str]:
        return [o["Key"] for o in s3.list_objects_v2(Bucket=outputs["BucketName"], Prefix="ticks/").get("Contents", [])]

    # Then the scheduled Lambda runs, with a Scheduled Event, and writes its tick
    assert wait_for(ticks, timeout=15)


def test_trigger_fires_a_schedule_rule_now(cloud):
    import urllib.request

    rule = next(r["Name"] for r in cloud.client("events").list_rules()["Rules"] if r.get("ScheduleExpression"))
    request = urllib.request.Request(f"{cloud.endpoint}/_shepherd/trigger/{rule}", method="POST", data=b"")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.loads(response.read()) == {"rule": rule, "targets": 1}


def test_wait_for_task_token_resumes_on_send_task_success(cloud, outputs):
    sfn = cloud.client("stepfunctions")
    ddb = cloud.client("dynamodb")
    ddb.delete_item(TableName=outputs["TableName"], Key={"id": {"S": "token"}})
    arn = sfn.start_execution(stateMachineArn=outputs["ApprovalArn"], input="{}")["executionArn"]

    def token() -> str | None:
        item = ddb.get_item(TableName=outputs["TableName"], Key={"id": {"S": "token"}}).get("Item")
        return item["token"]["S"] if item else None

    task_token = wait_for(token)
    assert sfn.describe_execution(executionArn=arn)["status"] == "RUNNING"
    sfn.send_task_heartbeat(taskToken=task_token)
    assert sfn.describe_execution(executionArn=arn)["status"] == "RUNNING"
    sfn.send_task_success(taskToken=task_token, output=json.dumps({"approved": True}))
    execution = finished_execution(cloud, arn)
    assert execution["status"] == "SUCCEEDED"
    assert json.loads(execution["output"]) == {"approved": True}


def test_wait_for_task_token_fails_on_send_task_failure(cloud, outputs):
    sfn = cloud.client("stepfunctions")
    ddb = cloud.client("dynamodb")
    ddb.delete_item(TableName=outputs["TableName"], Key={"id": {"S": "token"}})
    arn = sfn.start_execution(stateMachineArn=outputs["ApprovalArn"], input="{}")["executionArn"]
    item = wait_for(lambda: ddb.get_item(TableName=outputs["TableName"], Key={"id": {"S": "token"}}).get("Item"))
    sfn.send_task_failure(taskToken=item["token"]["S"], error="Rejected", cause="metric gate failed")
    execution = finished_execution(cloud, arn)
    assert execution["status"] == "FAILED"
    assert execution["error"] == "Rejected"


def test_put_events_reaches_a_state_machine_target_with_input_path(cloud, outputs):
    events = cloud.client("events")
    rule = f"custom-{uuid.uuid4().hex[:8]}"
    events.put_rule(Name=rule, EventPattern=json.dumps({"source": ["shepherd.test"]}))
    # EventBridge starts a state machine as the target's RoleArn ("Using IAM roles for Amazon EventBridge targets")
    starter = role(cloud, "events-starts-pipeline", "events.amazonaws.com", ["states:StartExecution"])
    target = {"Id": "pipeline", "Arn": outputs["PipelineArn"], "InputPath": "$.detail", "RoleArn": starter}
    events.put_targets(Rule=rule, Targets=[target])
    sfn = cloud.client("stepfunctions")
    before = {e["executionArn"] for e in sfn.list_executions(stateMachineArn=outputs["PipelineArn"])["executions"]}
    key = f"manual/{uuid.uuid4().hex}.csv"
    result = events.put_events(
        Entries=[
            {
                "Source": "shepherd.test",
                "DetailType": "Manual",
                "Detail": json.dumps({"detail": {"object": {"key": key}}}),
            }
        ]
    )
    assert result["FailedEntryCount"] == 0

    def started() -> list[str]:
        listed = sfn.list_executions(stateMachineArn=outputs["PipelineArn"])["executions"]
        return [e["executionArn"] for e in listed if e["executionArn"] not in before]

    (arn,) = wait_for(started)
    execution = finished_execution(cloud, arn)
    assert json.loads(execution["input"]) == {"detail": {"object": {"key": key}}}
    assert json.loads(execution["output"])["result"]["echo"]["key"] == key
    events.remove_targets(Rule=rule, Ids=["pipeline"])
    events.delete_rule(Name=rule)


def test_wait_state_runs_on_the_virtual_clock(cloud, outputs):
    # Given a Wait of 600 s and a time scale of 60: about 10 wall seconds, not ten minutes
    sfn = cloud.client("stepfunctions")
    started = time.monotonic()
    arn = sfn.start_execution(stateMachineArn=outputs["WaiterArn"])["executionArn"]
    execution = finished_execution(cloud, arn, timeout=60)
    elapsed = time.monotonic() - started
    assert execution["status"] == "SUCCEEDED"
    assert 5 < elapsed < 60, elapsed


def test_task_token_timeout_runs_on_the_virtual_clock(cloud, outputs):
    # Given TimeoutSeconds 900 at a time scale of 60: the token expires after about 15 wall seconds
    sfn = cloud.client("stepfunctions")
    arn = sfn.start_execution(stateMachineArn=outputs["ApprovalArn"], input="{}")["executionArn"]
    execution = finished_execution(cloud, arn, timeout=90)
    assert execution["status"] == "FAILED"
    assert execution["error"] == "States.Timeout"


def test_eventbridge_scheduler_schedule_fires_with_its_input(cloud, outputs):
    import urllib.request

    schedule = cloud.client("scheduler").list_schedules()["Schedules"][0]["Name"]
    request = urllib.request.Request(f"{cloud.endpoint}/_shepherd/trigger/{schedule}", method="POST", data=b"")
    with urllib.request.urlopen(request, timeout=10):
        pass
    s3 = cloud.client("s3")
    assert wait_for(lambda: s3.list_objects_v2(Bucket=outputs["BucketName"], Prefix="ticks/scheduler-").get("KeyCount"))


def test_eventbridge_needs_a_function_s_permission_and_a_target_role_to_deliver(cloud, outputs, denials):
    # "Using resource-based policies for Amazon EventBridge": a function must allow events.amazonaws.com from the
    # rule; a state machine target needs a RoleArn. Without them AWS drops the event (FailedInvocations).
    events = cloud.client("events")
    rule = f"unpermitted-{uuid.uuid4().hex[:8]}"
    rule_arn = events.put_rule(Name=rule, EventPattern=json.dumps({"source": ["shepherd.unpermitted"]}))["RuleArn"]
    echo = "arn:aws:lambda:us-east-1:123456789012:function:fixture-EchoFunction"  # its only permission is the Tick's
    events.put_targets(Rule=rule, Targets=[{"Id": "echo", "Arn": echo}, {"Id": "sm", "Arn": outputs["PipelineArn"]}])
    sfn = cloud.client("stepfunctions")
    before = {e["executionArn"] for e in sfn.list_executions(stateMachineArn=outputs["PipelineArn"])["executions"]}
    denials.expect("lambda:InvokeFunction", "fixture-EchoFunction")
    events.put_events(Entries=[{"Source": "shepherd.unpermitted", "DetailType": "T", "Detail": "{}"}])
    [refusal] = wait_for(lambda: [r for r in denials.seen() if r["action"] == "lambda:InvokeFunction"])
    assert refusal["principal"] == "events.amazonaws.com"
    assert refusal["reason"] == "because no resource-based policy allows the lambda:InvokeFunction action"
    time.sleep(1)  # and the state machine target, with no role to start it as, did not start either
    after = {e["executionArn"] for e in sfn.list_executions(stateMachineArn=outputs["PipelineArn"])["executions"]}
    assert after == before
    assert rule_arn.endswith(rule)
