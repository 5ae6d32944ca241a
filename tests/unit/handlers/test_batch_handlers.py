"""StartBatch and FinishBatch: one execution per upload; the input ends in processed/ or failed/ with a summary."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
from shepherd.batch import batch_file, failed_key, processed_key, reason_key, summary_key

from .conftest import BUCKET, Cloud, LambdaContext, sample_event

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")
INPUT = "1,0.5,0.2\n0,0.1,0.9\n"


@pytest.fixture
def start_batch(load_handler: Callable[[str], ModuleType], batch_state_machine: str) -> ModuleType:
    return load_handler("start_batch")


@pytest.fixture
def finish_batch(load_handler: Callable[[str], ModuleType]) -> ModuleType:
    return load_handler("finish_batch")


def created(key: str) -> dict[str, Any]:
    event = sample_event("start_batch")
    event["detail"]["object"]["key"] = key
    return event


def executions(aws: Cloud, state_machine: str) -> list[str]:
    return [e["name"] for e in aws.stepfunctions.list_executions(stateMachineArn=state_machine)["executions"]]


# ---------------------------------------------------------------- StartBatch


def test_an_uploaded_file_starts_one_batch_execution(
    aws: Cloud, start_batch: ModuleType, batch_state_machine: str
) -> None:
    event = sample_event("start_batch")
    result = start_batch.handler(event, aws.context)
    assert result["started"] is True
    assert (result["model"], result["key"]) == ("churn", event["detail"]["object"]["key"])
    assert executions(aws, batch_state_machine) == [result["execution_name"]]


def test_a_duplicated_event_never_starts_a_second_execution(
    aws: Cloud, start_batch: ModuleType, batch_state_machine: str
) -> None:
    # Step Functions answers a duplicate of a still running execution with that execution (same name and
    # input), and refuses one of a finished execution: either way one execution runs.
    first = start_batch.handler(sample_event("start_batch"), aws.context)
    again = start_batch.handler(sample_event("start_batch"), LambdaContext(aws_request_id="duplicate"))
    assert again["execution_name"] == first["execution_name"]
    assert executions(aws, batch_state_machine) == [first["execution_name"]]


def test_a_duplicate_of_a_finished_run_is_not_started(
    aws: Cloud, start_batch: ModuleType, batch_state_machine: str
) -> None:
    first = start_batch.handler(sample_event("start_batch"), aws.context)
    arn = f"{batch_state_machine.replace(':stateMachine:', ':execution:')}:{first['execution_name']}"
    deadline = time.monotonic() + 10
    while aws.stepfunctions.describe_execution(executionArn=arn)["status"] == "RUNNING":
        assert time.monotonic() < deadline, "moto's stand-in execution did not finish"
        time.sleep(0.05)
    again = start_batch.handler(sample_event("start_batch"), LambdaContext(aws_request_id="duplicate"))
    assert again["started"] is False
    assert executions(aws, batch_state_machine) == [first["execution_name"]]


@pytest.mark.parametrize("placeholder", ["batch/churn/input/", "batch/churn/input/2024/"])
def test_a_folder_placeholder_is_ignored(
    aws: Cloud, start_batch: ModuleType, batch_state_machine: str, placeholder: str
) -> None:
    result = start_batch.handler(created(placeholder), aws.context)
    assert result["started"] is False
    assert repr(placeholder) in result["ignored"]
    assert executions(aws, batch_state_machine) == []


# ---------------------------------------------------------------- FinishBatch


def finished(aws: Cloud, outcome: str, **extra: Any) -> dict[str, Any]:
    """FinishBatch's input for the sample batch file, uploaded."""
    event = sample_event("finish_batch")
    return event | {"outcome": outcome, "version_id": aws.put(event["key"], INPUT)} | extra


def test_a_completed_run_moves_the_input_to_processed_and_writes_its_summary(
    aws: Cloud, finish_batch: ModuleType
) -> None:
    # Given a batch file whose transform job completed
    event = finished(aws, "Completed")
    uploaded = batch_file(event["key"])
    # When FinishBatch runs
    result = finish_batch.handler(event, aws.context)
    # Then the input is under processed/, gone from input/, and the summary says so
    target = processed_key(uploaded, event["run"])
    assert aws.read(target).decode() == INPUT
    assert event["key"] not in aws.keys("batch/churn/input/")
    summary = json.loads(aws.read(summary_key(uploaded, event["run"])))
    assert summary["status"] == "Completed"
    assert summary["moved_to_uri"] == f"s3://{BUCKET}/{target}"
    assert summary["input_version_id"] == event["version_id"]
    assert result["summary_uri"] == f"s3://{BUCKET}/{summary_key(uploaded, event['run'])}"


def test_a_failed_run_moves_the_input_to_failed_with_a_reason_file(aws: Cloud, finish_batch: ModuleType) -> None:
    # Given a batch file whose run failed with a Lambda error (its Cause is the error's JSON document)
    error = {"Error": "InvalidBatchFile", "Cause": json.dumps({"errorMessage": "line 3: 2 fields, expected 3"})}
    event = finished(aws, "Failed", error=error)
    uploaded = batch_file(event["key"])
    # When FinishBatch runs
    finish_batch.handler(event, aws.context)
    # Then the input is under failed/ beside a file saying why, and the summary carries the reason
    assert aws.read(failed_key(uploaded, event["run"])).decode() == INPUT
    reason = "InvalidBatchFile: line 3: 2 fields, expected 3"
    assert aws.read(reason_key(uploaded, event["run"])).decode() == reason + "\n"
    assert event["key"] not in aws.keys("batch/churn/input/")
    summary = json.loads(aws.read(summary_key(uploaded, event["run"])))
    assert (summary["status"], summary["reason"], summary["output_uris"]) == ("Failed", reason, [])


def test_a_failure_s_reason_and_detail_leave_lambda_s_stack_trace_out(aws: Cloud, finish_batch: ModuleType) -> None:
    # Given a run failed by PrepareTransform: Step Functions' Cause is Lambda's error document, stack trace and all
    cause = {
        "errorMessage": "customers.csv: line 2 has 2 fields, line 1 has 3\nevery line needs the same number of fields",
        "errorType": "InvalidInput",
        "requestId": "0f4c7d2e-6f1a-4c55-9a57-2b8e7d1c9e10",
        "stackTrace": ['  File "/var/task/app.py", line 30, in handler\n    return batch_run.prepare(...)\n'],
    }
    event = finished(aws, "Failed", error={"Error": "InvalidInput", "Cause": json.dumps(cause)})
    # When FinishBatch runs
    result = finish_batch.handler(event, aws.context)
    # Then the state machine gets a one-line reason and the detail, and the reason file has both, nothing more
    assert result["reason"] == "InvalidInput: customers.csv: line 2 has 2 fields, line 1 has 3"
    assert result["detail"] == "every line needs the same number of fields"
    written = aws.read(reason_key(batch_file(event["key"]), event["run"])).decode()
    assert written == f"{result['reason']}\n{result['detail']}\n"
    assert "/var/task" not in json.dumps(result) + written


def test_finishing_writes_nothing_under_input(aws: Cloud, finish_batch: ModuleType) -> None:
    event = finished(aws, "Failed")
    finish_batch.handler(event, aws.context)
    assert aws.keys("batch/churn/input/") == set()
