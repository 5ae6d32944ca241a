"""shepherd.events.notifications: a Step Functions error told as a one-line reason and a detail, and the
notification format the state machines publish (docs/ROLLOUTS.md, "Notifications")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from shepherd.events.notifications import ROLLOUT_INCONCLUSIVE, document, explain, package_label

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "schemas" / "notification.schema.json").read_text())
STATE_MACHINES = ("rollout.asl.json", "batch_transform.asl.json", "model_lifecycle.asl.json")


def lambda_error(error_type: str, message: str, *frames: str) -> dict[str, str]:
    """A Lambda function's error as a Catch records it: Error is the errorType, Cause Lambda's error document."""
    cause = {
        "errorMessage": message,
        "errorType": error_type,
        "requestId": "0f4c7d2e-6f1a-4c55-9a57-2b8e7d1c9e10",
        "stackTrace": list(frames),
    }
    return {"Error": error_type, "Cause": json.dumps(cause)}


FRAMES = (
    '  File "/var/task/app.py", line 54, in handler\n    return steps.prepare(\n',
    '  File "/opt/python/shepherd/rollout/steps.py", line 118, in prepare\n    raise InvalidInput(...)\n',
)


def test_a_lambda_error_is_its_type_and_first_line_without_the_stack_trace() -> None:
    error = lambda_error(
        "InvalidInput",
        "s3://shepherd-data/models/churn/shepherd.yaml: rollout.shadow.max_duration_minute: unknown key\n"
        "  did you mean max_duration_minutes?",
        *FRAMES,
    )

    explained = explain(error)

    assert explained.error == "InvalidInput"
    assert explained.reason == (
        "InvalidInput: s3://shepherd-data/models/churn/shepherd.yaml: rollout.shadow.max_duration_minute: unknown key"
    )
    assert explained.detail == "did you mean max_duration_minutes?"
    assert "stackTrace" not in repr(explained)
    assert "/var/task" not in repr(explained)


def test_a_lambda_timeout_drops_lambda_s_request_prefix() -> None:
    error = {
        "Error": "Sandbox.Timedout",
        "Cause": json.dumps({"errorMessage": "RequestId: 0f4c7d2e-6f1a Error: Task timed out after 120.00 seconds"}),
    }
    assert explain(error).reason == "Sandbox.Timedout: Task timed out after 120.00 seconds"


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        ({"Error": "States.Timeout", "Cause": ""}, "States.Timeout: the step did not finish within its time limit"),
        ({"Error": "States.Timeout"}, "States.Timeout: the step did not finish within its time limit"),
        ({"Error": "Custom"}, "Custom: no cause given"),
        (None, "Error: no cause given"),
    ],
)
def test_an_error_without_a_cause_says_what_its_type_means(error: dict[str, Any] | None, reason: str) -> None:
    assert explain(error).reason == reason


def test_a_task_failure_s_plain_cause_is_its_message() -> None:
    # JobCallback's SendTaskFailure: the job's FailureReason as the Cause
    error = {"Error": "TransformJobFailed", "Cause": "ClientError: See job logs for more information"}
    explained = explain(error)
    assert (explained.error, explained.reason) == (
        "TransformJobFailed",
        "TransformJobFailed: ClientError: See job logs for more information",
    )


def test_a_traceback_inside_a_message_keeps_only_its_exception_line() -> None:
    message = (
        "AlgorithmError: ExecuteUserScriptError:\n"
        "Traceback (most recent call last):\n"
        '  File "/opt/ml/code/train.py", line 10, in <module>\n'
        "    frame = pd.read_csv(path)\n"
        "            ^^^^^^^^^^^^^^^^^\n"
        "pandas.errors.ParserError: Error tokenizing data. C error: Expected 9 fields in line 50, saw 11"
    )
    explained = explain({"Error": "TrainingJobFailed", "Cause": message})
    assert explained.reason == "TrainingJobFailed: AlgorithmError: ExecuteUserScriptError:"
    assert explained.detail == (
        "pandas.errors.ParserError: Error tokenizing data. C error: Expected 9 fields in line 50, saw 11"
    )


def test_local_paths_are_cut_to_their_file_name_but_uris_and_arns_stay() -> None:
    error = lambda_error(
        "FileNotFoundError",
        "[Errno 2] No such file or directory: '/tmp/tmpab12/input/data.csv' (from s3://bucket/training/churn/a.csv, "
        "arn:aws:sagemaker:us-east-1:123456789012:model-package/churn/3, http://127.0.0.1:4566/x/y)",
    )
    assert explain(error).reason == (
        "FileNotFoundError: [Errno 2] No such file or directory: 'data.csv' (from s3://bucket/training/churn/a.csv, "
        "arn:aws:sagemaker:us-east-1:123456789012:model-package/churn/3, http://127.0.0.1:4566/x/y)"
    )


def test_an_error_carried_inside_another_is_told_by_the_inner_one() -> None:
    inner = lambda_error("LockLost", "rollout churn-v2-abc no longer holds churn", *FRAMES)
    assert explain({"Error": "States.TaskFailed", "Cause": json.dumps(inner)}).reason == (
        "LockLost: rollout churn-v2-abc no longer holds churn"
    )


def test_a_long_message_is_cut_on_one_line() -> None:
    explained = explain(lambda_error("InvalidInput", "x" * 1000 + "\nnext"))
    assert len(explained.reason) == 300
    assert explained.reason.endswith("…")
    assert explained.detail == "next"


def test_a_document_puts_the_reason_first_on_one_line() -> None:
    made = document(ROLLOUT_INCONCLUSIVE, "A person must decide:\n  roll out again", "detail\n", model="churn")
    assert list(made) == ["reason", "detail", "event", "model"]
    assert made["reason"] == "A person must decide: roll out again"
    jsonschema.validate(made | {"execution": "arn:x", "endpoint": "churn", "package": None}, SCHEMA)


def test_a_package_is_named_by_its_group_and_version() -> None:
    assert package_label("arn:aws:sagemaker:us-east-1:123456789012:model-package/churn/3") == "churn v3"
    assert package_label("not-an-arn") == "not-an-arn"


@pytest.mark.parametrize("machine", STATE_MACHINES)
def test_every_notification_a_state_machine_publishes_is_built_reason_first(machine: str) -> None:
    # Given the state machine's definition
    states = json.loads((ROOT / "statemachines" / machine).read_text())["States"]
    publishing = {n: s for n, s in states.items() if s.get("Resource", "").endswith(":states:::sns:publish")}
    assert publishing
    for name, state in publishing.items():
        assert state["Parameters"]["Message.$"] == "States.JsonToString($.notification)", name
        # Then each state that writes $.notification and leads to a publish builds reason, detail and event
        # first, with an event the schema knows
        builders = [s for s in states.values() if s.get("ResultPath") == "$.notification" and s.get("Next") == name]
        assert builders, name
        for builder in builders:
            fields = builder.get("ResultSelector") or builder["Parameters"]
            keys = [key.removesuffix(".$") for key in fields]
            assert keys[:3] == ["reason", "detail", "event"], name
            assert set(keys) <= set(SCHEMA["properties"]), name
            if "event" in fields:
                assert fields["event"] in SCHEMA["properties"]["event"]["enum"], name
