"""JobCallback, ReconcileJobs and StopJob: settling waiting tokens from job events, lost events and aborted waits."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import pytest
from botocore.exceptions import ClientError
from shepherd.aws.stepfunctions import CLOSED_TASK_CODES
from shepherd.aws.tokens import DynamoTokenStore
from shepherd.callbacks import ORPHAN_AFTER_SECONDS, Waiter
from shepherd.errors import InvalidInput

from .conftest import ROLE_ARN, TOKENS_TABLE, Cloud, LambdaContext, SentTasks, sample_event

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"


@pytest.fixture
def job_callback(load_handler: Callable[[str], ModuleType]) -> ModuleType:
    return load_handler("job_callback")


@pytest.fixture
def started(aws: Cloud, load_handler: Callable[[str], ModuleType]) -> dict[str, Any]:
    """A Train task's StartJob payload, run: its token waits and its (moto) job has Completed."""
    event = sample_event("start_job")
    load_handler("start_job").handler(event, aws.context)
    return event


def job_event(name: str, status: str = "Completed") -> dict[str, Any]:
    event = sample_event("job_callback")
    event["detail"] |= {"TrainingJobName": name, "TrainingJobStatus": status}
    return event


def test_a_completed_job_resumes_its_waiting_task_with_the_outcome(
    aws: Cloud, job_callback: ModuleType, started: dict[str, Any], waiting_tasks: SentTasks
) -> None:
    # Given a waiting Train task whose job completed
    name = started["request"]["TrainingJobName"]
    # When the job's state-change event arrives
    result = job_callback.handler(job_event(name), aws.context)
    # Then the task succeeds with the job's model and metrics, and the token is settled
    assert result == {"job_name": name, "result": "settled"}
    assert [(operation, body["taskToken"]) for operation, body in waiting_tasks.calls] == [
        ("SendTaskSuccess", started["token"])
    ]
    output = json.loads(waiting_tasks.calls[0][1]["output"])
    described = aws.sagemaker.describe_training_job(TrainingJobName=name)
    assert output["model_data_url"] == described["ModelArtifacts"]["S3ModelArtifacts"]
    assert output["metrics"] == {m["MetricName"]: m["Value"] for m in described["FinalMetricDataList"]}
    stored = aws.token_item(name)
    assert stored is not None
    assert (stored["status"], stored["outcome"]) == ("SETTLED", "Completed")


def test_step_functions_refuses_an_unknown_token_as_a_closed_task(aws: Cloud) -> None:
    # Contract: moto's Step Functions answers a token no task waits for with one of the codes Shepherd
    # treats as "already closed", as AWS does.
    with pytest.raises(ClientError) as refused:
        aws.stepfunctions.send_task_success(taskToken="no-such-token", output="{}")
    assert refused.value.response["Error"]["Code"] == "InvalidToken"
    assert refused.value.response["Error"]["Code"] in CLOSED_TASK_CODES


def test_a_task_that_is_no_longer_waiting_counts_as_settled(
    aws: Cloud, job_callback: ModuleType, started: dict[str, Any]
) -> None:
    # Given a stored token Step Functions no longer knows (its task timed out, or the execution ended)
    name = started["request"]["TrainingJobName"]
    # When the job's event arrives
    result = job_callback.handler(job_event(name), aws.context)
    # Then the refusal is not an error: the token is marked settled and is not tried again
    assert result == {"job_name": name, "result": "already-closed"}
    stored = aws.token_item(name)
    assert stored is not None
    assert stored["status"] == "SETTLED"


def test_a_duplicate_event_finds_no_waiter(
    aws: Cloud, job_callback: ModuleType, started: dict[str, Any], waiting_tasks: SentTasks
) -> None:
    name = started["request"]["TrainingJobName"]
    job_callback.handler(job_event(name), aws.context)
    again = job_callback.handler(job_event(name), LambdaContext(aws_request_id="duplicate"))
    assert again == {"job_name": name, "result": "no-waiter"}
    assert len(waiting_tasks.calls) == 1


@pytest.mark.parametrize("status", ["InProgress", "Stopping"])
def test_non_terminal_statuses_are_ignored(
    aws: Cloud, job_callback: ModuleType, started: dict[str, Any], waiting_tasks: SentTasks, status: str
) -> None:
    name = started["request"]["TrainingJobName"]
    result = job_callback.handler(job_event(name, status), aws.context)
    assert result == {"job_name": name, "result": f"ignored-{status}"}
    assert waiting_tasks.calls == []
    stored = aws.token_item(name)
    assert stored is not None
    assert stored["status"] == "WAITING"


def test_an_event_for_a_job_shepherd_did_not_start_finds_no_waiter(
    aws: Cloud, job_callback: ModuleType, waiting_tasks: SentTasks
) -> None:
    assert job_callback.handler(job_event("someone-elses-job"), aws.context) == {
        "job_name": "someone-elses-job",
        "result": "no-waiter",
    }
    assert waiting_tasks.calls == []


def test_an_event_that_is_not_a_job_state_change_is_invalid_input(aws: Cloud, job_callback: ModuleType) -> None:
    # Shepherd runs no processing jobs: their events are not JobCallback's
    event = sample_event("sagemaker_processing_job_state_change")
    with pytest.raises(InvalidInput, match="SageMaker Processing Job State Change"):
        job_callback.handler(event, aws.context)


def test_a_job_event_without_the_job_name_is_invalid_input(aws: Cloud, job_callback: ModuleType) -> None:
    event = sample_event("job_callback")
    del event["detail"]["TrainingJobName"]
    with pytest.raises(InvalidInput):
        job_callback.handler(event, aws.context)


# ---------------------------------------------------------------- endpoints


@pytest.fixture
def endpoint_waits(aws: Cloud) -> Waiter:
    """A rollout waiting for endpoint churn to be InService on its first config (moto's endpoint is at once)."""
    config = sample_event("sagemaker_endpoint_state_change")["detail"]["EndpointConfigName"]
    aws.sagemaker.create_model(ModelName="churn-v1", ExecutionRoleArn=ROLE_ARN, PrimaryContainer={"Image": IMAGE})
    variant = {"VariantName": "v1", "ModelName": "churn-v1", "InstanceType": "ml.m5.large", "InitialInstanceCount": 2}
    aws.sagemaker.create_endpoint_config(EndpointConfigName=config, ProductionVariants=[variant])
    aws.sagemaker.create_endpoint(EndpointName="churn", EndpointConfigName=config)
    waiter = Waiter("endpoint/churn", "endpoint", "endpoint-token", "churn-v1-rollout", datetime.now(UTC), config)
    DynamoTokenStore(TOKENS_TABLE).put(waiter, expires_after_seconds=3600)
    return waiter


def endpoint_event(status: str) -> dict[str, Any]:
    event = sample_event("sagemaker_endpoint_state_change")
    event["detail"]["EndpointStatus"] = status
    return event


@pytest.mark.parametrize("status", ["IN_SERVICE", "FAILED", "UPDATE_ROLLBACK_FAILED", "InService"])
def test_an_endpoint_event_that_may_end_a_wait_settles_it_on_describe_endpoint(
    aws: Cloud, job_callback: ModuleType, endpoint_waits: Waiter, waiting_tasks: SentTasks, status: str
) -> None:
    # Given a rollout waiting for its endpoint, which DescribeEndpoint shows InService on the expected config
    # When an event arrives in AWS's spelling (IN_SERVICE), or DescribeEndpoint's (accepted: it only wakes us up)
    result = job_callback.handler(endpoint_event(status), aws.context)
    # Then the wait ends as DescribeEndpoint says, whatever the event said
    assert result == {"job_name": "churn", "result": "settled"}
    [(operation, body)] = waiting_tasks.calls
    assert (operation, body["taskToken"]) == ("SendTaskSuccess", endpoint_waits.token)
    output = json.loads(body["output"])
    assert (output["status"], output["config"]) == ("InService", endpoint_waits.expect)


@pytest.mark.parametrize("status", ["CREATING", "UPDATING", "ROLLING_BACK", "SYSTEM_UPDATING"])
def test_an_endpoint_still_changing_is_ignored(
    aws: Cloud, job_callback: ModuleType, endpoint_waits: Waiter, waiting_tasks: SentTasks, status: str
) -> None:
    assert job_callback.handler(endpoint_event(status), aws.context) == {
        "job_name": "churn",
        "result": f"ignored-{status}",
    }
    assert waiting_tasks.calls == []
    stored = aws.token_item("endpoint/churn")
    assert stored is not None
    assert stored["status"] == "WAITING"


# ---------------------------------------------------------------- ReconcileJobs


def test_the_reconciler_settles_a_finished_job_whose_event_was_lost(
    aws: Cloud, load_handler: Callable[[str], ModuleType], started: dict[str, Any], waiting_tasks: SentTasks
) -> None:
    counts = load_handler("reconcile_jobs").handler(sample_event("reconcile_jobs"), aws.context)
    assert counts == {"settled": 1}
    assert [(operation, body["taskToken"]) for operation, body in waiting_tasks.calls] == [
        ("SendTaskSuccess", started["token"])
    ]


def test_the_reconciler_forgets_an_old_token_whose_job_never_appeared(
    aws: Cloud, load_handler: Callable[[str], ModuleType]
) -> None:
    # Given a token stored longer ago than ORPHAN_AFTER_SECONDS for a job that was never created
    created = datetime.now(UTC) - timedelta(seconds=ORPHAN_AFTER_SECONDS + 60)
    DynamoTokenStore(TOKENS_TABLE).put(
        Waiter("churn-train-000000000000", "training", "orphan-token", "exec", created), expires_after_seconds=3600
    )
    # When the reconciler runs, then it deletes the token
    counts = load_handler("reconcile_jobs").handler(sample_event("reconcile_jobs"), aws.context)
    assert counts == {"forgotten": 1}
    assert aws.token_item("churn-train-000000000000") is None


def test_the_reconciler_keeps_a_young_token_whose_job_has_not_appeared_yet(
    aws: Cloud, load_handler: Callable[[str], ModuleType]
) -> None:
    DynamoTokenStore(TOKENS_TABLE).put(
        Waiter("churn-train-000000000000", "training", "young-token", "exec", datetime.now(UTC)),
        expires_after_seconds=3600,
    )
    counts = load_handler("reconcile_jobs").handler(sample_event("reconcile_jobs"), aws.context)
    assert counts == {"job-missing": 1}
    assert aws.token_item("churn-train-000000000000") is not None


# ---------------------------------------------------------------- StopJob


def test_stopping_a_finished_job_reports_its_status(
    aws: Cloud, load_handler: Callable[[str], ModuleType], started: dict[str, Any]
) -> None:
    name = started["request"]["TrainingJobName"]
    result = load_handler("stop_job").handler({"kind": "training", "job_name": name}, aws.context)
    assert result == {"job_name": name, "found": "Completed", "stopped": False}


def test_stopping_a_job_that_never_started_is_not_an_error(
    aws: Cloud, load_handler: Callable[[str], ModuleType]
) -> None:
    result = load_handler("stop_job").handler(sample_event("stop_job"), aws.context)
    assert result["found"] == "Missing"
    assert result["stopped"] is False
